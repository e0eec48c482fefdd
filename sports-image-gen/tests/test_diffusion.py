"""The diffusion targets and loss weights against their definitions."""

from __future__ import annotations

import pytest
import torch

from sports_image_gen.methods.diffusion import ConditionalDiffusion


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_snr_gamma_weights_are_x0_errors_capped_at_gamma(kind):
    """Weighted MSE on the target == min(SNR + 1, gamma) x the MSE of the clean image it implies, per sample."""
    torch.manual_seed(0)
    gamma = 4.0
    model = ConditionalDiffusion(concat=["camera"], prediction_type=kind, snr_gamma=gamma)
    x0, noise = torch.randn(6, 3, 4, 5), torch.randn(6, 3, 4, 5)
    t = torch.tensor([0, 20, 100, 300, 700, 999])
    x_t = model.ddpm.add_noise(x0, noise, t)
    pred = torch.randn_like(x0)  # any prediction
    abar = model.ddpm.alphas_cumprod[t][:, None, None, None]
    weighted = model._loss_weight(t) * (pred - model._target(x0, noise, t)).square().flatten(1).mean(1)
    x0_error = (model._x0(x_t, pred, abar) - x0).square().flatten(1).mean(1)
    snr = abar.flatten() / (1 - abar.flatten())
    torch.testing.assert_close(weighted, (snr + 1).clamp(max=gamma) * x0_error, rtol=1e-4, atol=1e-5)
    # the cap binds at t = 0 and 20 (SNR > 3) and not at the noisiest steps, which keep weight 1 in x_0 space
    assert (snr[:2] + 1 > gamma).all() and (snr[-2:] + 1 < 1.1).all()


def test_without_snr_gamma_the_loss_is_the_plain_mse():
    model = ConditionalDiffusion(concat=["camera"])
    assert torch.equal(model._loss_weight(torch.tensor([0, 500, 999])), torch.ones(3))
    with pytest.raises(ValueError, match="snr_gamma"):
        ConditionalDiffusion(concat=["camera"], snr_gamma=0.0)
