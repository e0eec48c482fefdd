"""Shared fixtures: a tiny synthetic street (generated once per session) and one torch thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared_utils.testing import one_thread  # noqa: F401  (session fixture: one torch thread)

# 12 views of 40 x 30 px: 8 train, 2 val, 2 test (every 8th from 0 and from 4); enough for every method and metric.
TINY = {"width": 40, "height": 30, "drive_frames": 10, "side_views": 2}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_data(cache_dir) -> list[str]:
    """CLI arguments that make the synthetic street tiny."""
    return [f"--data.init_args.{k}={json.dumps(v)}" for k, v in TINY.items()] + [
        f"--data.init_args.cache_dir={cache_dir}"]
