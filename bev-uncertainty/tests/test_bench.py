"""bench.py's carry-over of committed rows: RESULTS.md tables read back as the numbers that wrote them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_carried_rows_read_back_what_write_results_wrote(bench, tmp_path):
    metrics = {f"test/{k}": 0.1234 + i / 100 for i, (k, _) in enumerate(bench.COLUMNS)}
    metrics |= {"test/seconds_per_sample": 0.071, "test/auroc_unobserved": 0.883,
                "test/unseen_score_unobserved_over_observed": 1.84}
    record = {"methods": {"entropy": {"metrics": metrics, "fit_test_minutes": 4.56, "date": "2026-11-26"},
                          "geometry": {"metrics": dict(metrics), "fit_test_minutes": 5.0, "date": "2026-12-06"}}}
    results = tmp_path / "RESULTS.md"
    results.write_text(bench.write_results(record, ["geometry"]))
    rows = bench.carried_rows(results)
    assert set(rows) == {"entropy", "geometry"}
    entropy = rows["entropy"]
    assert entropy["date"] == "2026-11-26" and rows["geometry"]["date"] == "2026-12-06"
    assert entropy["fit_test_minutes"] == pytest.approx(4.6)
    for key, value in metrics.items():  # as printed: 3 decimals, 4 for AUSE, 2 for the ratio
        digits = 4 if key == "test/ause" else 2 if key.endswith("over_observed") else 3
        assert entropy["metrics"][key] == pytest.approx(round(value, digits)), key


def test_committed_results_hold_every_method(bench):
    """The committed RESULTS.md parses into a row per method (what a fresh checkout's --only carries over)."""
    rows = bench.carried_rows(BENCH.with_name("RESULTS.md"))
    assert set(rows) == set(bench.METHODS)
    assert all(0 < row["metrics"]["test/iou"] < 1 and row["fit_test_minutes"] > 0 for row in rows.values())
