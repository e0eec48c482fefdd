"""The two judges of the test metrics, trained on rendered images only (never on generated ones):

- ``GridDetector``: KaliCalib-style (Maglo, Orcesi & Pham, "KaliCalib: A Framework for Basketball Court
  Registration", MMSports 2022) heatmaps of the 13 x 7 grid of pitch keypoints: one heatmap per grid point at half
  the image's resolution (``STRIDE``: a full-resolution decoder cost 0.85 s per training step of 32 images on 2 CPU
  cores against 0.54 s), read with a soft-argmax around its peak, plus a per-point visibility logit. A small
  encoder-decoder whose bottleneck sees the whole image (the grid points lie mostly on plain grass: only the
  global line pattern places them).
- The player detector is the collection's CenterNet (``shared_utils.detection``), classes left / right / referee,
  on the image upsampled so that its stride-4 heatmap has one cell per 2 pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sports_image_gen.data.camera import NUM_GRID

STRIDE = 2  # heatmap cell (i, j) covers image pixels [2i, 2i + 2): its centre is at 2 i + 0.5


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, 1, 1), nn.GroupNorm(8, c_out), nn.SiLU())


class GridDetector(nn.Module):
    """``forward(images in [0, 1]) -> (heatmap logits (B, 91, H / 2, W / 2), visibility logits (B, 91))``."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [width, 2 * width, 3 * width, 4 * width]
        self.down = nn.ModuleList([_block(3, chans[0]), _block(chans[0], chans[1], 2), _block(chans[1], chans[2], 2),
                                   _block(chans[2], chans[3], 2)])
        self.context = nn.Linear(chans[3], chans[3])  # global pooling: the whole line pattern at every cell
        self.up = nn.ModuleList([_block(chans[3] + chans[2], chans[2]), _block(chans[2] + chans[1], chans[1])])
        self.heatmap = nn.Conv2d(chans[1], NUM_GRID, 1)
        self.visibility = nn.Linear(chans[3], NUM_GRID)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        skips, x = [], images * 2 - 1
        for block in self.down:
            x = block(x)
            skips.append(x)
        pooled = x.mean((2, 3))
        x = x + self.context(pooled)[:, :, None, None]
        for block, skip in zip(self.up, reversed(skips[1:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False),
                                 skip], 1))
        return self.heatmap(x), self.visibility(pooled)

    @staticmethod
    def loss(heatmap: Tensor, visibility: Tensor, keypoints: Tensor, visible: Tensor, sigma: float = 1.0,
             reduce: bool = True) -> Tensor:
        """Cross-entropy of each visible point's softmax heatmap against a Gaussian of ``sigma`` cells at its
        sub-pixel position, plus BCE on visibility. ``keypoints`` (B, 91, 2) pixels, ``visible`` (B, 91) bool.
        ``reduce=False``: per-image losses (B,)."""
        b, k, h, w = heatmap.shape
        ys = torch.arange(h, dtype=heatmap.dtype, device=heatmap.device)
        xs = torch.arange(w, dtype=heatmap.dtype, device=heatmap.device)
        pts = (torch.nan_to_num(keypoints, nan=-1e3) - 0.5) / STRIDE  # heatmap cells
        d2 = (xs[None, None, None, :] - pts[..., 0, None, None]) ** 2 + \
             (ys[None, None, :, None] - pts[..., 1, None, None]) ** 2
        target = torch.softmax((-d2 / (2 * sigma ** 2)).flatten(2), -1)
        ce = -(target * torch.log_softmax(heatmap.flatten(2), -1)).sum(-1)  # (B, 91)
        mask = visible.to(ce)
        point = (ce * mask).sum(1) / mask.sum(1).clamp(min=1)
        vis = F.binary_cross_entropy_with_logits(visibility, mask, reduction="none").mean(1)
        per_image = point + vis
        return per_image.mean() if reduce else per_image

    @staticmethod
    @torch.no_grad()
    def decode(heatmap: Tensor, visibility: Tensor, window: int = 2) -> tuple[Tensor, Tensor]:
        """(B, 91, 2) image pixel positions (soft-argmax in a (2 window + 1)^2 box around each peak) and (B, 91)
        detected flags (visibility probability > 0.5)."""
        b, k, h, w = heatmap.shape
        flat = heatmap.flatten(2)
        peak = flat.argmax(-1)
        py, px = peak // w, peak % w
        offsets = torch.arange(-window, window + 1, device=heatmap.device)
        yy = (py[..., None, None] + offsets[:, None]).clamp(0, h - 1)
        xx = (px[..., None, None] + offsets[None, :]).clamp(0, w - 1)
        yy, xx = torch.broadcast_tensors(yy, xx)
        logits = torch.gather(flat, 2, (yy * w + xx).flatten(2)).view(b, k, -1)
        weights = torch.softmax(logits, -1)
        x = (weights * xx.flatten(2).to(weights)).sum(-1)
        y = (weights * yy.flatten(2).to(weights)).sum(-1)
        return torch.stack([x, y], -1) * STRIDE + 0.5, visibility.sigmoid() > 0.5
