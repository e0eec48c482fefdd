"""Fixtures: one thread (the suite's timings stay stable on 2 cores) and a tiny rendered broadcast set shared by
the end-to-end tests."""

from __future__ import annotations

import pytest

from shared_utils.testing import one_thread  # noqa: F401  (session fixture)

TINY_COUNTS = ["--data.init_args.train_count=24", "--data.init_args.val_count=4", "--data.init_args.test_count=4",
               "--data.init_args.render_width=128", "--data.init_args.render_height=72",
               "--data.init_args.batch_size=4"]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> list[str]:
    """CLI arguments of a tiny synthetic set cached in a session folder (rendered once)."""
    cache = tmp_path_factory.mktemp("synthetic")
    return [*TINY_COUNTS, f"--data.init_args.cache_dir={cache / 'data'}",
            f"--model.init_args.judge_dir={cache / 'judges'}"]

