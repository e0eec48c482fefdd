"""The conditioning images a method reads, drawn in the returned image's pixels (x right, y down).

- ``camera_map`` (3 channels): the 13 x 7 grid of pitch keypoints (KaliCalib) as the camera's condition: a Gaussian
  dot (sigma ``DOT_SIGMA`` px) at each visible point, and the grid's 13 + 7 lines joining them (projected through
  the camera, distortion included), drawn at 0.5 in channel 0; channels 1 and 2 carry the pitch coordinates
  x / 52.5 and y / 34 where channel 0 is drawn, so that the map says which point is which. The lines are ours: with
  dots alone, no camera-conditioned model drew pitch markings after the 300-step CPU budget (validation samples
  were grass and stands); the grid's outer and middle lines are the touch, goal and halfway lines, which the lines
  give to the network where it draws them.
- ``players_map`` (4 channels): each player's image box filled with its jersey colour (RGB in [0, 1]) and an
  occupancy channel (a black referee kit would otherwise be invisible).
- ``skeleton_map`` (3 channels): the COCO-17 limbs drawn one hue per limb (as the OpenPose maps of the ControlNet
  paper's pose condition), one pixel wide.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from sports_image_gen.data.camera import GRID_X, GRID_Y, NUM_GRID
from sports_image_gen.data.skeleton import COCO_SKELETON
from sports_image_gen.data.skeleton import LIMB_COLOURS as SKELETON_COLOURS

DOT_SIGMA = 0.75
LIMB_COLOURS = np.array(SKELETON_COLOURS, dtype=np.float32) / 255


def grid_coordinates() -> Tensor:
    """(91, 2) pitch coordinates of the grid points normalised to [-1, 1], row k = 13 j + i."""
    xx, yy = np.meshgrid(GRID_X / 52.5, GRID_Y / 34.0)
    return torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], 1)).float()


def grid_lines(step: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """World points (M, 3) sampled every ``step`` metres along the grid's 13 lines of constant x and 7 of constant y,
    and their normalised pitch coordinates (M, 2)."""
    along_y = np.arange(-34.0, 34.0 + 1e-9, step)
    along_x = np.arange(-52.5, 52.5 + 1e-9, step)
    xs = np.concatenate([np.repeat(GRID_X, len(along_y)), np.tile(along_x, len(GRID_Y))])
    ys = np.concatenate([np.tile(along_y, len(GRID_X)), np.repeat(GRID_Y, len(along_x))])
    return np.stack([xs, ys, np.zeros_like(xs)], 1), np.stack([xs / 52.5, ys / 34.0], 1)


def camera_map(keypoints: Tensor, visible: Tensor, height: int, width: int, line_pixels: np.ndarray | None = None,
               line_coords: np.ndarray | None = None) -> Tensor:
    """(3, H, W) from (91, 2) pixel positions and (91,) visibility, and the grid lines' projected samples
    (M, 2 pixels, NaN where behind the camera) with their pitch coordinates (M, 2)."""
    ys = torch.arange(height, dtype=torch.float32)[:, None, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :, None]
    pts = torch.nan_to_num(keypoints.float(), nan=-1e3)
    dots = torch.exp(-((xs - pts[:, 0]) ** 2 + (ys - pts[:, 1]) ** 2) / (2 * DOT_SIGMA ** 2))
    dots = dots * visible.float()  # (H, W, 91)
    values = torch.cat([torch.ones(NUM_GRID, 1), grid_coordinates()], 1)  # (91, 3)
    out = (dots @ values).permute(2, 0, 1).clamp(-1, 1)
    if line_pixels is not None:
        finite = np.isfinite(line_pixels).all(1)
        px = np.round(np.nan_to_num(line_pixels, nan=-1)).astype(np.int64)
        keep = finite & (px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height)
        col, row = torch.from_numpy(px[keep, 0]), torch.from_numpy(px[keep, 1])
        free = out[0, row, col] < 0.5  # dots stay on top of lines
        coords = torch.from_numpy(line_coords[keep]).float()
        out[0, row[free], col[free]] = 0.5
        out[1, row[free], col[free]] = coords[free, 0]
        out[2, row[free], col[free]] = coords[free, 1]
    return out


def players_map(boxes: np.ndarray, colours: np.ndarray, height: int, width: int) -> Tensor:
    """(4, H, W) from (N, 4) xyxy pixel boxes and (N, 3) RGB colours in [0, 1]; farther (higher) boxes first so that
    nearer players cover them."""
    out = np.zeros((height, width, 4), np.float32)
    for i in np.argsort(boxes[:, 3]) if len(boxes) else []:
        x1, y1, x2, y2 = np.round(boxes[i]).astype(int)
        x1, y1 = max(x1, 0), max(y1, 0)
        x2, y2 = min(max(x2, x1 + 1), width), min(max(y2, y1 + 1), height)
        out[y1:y2, x1:x2, :3] = colours[i]
        out[y1:y2, x1:x2, 3] = 1
    return torch.from_numpy(out).permute(2, 0, 1)


def skeleton_map(keypoints: np.ndarray, height: int, width: int, scale: int = 4) -> Tensor:
    """(3, H, W) from (N, 17, 3) keypoints (x, y pixels, visibility > 0 drawn), drawn at ``scale`` x resolution and
    area-averaged so that sub-pixel limbs of small players stay visible."""
    canvas = np.zeros((height * scale, width * scale, 3), np.float32)
    for person in keypoints:
        for (a, b), colour in zip(COCO_SKELETON, LIMB_COLOURS):
            if person[a, 2] > 0 and person[b, 2] > 0:
                pa = tuple(int(v) for v in np.round((person[a, :2] + 0.5) * scale - 0.5))
                pb = tuple(int(v) for v in np.round((person[b, :2] + 0.5) * scale - 0.5))
                cv2.line(canvas, pa, pb, colour.tolist(), max(scale // 2, 1))
    small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)
