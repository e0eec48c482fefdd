"""Image filters shared by the models."""

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_blur2d(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W) maps, kernel truncated at 4 sigma (scipy's default)."""
    radius = int(4 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    B, C, H, W = x.shape
    x = x.reshape(B * C, 1, H, W)
    # reflect padding needs the pad smaller than the map; tiny maps fall back to replicating the edge
    mode = "reflect" if radius < min(H, W) else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
    return x.reshape(B, C, H, W)
