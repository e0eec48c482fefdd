"""TensorBoard panels: the camera ring and the BEV maps side by side (forward is up, left is left)."""

from __future__ import annotations

import torch
from torch import Tensor

from shared_utils.logging import colorize, image_grid


def camera_panel(images: Tensor) -> Tensor:
    """(6, 3, H, W) in CAMERAS order -> one image: front-left, front, front-right over back-left, back, back-right."""
    return image_grid(images.detach().float().cpu(), nrow=3)


def _rgb(values: Tensor, vmin: float, vmax: float) -> Tensor:
    return torch.from_numpy(colorize(values, vmin, vmax)).permute(2, 0, 1).float() / 255


def bev_panel(bev: Tensor, valid: Tensor, prob: Tensor, uncertainty: Tensor, ood_score: Tensor) -> Tensor:
    """Ground truth (vehicles white, OOD objects magenta, ignored cells grey) | vehicle probability |
    uncertainty | OOD score, each (H, W); the ego car is the centre of every map."""
    bev, valid = bev.detach().float().cpu(), valid.detach().cpu()
    truth = torch.zeros(3, *bev.shape[-2:])
    truth += bev[0]  # vehicles: white
    truth[0] += bev[2]  # OOD: magenta
    truth[2] += bev[2]
    truth[:, ~valid] = 0.5
    maps = [truth.clamp(0, 1), _rgb(prob, 0, 1), _rgb(uncertainty, 0, float(uncertainty.max())),
            _rgb(ood_score, float(ood_score.min()), float(ood_score.max()))]
    return image_grid(torch.stack(maps), nrow=4)
