"""Shared helpers: the reference fixtures (``tests/data``, see its README) and tiny expmap files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# In the repository (not skipped when absent): siMLPe's official weights and outputs, and the evaluation set
# whose numbers come from siMLPe's own evaluation code. What each file is and its licence: data/README.md.
FIXTURES = Path(__file__).resolve().parent / "data"


def write_expmap(path: Path, frames: np.ndarray) -> Path:
    """Writes ``(N, 99)`` frames in the Human3.6M text format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, frames, delimiter=",", fmt="%.6f")
    return path
