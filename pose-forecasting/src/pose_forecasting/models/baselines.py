"""Parameter-free forecasting baselines.

Zero velocity (the last pose held) is the classic baseline of Martinez et al. (CVPR 2017), which beat the
recurrent models of its time at short horizons; constant velocity extrapolates the last observed motion.
Both accept the observation mask: they then start from the last OBSERVED frame, and constant velocity
takes the velocity between the last two observed frames (divided by their time gap), so a missing near
past does not turn into a fake stop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pose_forecasting.data.masking import last_observed
from pose_forecasting.models.interfaces import Forecaster

# With a mask, the last observed frames may lie anywhere in the observed window: both baselines read the
# whole window they are given (T_in = 50 frames in this project), not only its last one or two frames.
WINDOW_FRAMES = 50


def _frame(history: Tensor, index: Tensor) -> Tensor:
    """``history[b, index[b]]`` for every sequence: ``(B, T, ...)`` -> ``(B, ...)``."""
    return history[torch.arange(history.shape[0], device=history.device), index]


class ZeroVelocity(Forecaster):
    """Repeats the last (observed) frame ``output_frames`` times."""

    input_frames = WINDOW_FRAMES

    def __init__(self, output_frames: int = 25) -> None:
        super().__init__()
        self.output_frames = output_frames

    def forward(self, history: Tensor, mask: Tensor | None = None) -> Tensor:
        last = history[:, -1] if mask is None else _frame(history, last_observed(mask))
        return last[:, None].expand(-1, self.output_frames, *last.shape[1:]).clone()


class ConstantVelocity(Forecaster):
    """``x_last + (t - t_last) * v`` with ``v = (x_last - x_prev) / (t_last - t_prev)`` the velocity between
    the last two (observed) frames, for the future frames ``t = T_in, ..., T_in + output_frames - 1``."""

    input_frames = WINDOW_FRAMES

    def __init__(self, output_frames: int = 25) -> None:
        super().__init__()
        self.output_frames = output_frames

    def forward(self, history: Tensor, mask: Tensor | None = None) -> Tensor:
        B, T = history.shape[:2]
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=history.device)
        t_last = last_observed(mask)
        before = mask.clone()
        before[torch.arange(B, device=mask.device), t_last] = False
        t_prev = last_observed(before)
        x_last, x_prev = _frame(history, t_last), _frame(history, t_prev)
        extra = (1,) * (history.dim() - 2)
        gap = (t_last - t_prev).to(history.dtype).view(B, *extra)
        # A single observed frame gives no velocity: hold it (zero velocity) instead of dividing by zero.
        velocity = torch.where(before.any(1).view(B, *extra), (x_last - x_prev) / gap.clamp(min=1), 0.0)
        t_future = torch.arange(T, T + self.output_frames, device=history.device)
        steps = (t_future - t_last[:, None]).to(history.dtype).view(B, self.output_frames, *extra)
        return x_last[:, None] + steps * velocity[:, None]
