"""Shared helpers: where the team's reference fixtures live, and tiny expmap files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "pose-forecasting"


@pytest.fixture
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (they live in the team's ../shared checkout)")
    return FIXTURES


def write_expmap(path: Path, frames: np.ndarray) -> Path:
    """Writes ``(N, 99)`` frames in the Human3.6M text format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, frames, delimiter=",", fmt="%.6f")
    return path
