"""The defenses' pieces against hand-derived or brute-force behaviour."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adversarial_defense.defenses import (
    PGDAT,
    SAT,
    TRADES,
    FastAT,
    InputTransform,
    Standard,
    bit_depth,
    jpeg,
    median_filter,
    sinkhorn_divergence,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def test_sinkhorn_divergence_is_zero_on_identical_clouds_and_grows_with_a_shift():
    torch.manual_seed(0)
    a = torch.randn(16, 5)
    assert abs(float(sinkhorn_divergence(a, a.clone()))) < 1e-4
    near, far = float(sinkhorn_divergence(a, a + 0.5)), float(sinkhorn_divergence(a, a + 2.0))
    assert 0 < near < far
    # a translation by t is the optimal plan, of squared cost |t|^2 = 4 x 5: the divergence nears it for a small
    # blur (at blur 0.01 the reference's stopping rule, potentials moving < 0.1, stops it short of convergence)
    assert abs(float(sinkhorn_divergence(a, a + 2.0, blur=0.1, max_iter=200)) - 4 * 5) < 0.5


def test_bit_depth_rounds_to_the_levels_and_masks_the_gradient():
    x = torch.tensor([0.0, 0.1, 0.49, 0.51, 1.0], requires_grad=True)
    out = bit_depth(x, bits=1)
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    assert torch.all(x.grad == 0)  # the gradient masking BPDA removes


def test_median_filter_matches_a_brute_force_median():
    torch.manual_seed(0)
    x = torch.rand(1, 2, 6, 5)
    out = median_filter(x, 3)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    for c in range(2):
        for i in range(6):
            for j in range(5):
                window = torch.from_numpy(padded[0, c, i:i + 3, j:j + 3].copy()).flatten()
                assert torch.isclose(out[0, c, i, j], window.median())


def test_jpeg_is_a_lossy_round_trip_in_range():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    out = jpeg(x, quality=50)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert 0 < (out - x).abs().mean() < 0.3


def test_bpda_gives_the_gradient_that_the_naive_model_lacks():
    model = _model().eval()
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    defense = InputTransform("bit_depth", bits=3)
    for bpda, expect_zero in ((False, True), (True, False)):
        z = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(defense.wrap(model, bpda=bpda)(z), y), z)
        assert bool((grad == 0).all()) == expect_zero


def test_bpda_model_outputs_what_the_transformed_input_gives():
    model = _model().eval()
    x = torch.rand(2, 3, 8, 8)
    defense = InputTransform("median", size=3)
    assert torch.allclose(defense.wrap(model)(x), model(median_filter(x, 3)), atol=1e-6)


def test_every_training_objective_gives_a_finite_loss_and_leaves_the_model_in_train_mode():
    model = _model().train()
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    for defense in (Standard(), PGDAT(steps=2), TRADES(steps=2), FastAT(), SAT(steps=2),
                    InputTransform("jpeg", quality=[60, 90])):
        loss, logs = defense.loss(model, x, y)
        loss.backward()
        assert torch.isfinite(loss) and model.training and model[1].training, type(defense).__name__


def test_trades_examples_stay_in_the_eps_ball_and_image_range():
    model = _model()
    x = torch.rand(4, 3, 8, 8)
    adv = TRADES(eps=8, steps=5).adversarial(model, x)
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_the_eps_schedule_starts_clean_then_ramps(monkeypatch):
    """clean_epochs of clean training, then eps grows linearly over eps_warmup_epochs (values the defense sees)."""
    from types import SimpleNamespace

    from adversarial_defense.classifier import ClassifierModule

    seen = []

    class Spy(PGDAT):
        def loss(self, model, x, y):
            seen.append(self.eps_scale)
            return super().loss(model, x, y)

    module = ClassifierModule(defense=Spy(steps=1), num_classes=3, width=4, clean_epochs=1, eps_warmup_epochs=2)
    monkeypatch.setattr(ClassifierModule, "trainer", SimpleNamespace(num_training_batches=4), raising=False)
    monkeypatch.setattr(ClassifierModule, "log", lambda *args, **kwargs: None)
    for step in range(14):
        monkeypatch.setattr(ClassifierModule, "global_step", step, raising=False)
        module.training_step((torch.rand(2, 3, 8, 8), torch.tensor([0, 1])), step)
    assert seen == [0, 0, 0, 0, 0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1, 1]
    assert module.defense.eps_scale == 1  # outside training steps the defense is at full strength
