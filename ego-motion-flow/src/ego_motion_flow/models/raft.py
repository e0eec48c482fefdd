"""RAFT-small (Teed & Deng, "RAFT: Recurrent All-Pairs Field Transforms for Optical Flow", ECCV 2020), scaled down.

The paper's small model, layer for layer, with narrower channels so that it trains on a laptop CPU:

- feature encoder (instance norm) and context encoder (no norm, as RAFT-small): a 7x7 stride-2 conv, then three
  stages of two bottleneck residual blocks, then a 1x1 projection (RAFT's ``SmallEncoder``);
- all-pairs correlation volume ``<g(I1)_p, g(I2)_q> / sqrt(D)`` and a 4-level pyramid made by average-pooling its
  last two dimensions (paper Sec. 3.2);
- lookup: bilinear samples of every pyramid level on a (2r+1)^2 window, r = 3, around the current correspondence;
- update block of the small model: motion encoder, ConvGRU (3x3 convs), flow head; the flow estimate is refined
  ``iters`` times (paper eq. 3-6), with the correspondence detached before each lookup as in the official code;
- the low-resolution flow is upsampled bilinearly (RAFT-small has no convex-upsampling mask; the mask is the full
  model's). We interpolate with ``align_corners=False`` so that feature pixel j sits at image position
  ``f * j + (f - 1) / 2`` (pixel centres at integers); the official ``upflow8`` uses ``align_corners=True``, which
  stretches the field by up to ``(f - 1) / 2`` px at the borders, a visible error at 64 x 192.

Features are at 1/4 resolution by default (``downsample=4``; RAFT uses 1/8, also supported). At 64 x 192 a 1/8 grid
is 8 x 24 cells of 8 px: a car 10 px wide covers about one cell, and the 4-level pyramid bottoms out at 1 x 3, so the
coarse levels carry almost no information. At 1/4 the grid is 16 x 48, the coarsest level 2 x 6, and the lookup
window at that level still reaches +-3 * 8 * 4 = +-96 px, enough for the motions of these small images.

Channel widths (defaults): RAFT-small's 32/64/96 encoder stages, 128-d features, 96-d hidden state and 64-d context
become 16/24/32, 64, 48 and 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class RAFTOutput:
    """What :class:`RAFTSmall` returns (a dataclass so that heads can read named fields).

    ``flow_predictions``: one full-resolution B x 2 x H x W flow per update, in image pixels, last = final.
    ``flow_low``: the final flow at feature resolution, B x 2 x H/f x W/f, in feature pixels.
    ``hidden``: the last GRU state, B x hidden_dim x H/f x W/f. ``context``: the context features fed to every
    update (after ReLU), B x context_dim x H/f x W/f.
    """

    flow_predictions: list[Tensor]
    flow_low: Tensor
    hidden: Tensor
    context: Tensor

    @property
    def flow(self) -> Tensor:
        return self.flow_predictions[-1]


def upsample_flow(flow: Tensor, factor: int) -> Tensor:
    """Bilinear upsampling of a flow field by an integer factor; values are rescaled to the new pixel units."""
    return factor * F.interpolate(flow, scale_factor=factor, mode="bilinear", align_corners=False)


def coords_grid(batch: int, height: int, width: int, device: torch.device) -> Tensor:
    """Pixel coordinates B x 2 x H x W, channel 0 = x (column), channel 1 = y (row)."""
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                          torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([x, y]).expand(batch, 2, height, width)


class BottleneckBlock(nn.Module):
    """RAFT's bottleneck residual block: 1x1 -> 3x3 (stride) -> 1x1, each normalised, ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, norm: str, stride: int = 1) -> None:
        super().__init__()

        def norm_layer(c: int) -> nn.Module:
            return nn.InstanceNorm2d(c) if norm == "instance" else nn.Identity()

        mid = c_out // 4
        self.body = nn.Sequential(
            nn.Conv2d(c_in, mid, 1), norm_layer(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, stride, 1), norm_layer(mid), nn.ReLU(),
            nn.Conv2d(mid, c_out, 1), norm_layer(c_out), nn.ReLU(),
        )
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out
                         else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride), norm_layer(c_out)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.shortcut(x) + self.body(x))


