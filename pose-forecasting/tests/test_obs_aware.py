"""The observation-aware forecaster: siMLPe inside, shapes, start as zero velocity, blindness to missing frames,
variance propagation over the roll-out, training."""

from __future__ import annotations

import math

import torch
from torch import nn

from pose_forecasting.data.masking import staleness, training_mask
from pose_forecasting.models.obs_aware import ObservationAwareMLP
from pose_forecasting.models.simlpe import SiMLPe


def smooth_motion(batch: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """Sinusoids per coordinate (0.1 m amplitude, 0.3-1 Hz at 25 fps) around a random pose."""
    pose = 0.3 * torch.randn(batch, 1, 22, 3, generator=generator)
    freq = 0.3 + 0.7 * torch.rand(batch, 1, 22, 3, generator=generator)
    phase = 2 * math.pi * torch.rand(batch, 1, 22, 3, generator=generator)
    t = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1) / 25
    return pose + 0.1 * torch.sin(2 * math.pi * freq * t + phase)


def test_shapes_and_positive_sigma() -> None:
    model = ObservationAwareMLP(num_blocks=2)
    history = torch.randn(3, 60, 22, 3)  # longer than input_frames: the last 50 are used
    mask = training_mask(3, 60, max_missing=0.5, max_tail=10)
    mean, sigma = model.forward_with_uncertainty(history, mask)
    assert mean.shape == (3, 25, 22, 3) and sigma.shape == (3, 25, 22)
    assert (sigma > 0).all()
    assert torch.equal(model(history, mask), mean)
    assert torch.equal(model(history), model(history, torch.ones(3, 60, dtype=torch.bool)))


def test_zero_heads_give_last_observed_frame() -> None:
    model = ObservationAwareMLP(num_blocks=2, num_joints=18)
    nn.init.zeros_(model.motion_fc_out.weight)
    nn.init.zeros_(model.motion_fc_out.bias)
    history = torch.randn(2, 50, 18, 3)
    assert torch.equal(model(history), history[:, -1:].expand(-1, 25, -1, -1))
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[:, 42:] = False
    assert torch.equal(model(history, mask), history[:, 41:42].expand(-1, 25, -1, -1))


def test_output_ignores_values_of_missing_frames() -> None:
    torch.manual_seed(0)
    model = ObservationAwareMLP(num_blocks=2)
    for p in model.parameters():  # away from the near-identity init, so every input matters
        nn.init.normal_(p, std=0.1)
    history = torch.randn(2, 50, 22, 3)
    mask = torch.rand(2, 50) > 0.3
    mask[:, 44:] = False
    mask[:, 0] = True
    changed = history.clone()
    changed[~mask] = torch.randn_like(changed[~mask])
    out = model(history, mask)
    assert torch.equal(model(changed, mask), out)
    # Control: an observed frame (frame 0) does change the forecast.
    changed[:, 0] += 0.1
    assert not torch.allclose(model(changed, mask), out)


def test_loss_decreases_with_random_masks() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    motion = smooth_motion(8, 75, generator)
    history, future = motion[:, :50], motion[:, 50:]
    model = ObservationAwareMLP(num_blocks=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(30):
        loss = model.loss(history, future, training_mask(8, 50, max_missing=0.5, max_tail=10))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5]) - 5 * 0.1, losses


def test_fully_observed_with_mask_inputs_off_is_simlpe() -> None:
    """With every frame observed the missing/staleness channels are 0: the model is siMLPe (same weights)."""
    torch.manual_seed(0)
    simlpe = SiMLPe(num_blocks=3)
    for p in simlpe.parameters():
        nn.init.normal_(p, std=0.05)
    nn.init.zeros_(simlpe.motion_fc_out.bias)  # siMLPe adds it before the inverse DCT, this model after
    model = ObservationAwareMLP(num_blocks=3)
    state = simlpe.state_dict()
    state["motion_fc_in.weight"] = torch.cat([state["motion_fc_in.weight"], torch.randn(66, 2)], dim=1)
    state.update({k: v for k, v in model.state_dict().items() if k.startswith("log_sigma")})
    model.load_state_dict(state)
    history = 0.3 * torch.randn(2, 50, 22, 3)
    torch.testing.assert_close(model(history), simlpe(history), atol=1e-6, rtol=0)


def test_staleness_in_seconds() -> None:
    mask = torch.tensor([[False, True, True, False, False, True, False]])
    expected = torch.tensor([[1, 0, 0, 1, 2, 0, 1]]) / 25
    torch.testing.assert_close(staleness(mask, 25.0), expected)


def test_variance_adds_up_over_the_roll_out() -> None:
    """Each roll-out step's variance adds to that of its anchor (the previous step's last frame)."""
    model = ObservationAwareMLP(num_blocks=2)
    nn.init.zeros_(model.log_sigma_fc_out[-1].weight)
    _, sigma = model.forward_with_uncertainty(torch.randn(2, 50, 22, 3))
    for frames, steps in ((slice(0, 10), 1), (slice(10, 20), 2), (slice(20, 25), 3)):
        torch.testing.assert_close(sigma[:, frames], torch.full_like(sigma[:, frames], 0.1 * math.sqrt(steps)))
