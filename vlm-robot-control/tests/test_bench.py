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
    """Every method runs a config (what make train runs; a variant: another's plus arguments); env is measured
    in the bench's process."""
    configs = [bench.VARIANTS.get(method, (method,))[0] for method in bench.TRAINED]
    assert all((bench.CONFIGS / f"{config}.yaml").is_file() for config in configs)
    args = bench.parse_args(bench.METHODS, ["--only", "env", "ppo", "--", "--trainer.max_epochs=1"])
    assert args.methods == ["env", "ppo"] and args.extra == ["--trainer.max_epochs=1"]
