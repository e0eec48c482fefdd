"""Shared fixtures: caches of the tiny generated sets, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_utils.testing import one_thread  # noqa: F401  (session fixture: one torch thread)

# A few images per split of the shape-texture set: enough for one training step and every attack.
TINY_SIZES = {"train": 64, "val": 16, "test": 16}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")
