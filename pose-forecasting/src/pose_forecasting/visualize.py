"""Pictures for TensorBoard, drawn with OpenCV: skeleton strips over time and the error curve."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from pose_forecasting.data.skeleton import PARENTS_USED
from pose_forecasting.metrics import FRAME_MS
from shared_utils.logging import line_plot

GREY, GREEN, RED = (150, 150, 150), (40, 160, 40), (220, 40, 40)


VIEW_YAW = np.deg2rad(60)  # a three-quarter view: the front view hides walking and reaching (they are sagittal)


def _draw(canvas: np.ndarray, joints: np.ndarray, origin: tuple[int, int], scale: float, color,
          thickness: int = 2) -> None:
    """Three-quarter view (y up) of one pose; the 22 Human3.6M joints with their bones, the parentless
    ones joined to the hips at the origin."""
    x = joints[:, 0] * np.cos(VIEW_YAW) + joints[:, 2] * np.sin(VIEW_YAW)
    pts = np.stack([origin[0] + x * scale, origin[1] - joints[:, 1] * scale], axis=1).astype(int)
    hips = origin
    if len(joints) == len(PARENTS_USED):
        for j, p in enumerate(PARENTS_USED):
            start = hips if p < 0 else tuple(pts[p])
            cv2.line(canvas, start, tuple(pts[j]), color, thickness, cv2.LINE_AA)
    for x, y in pts:
        cv2.circle(canvas, (int(x), int(y)), 2, color, -1, cv2.LINE_AA)


def skeleton_strip(history: np.ndarray, future: np.ndarray, prediction: np.ndarray, title: str = "",
                   columns: int = 8, cell: int = 128) -> Tensor:
    """One row: the last observed poses (grey), then future frames with the ground truth (green) and the
    prediction (red) overlaid, each labelled with its time. Returns a ``(3, H, W)`` float image."""
    observed = [(history[t], None, f"{(t + 1) * FRAME_MS} ms") for t in (-25, -10, -1)]
    steps = np.linspace(1, len(future) - 1, columns - len(observed)).round().astype(int)
    shown = observed + [(future[t], prediction[t], f"+{(t + 1) * FRAME_MS} ms") for t in steps]
    canvas = np.full((cell + 24, cell * len(shown), 3), 255, np.uint8)
    scale = cell / 2.2  # metres -> pixels: a 2 m person fills the cell
    for i, (truth, pred, label) in enumerate(shown):
        origin = (i * cell + cell // 2, 24 + int(cell * 0.55))
        _draw(canvas, truth, origin, scale, GREY if pred is None else GREEN, thickness=3)
        if pred is not None:
            _draw(canvas, pred, origin, scale, RED, thickness=1)
        cv2.putText(canvas, label, (i * cell + 4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, title, (4, cell + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255


def error_curve(per_frame_mm: np.ndarray) -> Tensor:
    """MPJPE (mm) against the forecast horizon (ms)."""
    ms = [(t + 1) * FRAME_MS for t in range(len(per_frame_mm))]
    return line_plot({"MPJPE": (ms, list(map(float, per_frame_mm)))}, title="MPJPE (mm) vs horizon (ms)",
                     xlabel="ms", ylabel="mm")
