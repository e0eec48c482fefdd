"""The pieces of each uncertainty method against closed forms and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from bev_uncertainty.data.grid import BEVGrid
from bev_uncertainty.methods.aleatoric import AleatoricLogits
from bev_uncertainty.methods.base import BEVSegmentation, binary_entropy
from bev_uncertainty.methods.evidential import Evidential, dirichlet_entropy, kl_dirichlet
from bev_uncertainty.methods.geometry import GeometryEvidential
from bev_uncertainty.methods.kendall import KendallWeighting
from bev_uncertainty.methods.mc_dropout import MCDropout
from bev_uncertainty.methods.temperature import fit_temperature
from bev_uncertainty.models.lss import LiftSplat

GRID = BEVGrid(-8.0, 8.0, -8.0, 8.0, 1.0)


def net(**kwargs) -> LiftSplat:
    model = LiftSplat(pretrained=False, context_channels=8, bev_channels=8, **kwargs)
    model.set_geometry(GRID, (32, 88))
    return model


def batch_of(target: torch.Tensor) -> dict:
    """A batch with only the BEV fields: (B, H, W) vehicle target, all valid, no OOD, pedestrians nowhere."""
    bev = torch.zeros(target.shape[0], 3, *target.shape[1:])
    bev[:, 0] = target
    return {"bev": bev, "valid": torch.ones_like(target, dtype=torch.bool)}


def test_binary_entropy_values():
    assert binary_entropy(torch.tensor(0.5)).item() == pytest.approx(math.log(2))
    assert binary_entropy(torch.tensor(0.1)).item() == pytest.approx(-(0.1 * math.log(0.1) + 0.9 * math.log(0.9)))


def test_baseline_loss_is_lss_weighted_cross_entropy():
    module = BEVSegmentation(net(), pos_weight=2.0)
    logits = torch.randn(1, 2, 2, 2)
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    batch = batch_of(target)
    batch["valid"][0, 0, 1] = False  # one background cell ignored
    per_cell = -logits.log_softmax(1).gather(1, target.long()[:, None])[:, 0]
    # torch's weighted cross-entropy with reduction="none" multiplies each cell by its class weight:
    expected = (2 * per_cell[0, 0, 0] + per_cell[0, 1, 0] + 2 * per_cell[0, 1, 1]) / 3
    assert module.segmentation_loss({"logits": logits}, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_aleatoric_loss_reduces_to_cross_entropy_without_variance():
    module = AleatoricLogits(net(out_channels=4), samples=5, pos_weight=1.0)
    logits = torch.cat([torch.randn(2, 2, 3, 3), torch.full((2, 2, 3, 3), -10.0)], 1)  # variance e^-10
    target = (torch.rand(2, 3, 3) > 0.5).float()
    expected = F.cross_entropy(logits[:, :2], target.long())
    assert module.segmentation_loss({"logits": logits}, batch_of(target)).item() == pytest.approx(expected.item(),
                                                                                                    rel=1e-3)


def test_aleatoric_variance_softens_the_prediction():
    module = AleatoricLogits(net(out_channels=4), samples=2000)
    mean = torch.tensor([0.0, 3.0]).view(1, 2, 1, 1)
    sharp = module.sample_logits(torch.cat([mean, torch.full_like(mean, -10)], 1)).softmax(2)[:, :, 1].mean()
    noisy = module.sample_logits(torch.cat([mean, torch.full_like(mean, 4.0)], 1)).softmax(2)[:, :, 1].mean()
    assert sharp.item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), abs=1e-3)
    assert noisy < sharp - 0.05


def test_aleatoric_requires_four_outputs():
    with pytest.raises(ValueError, match="out_channels: 4"):
        AleatoricLogits(net())


def test_dirichlet_entropy_and_kl_match_torch_distributions():
    alpha = torch.rand(5, 2, 3) * 5 + 0.5
    expected = Dirichlet(alpha.movedim(1, -1)).entropy()
    assert torch.allclose(dirichlet_entropy(alpha), expected, atol=1e-5)
    flat = Dirichlet(torch.ones(5, 3, 2))
    expected_kl = kl_divergence(Dirichlet(alpha.movedim(1, -1)), flat)
    assert torch.allclose(kl_dirichlet(alpha, torch.ones(1, 2, 1)), expected_kl, atol=1e-5)
    beta = torch.tensor([1.96, 0.04]).view(1, 2, 1)
    expected_kl = kl_divergence(Dirichlet(alpha.movedim(1, -1)), Dirichlet(beta.movedim(1, -1).expand(5, 3, 2)))
    assert torch.allclose(kl_dirichlet(alpha, beta), expected_kl, atol=1e-4)


def test_uce_loss_hand_case():
    """alpha = (1 + softplus(z)); with z chosen so alpha = (1, 3): UCE of class 1 = psi(4) - psi(3) = 1/3."""
    module = Evidential(net(), entropy_weight=0.0, pos_weight=1.0)
    z_for_2 = math.log(math.exp(2.0) - 1)  # softplus^-1(2)
    logits = torch.tensor([-30.0, z_for_2]).view(1, 2, 1, 1)
    loss = module.segmentation_loss({"logits": logits}, batch_of(torch.ones(1, 1, 1)))
    assert loss.item() == pytest.approx(1 / 3, rel=1e-4)
    scores = module.scores(module.alpha({"logits": logits}))
    assert scores["prob"].item() == pytest.approx(0.75, rel=1e-4)
    assert scores["ood_score"].item() == pytest.approx(0.5, rel=1e-4)  # vacuity K / S = 2 / 4


def test_evidential_ood_regulariser_acts_on_pseudo_ood_cells_only():
    module = Evidential(net(), entropy_weight=0.0, ood_weight=1.0)
    logits = torch.full((1, 2, 1, 2), 3.0)
    batch = batch_of(torch.zeros(1, 1, 2))
    without = module.segmentation_loss({"logits": logits}, batch)
    batch["bev"][0, 1, 0, 1] = 1  # a pedestrian cell
    with_ped = module.segmentation_loss({"logits": logits}, batch)
    alpha = F.softplus(torch.tensor([3.0, 3.0])) + 1
    kl = kl_dirichlet(alpha[None], torch.ones(1, 2)).item()
    assert (with_ped - without).item() == pytest.approx(kl, rel=1e-4)


def test_class_prior_predicts_the_base_rate_without_evidence():
    module = Evidential(net(), vehicle_prior=0.02)
    alpha = module.alpha({"logits": torch.full((1, 2, 1, 1), -40.0)})  # softplus(-40) ~ 0: no evidence
    scores = module.scores(alpha)
    assert scores["prob"].item() == pytest.approx(0.02, rel=1e-4)
    assert scores["ood_score"].item() == pytest.approx(1.0, rel=1e-4)  # vacuity K / S: nothing seen
    with pytest.raises(ValueError, match="vehicle_prior"):
        Evidential(net(), vehicle_prior=1.5)


def test_geometry_gate_removes_evidence_where_no_ray_reaches():
    module = GeometryEvidential(net(observation_channels=True), window=1, tau=1.0, gamma=1.0)
    logits = torch.full((1, 2, 1, 3), 5.0)
    out = {"logits": logits, "reach": torch.tensor([[[0.0, 3.0, 3.0]]]),
           "ambiguity": torch.tensor([[[0.0, 0.0, 0.5]]])}
    alpha = module.alpha(out)
    evidence = F.softplus(torch.tensor(5.0)).item()
    gate = 1 - math.exp(-3.0)
    assert alpha[0, :, 0, 0].tolist() == pytest.approx([1.0, 1.0])  # unobserved: the prior only, vacuity 1
    assert alpha[0, 1, 0, 1].item() == pytest.approx(1 + evidence * gate, rel=1e-5)
    assert alpha[0, 1, 0, 2].item() == pytest.approx(1 + evidence * gate * 0.5, rel=1e-5)
    assert module.scores(alpha)["ood_score"][0, 0, 0].item() == pytest.approx(1.0)


def test_geometry_scores_separate_unseen_from_ambiguous():
    module = GeometryEvidential(net(observation_channels=True), window=1, gamma=0.0, vehicle_prior=0.02)
    module.forward = lambda batch: batch  # the network's outputs given directly
    # Cell 0: not reached by any ray, confident head. Cell 1: seen, confident. Cell 2: seen, no evidence.
    out = {"logits": torch.tensor([[[[20.0, 20.0, -40.0]], [[-40.0, -40.0, -40.0]]]]),
           "reach": torch.tensor([[[0.0, 50.0, 50.0]]]), "ambiguity": torch.zeros(1, 1, 3)}
    scores = module.predict(out)
    assert scores["unseen_score"][0, 0].tolist() == pytest.approx([1.0, 2 / 22, 1.0], rel=1e-3)
    assert scores["prob"][0, 0].tolist() == pytest.approx([0.02, 0.04 / 22, 0.02], rel=1e-3)
    assert torch.equal(scores["ood_score"], scores["uncertainty"])
    assert scores["ood_score"][0, 0, 0].item() == pytest.approx(binary_entropy(torch.tensor(0.02)).item(), rel=1e-3)
    # The OOD candidates compared on the validation split: the ungated vacuity ignores what the rays saw, the gate
    # times it is high only where a cell was seen and still got no evidence (cell 2).
    candidates = scores["ood_candidates"]
    assert torch.equal(candidates["gated_vacuity"], scores["unseen_score"])
    assert candidates["vacuity"][0, 0].tolist() == pytest.approx([2 / 22, 2 / 22, 1.0], rel=1e-3)
    assert candidates["gate_x_vacuity"][0, 0].tolist() == pytest.approx([0.0, 2 / 22, 1.0], rel=1e-3, abs=1e-6)
    module.ood_score = "gate_x_vacuity"
    assert torch.equal(module.predict(out)["ood_score"], candidates["gate_x_vacuity"])
    with pytest.raises(ValueError, match="ood_score must be one of"):
        GeometryEvidential(net(observation_channels=True), ood_score="mutual_information")


def test_geometry_needs_observation_channels():
    with pytest.raises(ValueError, match="observation_channels"):
        GeometryEvidential(net())


def test_reach_falls_behind_a_confident_surface():
    """The splatted reach of cells behind the depth mode is ~0, in front ~1 ray per point."""
    model = net(observation_channels=True)
    depth = torch.zeros(model.depth_bins)
    depth[10] = 1.0
    prob = depth.view(1, 1, -1, 1, 1)
    reach = 1 - (prob.cumsum(2) - prob)
    assert reach[0, 0, :11, 0, 0].tolist() == [1.0] * 11 and reach[0, 0, 11:, 0, 0].abs().max() == 0


def test_kendall_weighting_loss_and_optimum():
    module = KendallWeighting(net())
    seg, depth = torch.tensor(0.4), torch.tensor(2.0)
    assert module.combine_losses(seg, depth).item() == pytest.approx(2.4)  # s = 0: plain sum
    # d/ds [exp(-s) L + s/2] = 0 at s = log(2 L): minimise over s and check.
    optimizer = torch.optim.Adam([module.log_var], lr=0.05)
    for _ in range(2000):
        optimizer.zero_grad()
        module.combine_losses(seg, depth).backward()
        optimizer.step()
    assert module.log_var.tolist() == pytest.approx([math.log(0.8), math.log(4.0)], abs=1e-2)


def test_temperature_recovers_the_generating_temperature():
    torch.manual_seed(0)
    true_logits = torch.randn(20000, 2) * 2
    targets = torch.distributions.Categorical(logits=true_logits).sample()
    assert fit_temperature(true_logits * 3, targets) == pytest.approx(3.0, rel=0.05)


def test_mc_dropout_needs_dropout_and_varies():
    with pytest.raises(ValueError, match="dropout"):
        MCDropout(net())
    module = MCDropout(net(dropout=0.5), samples=4).eval()
    generator = torch.Generator().manual_seed(0)
    batch = {"images": torch.rand(1, 6, 3, 32, 88, generator=generator), "intrinsics": torch.tensor(
        [[40.0, 0, 44], [0, 40.0, 16], [0, 0, 1]]).expand(1, 6, 3, 3), "cam_to_ego": torch.eye(4).expand(1, 6, 4, 4)}
    with torch.no_grad():
        pred = module.predict(batch)
    assert (pred["ood_score"] >= -1e-6).all() and pred["ood_score"].max() > 0  # mutual information
    assert not module.model.bev_encoder.training  # dropout switched back off