class SmallEncoder(nn.Module):
    """RAFT's ``SmallEncoder``: 7x7/2 conv, three stages of two bottleneck blocks, 1x1 projection.
    The third stage has stride 2 only when ``downsample == 8``."""

    def __init__(self, out_dim: int, norm: str, downsample: int, widths: tuple[int, int, int] = (16, 24, 32)) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, c1, 7, 2, 3),
                                  nn.InstanceNorm2d(c1) if norm == "instance" else nn.Identity(), nn.ReLU())
        self.layers = nn.Sequential(
            BottleneckBlock(c1, c1, norm), BottleneckBlock(c1, c1, norm),
            BottleneckBlock(c1, c2, norm, 2), BottleneckBlock(c2, c2, norm),
            BottleneckBlock(c2, c3, norm, 2 if downsample == 8 else 1), BottleneckBlock(c3, c3, norm),
        )
        self.proj = nn.Conv2d(c3, out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.layers(self.stem(x)))


class CorrBlock:
    """All-pairs correlation pyramid and its windowed lookup (RAFT Sec. 3.2).

    ``fmap1, fmap2``: B x D x h x w. Level k holds, for every pixel p of frame 1, the correlation with frame 2
    average-pooled k times by 2. ``__call__(coords)`` samples each level bilinearly at ``coords / 2**k + (dx, dy)``,
    dx, dy in [-r, r], zero outside the image. Output channels: level-major, then the window in row-major order
    (dy outer, dx inner). RAFT's code builds its window with ``meshgrid(dy, dx)`` stacked as (x, y), i.e. the
    transposed order: the same values, permuted.
    """

    def __init__(self, fmap1: Tensor, fmap2: Tensor, num_levels: int = 4, radius: int = 3) -> None:
        B, D, h, w = fmap1.shape
        corr = torch.einsum("bdp,bdq->bpq", fmap1.flatten(2), fmap2.flatten(2)) / D ** 0.5
        corr = corr.reshape(B * h * w, 1, h, w)
        self.pyramid = [corr]
        for _ in range(num_levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.pyramid.append(corr)
        self.radius = radius
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=fmap1.device)
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        self.delta = torch.stack([dx, dy], -1)  # (2r+1) x (2r+1) x 2, (x, y)

    def __call__(self, coords: Tensor) -> Tensor:
        B, _, h, w = coords.shape
        centres = coords.permute(0, 2, 3, 1).reshape(B * h * w, 1, 1, 2)
        out = []
        for level, corr in enumerate(self.pyramid):
            points = centres / 2 ** level + self.delta  # N x (2r+1) x (2r+1) x 2 in level pixels
            size = torch.tensor([corr.shape[-1], corr.shape[-2]], dtype=points.dtype, device=points.device)
            grid = (2 * points + 1) / size - 1  # pixel centres, align_corners=False (valid for 1-pixel levels too)
            sampled = F.grid_sample(corr, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out.append(sampled.reshape(B, h, w, -1))
        return torch.cat(out, -1).permute(0, 3, 1, 2)


class SmallMotionEncoder(nn.Module):
    """Encodes the correlation features and the current flow; the flow is appended to the output (RAFT)."""

    def __init__(self, corr_planes: int, out_dim: int = 32) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(corr_planes, 32, 1)
        self.convf1 = nn.Conv2d(2, 16, 7, padding=3)
        self.convf2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv = nn.Conv2d(32 + 16, out_dim - 2, 3, padding=1)

    def forward(self, flow: Tensor, corr: Tensor) -> Tensor:
        cor = F.relu(self.convc1(corr))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, flo], 1))), flow], 1)


class ConvGRU(nn.Module):
    """Convolutional GRU with 3x3 gates (RAFT eq. 3-6)."""

    def __init__(self, hidden_dim: int, input_dim: int) -> None:
        super().__init__()
        self.convz = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.convr = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.convq = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        hx = torch.cat([h, x], 1)
        z = torch.sigmoid(self.convz(hx))
        r = torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q


