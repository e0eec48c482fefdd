"""Shared fixtures: a tiny synthetic road set (generated once per session) and one torch thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared_utils.testing import one_thread  # noqa: F401  (session fixture: one torch thread)

# Two train / one val / one test sequence of 4 frames at 64 x 128 (the depth networks need sides that are
# multiples of 32, at least 64): enough for every method and metric.
TINY = {"sequences": {"train": 2, "val": 1, "test": 1}, "frames": 4, "height": 64, "width": 128}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_data(cache_dir) -> list[str]:
    """CLI arguments that make the synthetic datamodule tiny."""
    return [f"--data.init_args.{k}={json.dumps(v)}" for k, v in TINY.items()] + [
        f"--data.init_args.cache_dir={cache_dir}", "--data.init_args.batch_size=2",
        "--data.init_args.test_batch_size=3"]
