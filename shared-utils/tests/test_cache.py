"""generate_once: one generation per record, nothing half-written left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_utils.cache import MARKER, generate_once


def writer(calls: list):
    def generate(root: Path) -> None:
        calls.append(root)
        (root / "data.txt").write_text("ok")
    return generate


def test_generates_once_per_record(tmp_path):
    calls: list = []
    first = generate_once(tmp_path, {"seed": 1}, writer(calls))
    again = generate_once(tmp_path, {"seed": 1}, writer(calls))
    other = generate_once(tmp_path, {"seed": 2}, writer(calls))
    assert first == again != other and len(calls) == 2
    assert (first / "data.txt").read_text() == "ok" and (first / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])  # no staging left


def test_failed_generation_leaves_nothing_and_reruns(tmp_path):
    def broken(root: Path) -> None:
        (root / "half.txt").write_text("half")
        raise RuntimeError("generator crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        generate_once(tmp_path, {"seed": 1}, broken)
    assert list(tmp_path.iterdir()) == []
    calls: list = []
    assert (generate_once(tmp_path, {"seed": 1}, writer(calls)) / "data.txt").is_file() and len(calls) == 1


def test_folder_without_marker_is_regenerated(tmp_path):
    calls: list = []
    root = generate_once(tmp_path, {"seed": 1}, writer(calls))
    (root / MARKER).unlink()
    (root / "stale.txt").write_text("from an interrupted run")
    assert generate_once(tmp_path, {"seed": 1}, writer(calls)) == root
    assert len(calls) == 2 and not (root / "stale.txt").exists()
