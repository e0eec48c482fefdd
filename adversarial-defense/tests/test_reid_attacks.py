"""Metric attacks on a tiny embedding network: the push moves a query away from its matches, the pull towards
another identity, both under the conventions of every attack; the distance and step rule on hand cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adversarial_defense.attacks._common import EpsUnitError
from adversarial_defense.attacks.reid import embedding_distance, kurakin_steps, reid_pull, reid_push

EPS = 8 / 255



def embedder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(16, 12))


@pytest.fixture
def model() -> nn.Module:
    return embedder().eval()


@pytest.fixture
def queries() -> torch.Tensor:
    return torch.rand(4, 3, 32, 16, generator=torch.Generator().manual_seed(1))


def test_push_moves_queries_away_from_their_own_embedding_and_their_matches(model: nn.Module, queries: torch.Tensor):
    views = (queries + 0.05 * torch.randn(2, *queries.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    with torch.no_grad():
        own = model(queries)
        matches = model(views.flatten(0, 1)).unflatten(0, (2, 4)).transpose(0, 1)  # (B, M = 2, D): 2 views each
    for anchors, reference in ((None, own), (matches, matches)):
        adv = reid_push(model, queries, anchors, eps=EPS, alpha=1 / 255, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            before, after = embedding_distance(model(queries), reference), embedding_distance(model(adv), reference)
        assert (after > before).all()


def test_pull_moves_queries_towards_another_identity(model: nn.Module, queries: torch.Tensor):
    others = torch.rand(3, 3, 32, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        targets = [model(others[:1]), model(others[1:]), model(others[:2]), model(others[2:])]  # 1 or 2 each
    adv = reid_pull(model, queries, targets, eps=EPS, alpha=1 / 255)
    with torch.no_grad():
        before, after = embedding_distance(model(queries), targets), embedding_distance(model(adv), targets)
    assert (after < before).all()


@pytest.mark.parametrize("attack", ["push", "pull"])
def test_conventions(queries: torch.Tensor, attack: str):
    model = embedder().train()
    model[1].eval()  # a BatchNorm frozen on purpose stays frozen
    modes = [m.training for m in model.modules()]
    x = queries.clone()
    with torch.inference_mode():  # as in a Lightning test step
        if attack == "push":
            adv = reid_push(model, x, eps=EPS, alpha=2 / 255, steps=3)
        else:
            adv = reid_pull(model, x, torch.randn(4, 12), eps=EPS, alpha=2 / 255, steps=3)
    assert torch.equal(x, queries) and not adv.requires_grad and adv.shape == x.shape and adv.dtype == x.dtype
    assert (adv - x).abs().max() <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1 and not torch.equal(adv, x)
    assert [m.training for m in model.modules()] == modes


def test_distance_and_step_rule_by_hand():
    # (3, 4) and (0, 2) normalise to (0.6, 0.8) and (0, 1): mean squared difference (0.36 + 0.04) / 2 = 0.2;
    # against its own direction, 0.
    e = torch.tensor([[3.0, 4.0]])
    assert math.isclose(embedding_distance(e, torch.tensor([[0.0, 2.0]])).item(), 0.2, rel_tol=1e-6)
    assert math.isclose(embedding_distance(e, [torch.tensor([[0.0, 2.0], [6.0, 8.0]])]).item(), 0.2, rel_tol=1e-6)
    # Kurakin's rule, eps in 1/255 units: min(eps + 4, 1.25 eps).
    assert [kurakin_steps(e / 255) for e in (1, 4, 5, 8, 16, 20)] == [1, 5, 6, 10, 20, 24]


def test_bad_arguments_are_refused(model: nn.Module, queries: torch.Tensor):
    with pytest.raises(EpsUnitError):
        reid_push(model, queries, eps=8)
    with pytest.raises(ValueError, match="3 entries for 4 images"):
        reid_pull(model, queries, torch.randn(3, 12))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        reid_push(model, queries * 255)
