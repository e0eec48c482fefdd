"""A smooth synthetic texture for the model tests (PatchCore, CutPaste)."""

import math

import torch


def texture(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: a random-phase sinusoid grid per channel plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = []
    for _ in range(n):
        phase = (torch.rand(3, generator=g) * 2 * math.pi).view(3, 1, 1)
        base = 0.5 + 0.25 * torch.sin(2 * math.pi * x / 16 + phase) * torch.cos(2 * math.pi * y / 16 + phase)
        images.append((base + 0.03 * torch.randn(3, size, size, generator=g)).clamp(0, 1))
    return torch.stack(images)
