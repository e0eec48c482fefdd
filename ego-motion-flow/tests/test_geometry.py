"""Tests of ego_motion_flow.geometry against hand-computed values, per-pixel loops, OpenCV and Monte Carlo."""

import math

import cv2
import numpy as np
import pytest
import torch

from ego_motion_flow.geometry import (
    backproject,
    chi2_threshold,
    essential_ego_motion,
    ground_prior,
    homography_compensation,
    irls_pose,
    mat_to_pose_vec,
    motion_chi2,
    moving_from_residual,
    pixel_grid,
    pose_vec_to_mat,
    project,
    rigid_flow,
    warp,
)

torch.set_num_threads(1)


def intrinsics(f: float, height: int, width: int, batch: int = 1, dtype=torch.float32) -> torch.Tensor:
    K = torch.tensor([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=dtype)
    return K.expand(batch, 3, 3).clone()


def driving_motion(batch: int = 1, dtype=torch.float64) -> torch.Tensor:
    """Inter-frame motion of a car: ~3 degrees of yaw and pitch, 1.3 m mostly forward (X2 = X1 - forward)."""
    vec = torch.tensor([0.02, 0.05, -0.01, 0.3, -0.05, -1.25], dtype=dtype)
    return pose_vec_to_mat(vec.expand(batch, 6))


def random_scene(rng: np.random.Generator, height: int, width: int, batch: int = 1) -> torch.Tensor:
    """B x 1 x H x W depth, 4 to 40 m, independent per pixel (a cloud of static points)."""
    return torch.from_numpy(rng.uniform(4.0, 40.0, (batch, 1, height, width))).float()


def moving_patches(height: int, width: int) -> torch.Tensor:
    """H x W bool: two boxes covering 20% of the image, the independently moving objects."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[8:24, 4:28] = True  # 16 x 24 = 384
    mask[28:44, 36:60] = True  # 384; 768 / 3840 = 20% of 48 x 80
    return mask


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    return math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))


def test_rigid_flow_hand_computed():
    # Camera moves 1 m to the right (x), point 10 m ahead, f = 100: the scene slides left by f * 1 / 10 = 10 px.
    camera_to_world_1 = torch.eye(4)
    camera_to_world_2 = torch.eye(4)
    camera_to_world_2[0, 3] = 1.0
    T_21 = (torch.linalg.inv(camera_to_world_2) @ camera_to_world_1)[None]
    depth = torch.full((1, 1, 5, 7), 10.0)
    depth[0, 0, 0, 0] = 0.0
    flow, valid = rigid_flow(depth, intrinsics(100.0, 5, 7), T_21)
    expected = torch.zeros(1, 2, 5, 7)
    expected[:, 0] = -10.0
    expected[0, :, 0, 0] = 0.0
    assert torch.allclose(flow, expected, atol=1e-5)
    assert valid.sum() == 34 and not valid[0, 0, 0]


def test_rigid_flow_matches_per_pixel_loop():
    rng = np.random.default_rng(0)
    B, H, W = 2, 4, 5
    depth = torch.from_numpy(rng.uniform(0.5, 5.0, (B, 1, H, W)))
    depth[0, 0, 1, 2] = 0.0
    depth[1, 0, 3, 4] = -1.0
    K = torch.tensor([[[80.0, 0.5, 2.1], [0, 90.0, 1.4], [0, 0, 1]], [[60.0, 0, 2.0], [0, 60.0, 1.5], [0, 0, 1]]])
    K = K.double()  # with skew, to check the full K
    T_21 = pose_vec_to_mat(torch.from_numpy(rng.normal(0, 0.2, (B, 6))))
    T_21[1, 2, 3] = -2.0  # pushes the nearest points behind camera 2
    flow, valid = rigid_flow(depth, K, T_21)
    for b in range(B):
        Kb, Tb = K[b].numpy(), T_21[b].numpy()
        for v in range(H):
            for u in range(W):
                d = depth[b, 0, v, u].item()
                X = d * np.linalg.inv(Kb) @ np.array([u, v, 1.0])
                Y = Tb[:3, :3] @ X + Tb[:3, 3]
                ok = d > 0 and Y[2] > 1e-3
                assert valid[b, v, u].item() == ok
                if ok:
                    p = Kb @ Y / Y[2]
                    np.testing.assert_allclose(flow[b, :, v, u].numpy(), [p[0] - u, p[1] - v], atol=1e-9)
    assert (~valid & (depth[:, 0] > 0)).any() and valid.any()  # both invalid causes occur


def test_backproject_project_round_trip():
    depth = torch.rand(2, 1, 3, 4) * 10 + 1
    K = intrinsics(50.0, 3, 4, batch=2)
    pixels, z = project(backproject(depth, K), K)
    assert torch.allclose(pixels, pixel_grid(3, 4).expand(2, 2, 3, 4), atol=1e-4)
    assert torch.allclose(z, depth)


def test_rigid_flow_gradcheck():
    torch.manual_seed(0)
    depth = (torch.rand(1, 1, 3, 4, dtype=torch.float64) * 4 + 2).requires_grad_()
    K = intrinsics(30.0, 3, 4, dtype=torch.float64)
    vec = torch.tensor([[0.05, -0.1, 0.02, 0.3, 0.1, -0.5]], dtype=torch.float64, requires_grad=True)

    def flow_of(depth, vec):
        return rigid_flow(depth, K, pose_vec_to_mat(vec))[0]

    assert torch.autograd.gradcheck(flow_of, (depth, vec))
    T_21 = pose_vec_to_mat(vec.detach()).requires_grad_()
    assert torch.autograd.gradcheck(lambda d, T: rigid_flow(d, K, T)[0], (depth, T_21))


def test_pose_vec_round_trip_against_opencv():
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(6, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.array([1e-9, 1e-3, 0.5, 2.0, 3.0, math.pi - 1e-4])
    vec = torch.from_numpy(np.concatenate([axes * angles[:, None], rng.normal(size=(6, 3))], 1))
    T = pose_vec_to_mat(vec)
    for b in range(6):
        R_cv, _ = cv2.Rodrigues(vec[b, :3].numpy())
        np.testing.assert_allclose(T[b, :3, :3].numpy(), R_cv, atol=1e-12)
    np.testing.assert_allclose(T[:, 3].numpy(), np.tile([0, 0, 0, 1.0], (6, 1)))
    assert torch.allclose(mat_to_pose_vec(T), vec, atol=1e-9)


def test_pose_vec_small_angle_stable():
    w = torch.tensor([[1e-7, -2e-7, 3e-7, 0, 0, 0]], dtype=torch.float64, requires_grad=True)
    T = pose_vec_to_mat(w)
    # First order: R = I + [w]_x, exact to O(|w|^2) = 1e-13.
    expected = torch.tensor([[1, -3e-7, -2e-7], [3e-7, 1, -1e-7], [2e-7, 1e-7, 1]], dtype=torch.float64)
    assert torch.allclose(T[0, :3, :3], expected, atol=1e-12)
    T[0, :3, :3].sum().backward()
    assert torch.isfinite(w.grad).all()
    zero = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pose_vec_to_mat, (zero,))
    assert torch.equal(pose_vec_to_mat(zero.detach()), torch.eye(4, dtype=torch.float64)[None])
    assert torch.allclose(mat_to_pose_vec(T.detach()), w.detach(), atol=1e-15)


def test_warp_identity_and_integer_shift():
    image = torch.rand(2, 3, 5, 6)
    warped, in_bounds = warp(image, torch.zeros(2, 2, 5, 6))
    assert torch.allclose(warped, image, atol=1e-6) and in_bounds.all()
    flow = torch.zeros(2, 2, 5, 6)
    flow[:, 0], flow[:, 1] = 2.0, -1.0  # sample frame 2 at (u + 2, v - 1)
    warped, in_bounds = warp(image, flow)
    assert torch.allclose(warped[:, :, 1:, :4], image[:, :, :-1, 2:], atol=1e-6)
    expected = torch.zeros(5, 6, dtype=torch.bool)
    expected[1:, :4] = True
    assert torch.equal(in_bounds, expected.expand(2, 5, 6))
    assert (warped[:, :, 0] == 0).all() and (warped[:, :, :, 4:] == 0).all()


def test_warp_half_pixel_is_bilinear():
    image = torch.arange(12.0).reshape(1, 1, 3, 4)
    flow = torch.zeros(1, 2, 3, 4)
    flow[:, 0] = 0.5
    warped, _ = warp(image, flow)
    assert torch.allclose(warped[0, 0, :, :3], (image[0, 0, :, :3] + image[0, 0, :, 1:]) / 2)


def test_ground_prior_is_bottom_centre_trapezoid():
    mask = ground_prior(40, 100)
    assert mask.dtype == torch.bool and mask.shape == (40, 100)
    assert not mask[:22].any() and mask[22:].any()  # nothing above the horizon row 0.55 * 40 = 22
    assert mask[39, 50] and not mask[39, 0] and not mask[39, 99]
    assert mask[39].sum() > mask[23].sum()  # widens towards the bottom


def test_homography_compensation_on_a_plane():
    H, W = 48, 80
    K = intrinsics(60.0, H, W, dtype=torch.float64)[0]
    T = driving_motion()[0]
    n, d = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), 1.6  # road: y = 1.6 m below the camera
    H_true = K @ (T[:3, :3] + T[:3, 3:] @ n[None] / d) @ torch.linalg.inv(K)
    grid = pixel_grid(H, W, dtype=torch.float64)
    mapped = H_true @ torch.cat([grid, torch.ones(1, H, W, dtype=torch.float64)]).reshape(3, -1)
    flow = ((mapped[:2] / mapped[2:]).reshape(2, H, W) - grid).float()[None]
    patch = torch.zeros(1, H, W, dtype=torch.bool)
    patch[0, 36:44, 30:40] = True  # a car on the road, moving on its own
    flow[:, 0][patch] += 4.0
    ground = ground_prior(H, W)
    valid = torch.ones(1, H, W, dtype=torch.bool)
    rigid, residual, H_est = homography_compensation(flow, valid, ground)
    H_true = H_true / H_true[2, 2]
    assert torch.allclose(H_est[0].double(), H_true, atol=1e-3 * H_true.abs().max())
    assert residual[:, :, ~patch[0]].abs().max() < 1e-2
    assert (residual.norm(dim=1)[patch] > 3.9).all()
    assert torch.allclose(rigid + residual, flow)


def test_essential_ego_motion_static_scene_and_moving_patch():
    rng = np.random.default_rng(2)
    H, W = 48, 80
    K = intrinsics(60.0, H, W)
    T = driving_motion()
    depth = random_scene(rng, H, W)
    flow, valid = rigid_flow(depth, K, T.float())
    patch = torch.zeros(1, H, W, dtype=torch.bool)
    patch[0, 17:27, 2:14] = True  # left of the focus of expansion (53.9, 21.1), where epipolar lines are level
    flow[:, 1][patch] += 3.0  # moves down: across the epipolar lines
    T_est, rigid, residual, inliers = essential_ego_motion(flow, valid, K.clone())
    T_est = T_est[0].double()
    R_err = mat_to_pose_vec((T_est @ torch.linalg.inv(T[0]))[None])[0, :3].norm()
    assert R_err < 1e-5
    assert angle_between(T_est[:3, 3].numpy(), T[0, :3, 3].numpy()) < 1e-5
    assert abs(T_est[:3, 3].norm() - 1) < 1e-6
    static = valid & ~patch
    assert residual.norm(dim=1)[static].max() < 1e-3
    assert torch.allclose(rigid[:, :, static[0]], flow[:, :, static[0]], atol=1e-3)
    assert residual.norm(dim=1)[patch].median() > 1.5
    assert inliers[static].float().mean() > 0.99 and inliers[patch].float().mean() < 0.5


def test_essential_ego_motion_behind_camera_goes_to_residual():
    # Forward motion; a patch moving towards the focus of expansion (a car outrunning the camera) has flow along
    # its epipolar lines, but only a point behind a camera explains it. The nearest admissible point is the
    # vanishing point (infinite depth: zero rigid flow without rotation), so the whole flow stays residual.
    H, W = 32, 48
    K = intrinsics(40.0, H, W)
    T = pose_vec_to_mat(torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, -1.0]]))
    depth = 5.0 + 20.0 * torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(0))
    flow, valid = rigid_flow(depth, K, T)
    patch = torch.zeros(1, H, W, dtype=torch.bool)
    patch[0, 2:10, 4:16] = True
    flow[:, :, patch[0]] *= -1
    T_est, rigid, residual, inliers = essential_ego_motion(flow, valid, K)
    assert torch.allclose(T_est[0], T[0], atol=1e-4)
    assert residual.norm(dim=1)[~patch].max() < 0.01 and inliers[~patch].all()
    assert torch.allclose(residual[:, :, patch[0]], flow[:, :, patch[0]], atol=1e-3)
    assert not inliers[patch].any()


def outlier_scene(rng: np.random.Generator) -> tuple:
    """Static scene with 20% of pixels on two objects that move 1.5 m sideways and 0.5 m up on their own."""
    H, W = 48, 80
    K = intrinsics(60.0, H, W, batch=2)
    T = driving_motion(batch=2)
    depth = random_scene(rng, H, W, batch=2)
    flow, valid = rigid_flow(depth, K, T.float())
    T_object = T.clone()
    T_object[:, :3, 3] += torch.tensor([1.5, -0.5, 0.0], dtype=torch.float64)
    flow_object, _ = rigid_flow(depth, K, T_object.float())
    moving = moving_patches(H, W)
    flow[:, :, moving] = flow_object[:, :, moving]
    return flow, valid, depth, K, T, moving


def test_irls_pose_exact_on_static_scene():
    rng = np.random.default_rng(3)
    flow, valid, depth, K, T, _ = outlier_scene(rng)
    flow, _ = rigid_flow(depth, K, T.float())
    T_est, weights = irls_pose(flow, valid, depth, K)
    assert torch.allclose(T_est.double(), T, atol=1e-5)
    assert weights[valid].min() > 0.999
    # Gauss-Newton alone, from the identity, converges for inter-frame driving motion.
    T_est, _ = irls_pose(flow, valid, depth, K, init_T_21=torch.eye(4).expand(2, 4, 4))
    assert torch.allclose(T_est.double(), T, atol=1e-5)


def test_irls_pose_large_rotation():
    # 0.6 rad (34 degrees): Gauss-Newton from the identity diverges; the default PnP-RANSAC start does not.
    depth = random_scene(np.random.default_rng(5), 48, 80)
    K = intrinsics(60.0, 48, 80)
    T = pose_vec_to_mat(torch.tensor([[0.1, 0.6, 0.05, 0.3, -0.05, -1.25]], dtype=torch.float64))
    flow, valid = rigid_flow(depth, K, T.float())
    T_est, _ = irls_pose(flow, valid, depth, K)
    assert torch.allclose(T_est.double(), T, atol=1e-4)
    T_identity, _ = irls_pose(flow, valid, depth, K, init_T_21=torch.eye(4)[None])
    assert not torch.allclose(T_identity.double(), T, atol=1e-2)


def test_irls_pose_robust_weights_beat_least_squares():
    rng = np.random.default_rng(4)
    flow, valid, depth, K, T, moving = outlier_scene(rng)
    errors = {}
    for robust in ("cauchy", "huber", "none"):
        T_est, weights = irls_pose(flow, valid, depth, K, robust=robust)
        errors[robust] = (T_est.double() - T)[:, :3].abs().max().item()
    # Moving pixels with residuals near the scale keep some influence: M-estimators shrink the bias, not to 0.
    assert errors["cauchy"] < 0.02 * errors["none"] and errors["cauchy"] < 0.01, errors
    assert errors["huber"] < 0.1 * errors["none"], errors
    assert errors["none"] > 1e-2, errors  # the outliers do bias plain least squares
    _, weights = irls_pose(flow, valid, depth, K)
    assert weights[:, moving].max() < 0.2 and weights[:, ~moving].min() > 0.99
    # Given weights that zero the moving pixels make plain least squares exact too.
    T_est, _ = irls_pose(flow, valid, depth, K, robust="none", weights=(~moving).float().expand(2, -1, -1))
    assert torch.allclose(T_est.double(), T, atol=1e-5)


def test_motion_chi2_hand_computed():
    # Sideways translation 1 m, depth 10 m, f = 100 at the principal point: rigid flow u = -100 / d, so
    # J_d = (1 px/m, 0); sigma_d = 0.05 * 10 = 0.5 m: Sigma = diag(1 + 0.25, 1).
    K = intrinsics(100.0, 3, 3)
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = -1.0
    depth = torch.full((1, 1, 3, 3), 10.0)
    rigid, _ = rigid_flow(depth, K, T)
    flow = rigid.clone()
    flow[0, 0, 1, 1] += 2.0
    flow[0, 1, 0, 0] += 2.0
    chi2 = motion_chi2(flow, rigid, depth, K, T, sigma_flow=1.0, sigma_depth_rel=0.05)
    assert chi2[0, 1, 1].item() == pytest.approx(4 / 1.25, rel=1e-5)
    assert chi2[0, 1, 2].item() == 0.0
    assert chi2[0, 0, 0].item() == pytest.approx(4.0, rel=1e-5)  # across J_d: only the flow noise


def test_motion_chi2_against_finite_difference_covariance():
    # General motion: J_d by central differences of rigid_flow, Sigma and its inverse explicitly.
    K = intrinsics(50.0, 4, 5, dtype=torch.float64)
    T = pose_vec_to_mat(torch.tensor([[0.03, -0.02, 0.05, -1.0, 0.5, -2.0]], dtype=torch.float64))
    depth = torch.linspace(3.0, 12.0, 20, dtype=torch.float64).reshape(1, 1, 4, 5)
    rigid, _ = rigid_flow(depth, K, T)
    flow = rigid + torch.linspace(-2.0, 3.0, 40, dtype=torch.float64).reshape(1, 2, 4, 5)
    chi2 = motion_chi2(flow, rigid, depth, K, T, sigma_flow=0.7, sigma_depth_rel=0.1)
    eps = 1e-6
    J_d = (rigid_flow(depth + eps, K, T)[0] - rigid_flow(depth - eps, K, T)[0]) / (2 * eps)
    for v in range(4):
        for u in range(5):
            J = J_d[0, :, v, u]
            Sigma = 0.49 * torch.eye(2, dtype=torch.float64) + (0.1 * depth[0, 0, v, u]) ** 2 * J[:, None] @ J[None]
            r = flow[0, :, v, u] - rigid[0, :, v, u]
            assert chi2[0, v, u].item() == pytest.approx((r @ torch.linalg.inv(Sigma) @ r).item(), rel=1e-6)


def test_motion_chi2_monte_carlo():
    # Static pixels with noisy flow and noisy depth: chi2 follows chi-square(2) (mean 2, 1% above the 0.99 quantile).
    torch.manual_seed(0)
    H, W, n = 4, 5, 4000
    K = intrinsics(100.0, H, W, dtype=torch.float64)
    T = driving_motion()
    depth = torch.rand(1, 1, H, W, dtype=torch.float64) * 20 + 5
    true_rigid, _ = rigid_flow(depth, K, T)
    noisy_depth = depth * (1 + 0.05 * torch.randn(n, 1, H, W, dtype=torch.float64))
    noisy_rigid, _ = rigid_flow(noisy_depth, K.expand(n, 3, 3), T.expand(n, 4, 4))
    flow = true_rigid + 0.5 * torch.randn(n, 2, H, W, dtype=torch.float64)
    chi2 = motion_chi2(flow, noisy_rigid, depth.expand(n, 1, H, W), K.expand(n, 3, 3), T.expand(n, 4, 4), 0.5, 0.05)
    assert chi2.mean().item() == pytest.approx(2.0, abs=0.05)
    assert (chi2 > chi2_threshold(0.99)).double().mean().item() == pytest.approx(0.01, abs=0.002)


def test_chi2_threshold():
    assert chi2_threshold(0.99) == pytest.approx(9.2103, abs=1e-4)
    assert chi2_threshold(0.95) == pytest.approx(5.9915, abs=1e-4)


def test_moving_from_residual():
    residual = torch.zeros(1, 2, 2, 2)
    residual[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # norm 5
    residual[0, :, 1, 1] = torch.tensor([0.0, 2.0])
    mask = moving_from_residual(residual, 2.0)
    assert torch.equal(mask, torch.tensor([[[True, False], [False, False]]]))