class SmallUpdateBlock(nn.Module):
    """RAFT-small's update operator: motion encoder -> ConvGRU (input: context + motion features) -> flow head."""

    def __init__(self, corr_planes: int, hidden_dim: int, context_dim: int, motion_dim: int = 32) -> None:
        super().__init__()
        self.encoder = SmallMotionEncoder(corr_planes, motion_dim)
        self.gru = ConvGRU(hidden_dim, context_dim + motion_dim)
        self.flow_head = nn.Sequential(nn.Conv2d(hidden_dim, 48, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(48, 2, 3, padding=1))

    def forward(self, hidden: Tensor, context: Tensor, corr: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.gru(hidden, torch.cat([context, self.encoder(flow, corr)], 1))
        return hidden, self.flow_head(hidden)


class RAFTSmall(nn.Module):
    """RAFT-small, scaled down (see the module docstring).

    ``forward(image1, image2, iters=None, flow_init=None) -> RAFTOutput``. Images B x 3 x H x W in [0, 1] (mapped to
    [-1, 1] as RAFT does); H and W multiples of ``downsample`` and at least ``downsample * 2^(corr_levels - 1)``.
    ``iters`` defaults to ``train_iters`` (8) in training mode and ``test_iters`` (12) in eval mode.
    ``flow_init``: an optional full-resolution B x 2 x H x W initial flow
    (e.g. a warm start), area-downsampled to the feature grid.
    """

    def __init__(self, downsample: int = 4, feature_dim: int = 64, hidden_dim: int = 32, context_dim: int = 32,
                 corr_levels: int = 4, corr_radius: int = 3, train_iters: int = 8, test_iters: int = 12) -> None:
        super().__init__()
        if downsample not in (4, 8):
            raise ValueError(f"downsample must be 4 or 8, got {downsample}")
        self.downsample, self.hidden_dim, self.context_dim = downsample, hidden_dim, context_dim
        self.corr_levels, self.corr_radius = corr_levels, corr_radius
        self.train_iters, self.test_iters = train_iters, test_iters
        self.fnet = SmallEncoder(feature_dim, "instance", downsample)
        self.cnet = SmallEncoder(hidden_dim + context_dim, "none", downsample)
        self.update_block = SmallUpdateBlock(corr_levels * (2 * corr_radius + 1) ** 2, hidden_dim, context_dim)

    def forward(self, image1: Tensor, image2: Tensor, iters: int | None = None,
                flow_init: Tensor | None = None) -> RAFTOutput:
        B, _, H, W = image1.shape
        f = self.downsample
        if H % f or W % f or min(H, W) < f * 2 ** (self.corr_levels - 1):
            raise ValueError(f"image size {H}x{W}: sides must be multiples of downsample={f} and at least "
                             f"{f * 2 ** (self.corr_levels - 1)} (one cell at the coarsest correlation level)")
        if iters is None:
            iters = self.train_iters if self.training else self.test_iters
        image1, image2 = 2 * image1 - 1, 2 * image2 - 1

        fmap1, fmap2 = self.fnet(torch.cat([image1, image2])).chunk(2)
        corr_fn = CorrBlock(fmap1, fmap2, self.corr_levels, self.corr_radius)
        hidden, context = self.cnet(image1).split([self.hidden_dim, self.context_dim], 1)
        hidden, context = torch.tanh(hidden), torch.relu(context)

        coords0 = coords_grid(B, H // f, W // f, image1.device)
        coords1 = coords0 if flow_init is None else coords0 + F.avg_pool2d(flow_init, f) / f
        predictions = []
        for _ in range(iters):
            coords1 = coords1.detach()
            flow = coords1 - coords0
            hidden, delta = self.update_block(hidden, context, corr_fn(coords1), flow)
            coords1 = coords1 + delta
            predictions.append(upsample_flow(coords1 - coords0, f))
        return RAFTOutput(predictions, coords1 - coords0, hidden, context)


def sequence_loss(predictions: list[Tensor], gt: Tensor, valid: Tensor, gamma: float = 0.8,
                  max_flow: float = 400.0) -> Tensor:
    """RAFT eq. 7: ``sum_i gamma^(N-i) ||f_gt - f_i||_1``, the L1 norm over (u, v) averaged over valid pixels.

    ``valid`` (B x H x W bool) is further restricted to ``|f_gt| < max_flow`` as in RAFT's training code. The
    official code averages ``|f_gt - f_i|`` over all pixels and both channels with invalid ones zeroed; averaging over
    the valid pixels only keeps the loss scale independent of how much of the image has ground truth (sparse KITTI
    vs dense VKITTI2). Zero when no pixel is valid.
    """
    valid = valid & (gt.norm(dim=1) < max_flow)
    count = valid.sum().clamp(min=1)
    n = len(predictions)
    loss = gt.new_zeros(())
    for i, pred in enumerate(predictions):
        loss = loss + gamma ** (n - i - 1) * ((pred - gt).abs().sum(1) * valid).sum() / count
    return loss
