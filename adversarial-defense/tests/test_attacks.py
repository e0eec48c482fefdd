"""Image-classification attacks (adversarial_defense.attacks.classification) on tiny models and 3x8x8 images."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adversarial_defense.attacks._common import EpsUnitError
from adversarial_defense.attacks.classification import (
    APGD,
    CW,
    FGSM,
    PGD,
    DeepFool,
    adversarial_patch,
    apgd_ce,
    apply_patch,
    apply_universal,
    cw_l2,
    deepfool,
    fgsm,
    fooling_rate,
    non_printability_score,
    pgd,
    total_variation,
    universal_perturbation,
)

EPS = 8 / 255



class ModeProbe(nn.Module):
    """Identity that records whether it ran in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training)
        return x


class TinyCNN(nn.Module):
    def __init__(self, n_classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.probe = ModeProbe()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Linear(6 * 4 * 4, n_classes)
        bn = self.features[1]
        bn.running_mean.uniform_(-0.2, 0.2)  # non-trivial eval-mode statistics
        bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.probe(x)).flatten(1))


def linear_model(n_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, n_classes))


def images(n: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def predictions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x).argmax(1)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == y).float().mean().item()


# Every attack as (model, x, y) -> x_adv, at sizes that keep the suite fast.
ATTACKS = {
    "fgsm": lambda m, x, y: fgsm(m, x, y, EPS),
    "pgd_linf": lambda m, x, y: pgd(m, x, y, EPS, 2 / 255, 5),
    "pgd_l2": lambda m, x, y: pgd(m, x, y, 0.5, 0.1, 5, norm="l2"),
    "cw": lambda m, x, y: cw_l2(m, x, y, c=5.0, steps=20, lr=0.05),
    "deepfool": lambda m, x, y: deepfool(m, x, y, steps=10),
    "apgd": lambda m, x, y: apgd_ce(m, x, y, EPS, steps=5),
    "uap": lambda m, x, y: apply_universal(x, universal_perturbation(m, [(x, y)], EPS, max_passes=1)),
    "patch": lambda m, x, y: apply_patch(x, adversarial_patch(m, [(x, y)], 0, 4, steps=2, lr=0.05), (2, 2)),
}


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return train_tiny_cnn()


