"""Pictures for TensorBoard and the README, and the fly-through camera path (OpenCV colour maps, no matplotlib)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from shared_utils.logging import colorize

# One colour per class id (sky, road, pavement, building, car, pole, tree; then cycling).
PALETTE = torch.tensor([[0.53, 0.75, 0.92], [0.5, 0.25, 0.5], [0.95, 0.55, 0.9], [0.45, 0.45, 0.45],
                        [0.1, 0.1, 0.9], [0.95, 0.85, 0.1], [0.2, 0.7, 0.2], [0.9, 0.4, 0.1], [0.1, 0.8, 0.8]])


def _cmap(values: Tensor, vmin: float | None = None, vmax: float | None = None) -> Tensor:
    """(3, H, W) float colours of an (H, W) map (``shared_utils.logging.colorize``)."""
    return torch.from_numpy(colorize(values, vmin, vmax)).permute(2, 0, 1).float().div(255).to(values.device)


def colour_labels(labels: Tensor) -> Tensor:
    """(3, H, W) colours of an (H, W) label map."""
    return PALETTE.to(labels.device)[labels % len(PALETTE)].permute(2, 0, 1)


def depth_colour(depth: Tensor, alpha: Tensor) -> Tensor:
    """(3, H, W) inverse depth in a colour map (near is bright), black where nothing is drawn."""
    inv = torch.where(alpha > 0.5, 1.0 / depth.clamp(min=1e-3), torch.zeros_like(depth))
    return _cmap(inv, vmin=0.0) * (alpha > 0.5)


def relevancy_colour(rel: Tensor, image: Tensor) -> Tensor:
    """LERF's picture: relevancy above 0.5 in a colour map over the image, the rest of the image dimmed."""
    heat = _cmap((rel - 0.5).clamp(min=0) * 2, vmin=0.0, vmax=1.0)
    return torch.where(rel[None] > 0.5, heat, image * 0.3)


def panel(tiles: list[Tensor]) -> Tensor:
    """Tiles (3, H, W) side by side with a 2-px white gap."""
    gap = torch.ones(3, tiles[0].shape[1], 2, device=tiles[0].device)
    out = [tiles[0]]
    for t in tiles[1:]:
        out += [gap, t.to(tiles[0].device)]
    return torch.cat(out, dim=2)


def _slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)


def _to_quat(R: np.ndarray) -> np.ndarray:
    w = np.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return np.array([w, x, y, z])


def _to_rotmat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def interpolate_path(views: list[dict], steps: int = 8) -> list[dict]:
    """Views between consecutive ``views`` (camera centres lerped, rotations slerped; K, size and time of the
    first of each pair). A single view is returned as is."""
    out = []
    for a, b in zip(views, views[1:]):
        Ra = a["world_to_camera"][:3, :3].double().cpu().numpy()
        Rb = b["world_to_camera"][:3, :3].double().cpu().numpy()
        ca = -Ra.T @ a["world_to_camera"][:3, 3].double().cpu().numpy()
        cb = -Rb.T @ b["world_to_camera"][:3, 3].double().cpu().numpy()
        qa, qb = _to_quat(Ra), _to_quat(Rb)
        for k in range(steps):
            t = k / steps
            R = _to_rotmat(_slerp(qa, qb, t))
            c = (1 - t) * ca + t * cb
            w2c = torch.eye(4, dtype=a["world_to_camera"].dtype)
            w2c[:3, :3] = torch.from_numpy(R)
            w2c[:3, 3] = torch.from_numpy(-R @ c)
            out.append(dict(a, world_to_camera=w2c.to(a["world_to_camera"].device)))
    return out + views[-1:]
