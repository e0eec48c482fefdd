"""siMLPe: Guo et al., "Back to MLP: A Simple Baseline for Human Motion Prediction", WACV 2023.

Official code: github.com/dulucas/siMLPe (``exps/baseline_h36m``, MIT License). The network is, with the
Human3.6M configuration (``config.py``: 50 observed frames, 48 blocks, 66 = 22 joints x 3):

1. an orthonormal DCT-II over the 50 frames (paper Eq. 1, ``get_dct_matrix``);
2. ``motion_fc_in``: a spatial fully-connected layer (66 -> 66) on every frame;
3. 48 blocks, each ``x + LN(FC_t(x))`` with ``FC_t`` a fully-connected layer over TIME (50 -> 50) and ``LN``
   a layer norm over the 66 spatial channels (Eq. 2-3; the official ``LN``, not ``nn.LayerNorm``);
4. ``motion_fc_out``: a spatial fully-connected layer (66 -> 66);
5. the inverse DCT, the first ``train_frames`` = 10 frames kept, plus the last observed frame (Eq. 4: the
   network predicts offsets from it).

At test time the 25 future frames come from 3 autoregressive steps of 10 frames (official ``test.py``).
Training loss (official ``train.py``, paper Eq. 5-6): mean L2 norm of the joint position error on the
10 predicted frames plus the same on their velocities (frame differences).
Parameter and buffer names are the official ones, so the released checkpoints load as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pose_forecasting.models.interfaces import Forecaster

# The released checkpoints predate the rename of the MLP stack in the official code
# (``motion_transformer.transformer.{i}`` -> ``motion_mlp.mlps.{i}``); their other names are unchanged.
_OLD_PREFIX, _NEW_PREFIX = "motion_transformer.transformer.", "motion_mlp.mlps."


def dct_matrices(N: int) -> tuple[Tensor, Tensor]:
    """Orthonormal DCT-II matrix ``(N, N)`` (row ``k`` = frequency ``k``) and its inverse (its transpose).

    ``D[k, i] = w_k cos(pi (i + 1/2) k / N)`` with ``w_0 = sqrt(1/N)``, ``w_k = sqrt(2/N)``: siMLPe's
    ``get_dct_matrix``. Built in float64 so that the float32 copy is exact to rounding.
    """
    k = torch.arange(N, dtype=torch.float64)[:, None]
    i = torch.arange(N, dtype=torch.float64)[None]
    dct = math.sqrt(2 / N) * torch.cos(math.pi * (i + 0.5) * k / N)
    dct[0] /= math.sqrt(2)
    return dct.float(), dct.T.contiguous().float()


class SpatialLayerNorm(nn.Module):
    """siMLPe's ``LN``: normalises the ``C`` spatial channels of every frame (biased variance, eps 1e-5), with
    per-channel ``alpha``/``beta`` of the official names and shape ``(1, C, 1)``. Features are time-major
    ``(T, B, C)`` here (see :class:`MotionMLP`), so ``C`` is the contiguous last axis.

    Evaluation uses the official arithmetic: ``F.layer_norm`` rounds differently, 1.3e-5 m off the official
    outputs after 144 blocks (the official arithmetic: 5.4e-6 m), and the tests hold outputs to 1e-5 m.
    Training (gradients on) uses ``F.layer_norm``, the same function with one fused kernel forward and backward: the
    official arithmetic's eight element-wise passes and their autograd graph made a default training step
    1.5x slower (0.64 s against 0.43 s, batch 256 on 2 cores), and rounding at 1e-7 does not change what
    is learned."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.alpha = nn.Parameter(torch.ones(1, dim, 1))
        self.beta = nn.Parameter(torch.zeros(1, dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return F.layer_norm(x, x.shape[-1:], self.alpha.view(-1), self.beta.view(-1), self.eps)
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / (var + self.eps).sqrt() * self.alpha.view(-1) + self.beta.view(-1)


class TemporalFC(nn.Module):
    """A fully-connected layer over the time axis of time-major ``(T, B, C)`` features (official
    ``Temporal_FC``; the inner ``fc`` keeps the official parameter names): one GEMM
    ``W (T, T) @ x (T, B * C)`` plus the bias."""

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.fc = nn.Linear(frames, frames)

    def forward(self, x: Tensor) -> Tensor:
        T, B, C = x.shape
        return torch.addmm(self.fc.bias[:, None], self.fc.weight, x.reshape(T, B * C)).view(T, B, C)


class MLPBlock(nn.Module):
    """One siMLPe block, ``x + LN(FC_t(x))`` on ``(T, B, C)`` features (paper Eq. 3, official ``MLPblock``).

    ``FC_t`` starts near zero (xavier gain 1e-8, zero bias, as the official ``reset_parameters``), so every
    block starts as the identity.
    """

    def __init__(self, dim: int, frames: int) -> None:
        super().__init__()
        self.fc0 = TemporalFC(frames)
        self.norm0 = SpatialLayerNorm(dim)
        nn.init.xavier_uniform_(self.fc0.fc.weight, gain=1e-8)
        nn.init.zeros_(self.fc0.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.norm0(self.fc0(x))


class MotionMLP(nn.Module):
    """The stack of blocks (official ``TransMLP``; attribute ``mlps`` as in the official names).

    It works on time-major ``(T, B, C)`` features, where the official code has ``(B, C, T)``: the same
    arithmetic, but both operations of a block run on contiguous memory (the temporal FC as one GEMM, the
    layer norm over the last axis), which makes a training step 1.4x and a forward pass 1.6x faster on CPU
    (the layer norm's strided reductions and broadcasts over ``(B, C, T)`` took most of the time).
    """

    def __init__(self, dim: int, frames: int, num_blocks: int) -> None:
        super().__init__()
        self.mlps = nn.Sequential(*[MLPBlock(dim, frames) for _ in range(num_blocks)])

    def forward(self, x: Tensor) -> Tensor:
        return self.mlps(x)


class SiMLPe(Forecaster):
    """siMLPe forecaster (Guo et al., WACV 2023) with the official Human3.6M defaults.

    ``forward(history (B, T_in, J, 3), mask=None) -> (B, output_frames, J, 3)``, metres. The model takes no
    mask: the caller fills missing frames (``data.masking.fill_missing``); ``mask`` is accepted and ignored.
    ``weights``: an official ``.pth`` checkpoint or an ``.npz`` with ``state_dict/<name>`` arrays.
    """

    def __init__(self, input_frames: int = 50, output_frames: int = 25, train_frames: int = 10,
                 num_joints: int = 22, num_blocks: int = 48, weights: str | None = None) -> None:
        super().__init__()
        self.input_frames = input_frames
        self.output_frames = output_frames
        self.train_frames = train_frames
        self.num_joints = num_joints
        dim = 3 * num_joints
        self.motion_fc_in = nn.Linear(dim, dim)
        self.motion_mlp = MotionMLP(dim, input_frames, num_blocks)
        self.motion_fc_out = nn.Linear(dim, dim)
        # Official init: the output layer starts near zero, so the model starts as zero velocity.
        nn.init.xavier_uniform_(self.motion_fc_out.weight, gain=1e-8)
        nn.init.zeros_(self.motion_fc_out.bias)
        dct, idct = dct_matrices(input_frames)
        # Fixed transforms, rebuilt at construction: not part of the checkpoint (official ones have none).
        self.register_buffer("dct", dct, persistent=False)
        self.register_buffer("idct", idct, persistent=False)
        if weights is not None:
            self.load_weights(weights)

    def load_weights(self, path: str | Path) -> None:
        """Loads an official ``.pth`` checkpoint (or the fixture's ``.npz``); errors name the file."""
        state_dict = read_state_dict(path)
        try:
            self.load_official(state_dict)
        except (ValueError, RuntimeError) as error:  # RuntimeError: a shape differs from this configuration
            raise ValueError(f"{path}: not siMLPe weights for this configuration: {error}") from error

    def load_official(self, state_dict: Mapping[str, Tensor]) -> None:
        """Loads an official state dict (current or old ``motion_transformer.transformer.*`` names), strictly.

        Raises ``ValueError`` naming the missing and unexpected keys.
        """
        mapped = {(_NEW_PREFIX + k[len(_OLD_PREFIX):] if k.startswith(_OLD_PREFIX) else k): torch.as_tensor(v)
                  for k, v in state_dict.items()}
        expected = set(self.state_dict())
        missing, unexpected = sorted(expected - set(mapped)), sorted(set(mapped) - expected)
        if missing or unexpected:
            raise ValueError(f"{len(missing)} missing keys {_abbreviate(missing)}, "
                             f"{len(unexpected)} unexpected keys {_abbreviate(unexpected)}")
        self.load_state_dict(mapped, strict=True)

    def network(self, motion_dct: Tensor) -> Tensor:
        """The official ``siMLPe.forward``: ``(B, N, 3J)`` DCT coefficients -> ``(B, N, 3J)``."""
        x = self.motion_fc_in(motion_dct).transpose(0, 1).contiguous()  # (N, B, 3J): time-major blocks
        return self.motion_fc_out(self.motion_mlp(x).transpose(0, 1))

    def step(self, motion: Tensor) -> Tensor:
        """One prediction of ``train_frames`` frames from ``(B, input_frames, 3J)`` (paper Eq. 1-4)."""
        offsets = self.idct @ self.network(self.dct @ motion)
        return offsets[:, :self.train_frames] + motion[:, -1:]

    def forward(self, history: Tensor, mask: Tensor | None = None) -> Tensor:
        B = history.shape[0]
        motion = history[:, -self.input_frames:].reshape(B, self.input_frames, -1)
        predictions = []
        # Autoregressive roll-out (official test.py): each step's frames join the window, the oldest leave.
        for _ in range(math.ceil(self.output_frames / self.train_frames)):
            predictions.append(self.step(motion))
            motion = torch.cat([motion[:, self.train_frames:], predictions[-1]], dim=1)
        future = torch.cat(predictions, dim=1)[:, :self.output_frames]
        return future.reshape(B, self.output_frames, self.num_joints, 3)

    def loss(self, history: Tensor, future: Tensor, mask: Tensor | None = None) -> Tensor:
        """Official training loss on the first ``train_frames`` future frames: position + velocity L2."""
        B = history.shape[0]
        motion = history[:, -self.input_frames:].reshape(B, self.input_frames, -1)
        prediction = self.step(motion).reshape(B, self.train_frames, self.num_joints, 3)
        return position_velocity_loss(prediction, future[:, :self.train_frames])


def position_velocity_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """siMLPe's loss (``train.py``): mean over frames and joints of ``||p - p*||_2`` plus the same on the
    frame differences ``p_{t+1} - p_t`` of the predicted frames ("velocity loss", paper Eq. 6)."""
    position = (prediction - target).norm(dim=-1).mean()
    velocity = (prediction.diff(dim=1) - target.diff(dim=1)).norm(dim=-1).mean()
    return position + velocity


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a weights file: an ``.npz`` with ``state_dict/<name>`` arrays, or a ``.pth`` holding a
    state dict, possibly under ``"state_dict"`` or ``"model"``. Raises ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            prefix = "state_dict/"
            state = {k[len(prefix):]: torch.from_numpy(arrays[k]) for k in arrays.files if k.startswith(prefix)}
        if not state:
            raise ValueError(f"{path}: no 'state_dict/<name>' arrays in this .npz")
        return state
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        # torch's own message advises weights_only=False (unsafe); the chained error keeps the details.
        raise ValueError(f"{path}: not a checkpoint that torch.load(weights_only=True) can read "
                         f"({type(error).__name__})") from error
    if isinstance(state, Mapping):
        state = next((state[k] for k in ("state_dict", "model") if isinstance(state.get(k), Mapping)), state)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return dict(state)


def _abbreviate(keys: list[str], shown: int = 6) -> str:
    return str(keys[:shown] + ([f"... {len(keys) - shown} more"] if len(keys) > shown else []))
