"""Zero and constant velocity against hand-computed forecasts."""

from __future__ import annotations

import torch

from pose_forecasting.models.baselines import ConstantVelocity, ZeroVelocity


def test_zero_velocity_repeats_last_frame() -> None:
    history = torch.randn(2, 50, 22, 3)
    out = ZeroVelocity()(history)
    assert out.shape == (2, 25, 22, 3)
    assert torch.equal(out, history[:, -1:].expand(-1, 25, -1, -1))
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[0, 45:] = False
    out = ZeroVelocity(output_frames=3)(history, mask)
    assert torch.equal(out[0], history[0, 44].expand(3, 22, 3))
    assert torch.equal(out[1], history[1, 49].expand(3, 22, 3))


def test_constant_velocity_hand_computed() -> None:
    # One joint, one coordinate: frames 0..4 = [0, 0, 1, 5, 9].
    history = torch.tensor([0.0, 0.0, 1.0, 5.0, 9.0]).view(1, 5, 1, 1)
    model = ConstantVelocity(output_frames=2)
    # Last two frames: 9 + k * 4 at frames 5, 6.
    assert model(history).flatten().tolist() == [13.0, 17.0]
    # Frames 3, 4 missing: last observed 1 at frame 2, velocity (1 - 0) / 1; frames 5, 6 are 3 and 4 steps on.
    mask = torch.tensor([[True, True, True, False, False]])
    assert model(history, mask).flatten().tolist() == [4.0, 5.0]
    # Observed at frames 0 and 3 only: velocity (5 - 0) / 3 from frame 3.
    mask = torch.tensor([[True, False, False, True, False]])
    torch.testing.assert_close(model(history, mask).flatten(), torch.tensor([5 + 2 * 5 / 3, 5 + 3 * 5 / 3]))


def test_constant_velocity_extrapolates_linear_motion_exactly() -> None:
    torch.manual_seed(0)
    start, velocity = torch.randn(3, 1, 22, 3), 0.01 * torch.randn(3, 1, 22, 3)
    t = torch.arange(75, dtype=torch.float64).view(1, 75, 1, 1)
    motion = (start.double() + t * velocity.double())
    history, future = motion[:, :50].clone(), motion[:, 50:]
    torch.testing.assert_close(ConstantVelocity()(history), future)
    # Gaps and a missing tail; the missing frames hold garbage that must not be used.
    mask = torch.rand(3, 50) > 0.4
    mask[:, 0] = True
    mask[:, 10] = True
    mask[0, 40:] = False
    history[~mask] = 1e3
    torch.testing.assert_close(ConstantVelocity()(history, mask), future)


def test_constant_velocity_with_one_observed_frame_holds_it() -> None:
    history = torch.randn(1, 6, 22, 3)
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[0, 2] = True
    out = ConstantVelocity(output_frames=4)(history, mask)
    assert torch.equal(out, history[:, 2:3].expand(-1, 4, -1, -1))
