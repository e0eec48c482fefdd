"""bench.py: every method has a config and --only selects them (shared-utils/tests/test_collection.py checks
that the committed RESULTS.md is what bench.json renders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_utils.bench import load_bench

HERE = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_bench(HERE / "bench.py")


def test_only_names_methods_with_a_config(bench):
    """Every trained method runs its own config (what make train runs); stages is the one in-process measure."""
    assert all((bench.CONFIGS / f"{method}.yaml").is_file() for method in bench.TRAINED)
    args = bench.parse_args(bench.METHODS, ["--only", "geometry", "stages", "--", "--trainer.max_epochs=1"])
    assert args.methods == ["geometry", "stages"] and args.extra == ["--trainer.max_epochs=1"]