def train_tiny_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A TinyCNN trained (about a second) on 4 classes of noisy colour prototypes; held-out images and labels."""
    g = torch.Generator().manual_seed(0)
    prototypes = torch.rand(4, 3, 8, 8, generator=g)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 4, (n,), generator=g)
        return (0.35 * prototypes[y] + 0.65 * torch.rand(n, 3, 8, 8, generator=g)).clamp(0, 1), y

    model = TinyCNN(n_classes=4, seed=0)
    x, y = sample(256)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    x_test, y_test = sample(64)
    assert accuracy(model, x_test, y_test) > 0.9
    return model, x_test, y_test


def test_fgsm_equals_hand_derived_step_on_a_linear_model() -> None:
    """Two-class linear model: grad_x CE = p_other (w_other - w_y) with p_other > 0, so FGSM is
    clamp(x + eps * sign(w_other - w_y)) exactly."""
    model = linear_model(2)
    x = images()
    y = torch.arange(len(x)) % 2
    w = model[1].weight.detach()
    expected = (x + EPS * (w[1 - y] - w[y]).sign().view_as(x)).clamp(0, 1)
    assert torch.equal(fgsm(model, x, y, EPS), expected)


@pytest.mark.parametrize("random_start", [True, False])
@pytest.mark.parametrize("norm, eps, alpha", [("linf", EPS, 2 / 255), ("l2", 0.3, 0.1)])
def test_pgd_stays_in_the_eps_ball_and_the_image_range(norm, eps, alpha, random_start) -> None:
    model = TinyCNN()
    x = images()
    y = predictions(model, x)
    x_adv = pgd(model, x, y, eps, alpha, steps=10, random_start=random_start, norm=norm)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert size.max() > 0.9 * eps  # the attack moved to the boundary of the ball (not a vacuous bound)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(model, x_adv, y) < 1.0


def test_stronger_attack_never_gives_higher_robust_accuracy_on_a_linear_model() -> None:
    """Two-class linear model: the margin change is linear, so the best Linf attack in the box [0, 1] is the
    corner clamp(x + eps * sign(w_other - w_y)) = FGSM, whose robust accuracy is a lower bound for every attack
    of the same eps. PGD (10 steps of 2/255 from any start reach the corner) must attain it, random sign noise
    cannot go below it, and the bound cannot rise with eps (a larger ball holds the smaller one)."""
    model = linear_model(2, seed=3)
    x = images(64)
    y = predictions(model, x)
    g = torch.Generator().manual_seed(0)
    previous = 1.0
    for eps_255 in (1, 2, 4, 8):
        eps = eps_255 / 255
        best = accuracy(model, fgsm(model, x, y, eps), y)
        assert accuracy(model, pgd(model, x, y, eps, 2 / 255, 10, generator=g), y) == best
        noise = (x + eps * (2 * torch.randint(0, 2, x.shape, generator=g) - 1)).clamp(0, 1)
        assert accuracy(model, noise, y) >= best
        assert best <= previous
        previous = best
    assert previous < 1.0  # the sweep reached eps where the attack succeeds


def test_more_apgd_restarts_and_larger_budgets_never_raise_robust_accuracy() -> None:
    """APGD keeps every image that any iterate fooled (keep-best), and with the same seed the first of two
    restarts is the single run itself, so robust accuracy with 2 restarts <= 1 restart <= clean accuracy.
    CW and DeepFool with a Linf budget revert to the clean image beyond it, from the same adversarial
    examples, so their robust accuracy cannot rise with the budget."""
    model = TinyCNN()
    x = images(32)
    y = predictions(model, x)
    one = accuracy(model, apgd_ce(model, x, y, 2 / 255, steps=5, n_restarts=1), y)
    two = accuracy(model, apgd_ce(model, x, y, 2 / 255, steps=5, n_restarts=2), y)
    assert two <= one <= 1.0 and one < 1.0
    for attack in (CW(c=5.0, steps=20, lr=0.05), DeepFool(steps=10)):
        sweep = [accuracy(model, attack.with_eps(e)(model, x, y), y) for e in (0, 1, 2, 4, 8, 16, 64, 255)]
        assert all(a >= b for a, b in zip(sweep, sweep[1:]))
        assert sweep[0] == 1.0 and sweep[-1] == accuracy(model, attack(model, x, y), y) < 1.0


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_inputs_untouched_outputs_detached(name: str) -> None:
    model = TinyCNN().eval()
    x = images().requires_grad_(False)
    y = predictions(model, x)
    x_copy, y_copy = x.clone(), y.clone()
    x_adv = ATTACKS[name](model, x, y)
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.min() >= 0 and x_adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())  # no gradient leaked into the model


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_runs_in_eval_mode_and_restores_each_modules_mode(name: str) -> None:
    model = TinyCNN().train()
    model.head.eval()  # a frozen part stays in eval mode after the attack (torchattacks would switch it on)
    bn = model.features[1]
    stats = {k: v.clone() for k, v in bn.state_dict().items()}
    x = images()
    y = predictions(model, x)
    model.train()
    model.head.eval()
    model.probe.seen.clear()
    ATTACKS[name](model, x, y)
    assert model.probe.seen and not any(model.probe.seen)
    assert model.training and model.features.training and bn.training and not model.head.training
    assert all(torch.equal(v, bn.state_dict()[k]) for k, v in stats.items())


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_use_the_given_labels(name: str) -> None:
    model = TinyCNN().eval()
    x = images()
    y = predictions(model, x)
    torch.manual_seed(0)
    with_true = ATTACKS[name](model, x, y)
    torch.manual_seed(0)
    with_other = ATTACKS[name](model, x, (y + 1) % 5)
    assert not torch.allclose(with_true, with_other)


def test_attacks_run_inside_inference_mode() -> None:
    """Lightning's validation and test steps run under torch.inference_mode."""
    model = TinyCNN().eval()
    with torch.inference_mode():
        x = images()
        y = model(x).argmax(1)
        x_adv = pgd(model, x, y, EPS, 2 / 255, 3)
    assert (x_adv - x).abs().max() > 0


