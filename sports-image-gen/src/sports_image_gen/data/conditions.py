"""The conditioning images a method reads, drawn in the returned image's pixels (x right, y down).

- ``camera_map`` (3 channels): the 13 x 7 grid of pitch keypoints (KaliCalib) as the camera's condition: a Gaussian
  dot (sigma ``DOT_SIGMA`` px) at each visible point, carrying 1 in channel 0 and the point's pitch coordinates
  x / 52.5 and y / 34 in channels 1 and 2, so that the map says which point is which, not only where points are.
- ``players_map`` (4 channels): each player's image box filled with its jersey colour (RGB in [0, 1]) and an
  occupancy channel (a black referee kit would otherwise be invisible).
- ``skeleton_map`` (3 channels): the COCO-17 limbs drawn one hue per limb (as the OpenPose maps of the ControlNet paper's
  pose condition), one pixel wide.
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


def camera_map(keypoints: Tensor, visible: Tensor, height: int, width: int) -> Tensor:
    """(3, H, W) from (91, 2) pixel positions and (91,) visibility."""
    ys = torch.arange(height, dtype=torch.float32)[:, None, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :, None]
    pts = torch.nan_to_num(keypoints.float(), nan=-1e3)
    dots = torch.exp(-((xs - pts[:, 0]) ** 2 + (ys - pts[:, 1]) ** 2) / (2 * DOT_SIGMA ** 2))
    dots = dots * visible.float()  # (H, W, 91)
    values = torch.cat([torch.ones(NUM_GRID, 1), grid_coordinates()], 1)  # (91, 3)
    return (dots @ values).permute(2, 0, 1).clamp(-1, 1)


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
