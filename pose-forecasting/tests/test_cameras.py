"""Pinhole cameras: projection by hand, placement around the subject, normalisation and detector noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose_forecasting.data import h36m, synthetic
from pose_forecasting.data.cameras import (
    H36M_LIKE_CAMERAS,
    PELVIS_HEIGHT,
    Camera,
    detector_noise,
    normalise,
    project,
    to_camera,
    to_world,
)


def test_projection_by_hand():
    cam = Camera(R=np.eye(3), t=[0.1, -0.2, 3.0], f=[1000.0, 1100.0], c=[500.0, 400.0], width=1000, height=800)
    # X_cam = (0.5 + 0.1, 0.4 - 0.2, 2 + 3) = (0.6, 0.2, 5) -> u = 1000 * 0.6 / 5 + 500, v = 1100 * 0.2 / 5 + 400.
    pixels = project(torch.tensor([[0.5, 0.4, 2.0]], dtype=torch.float64), cam)
    torch.testing.assert_close(pixels, torch.tensor([[620.0, 444.0]], dtype=torch.float64))


@pytest.mark.parametrize("cam", H36M_LIKE_CAMERAS)
def test_camera_placement(cam):
    np.testing.assert_allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(cam.R) == pytest.approx(1.0)
    centre = cam.centre
    assert 4.5 <= np.hypot(centre[0], centre[2]) <= 5.5 and 1.2 <= centre[1] + PELVIS_HEIGHT <= 1.8
    # The optical axis goes through the pelvis (the origin), which lands on the principal point, in front.
    torch.testing.assert_close(project(torch.zeros(3, dtype=torch.float64), cam), torch.tensor(cam.c))
    assert to_camera(torch.zeros(3, dtype=torch.float64), cam)[2] > 4
    # Any point on the optical axis does too; the image's y axis points down (the head is above the pelvis).
    on_axis = torch.tensor(cam.centre + 7.0 * cam.R[2])
    torch.testing.assert_close(project(on_axis, cam), torch.tensor(cam.c))
    assert project(torch.tensor([0.0, 0.7, 0.0], dtype=torch.float64), cam)[1] < cam.c[1] - 100


def test_round_trip_world_camera():
    points = torch.randn(4, 17, 3, dtype=torch.float64)
    for cam in H36M_LIKE_CAMERAS:
        torch.testing.assert_close(to_world(to_camera(points, cam), cam), points)
        # Rigid: distances are kept.
        torch.testing.assert_close(torch.cdist(to_camera(points, cam), to_camera(points, cam)),
                                   torch.cdist(points, points))


def test_every_camera_sees_the_whole_skeleton(tmp_path):
    root = synthetic.generate(tmp_path, subjects=(1,), frames=120)
    sequences = h36m.load_h36m(root, [1])
    joints = torch.from_numpy(np.concatenate(list(sequences.values())))  # all actions, metres, hips at origin
    for cam in H36M_LIKE_CAMERAS:
        pixels = project(joints, cam)
        assert (pixels[..., 0] > 50).all() and (pixels[..., 0] < cam.width - 50).all()
        assert (pixels[..., 1] > 50).all() and (pixels[..., 1] < cam.height - 50).all()


def test_normalise_is_motionbert_screen_normalisation():
    cam = Camera(R=np.eye(3), t=np.zeros(3), f=[1.0, 1.0], c=[0.0, 0.0], width=1000, height=1002)
    corners = torch.tensor([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]])
    expected = torch.tensor([[-1.0, -1.002], [1.0, 1.002], [0.0, 0.0]])
    torch.testing.assert_close(normalise(corners, cam), expected)


def test_detector_noise_rates_and_confidence():
    pixels = torch.full((200, 50, 2), 500.0)
    generator = torch.Generator().manual_seed(0)
    noisy, confidence = detector_noise(pixels, generator, sigma_px=3.0, dropout=0.05, outlier_prob=0.05)
    assert noisy.shape == pixels.shape and confidence.shape == pixels.shape[:-1]
    dropped = confidence == 0
    # 10000 joints: the dropout rate is 0.05 within 5 binomial standard deviations (0.011).
    assert abs(dropped.float().mean().item() - 0.05) < 0.011
    assert (noisy[dropped] == 0).all()
    error = (noisy - pixels).norm(dim=-1)
    low = ~dropped & (confidence <= 0.3)
    # Outliers are far (>= 10 sigma) and have low confidence; detected joints are mostly close and confident.
    far = ~dropped & (error >= 30)
    assert abs(far.float().mean().item() - 0.05) < 0.011 and (confidence[far] <= 0.3).all()
    assert low.sum() >= far.sum()
    near = ~dropped & ~far
    assert error[near].mean() == pytest.approx(3.0 * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh mean
    assert confidence[near].median() > 0.7 and (confidence <= 1).all()
    # Deterministic for a seed.
    again = detector_noise(pixels, torch.Generator().manual_seed(0), sigma_px=3.0, dropout=0.05, outlier_prob=0.05)
    torch.testing.assert_close(again, (noisy, confidence))


def test_detector_noise_without_corruption_is_jitter_only():
    pixels = torch.rand(8, 17, 2) * 1000
    noisy, confidence = detector_noise(pixels, torch.Generator().manual_seed(1), sigma_px=2.0, dropout=0.0,
                                       outlier_prob=0.0)
    assert (confidence > 0).all() and (noisy - pixels).abs().max() < 2.0 * 6