def test_eps_in_wrong_units_refused() -> None:
    model = TinyCNN().eval()
    x = images()
    y = predictions(model, x)
    with pytest.raises(EpsUnitError):
        fgsm(model, x, y, 8)
    with pytest.raises(EpsUnitError):
        pgd(model, x, y, EPS, 2, 3)
    with pytest.raises(EpsUnitError):
        apgd_ce(model, x, y, 8)
    with pytest.raises(EpsUnitError):  # an L2 radius beyond the image cube's diameter sqrt(192)
        pgd(model, x, y, 128, 0.1, 3, norm="l2")
    with pytest.raises(EpsUnitError):
        deepfool(model, x, y, max_eps=4)
    for make in (lambda: FGSM(eps=0.03), lambda: PGD(alpha=0.02), lambda: APGD(eps=0.03), lambda: CW(max_eps=0.05),
                 lambda: DeepFool(max_eps=0.03), lambda: PGD(norm="l2")):
        with pytest.raises(EpsUnitError):
            make()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):  # normalised images given by mistake
        fgsm(model, x * 2 - 1, y, EPS)


def test_config_classes_convert_units_and_sweep_eps() -> None:
    model = TinyCNN().eval()
    x = images()
    y = predictions(model, x)
    assert [a.name for a in (FGSM(), PGD(), CW(), DeepFool(), APGD())] == ["fgsm", "pgd", "cw", "deepfool", "apgd"]
    assert torch.equal(FGSM(eps=4)(model, x, y), fgsm(model, x, y, 4 / 255))
    assert torch.equal(FGSM().with_eps(4)(model, x, y), fgsm(model, x, y, 4 / 255))
    attack = PGD(steps=3, random_start=False).with_eps(4)
    assert (attack.eps, attack.alpha) == (4, 2)
    assert torch.equal(attack(model, x, y), pgd(model, x, y, 4 / 255, 2 / 255, 3, random_start=False))
    l2 = PGD(eps=0.5, alpha=0.2, steps=3, random_start=False, norm="l2")
    assert torch.equal(l2(model, x, y), pgd(model, x, y, 0.5, 0.2, 3, random_start=False, norm="l2"))
    assert torch.equal(APGD(steps=4).with_eps(2)(model, x, y), apgd_ce(model, x, y, 2 / 255, steps=4))
    assert CW().with_eps(8).max_eps == 8 and DeepFool().with_eps(8).max_eps == 8


# --- equality with torchattacks 3.5.1 -------------------------------------------------------------------------

def _torchattacks_cases():
    ta = pytest.importorskip("torchattacks")
    return {
        "fgsm": (lambda m: ta.FGSM(m, eps=EPS), lambda m, x, y: fgsm(m, x, y, EPS)),
        "pgd_linf": (lambda m: ta.PGD(m, eps=EPS, alpha=2 / 255, steps=10),
                     lambda m, x, y: pgd(m, x, y, EPS, 2 / 255, 10)),
        "pgd_linf_no_start": (lambda m: ta.PGD(m, eps=EPS, alpha=2 / 255, steps=10, random_start=False),
                              lambda m, x, y: pgd(m, x, y, EPS, 2 / 255, 10, random_start=False)),
        "pgd_l2": (lambda m: ta.PGDL2(m, eps=0.5, alpha=0.1, steps=10),
                   lambda m, x, y: pgd(m, x, y, 0.5, 0.1, 10, norm="l2")),
        "pgd_l2_no_start": (lambda m: ta.PGDL2(m, eps=0.5, alpha=0.1, steps=10, random_start=False),
                            lambda m, x, y: pgd(m, x, y, 0.5, 0.1, 10, random_start=False, norm="l2")),
        # lr=0.1: the batch cost rises at a checkpoint and both stop early (after 10 of 30 steps).
        "cw": (lambda m: ta.CW(m, c=5.0, kappa=0.1, steps=30, lr=0.1),
               lambda m, x, y: cw_l2(m, x, y, c=5.0, kappa=0.1, steps=30, lr=0.1)),
        "deepfool": (lambda m: ta.DeepFool(m, steps=50, overshoot=0.02), lambda m, x, y: deepfool(m, x, y, 50, 0.02)),
        "apgd": (lambda m: ta.APGD(m, eps=4 / 255, steps=20, n_restarts=2, seed=3),
                 lambda m, x, y: apgd_ce(m, x, y, 4 / 255, steps=20, n_restarts=2, seed=3)),
    }


