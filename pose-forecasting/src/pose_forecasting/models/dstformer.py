"""DSTformer-lite: 2D keypoints -> 3D pose of the observed frames AND its forecast, in one pass.

After MotionBERT (Zhu et al., "MotionBERT: A Unified Perspective on Learning Human Motion
Representations", ICCV 2023; official ``lib/model/DSTformer.py``). What is kept from it:

- each joint of each frame is a token embedding ``[x, y, confidence]`` (Linear(3, dim)) plus a learned
  spatial (joint) and temporal (frame) position embedding;
- the dual-stream spatio-temporal block (the paper's DSTformer): stream 1 is spatial attention (over
  the joints of a frame) then temporal attention (over the frames of a joint), stream 2 the reverse;
  each attention and MLP is a pre-norm residual sub-block (``Block`` in ``stage_st``/``stage_ts``
  mode); the two streams are fused per token with learned softmax weights (``ts_attn``,
  Linear(2 dim, 2), initialised to equal weights);
- training: MPJPE plus a velocity (frame-difference) term, as the paper's pretraining loss, and masking
  of input frames and joints as in its pretraining (:func:`mask_inputs`).

What "lite" changes: dim 64, depth 4, 4 heads, MLP ratio 2 (MotionBERT: 512/5/8/2); no ``pre_logits``
(Linear + tanh to ``dim_rep``), the head is Linear(dim, 3); and the sequence is extended with
``output_frames`` learned "future" tokens (one learned embedding per joint, told apart by the temporal
position embedding, as MAE's mask tokens), so that lifting the ``input_frames`` observed frames and
forecasting the next ``output_frames`` happen in the same attention pass.

Inputs: keypoints in normalised image coordinates (pixel / (W/2) - 1, MotionBERT's convention),
confidence in [0, 1] (0: a missed detection, whose coordinates are 0), an optional frame mask (True:
observed; an unobserved frame's input is zeroed, so the output cannot depend on it). Outputs: joints
relative to the hip (the root, which is not among the 22 joints) in camera coordinates, metres.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pose_forecasting.models.interfaces import Lifter2D


class Attention(nn.Module):
    """Multi-head self-attention over the second axis of ``(N, L, C)`` (qkv with bias, as DSTformer)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        N, L, C = x.shape
        q, k, v = self.qkv(x).reshape(N, L, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # (N, heads, L, C / heads)
        return self.proj(x.transpose(1, 2).reshape(N, L, C))


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """One stream of a dual-stream layer: ``order="st"`` is spatial then temporal, ``"ts"`` the reverse.

    Tokens are ``(B, F, J, C)``; spatial attention runs over J for each frame, temporal over F for each
    joint (over the observed and the future frames alike: the forecast attends to the whole history).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, order: str) -> None:
        super().__init__()
        self.order = order
        self.norm1_s, self.norm2_s = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm1_t, self.norm2_t = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn_s, self.attn_t = Attention(dim, num_heads), Attention(dim, num_heads)
        hidden = int(dim * mlp_ratio)
        self.mlp_s, self.mlp_t = MLP(dim, hidden), MLP(dim, hidden)

    def spatial(self, x: Tensor) -> Tensor:
        B, F, J, C = x.shape
        x = x + self.attn_s(self.norm1_s(x).reshape(B * F, J, C)).reshape(B, F, J, C)
        return x + self.mlp_s(self.norm2_s(x))

    def temporal(self, x: Tensor) -> Tensor:
        B, F, J, C = x.shape
        y = self.norm1_t(x).transpose(1, 2).reshape(B * J, F, C)
        x = x + self.attn_t(y).reshape(B, J, F, C).transpose(1, 2)
        return x + self.mlp_t(self.norm2_t(x))

    def forward(self, x: Tensor) -> Tensor:
        if self.order == "st":
            return self.temporal(self.spatial(x))
        return self.spatial(self.temporal(x))


def mpjpe(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean per-joint position error: mean Euclidean distance over every leading axis."""
    return (predicted - target).norm(dim=-1).mean()


class DSTformerLite(Lifter2D):
    """Lifts ``(B, T, J, 2)`` keypoints (+ confidence) to 3D over the last ``input_frames`` and forecasts
    ``output_frames`` more. Defaults: the project's window (50 observed frames, 25 forecast, 25 fps)
    and the lite size (dim 64, depth 4, 4 heads, MLP ratio 2)."""

    def __init__(self, num_joints: int = 22, input_frames: int = 50, output_frames: int = 25, dim: int = 64,
                 depth: int = 4, num_heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.input_frames = input_frames
        self.output_frames = output_frames
        self.joints_embed = nn.Linear(3, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, num_joints, dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, input_frames + output_frames, 1, dim))
        self.future_token = nn.Parameter(torch.zeros(1, 1, num_joints, dim))
        self.blocks_st = nn.ModuleList(Block(dim, num_heads, mlp_ratio, "st") for _ in range(depth))
        self.blocks_ts = nn.ModuleList(Block(dim, num_heads, mlp_ratio, "ts") for _ in range(depth))
        self.ts_attn = nn.ModuleList(nn.Linear(2 * dim, 2) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)
        # MotionBERT's initialisation: truncated normal (std 0.02) for linear layers and embeddings,
        # and fusion weights that start as the plain average of the two streams.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for embedding in (self.pos_embed, self.temp_embed, self.future_token):
            nn.init.trunc_normal_(embedding, std=0.02)
        for fuse in self.ts_attn:
            nn.init.zeros_(fuse.weight)
            nn.init.constant_(fuse.bias, 0.5)

    def forward(self, keypoints_2d: Tensor, confidence: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``keypoints_2d`` (B, T, J, 2), ``confidence`` (B, T, J), ``mask`` (B, T) bool or None, with
        ``T >= input_frames`` (the last ``input_frames`` are used). Returns ``(estimate, forecast)``:
        ``(B, input_frames, J, 3)`` and ``(B, output_frames, J, 3)``, hip-relative camera coordinates, metres.
        """
        T = self.input_frames
        if keypoints_2d.shape[1] < T:
            raise ValueError(f"DSTformer-lite needs at least {T} input frames, got {keypoints_2d.shape[1]}")
        x = torch.cat([keypoints_2d[:, -T:], confidence[:, -T:, :, None]], dim=-1)
        if mask is not None:
            # torch.where, not a product: whatever an unobserved frame holds (even NaN) cannot leak in.
            x = torch.where(mask[:, -T:, None, None], x, torch.zeros_like(x))
        x = self.joints_embed(x)
        future = self.future_token.expand(x.shape[0], self.output_frames, -1, -1)
        x = torch.cat([x, future], dim=1) + self.pos_embed + self.temp_embed
        for block_st, block_ts, fuse in zip(self.blocks_st, self.blocks_ts, self.ts_attn):
            x_st, x_ts = block_st(x), block_ts(x)
            alpha = fuse(torch.cat([x_st, x_ts], dim=-1)).softmax(dim=-1)
            x = x_st * alpha[..., :1] + x_ts * alpha[..., 1:]
        out = self.head(self.norm(x))
        return out[:, :T], out[:, T:]

    def loss(self, keypoints_2d: Tensor, confidence: Tensor, mask: Tensor | None, target_observed: Tensor,
             target_future: Tensor) -> Tensor:
        """MotionBERT's 3D losses (its ``loss_mpjpe`` and ``loss_velocity``), lite weights, in metres:
        MPJPE of the estimate + MPJPE of the forecast + 0.5 x the velocity error of the whole
        estimated-then-forecast sequence (so the seam between the last observed and the first forecast
        frame counts too). Every frame counts, masked ones included: the model must in-fill them."""
        estimate, forecast = self(keypoints_2d, confidence, mask)
        target_observed = target_observed[:, -self.input_frames:]
        predicted = torch.cat([estimate, forecast], dim=1)
        target = torch.cat([target_observed, target_future], dim=1)
        velocity = mpjpe(predicted.diff(dim=1), target.diff(dim=1))
        return mpjpe(estimate, target_observed) + mpjpe(forecast, target_future) + 0.5 * velocity


def mask_inputs(keypoints_2d: Tensor, confidence: Tensor, frame_ratio: float = 0.15, joint_ratio: float = 0.05,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """MotionBERT's pretraining masks (``Augmenter2D.add_mask``): each frame is dropped with probability
    ``frame_ratio`` and each remaining joint with probability ``joint_ratio``; a dropped keypoint gets
    coordinates 0 and confidence 0, exactly like a missed detection. Returns the masked copies.

    MotionBERT draws one frame mask for the whole batch (``mask_T_ratio`` 0.1 in its pretraining
    config); here each sequence gets its own, so one batch covers more masking patterns.
    """
    B, T, J = confidence.shape
    # Drawn on the CPU so that a CPU generator gives the same masks whatever the device.
    keep_frame = torch.rand(B, T, 1, generator=generator) >= frame_ratio
    keep_joint = torch.rand(B, T, J, generator=generator) >= joint_ratio
    keep = (keep_frame & keep_joint).to(confidence.device)
    keypoints_2d = torch.where(keep[..., None], keypoints_2d, torch.zeros_like(keypoints_2d))
    return keypoints_2d, torch.where(keep, confidence, torch.zeros_like(confidence))
