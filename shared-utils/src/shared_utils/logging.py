"""Pictures for TensorBoard, drawn with OpenCV and NumPy.

No matplotlib: image grids (what torchvision's ``make_grid`` does), heat-map overlays
(anomaly maps, BEV uncertainty) and line plots (PRO curves, error vs horizon). Results tables
are ``shared_utils.bench``'s.

Images are float tensors in [0, 1], (3, H, W), the layout TensorBoard's ``add_image`` takes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from torch import Tensor

# Distinct line colours (RGB), the Tableau palette.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def image_grid(images: Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile (B, C, H, W) images into one (C, H', W') image, ``nrow`` images per row."""
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    nrows = math.ceil(b / ncol)
    grid = images.new_full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i, image in enumerate(images):
        top, left = padding + (i // ncol) * (h + padding), padding + (i % ncol) * (w + padding)
        grid[:, top:top + h, left:left + w] = image
    return grid


def colorize(values: Tensor | np.ndarray, vmin: float | None = None, vmax: float | None = None,
             colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """(H, W) scalar map -> (H, W, 3) uint8 RGB with an OpenCV colour map; range [vmin, vmax]
    (default: the map's own min and max)."""
    v = values.detach().float().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values, np.float32)
    if v.ndim != 2:
        raise ValueError(f"values must be a (H, W) map, got shape {v.shape}")
    lo = float(v.min()) if vmin is None else vmin
    hi = float(v.max()) if vmax is None else vmax
    scaled = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def heatmap_overlay(image: Tensor, heat: Tensor | np.ndarray, alpha: float = 0.5, vmin: float | None = None,
                    vmax: float | None = None, colormap: int = cv2.COLORMAP_JET) -> Tensor:
    """Blend a colour-mapped heat map over an image (3, H, W) in [0, 1]; the map is resized
    to the image (bilinear) so a stride-8 anomaly map overlays its input directly."""
    h, w = image.shape[-2:]
    heat = heat.detach().float().cpu().numpy() if isinstance(heat, Tensor) else np.asarray(heat, np.float32)
    if heat.shape != (h, w):
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    colour = torch.from_numpy(colorize(heat, vmin, vmax, colormap)).permute(2, 0, 1).float() / 255
    return (1 - alpha) * image.detach().float().cpu() + alpha * colour


def line_plot(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str = "",
              xlabel: str = "", ylabel: str = "", size: tuple[int, int] = (360, 480)) -> Tensor:
    """A line plot with axes, tick labels and a legend; ``curves`` maps a name to (xs, ys).

    Returns a (3, H, W) float image for ``add_image``.
    """
    height, width = size
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 15, 36, 45
    xs_all = np.concatenate([np.asarray(x, float) for x, _ in curves.values()]) if curves else np.zeros(1)
    ys_all = np.concatenate([np.asarray(y, float) for _, y in curves.values()]) if curves else np.zeros(1)
    x0, x1 = float(xs_all.min()), float(xs_all.max())
    y0, y1 = float(ys_all.min()), float(ys_all.max())
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = left + (x - x0) / (x1 - x0) * (width - left - right)
        py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
        return np.stack([px, py], -1).round().astype(np.int32)

    font, black, grey = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0), (220, 220, 220)
    for t in np.linspace(0, 1, 5):
        (gx, gy), = to_px(np.array([x0 + t * (x1 - x0)]), np.array([y0 + t * (y1 - y0)]))
        cv2.line(canvas, (left, int(gy)), (width - right, int(gy)), grey, 1)
        cv2.putText(canvas, f"{y0 + t * (y1 - y0):.3g}", (4, int(gy) + 4), font, 0.35, black, 1, cv2.LINE_AA)
        cv2.putText(canvas, f"{x0 + t * (x1 - x0):.3g}", (int(gx) - 12, height - bottom + 16), font, 0.35,
                    black, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (width - right, height - bottom), black, 1)
    for i, (name, (x, y)) in enumerate(curves.items()):
        colour = PALETTE[i % len(PALETTE)]
        cv2.polylines(canvas, [to_px(np.asarray(x, float), np.asarray(y, float))], False, colour, 2, cv2.LINE_AA)
        cv2.line(canvas, (left + 10, top + 14 + 16 * i), (left + 30, top + 14 + 16 * i), colour, 2)
        cv2.putText(canvas, name, (left + 36, top + 18 + 16 * i), font, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(canvas, title, (width // 2 - 5 * len(title), 16), font, 0.5, black, 1, cv2.LINE_AA)
    cv2.putText(canvas, ylabel, (4, top - 6), font, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(canvas, xlabel, (width // 2 - 4 * len(xlabel), height - 8), font, 0.4, black, 1, cv2.LINE_AA)
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255


def log_image(logger: Logger | None, tag: str, image: Tensor, step: int = 0) -> None:
    """``add_image`` on a TensorBoard logger; nothing for other loggers or none."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(tag, image.clamp(0, 1), step, dataformats="CHW")
