"""Shared fixtures: a tiny shape world (generated once per session) and its datamodule settings."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
# A few images per split: enough for every class and the ft splits with 2 exemplars.
TINY_SIZES = {"t1_train": 24, "t2_train": 8, "t3_train": 8, "val": 8, "test": 8, "aerial_val": 2, "aerial_test": 6}


@pytest.fixture(scope="session")
def shapeworld_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_shapeworld(shapeworld_cache):
    """Keyword arguments of a tiny ``ShapeWorld`` datamodule."""
    return {"sizes": TINY_SIZES, "exemplars": 2, "cache_dir": str(shapeworld_cache), "batch_size": 4}