@pytest.mark.parametrize("name", ["fgsm", "pgd_linf", "pgd_linf_no_start", "pgd_l2", "pgd_l2_no_start", "cw",
                                  "deepfool", "apgd"])
def test_equals_torchattacks(name: str) -> None:
    reference, ours = _torchattacks_cases()[name]
    model = TinyCNN().eval()
    x = images(16)
    y = predictions(model, x)
    torch.manual_seed(7)
    expected = reference(model)(x, y)
    torch.manual_seed(7)
    x_adv = ours(model, x, y)
    assert (x_adv - expected).abs().max() <= 1e-5
    assert accuracy(model, x_adv, y) < 1.0  # a case where the attack does something


# --- universal perturbation and patch -------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["deepfool", "sgd"])
def test_universal_perturbation_fools_more_than_random_noise_of_the_same_norm(trained, method: str) -> None:
    model, x, y = trained
    labels = predictions(model, x)  # the paper's fooling rate: k(x + v) != k(x)
    batches = [(x[:32], labels[:32]), (x[32:], labels[32:])]
    eps = 24 / 255
    delta = universal_perturbation(model, batches, eps, max_passes=4, method=method)
    assert delta.shape == (1, 3, 8, 8) and delta.abs().max() <= eps + 1e-7
    noise = eps * (2 * torch.randint(0, 2, (1, 3, 8, 8), generator=torch.Generator().manual_seed(0)) - 1)
    assert fooling_rate(model, batches, delta) > fooling_rate(model, batches, noise) + 0.2


def test_apply_patch_puts_the_patch_where_it_says() -> None:
    x = images(2, seed=2)
    patch = torch.rand(3, 3, 3, generator=torch.Generator().manual_seed(3))
    out = apply_patch(x, patch, (1, 4))
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[1:4, 4:7] = True
    assert torch.allclose(out[:, :, 1:4, 4:7], patch.expand(2, -1, -1, -1), atol=1e-5)
    assert torch.allclose(out[:, :, ~inside], x[:, :, ~inside], atol=1e-5)
    # Per image positions, a 90-degree turn (counter-clockwise as displayed) and a doubled size.
    out = apply_patch(x, patch, torch.tensor([[0.0, 0.0], [5.0, 2.0]]), angle=torch.tensor([90.0, 0.0]))
    assert torch.allclose(out[0, :, 0:3, 0:3], torch.rot90(patch, 1, dims=(1, 2)), atol=1e-5)
    assert torch.allclose(out[1, :, 5:8, 2:5], patch, atol=1e-5)
    big = apply_patch(x, torch.ones(3, 2, 2), (2, 2), scale=2.0)
    assert torch.allclose(big[:, :, 2:6, 2:6], torch.ones(2, 3, 4, 4), atol=1e-5)
    assert torch.allclose(big[:, :, :2], x[:, :, :2], atol=1e-5) and torch.allclose(big[:, :, 6:], x[:, :, 6:])


def test_adversarial_patch_stays_in_range_and_raises_the_target_rate(trained) -> None:
    model, x, y = trained
    target = 2
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]
    patch = adversarial_patch(model, batches, target, patch_size=4, steps=40, lr=0.1,
                              generator=torch.Generator().manual_seed(0))
    assert patch.shape == (3, 4, 4) and patch.min() >= 0 and patch.max() <= 1
    others = x[y != target]
    random_patch = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1))

    def target_rate(p: torch.Tensor) -> float:
        return (predictions(model, apply_patch(others, p, (2, 2))) == target).float().mean().item()

    assert target_rate(patch) > target_rate(random_patch) + 0.3


def test_printability_and_total_variation_by_hand() -> None:
    palette = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    black = torch.zeros(3, 2, 2)
    assert non_printability_score(black, palette) < 1e-5  # a printable colour: one factor is zero
    grey = torch.full((3, 2, 2), 0.5)
    assert non_printability_score(grey, palette).item() == pytest.approx(0.75, rel=1e-5)  # sqrt(.75)^2
    ramp = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).expand(3, 2, 2)  # one pixel pair per channel differs by 1
    assert total_variation(ramp).item() == pytest.approx(1.0, rel=1e-5)
    assert total_variation(grey) < 1e-5
    assert math.isfinite(total_variation(torch.rand(3, 4, 4)).item())
