"""The BEV grid: which array cell holds which point of the ego frame.

Ego frame (nuScenes): x forward, y left, z up, metres. A BEV map is an array ``(H, W)`` shown
like a map seen from above with the car driving up the page:

- row ``i`` runs along ego **x**, from ``x_max`` at row 0 (ahead) to ``x_min`` at the last row;
- column ``j`` runs along ego **y**, from ``y_max`` at column 0 (left) to ``y_min`` at the last.

The cell ``(i, j)`` covers ``x in [x_max - (i+1) r, x_max - i r)``, ``y in [y_max - (j+1) r, y_max - j r)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class BEVGrid:
    """A square-celled grid over ``[x_min, x_max) x [y_min, y_max)`` (default: +-50 m at 0.5 m, as LSS)."""

    x_min: float = -50.0
    x_max: float = 50.0
    y_min: float = -50.0
    y_max: float = 50.0
    resolution: float = 0.5

    def __post_init__(self) -> None:
        for lo, hi, name in ((self.x_min, self.x_max, "x"), (self.y_min, self.y_max, "y")):
            extent = (hi - lo) / self.resolution
            if hi <= lo or self.resolution <= 0 or abs(extent - round(extent)) > 1e-6:
                raise ValueError(f"BEV grid: {name} range [{lo}, {hi}) must be a positive multiple of the "
                                 f"resolution {self.resolution}")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows along x, columns along y)."""
        return (round((self.x_max - self.x_min) / self.resolution),
                round((self.y_max - self.y_min) / self.resolution))

    def to_index(self, x: Tensor | np.ndarray, y: Tensor | np.ndarray):
        """Continuous (row, col) coordinates of ego points: cell (i, j) spans [i, i+1) x [j, j+1)."""
        return (self.x_max - x) / self.resolution, (self.y_max - y) / self.resolution

    def cell_centres(self) -> tuple[Tensor, Tensor]:
        """Ego x and y of every cell centre, each (H, W)."""
        h, w = self.shape
        x = self.x_max - (torch.arange(h) + 0.5) * self.resolution
        y = self.y_max - (torch.arange(w) + 0.5) * self.resolution
        return torch.meshgrid(x, y, indexing="ij")
