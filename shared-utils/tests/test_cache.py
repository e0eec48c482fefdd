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


def test_a_relative_cache_is_the_collection_s_from_any_folder_inside_it(tmp_path, monkeypatch):
    """`cache_dir: .cache/<project>` from the root (make train) or a project folder (a bench, the console
    script): one cache, generated once; outside a checkout it stays relative to the working directory."""
    from shared_utils.paths import anchored

    (tmp_path / "shared-utils").mkdir()
    (tmp_path / "shared-utils/pyproject.toml").write_text("")
    (tmp_path / "Makefile").write_text("")
    (tmp_path / "project").mkdir()
    calls: list = []
    monkeypatch.chdir(tmp_path)
    from_root = generate_once(".cache/p", {"seed": 1}, writer(calls))
    monkeypatch.chdir(tmp_path / "project")
    from_project = generate_once(".cache/p", {"seed": 1}, writer(calls))
    assert from_root.resolve() == from_project.resolve() == (tmp_path / ".cache/p" / from_root.name).resolve()
    assert len(calls) == 1 and not (tmp_path / "project/.cache").exists()
    assert anchored("/abs/dir") == Path("/abs/dir")
    monkeypatch.chdir(tmp_path.parent)  # outside the checkout
    assert anchored(".cache/p") == Path(".cache/p")
