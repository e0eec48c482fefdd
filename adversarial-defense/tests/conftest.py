"""Shared fixtures: caches of the tiny generated sets, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# A few images per split of the shape-texture set: enough for one training step and every attack.
TINY_SIZES = {"train": 64, "val": 16, "test": 16}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread for the tests' small tensors: on a busy 2-core machine, two threads spinning on each
    other make the attack tests tens of times slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
