"""The Gaussian model: spherical harmonics, initialisation, densification with the optimiser's state, learning
rates; the dynamic method's pose transform."""

import math

import pytest
import torch

from semantic_gaussians.methods.dynamic import quat_multiply, rotmat_to_quat
from semantic_gaussians.models.gaussians import (
    C0,
    Densifier,
    GaussianModel,
    eval_sh,
    exponential_lr,
    knn_mean_sq_dist,
    rgb_to_sh,
    update_params,
)
from shared_utils.ops import quat_to_rotmat


def test_sh_degree_0_is_the_dc_colour_and_degree_1_matches_the_closed_form():
    sh = torch.zeros(1, 16, 3)
    sh[0, 0] = rgb_to_sh(torch.tensor([0.2, 0.4, 0.6]))
    d = torch.tensor([[0.0, 0.6, 0.8]])
    torch.testing.assert_close(eval_sh(3, sh, d) + 0.5, torch.tensor([[0.2, 0.4, 0.6]]))
    sh[0, 1:4] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])  # y, z, x bands of channels r, g, b
    out = eval_sh(1, sh, d) - C0 * sh[0, 0]
    c1 = 0.4886025119029199
    torch.testing.assert_close(out, torch.tensor([[-c1 * 0.6, c1 * 0.8, -c1 * 0.0]]))


def test_sh_bands_are_orthonormal_on_the_sphere():
    """Monte Carlo: the 16 real SH basis functions integrate to the identity (times 4 pi) over the sphere."""
    g = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(200_000, 3, generator=g, dtype=torch.float64), dim=1)
    basis = []
    for k in range(16):
        sh = torch.zeros(1, 16, 1, dtype=torch.float64)
        sh[0, k] = 1.0
        basis.append(eval_sh(3, sh.expand(len(d), -1, -1), d)[:, 0])
    B = torch.stack(basis, 1)
    gram = 4 * math.pi * B.T @ B / len(d)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)


def test_initialisation_from_points():
    xyz = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]])
    model = GaussianModel(sh_degree=3, feature_dim=4)
    model.create_from_points(xyz, torch.full((5, 3), 0.5))
    assert len(model) == 5 and model.shN.shape == (5, 15, 3) and model.features.shape == (5, 4)
    torch.testing.assert_close(torch.sigmoid(model.opacities), torch.full((5,), 0.1))
    torch.testing.assert_close(torch.exp(model.scales[:, 0]) ** 2, knn_mean_sq_dist(xyz))
    assert knn_mean_sq_dist(xyz)[0] == pytest.approx(1.0)  # three neighbours at distance 1
    assert (model.owner == -1).all()


def _model_and_optimizer(n=6):
    model = GaussianModel(sh_degree=1)
    g = torch.Generator().manual_seed(0)
    model.create_from_points(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g))
    opt = torch.optim.Adam([{"params": [getattr(model, k)], "name": k, "lr": 1e-3} for k in model.param_names])
    loss = sum(getattr(model, k).square().sum() for k in model.param_names)
    loss.backward()
    opt.step()
    return model, opt


def test_update_params_keeps_adam_state_of_kept_gaussians_and_zeroes_new_ones():
    model, opt = _model_and_optimizer()
    before = opt.state[model.means]["exp_avg"].clone()
    keep = torch.tensor([True, False, True, True, False, True])
    update_params(model, opt, lambda n, p: p[keep], lambda n, m: m[keep])
    assert len(model) == 4 and model.owner.shape == (4,)
    torch.testing.assert_close(opt.state[model.means]["exp_avg"], before[keep])
    assert opt.param_groups[0]["params"][0] is model.means
    update_params(model, opt, lambda n, p: torch.cat([p, p[:1]]),
                  lambda n, m: torch.cat([m, m.new_zeros((1,) + m.shape[1:])]))
    assert len(model) == 5 and opt.state[model.scales]["exp_avg"][-1].abs().sum() == 0
    loss = model.means.sum()
    loss.backward()
    opt.step()  # Adam still steps with the resized state


def test_densifier_clones_small_splits_large_and_prunes_transparent():
    model, opt = _model_and_optimizer(4)
    with torch.no_grad():
        model.scales[:2] = math.log(0.001)  # small: cloned
        model.scales[2:] = math.log(0.5)  # large: split
        model.opacities[3] = -10.0  # transparent: pruned (and it is a split candidate, also removed)
    d = Densifier(grad_threshold=1e-3)
    d.reset_stats(4, torch.device("cpu"))
    d.grad_sum[:] = torch.tensor([1.0, 0.0, 1.0, 1.0])
    d.count[:] = 1
    d.densify_and_prune(model, opt, extent=1.0, prune_big=False)
    # kept: 0, 1 (not hot), clone of 0; split 2 -> 2 samples, its original removed; 3 and its 2 samples pruned.
    assert len(model) == 5
    scales = torch.exp(model.scales).max(1).values
    assert (scales[-2:] - 0.5 / 1.6).abs().max() < 1e-6
    assert all(opt.state[getattr(model, k)]["exp_avg"].shape[0] == 5 for k in model.param_names)


def test_max_gaussians_caps_growth():
    model, opt = _model_and_optimizer(6)
    with torch.no_grad():
        model.scales[:] = math.log(0.001)
    d = Densifier(grad_threshold=1e-3, max_gaussians=8)
    d.reset_stats(6, torch.device("cpu"))
    d.grad_sum[:] = torch.arange(6.0) + 1
    d.count[:] = 1
    d.densify_and_prune(model, opt, extent=1.0, prune_big=False)
    assert len(model) == 8


def test_exponential_lr_endpoints():
    assert exponential_lr(0, 1.6e-4, 1.6e-6, 100) == pytest.approx(1.6e-4)
    assert exponential_lr(100, 1.6e-4, 1.6e-6, 100) == pytest.approx(1.6e-6)
    assert exponential_lr(50, 1.6e-4, 1.6e-6, 100) == pytest.approx(1.6e-5)


def test_pose_quaternion_composes_like_the_rotation_matrices():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(2, 4, generator=g, dtype=torch.float64), dim=1)
    q[:, 0] = q[:, 0].abs()
    R = quat_to_rotmat(q)
    torch.testing.assert_close(rotmat_to_quat(R[0]), q[0])
    torch.testing.assert_close(quat_to_rotmat(quat_multiply(q[0], q[1])[None])[0], R[0] @ R[1])
