"""MPJPE as the forecasting literature computes it, Procrustes-aligned MPJPE for estimation, and the
accumulators the Lightning module logs.

Forecasting on Human3.6M (siMLPe's ``test.py``, HisRepItself's ``mpjpe_error``): the 22 predicted joints
are written into the 32-joint ground truth, the six duplicate joints are copied from their parents
(:data:`skeleton.JOINTS_DUPLICATE` <- :data:`skeleton.JOINTS_EQUAL`) and the error is averaged over all
32 joints. The ten joints that are not predicted therefore contribute zero error: this lowers every
number by a factor of about 22/32 relative to a mean over the predicted joints only, and is why MPJPEs
from papers that average over 22 joints (e.g. some STS-GCN tables) are not comparable with siMLPe's.
Errors are reported in millimetres at single frames (80 ms = the 2nd future frame at 25 fps, ...,
1000 ms = the 25th), as siMLPe does; STS-GCN's paper instead averages over all frames up to the horizon
(``mpjpe_upto_*`` here), which gives smaller numbers at the same horizon.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from pose_forecasting.data.skeleton import JOINTS_DUPLICATE, JOINTS_EQUAL, JOINTS_USED

HORIZONS_MS = (80, 160, 320, 400, 560, 720, 880, 1000)
FRAME_MS = 40  # 25 fps


def horizon_frame(ms: int) -> int:
    """Index of the future frame at ``ms`` milliseconds (80 ms -> 1, 1000 ms -> 24)."""
    return ms // FRAME_MS - 1


def mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """Mean per-joint position error over the joint axis (-2): ``(..., J, 3)`` -> ``(...)``, same unit."""
    return (pred - target).norm(dim=-1).mean(dim=-1)


def mpjpe_h36m(pred_used: Tensor, target_full: Tensor) -> Tensor:
    """Per-frame MPJPE in mm of 22-joint predictions against 32-joint ground truth, the siMLPe way.

    ``pred_used`` ``(B, T, 22, 3)`` and ``target_full`` ``(B, T, 32, 3)`` in metres -> ``(B, T)`` mm.
    """
    full = target_full.clone()
    full[:, :, JOINTS_USED] = pred_used.to(full.dtype)
    full[:, :, JOINTS_DUPLICATE] = full[:, :, JOINTS_EQUAL]
    return mpjpe(full * 1000, target_full * 1000)


def procrustes_align(pred: Tensor, target: Tensor) -> Tensor:
    """``pred`` ``(N, J, 3)`` after the similarity transform (scale, rotation, translation) that best
    fits it to ``target`` in the least-squares sense (Umeyama 1991; the ``p_mpjpe`` of VideoPose3D and
    MotionBERT, reflections excluded)."""
    mu_p, mu_t = pred.mean(dim=1, keepdim=True), target.mean(dim=1, keepdim=True)
    p, t = pred - mu_p, target - mu_t
    norm_p = p.norm(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    norm_t = t.norm(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    p, t = p / norm_p, t / norm_t
    U, S, Vh = torch.linalg.svd(p.transpose(1, 2) @ t)
    # Flip the last singular vector where the best orthogonal map is a reflection.
    sign = torch.sign(torch.linalg.det(U @ Vh))
    U = torch.cat([U[..., :2], U[..., 2:] * sign[:, None, None]], dim=-1)
    S = torch.cat([S[:, :2], S[:, 2:] * sign[:, None]], dim=-1)
    R = U @ Vh
    scale = S.sum(dim=1)[:, None, None] * norm_t / norm_p
    return scale * (pred - mu_p) @ R + mu_t


def p_mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """MPJPE after Procrustes alignment, per pose: ``(..., J, 3)`` -> ``(...)``."""
    shape = pred.shape[:-2]
    p, t = pred.reshape(-1, *pred.shape[-2:]), target.reshape(-1, *target.shape[-2:])
    return mpjpe(procrustes_align(p.double(), t.double()), t.double()).to(pred.dtype).reshape(shape)


class FrameError(Metric):
    """Mean error per future frame over all test windows (sums and a count, DDP-synchronised)."""

    full_state_update = False

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(frames, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, errors: Tensor) -> None:  # (B, T)
        self.total += errors.double().sum(dim=0)
        self.count += errors.shape[0]

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


def horizon_metrics(per_frame: Tensor, prefix: str) -> dict[str, float]:
    """``{prefix/mpjpe_80ms: ..., ..., prefix/mpjpe_avg, prefix/mpjpe_upto_400ms, prefix/mpjpe_upto_1000ms}``.

    ``mpjpe_avg`` is the mean over the eight horizons (siMLPe's "Avg"); ``mpjpe_upto_*`` the mean over
    all future frames up to the horizon (STS-GCN's convention).
    """
    out = {f"{prefix}/mpjpe_{ms}ms": float(per_frame[horizon_frame(ms)]) for ms in HORIZONS_MS
           if horizon_frame(ms) < len(per_frame)}
    out[f"{prefix}/mpjpe_avg"] = sum(out.values()) / len(out)
    for ms in (400, 1000):
        if horizon_frame(ms) < len(per_frame):
            out[f"{prefix}/mpjpe_upto_{ms}ms"] = float(per_frame[: horizon_frame(ms) + 1].mean())
    return out
