"""Partial temporal information: observation masks and the filling that mask-unaware models need.

A mask is a ``(B, T)`` bool tensor over the observed window, ``True`` where the frame was seen.
The robustness protocol of this project drops observed frames in two ways: at random (a fraction of
the window, the last frame possibly among them) and as a block at the end (the near past is missing:
the last ``k`` frames before the forecast starts). A model that takes no mask sees the history filled
by :func:`fill_missing`, the usual preprocessing (linear interpolation between observed frames,
the first/last observed frame held at the ends).
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_mask(batch: int, frames: int, missing: float, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> Tensor:
    """Drops ``round(missing * frames)`` frames per sequence, uniformly, keeping at least two."""
    drop = min(round(missing * frames), frames - 2)
    scores = torch.rand(batch, frames, generator=generator).to(device)
    order = scores.argsort(dim=1)
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    mask.scatter_(1, order[:, :drop], False)
    return mask


def tail_mask(batch: int, frames: int, missing_last: int, device: torch.device | str = "cpu") -> Tensor:
    """The last ``missing_last`` observed frames are missing (at least two frames stay)."""
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    mask[:, frames - min(missing_last, frames - 2):] = False
    return mask


def training_mask(batch: int, frames: int, max_missing: float, max_tail: int,
                  device: torch.device | str = "cpu") -> Tensor:
    """Random masks for training: a missing fraction ~ U(0, max_missing) and, for half the sequences,
    a missing tail of U{1..max_tail} frames, so that both test conditions are seen in training."""
    fraction = torch.rand(batch, 1, device=device) * max_missing
    mask = torch.rand(batch, frames, device=device) >= fraction
    if max_tail > 0:
        tail = torch.randint(1, max_tail + 1, (batch, 1), device=device)
        tail = torch.where(torch.rand(batch, 1, device=device) < 0.5, tail, torch.zeros_like(tail))
        mask &= torch.arange(frames, device=device) < frames - tail
    # Keep at least two observed frames (the first two) so that velocities exist.
    few = mask.sum(1) < 2
    if few.any():
        mask[few, 0] = True
        mask[few, 1] = True
    return mask


def observed_neighbours(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(t, previous, next)``, each ``(B, T)``: the frame index and the index of the last observed frame at
    or before it (-1 if none) and of the first at or after it (T if none), by cummax/cummin scans."""
    B, T = mask.shape
    t = torch.arange(T, device=mask.device).expand(B, T)
    previous = torch.where(mask, t, -1).cummax(dim=1).values
    following = torch.where(mask, t, T).flip(1).cummin(dim=1).values.flip(1)
    return t, previous, following


def staleness(mask: Tensor, fps: float) -> Tensor:
    """``(B, T)`` seconds from each frame to the last observed frame before it (0 where observed); frames
    before the first observation get the time to it. ``mask`` ``(B, T)`` bool, True where observed."""
    t, previous, following = observed_neighbours(mask)
    return torch.where(previous >= 0, t - previous, following - t) / fps


def fill_missing(history: Tensor, mask: Tensor | None) -> Tensor:
    """Linear interpolation over missing frames of ``history`` ``(B, T, ...)``; ends hold the nearest
    observed frame. Frames where ``mask`` is True are returned unchanged."""
    if mask is None or bool(mask.all()):
        return history
    B, T = mask.shape
    t, prev, nxt = observed_neighbours(mask)
    prev_ok, next_ok = prev >= 0, nxt < T
    prev = torch.where(prev_ok, prev, nxt)
    nxt = torch.where(next_ok, nxt, prev)
    gap = (nxt - prev).clamp(min=1)
    w = ((t - prev) / gap).to(history.dtype)
    w = torch.where(nxt == prev, torch.zeros_like(w), w)
    shape = (B, T) + (1,) * (history.dim() - 2)
    gather = lambda idx: history.gather(1, idx.view(shape).expand_as(history))  # noqa: E731
    return gather(prev) * (1 - w.view(shape)) + gather(nxt) * w.view(shape)


def last_observed(mask: Tensor) -> Tensor:
    """Index ``(B,)`` of the last observed frame of each sequence."""
    T = mask.shape[1]
    return (torch.arange(T, device=mask.device) * mask).argmax(dim=1)
