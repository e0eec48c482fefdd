"""DSTformer-lite: shapes, the frame mask really removes inputs, MotionBERT-style masking, training."""

from __future__ import annotations

import math

import pytest
import torch

from pose_forecasting.models.dstformer import DSTformerLite, mask_inputs


def smooth_motion(batch: int, frames: int, joints: int = 22, seed: int = 0) -> torch.Tensor:
    """Per-joint sinusoids around a random hip-relative pose, metres at 25 fps: ``(batch, frames, joints, 3)``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float32)[None, :, None, None] / 25
    base = torch.randn(batch, 1, joints, 3, generator=g) * 0.4
    amplitude = torch.randn(batch, 1, joints, 3, generator=g) * 0.1
    frequency = 0.5 + torch.rand(batch, 1, joints, 3, generator=g)
    phase = torch.rand(batch, 1, joints, 3, generator=g) * 2 * math.pi
    return base + amplitude * torch.sin(2 * math.pi * frequency * t + phase)


def orthographic(motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2D keypoints in [-1, 1] (x, y of the camera-frame joints) and full confidence."""
    return motion[..., :2].clamp(-1, 1), torch.ones(motion.shape[:-1])


def test_shapes_and_parameter_count() -> None:
    torch.manual_seed(0)
    model = DSTformerLite().eval()
    keypoints, confidence = orthographic(smooth_motion(2, 60))
    estimate, forecast = model(keypoints, confidence)  # 60 >= 50: the last 50 frames are used
    assert estimate.shape == (2, 50, 22, 3) and forecast.shape == (2, 25, 22, 3)
    with pytest.raises(ValueError, match="at least 50"):
        model(keypoints[:, :49], confidence[:, :49])
    # Independent count: per stream block 4 LayerNorms, 2 attentions (qkv + proj), 2 MLPs (ratio 2).
    dim, depth, J, frames = 64, 4, 22, 75
    block = 4 * 2 * dim + 2 * (dim * 3 * dim + 3 * dim + dim * dim + dim) + 2 * (2 * dim * dim * 2 + 2 * dim + dim)
    fusion = depth * (2 * dim * 2 + 2)
    embeddings = (3 * dim + dim) + J * dim + frames * dim + J * dim  # joints, spatial, temporal, future tokens
    expected = 2 * depth * block + fusion + embeddings + 2 * dim + (dim * 3 + 3)  # + final norm + head
    count = sum(p.numel() for p in model.parameters())
    print(f"DSTformer-lite parameters: {count}")
    assert count == expected == 544779


def test_unobserved_frames_do_not_reach_the_output() -> None:
    torch.manual_seed(0)
    model = DSTformerLite(input_frames=12, output_frames=6, dim=32, depth=2).eval()
    keypoints, confidence = orthographic(smooth_motion(2, 12))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[0, [2, 7, 11]] = False
    mask[1, :4] = False
    out = model(keypoints, confidence, mask)
    # Whatever the unobserved frames hold (even NaN), the output is the same...
    garbage_kp, garbage_conf = keypoints.clone(), confidence.clone()
    garbage_kp[~mask] = float("nan")
    garbage_conf[~mask] = 0.3
    for a, b in zip(out, model(garbage_kp, garbage_conf, mask)):
        torch.testing.assert_close(a, b)
    # ... namely that of an all-zero input there, and it differs from the unmasked output.
    zero_kp, zero_conf = keypoints * mask[..., None, None], confidence * mask[..., None]
    for a, b in zip(out, model(zero_kp, zero_conf)):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(out[1], model(keypoints, confidence)[1])


def test_mask_inputs_drops_frames_and_joints_like_missed_detections() -> None:
    keypoints, confidence = torch.rand(64, 50, 22, 2) * 2 - 1, torch.rand(64, 50, 22) * 0.9 + 0.1
    masked_kp, masked_conf = mask_inputs(keypoints, confidence, 0.15, 0.05, torch.Generator().manual_seed(0))
    again = mask_inputs(keypoints, confidence, 0.15, 0.05, torch.Generator().manual_seed(0))
    assert torch.equal(masked_kp, again[0]) and torch.equal(masked_conf, again[1])
    dropped = masked_conf == 0
    # A dropped keypoint is a missed detection (coordinates 0); a kept one is untouched.
    assert (masked_kp[dropped] == 0).all()
    assert torch.equal(masked_kp[~dropped], keypoints[~dropped])
    assert torch.equal(masked_conf[~dropped], confidence[~dropped])
    frame_dropped = dropped.all(dim=2)
    assert abs(frame_dropped.float().mean().item() - 0.15) < 0.03
    joint_rate = dropped[~frame_dropped].float().mean().item()
    assert abs(joint_rate - 0.05) < 0.01


def test_loss_decreases_with_masked_inputs() -> None:
    torch.manual_seed(0)
    model = DSTformerLite(input_frames=10, output_frames=5, dim=32, depth=1)
    motion = smooth_motion(2, 15)
    target_observed, target_future = motion[:, :10], motion[:, 10:]
    keypoints, confidence = orthographic(target_observed)
    keypoints, confidence = mask_inputs(keypoints, confidence, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[:, -3:] = False  # the near past is missing: the estimate must in-fill it
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(keypoints, confidence, mask, target_observed, target_future)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model.future_token.grad is not None and model.future_token.grad.abs().sum() > 0
    assert losses[-1] < 0.5 * losses[0], losses
