"""Observation-aware siMLPe: this project's forecaster for partial temporal information (our method).

siMLPe (Guo et al., WACV 2023; see ``simlpe.py``) never knows which input frames were measured: a caller
fills the missing ones and the network treats the filling as data. This model keeps siMLPe's network and
training (DCT over the 50 observed frames, 48 blocks ``x + LN(FC_t(x))``, inverse DCT, 10 frames per step
as offsets from the last frame, position + velocity loss, roll-out to 25 frames) and changes four things:

1. Inputs: every frame of the window is its 3J filled coordinates (``data.masking.fill_missing``: linear
   interpolation between observed frames, the last observed frame held over a missing near past) plus
   two channels: missing (1 missing, 0 observed) and staleness, the time in seconds since the last
   observed frame (0 when observed; before the first observation, the time to it). ``motion_fc_in`` maps
   these 3J + 2 channels to 3J. The network thus knows which values are measurements and how old the
   newest one is: the offsets it predicts from the last observed frame can span the unseen gap. Missing
   frames' raw values are never read (the filling uses observed frames only). Both channels are 0 on a
   fully observed window, where the network is siMLPe's exactly (an "observed" channel of ones instead
   put a large constant into every DCT-0 coefficient and slowed training several-fold).
2. Uncertainty: a second head (a two-layer MLP over the 3J channels of each future frame) gives
   ``log sigma`` per joint and future frame, an isotropic 3D Gaussian on each predicted joint. It reads the
   network's features DETACHED: the 48 blocks serve the mean alone, as in siMLPe (with shared gradients the
   likelihood term took the blocks over and the mean stayed at zero velocity). It starts at sigma = 10 cm
   (zero velocity's error at 1 s on Human3.6M is about that) and is clamped to [1 mm, 1 m].
3. Loss: siMLPe's loss on the mean plus the Gaussian negative log-likelihood
   ``||e||^2 / (2 sigma^2) + 3 log sigma`` (constants dropped) of the error of the detached mean, so that
   the uncertainty cannot pull the mean away from the best fit.
4. Roll-out: predicted frames join the window as observed (mask 1, staleness 0), as siMLPe's roll-out
   treats them as data. Each step predicts around its last frame, so its errors add to those of that
   anchor: the variance of a step's frames is its own sigma^2 plus the variance of the previous step's
   last frame (independent errors, a random walk over steps).

The module trains it with random missing frames (``train_missing``) and missing near-past blocks
(``train_missing_tail``); the bench's ablation trains plain siMLPe with the same masks, which separates
what the mask inputs bring from what the augmentation brings.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pose_forecasting.data.masking import fill_missing, staleness
from pose_forecasting.models.interfaces import UncertainForecaster
from pose_forecasting.models.simlpe import SiMLPe, position_velocity_loss

# sigma in [1 mm, 1 m]: keeps the NLL finite where an error is ~0 and bounded where it is huge.
LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(1e-3), math.log(1.0)
SIGMA_INIT = 0.1


class ObservationAwareMLP(SiMLPe, UncertainForecaster):
    """siMLPe with the observation mask and staleness as inputs and per-joint uncertainty; see the module
    docstring. ``forward(history (B, T_in, J, 3), mask (B, T_in) or None) -> (B, output_frames, J, 3)``
    metres; a ``None`` mask means every frame was observed. ``forward_with_uncertainty`` adds sigma
    ``(B, output_frames, J)`` in metres. An :class:`UncertainForecaster`: the Lightning module gives it the
    raw history (missing frames zeroed) and the mask."""

    def __init__(self, input_frames: int = 50, output_frames: int = 25, train_frames: int = 10,
                 num_joints: int = 22, num_blocks: int = 48, fps: float = 25.0) -> None:
        super().__init__(input_frames, output_frames, train_frames, num_joints, num_blocks)
        self.fps = fps
        dim = 3 * num_joints
        self.motion_fc_in = nn.Linear(dim + 2, dim)
        self.log_sigma_fc_out = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, num_joints))
        nn.init.xavier_uniform_(self.log_sigma_fc_out[-1].weight, gain=1e-8)
        nn.init.constant_(self.log_sigma_fc_out[-1].bias, math.log(SIGMA_INIT))

    def load_weights(self, path) -> None:
        raise ValueError(f"{path}: the observation-aware model has 3J + 2 input channels, siMLPe's official "
                         "checkpoints do not fit it; use --ckpt_path for this project's checkpoints")

    def step_with_uncertainty(self, motion: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """One step: ``(B, input_frames, 3J)`` motion (missing frames any value) and its ``(B, input_frames)``
        mask -> mean ``(B, train_frames, 3J)`` and clamped log sigma ``(B, train_frames, J)``."""
        filled = fill_missing(motion, mask)
        features = torch.cat([filled, (~mask)[..., None].to(motion.dtype),
                              staleness(mask, self.fps)[..., None].to(motion.dtype)], dim=-1)
        x = self.motion_fc_in(self.dct @ features).transpose(0, 1).contiguous()  # (N, B, 3J): siMLPe's blocks
        x = (self.idct @ self.motion_mlp(x).transpose(0, 1))[:, :self.train_frames]
        # filled[:, -1] is the last observed frame (fill_missing holds it over a missing near past).
        mean = filled[:, -1:] + self.motion_fc_out(x)
        return mean, self.log_sigma_fc_out(x.detach()).clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)

    def forward_with_uncertainty(self, history: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean ``(B, F, J, 3)`` and sigma ``(B, F, J)`` in metres of the ``F = output_frames`` future frames."""
        B, T, J = history.shape[0], self.input_frames, self.num_joints
        motion = history[:, -T:].reshape(B, T, -1)
        mask = (torch.ones(B, T, dtype=torch.bool, device=history.device) if mask is None else mask[:, -T:])
        observed = torch.ones(B, self.train_frames, dtype=torch.bool, device=history.device)
        means, variances = [], []
        anchor_variance = history.new_zeros(B, 1, J)
        for _ in range(math.ceil(self.output_frames / self.train_frames)):
            mean, log_sigma = self.step_with_uncertainty(motion, mask)
            variance = torch.exp(2 * log_sigma) + anchor_variance
            means.append(mean)
            variances.append(variance)
            anchor_variance = variance[:, -1:]
            motion = torch.cat([motion[:, self.train_frames:], mean], dim=1)
            mask = torch.cat([mask[:, self.train_frames:], observed], dim=1)
        mean = torch.cat(means, dim=1)[:, :self.output_frames].reshape(B, self.output_frames, J, 3)
        return mean, torch.cat(variances, dim=1)[:, :self.output_frames].sqrt()

    def forward(self, history: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.forward_with_uncertainty(history, mask)[0]

    def loss(self, history: Tensor, future: Tensor, mask: Tensor | None = None) -> Tensor:
        """siMLPe's position + velocity loss on the first ``train_frames`` future frames, plus the 3D
        Gaussian NLL of their detached mean."""
        B, T, F, J = history.shape[0], self.input_frames, self.train_frames, self.num_joints
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=history.device)
        mean, log_sigma = self.step_with_uncertainty(history[:, -T:].reshape(B, T, -1), mask[:, -T:])
        mean, target = mean.reshape(B, F, J, 3), future[:, :F]
        squared_error = (target - mean.detach()).pow(2).sum(dim=-1)
        nll = (squared_error / (2 * torch.exp(2 * log_sigma)) + 3 * log_sigma).mean()
        return position_velocity_loss(mean, target) + nll
