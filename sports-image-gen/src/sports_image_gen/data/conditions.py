"""The conditioning images a method reads, drawn in the returned image's pixels (x right, y down).

- ``camera_map`` (3 channels): the 13 x 7 grid of pitch keypoints (KaliCalib) as the camera's condition: a Gaussian
  dot (sigma ``DOT_SIGMA`` px) at each visible point, and the grid's 13 + 7 lines joining them (projected through
  the camera, distortion included), drawn at 0.5 in channel 0; channels 1 and 2 carry the pitch coordinates
  x / 52.5 and y / 34 where channel 0 is drawn, so that the map says which point is which. The lines are ours: with
  dots alone, no camera-conditioned model drew pitch markings after the 300-step CPU budget (validation samples
  were grass and stands); the grid's outer and middle lines are the touch, goal and halfway lines, which the lines
  give to the network where it draws them.
- ``pitch_map`` (3 channels): the pitch template (FIFA 105 x 68 m and its markings, ``data/pitch.py``) as the camera
  sees it, distortion included, dense: channel 0 is 0.5 on the pixels whose ray meets the ground inside the pitch
  and 1 on the markings of sn-calibration's pitch model (lines, circles, goal frames, projected every
  ``MARKING_STEP`` metres); channels 1 and 2 carry the ground point's x / 52.5 and y / 34 inside the pitch. It holds
  only what the camera implies, as the grid map does, but where the image shows it: the extent of the pitch (where
  the stands begin) and the markings are read off the input instead of inferred from 91 points and 20 lines.
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
from sports_image_gen.data.pitch import pitch_polylines
from sports_image_gen.data.skeleton import COCO_SKELETON
from sports_image_gen.data.skeleton import LIMB_COLOURS as SKELETON_COLOURS

DOT_SIGMA = 0.75
MARKING_STEP = 0.25
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


_MARKINGS = np.concatenate(list(pitch_polylines(MARKING_STEP).values()))


def pitch_map(camera, offset: np.ndarray, height: int, width: int) -> Tensor:
    """(3, H, W): mask and normalised pitch coordinates of the ground point each pixel sees (module docstring).
    ``camera`` has the pixels of the resized frame, which sits at ``offset`` (x, y) in the returned image."""
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    uv = np.stack([cols.ravel(), rows.ravel()], 1) - offset  # pixel c <-> coordinate c, as for grid_keypoints
    xy, hits = camera.ground_points(uv)
    framed = (uv >= -0.5).all(1) & (uv[:, 0] < camera.image_size[0] - 0.5) & (uv[:, 1] < camera.image_size[1] - 0.5)
    with np.errstate(invalid="ignore"):
        inside = hits & framed & (np.abs(xy[:, 0]) <= 52.5) & (np.abs(xy[:, 1]) <= 34.0)
    out = np.zeros((3, height * width), np.float32)
    out[0, inside] = 0.5
    out[1, inside] = xy[inside, 0] / 52.5
    out[2, inside] = xy[inside, 1] / 34.0
    out = out.reshape(3, height, width)
    marks, front = camera.project(_MARKINGS)
    cam = camera.to_camera_frame(_MARKINGS[front])
    # far off the axis the distortion polynomial can fold points back into the frame (the renderer's MAX_RAY_RADIUS)
    near_axis = np.linalg.norm(cam[:, :2] / cam[:, 2:], axis=1) < 1.5
    uv = np.round(marks[front][near_axis]).astype(np.int64)
    frame_w, frame_h = (round(size) for size in camera.image_size)
    uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] < frame_w) & (uv[:, 1] >= 0) & (uv[:, 1] < frame_h)]  # not in the padding
    px = uv + np.round(offset).astype(np.int64)
    px = px[(px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height)]
    out[0, px[:, 1], px[:, 0]] = 1
    return torch.from_numpy(out)


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
