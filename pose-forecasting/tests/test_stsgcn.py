"""STS-GCN: interface shapes, the official parameter count, both adjacencies learn, the loss trains."""

from __future__ import annotations

import math

import pytest
import torch

from pose_forecasting.models.stsgcn import STSGCN


def smooth_motion(batch: int, frames: int, joints: int = 22, seed: int = 0) -> torch.Tensor:
    """Per-joint sinusoids around a random pose, metres at 25 fps: ``(batch, frames, joints, 3)``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float32)[None, :, None, None] / 25
    base = torch.randn(batch, 1, joints, 3, generator=g) * 0.4
    amplitude = torch.randn(batch, 1, joints, 3, generator=g) * 0.1
    frequency = 0.5 + torch.rand(batch, 1, joints, 3, generator=g)
    phase = torch.rand(batch, 1, joints, 3, generator=g) * 2 * math.pi
    return base + amplitude * torch.sin(2 * math.pi * frequency * t + phase)


def test_shapes_last_frames_and_mask_ignored() -> None:
    torch.manual_seed(0)
    model = STSGCN().eval()
    history = smooth_motion(2, 50)
    out = model(history)
    assert out.shape == (2, 25, 22, 3)
    # Only the last input_frames count, and the mask is ignored (the caller fills the history).
    changed = history.clone()
    changed[:, :40] = 7.0
    mask = torch.zeros(2, 50, dtype=torch.bool)
    torch.testing.assert_close(model(changed, mask), out)
    assert STSGCN(num_joints=18).eval()(smooth_motion(2, 10, joints=18)).shape == (2, 25, 18, 3)
    with pytest.raises(ValueError, match="at least 10"):
        model(history[:, :9])


def test_parameter_count_matches_official_h36m_3d() -> None:
    """The official Human3.6M 3D model (input_n=10, output_n=25, 22 joints) prints 57,531 parameters
    (the paper's "57.5k"). Breakdown, from the official model.py:"""
    T, V = 10, 22
    gcn = T * V * V + V * T * T  # A and T of one layer

    def st_gcnn(c_in: int, c_out: int) -> int:  # gcn + conv1x1/BN + residual conv1x1/BN + PReLU
        return gcn + (c_in * c_out + c_out) + 2 * c_out + (c_in * c_out + c_out) + 2 * c_out + 1

    def txcnn(c_in: int, c_out: int) -> int:  # conv3x3 + BN + PReLU
        return c_in * c_out * 9 + c_out + 2 * c_out + 1

    expected = st_gcnn(3, 64) + st_gcnn(64, 32) + st_gcnn(32, 64) + st_gcnn(64, 3) + txcnn(10, 25) + 3 * txcnn(25, 25)
    count = sum(p.numel() for p in STSGCN().parameters())
    print(f"STS-GCN parameters: {count} (official H36M 3D, output_n=25: 57531)")
    assert count == expected == 57531


def test_gradient_reaches_both_adjacencies() -> None:
    torch.manual_seed(0)
    model = STSGCN()
    motion = smooth_motion(4, 35)
    model.loss(motion[:, :10], motion[:, 10:]).backward()
    for layer in model.st_gcnns:
        assert layer.gcn.A.grad is not None and layer.gcn.A.grad.abs().sum() > 0
        assert layer.gcn.T.grad is not None and layer.gcn.T.grad.abs().sum() > 0


def test_loss_is_mpjpe_in_mm_and_decreases() -> None:
    torch.manual_seed(0)
    model = STSGCN()
    motion = smooth_motion(8, 35)
    history, future = motion[:, :10], motion[:, 10:]
    model.eval()
    with torch.no_grad():
        mpjpe_m = (model(history) - future).norm(dim=-1).mean()
        torch.testing.assert_close(model.loss(history, future), mpjpe_m * 1000)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        loss = model.loss(history, future)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
