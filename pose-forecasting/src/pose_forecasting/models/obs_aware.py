"""Observation-aware MLP: this project's forecaster for partial temporal information (our method).

Forecasting with missing frames is posed as in-filling. The model sees one sequence of
``L = input_frames + output_frames`` frames (50 + 25): the observed frames, and everything else unknown
(the missing history frames and the whole future). It is built on siMLPe's blocks (Guo et al., WACV 2023;
see ``simlpe.py``) and differs from it in four ways:

1. Input: the unknown frames are filled by ``data.masking.fill_missing`` over the L frames (linear
   interpolation inside the history, the last observed frame held over the future); every frame becomes
   its 3J coordinates minus the last observed frame (offsets, as siMLPe's residual), plus two channels:
   the mask (1 observed, 0 unknown) and the time since the last observed frame in seconds (0 when
   observed; before the first observation, the time to it). The network thus knows which values are
   measurements and how stale the latest one is, and never reads a missing frame's raw value.
2. One pass over all L frames: spatial FC (3J + 2 -> 3J), orthonormal DCT-II over L, ``num_blocks``
   siMLPe blocks with an L x L temporal FC, inverse DCT; no autoregressive roll-out.
3. Two spatial heads: the mean offset (3J) and ``log sigma`` per joint and frame (J), an isotropic 3D
   Gaussian on each predicted joint. Prediction = last observed frame + offset on the last
   ``output_frames`` frames. The heads start near zero (siMLPe's init), so the model starts as zero
   velocity from the last observed frame with sigma = 10 cm (about zero velocity's error at 1 s on
   Human3.6M).
4. Loss: siMLPe's position + velocity L2 loss on the mean over all future frames, plus the Gaussian
   negative log-likelihood ``||e||^2 / (2 sigma^2) + 3 log sigma`` (constants dropped) of the error of the
   DETACHED mean, so that the uncertainty head cannot pull the mean away from the best fit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pose_forecasting.data.masking import fill_missing, last_observed
from pose_forecasting.models.simlpe import MotionMLP, dct_matrices, position_velocity_loss

# sigma in [1 mm, 1 m]: keeps the NLL finite where an error is ~0 and bounded where it is huge.
LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(1e-3), math.log(1.0)
SIGMA_INIT = 0.1


class ObservationAwareMLP(nn.Module):
    """Forecaster that takes the observation mask; see the module docstring.

    ``forward(history (B, T_in, J, 3), mask (B, T_in) or None) -> (B, output_frames, J, 3)`` metres; a
    ``None`` mask means every frame was observed. ``forward_with_uncertainty`` adds sigma ``(B, F, J)``.
    """

    uses_mask = True  # the Lightning module gives it the raw history (missing frames zeroed) and the mask

    def __init__(self, input_frames: int = 50, output_frames: int = 25, num_joints: int = 22,
                 num_blocks: int = 24, fps: float = 25.0) -> None:
        super().__init__()
        self.input_frames = input_frames
        self.output_frames = output_frames
        self.num_joints = num_joints
        self.fps = fps
        frames, dim = input_frames + output_frames, 3 * num_joints
        self.motion_fc_in = nn.Linear(dim + 2, dim)
        self.motion_mlp = MotionMLP(dim, frames, num_blocks)
        self.motion_fc_out = nn.Linear(dim, dim)
        self.log_sigma_fc_out = nn.Linear(dim, num_joints)
        for head in (self.motion_fc_out, self.log_sigma_fc_out):
            nn.init.xavier_uniform_(head.weight, gain=1e-8)
        nn.init.zeros_(self.motion_fc_out.bias)
        nn.init.constant_(self.log_sigma_fc_out.bias, math.log(SIGMA_INIT))
        dct, idct = dct_matrices(frames)
        self.register_buffer("dct", dct, persistent=False)
        self.register_buffer("idct", idct, persistent=False)

    def features(self, history: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Per-frame inputs ``(B, L, 3J + 2)`` and the last observed frame ``(B, J, 3)`` (the anchor)."""
        B, T = mask.shape
        L = T + self.output_frames
        known = torch.cat([mask, mask.new_zeros(B, self.output_frames)], dim=1)
        sequence = torch.cat([history, history.new_zeros(B, self.output_frames, *history.shape[2:])], dim=1)
        filled = fill_missing(sequence, known)
        anchor = history[torch.arange(B, device=history.device), last_observed(mask)]
        offsets = (filled - anchor[:, None]).reshape(B, L, -1)
        t = torch.arange(L, device=mask.device).expand(B, L)
        previous = torch.where(known, t, -1).cummax(dim=1).values
        following = torch.where(known, t, L).flip(1).cummin(dim=1).values.flip(1)
        staleness = torch.where(previous >= 0, t - previous, following - t).to(history.dtype) / self.fps
        return torch.cat([offsets, known[..., None].to(history.dtype), staleness[..., None]], dim=-1), anchor

    def predict(self, history: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Mean ``(B, F, J, 3)`` and clamped log sigma ``(B, F, J)`` of the ``F = output_frames`` future frames."""
        history = history[:, -self.input_frames:]
        if mask is None:
            mask = torch.ones(history.shape[:2], dtype=torch.bool, device=history.device)
        features, anchor = self.features(history, mask[:, -self.input_frames:])
        x = self.dct @ self.motion_fc_in(features)
        x = self.motion_mlp(x.transpose(1, 2)).transpose(1, 2)  # siMLPe's (B, C, T) layout
        x = (self.idct @ x)[:, -self.output_frames:]
        B, F = x.shape[:2]
        mean = anchor[:, None] + self.motion_fc_out(x).reshape(B, F, self.num_joints, 3)
        return mean, self.log_sigma_fc_out(x).clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)

    def forward(self, history: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.predict(history, mask)[0]

    def forward_with_uncertainty(self, history: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean ``(B, F, J, 3)`` and sigma ``(B, F, J)`` in metres (isotropic 3D Gaussian per joint)."""
        mean, log_sigma = self.predict(history, mask)
        return mean, log_sigma.exp()

    def loss(self, history: Tensor, future: Tensor, mask: Tensor | None = None) -> Tensor:
        """siMLPe's position + velocity loss on the mean, plus the 3D Gaussian NLL of the detached mean."""
        mean, log_sigma = self.predict(history, mask)
        squared_error = (future - mean.detach()).pow(2).sum(dim=-1)
        nll = (squared_error / (2 * torch.exp(2 * log_sigma)) + 3 * log_sigma).mean()
        return position_velocity_loss(mean, future) + nll
