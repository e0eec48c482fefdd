"""The top-level Makefile's user-facing behaviour (help, project checks)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, timeout=60)


def projects() -> list[str]:
    return sorted(p.parent.name for p in ROOT.glob("*/pyproject.toml") if p.parent.name != "shared-utils")


def test_help_lists_targets_and_projects():
    result = make()
    assert result.returncode == 0
    for target in ("install", "train", "test", "bench", "tensorboard", "lint", "help"):
        assert f"  {target}" in result.stdout
    assert "Projects: " + " ".join(projects()) in result.stdout


def test_unknown_project_lists_the_projects():
    for target in ("train", "bench"):
        result = make(target, "PROJECT=nope")
        assert result.returncode != 0
        assert "PROJECT='nope' is not a project" in result.stderr
        assert "Projects: " + " ".join(projects()) in result.stderr
    assert make("train").returncode != 0  # PROJECT missing
