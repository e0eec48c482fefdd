"""MPJPE, the Human3.6M 32-joint protocol and Procrustes-aligned MPJPE against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import torch

from pose_forecasting.data.skeleton import JOINTS_USED
from pose_forecasting.metrics import FrameError, horizon_frame, horizon_metrics, mpjpe, mpjpe_h36m, p_mpjpe


def test_mpjpe_hand_computed():
    target = torch.zeros(1, 2, 3)
    pred = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])
    assert float(mpjpe(pred, target)) == (5.0 + 1.0) / 2


def test_h36m_protocol_averages_over_32_joints_with_duplicates_copied():
    truth = torch.zeros(1, 1, 32, 3)
    pred = torch.zeros(1, 1, 22, 3)
    pred[..., 0] = 0.001  # 1 mm error on each of the 22 predicted joints
    # 22 predicted joints + the duplicates copied from predicted parents (16<-13, 20<-19, 23<-22, 24<-13,
    # 28<-27, 31<-30: all six parents are predicted) = 28 joints with 1 mm, 4 with 0.
    assert math.isclose(float(mpjpe_h36m(pred, truth)), 28 / 32, rel_tol=1e-6)
    assert 13 in JOINTS_USED and 0 not in JOINTS_USED


def test_procrustes_removes_similarity_transforms():
    rng = np.random.default_rng(0)
    target = torch.tensor(rng.normal(size=(4, 17, 3)))
    angle = 0.7
    R = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1.0]],
                     dtype=torch.float64)
    pred = 1.7 * target @ R + torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64)
    assert float(p_mpjpe(pred, target).max()) < 1e-9
    assert float(mpjpe(pred, target).min()) > 0.1


def test_procrustes_against_hand_computed_case():
    # A square and the same square stretched along x: the best similarity fit scales by the
    # least-squares factor; residuals are computable by hand.
    target = torch.tensor([[[1.0, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]]], dtype=torch.float64)
    pred = target * torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    # Centred, normalised: the optimal rotation is the identity; scale s = <pred, target> / |pred|^2
    # = (4*2 + 4*1) / (4*4 + 4*1) = 12 / 20; aligned = 0.6 * pred -> points (1.2, 0.6): error
    # sqrt(0.2^2 + 0.4^2) per point.
    assert math.isclose(float(p_mpjpe(pred, target)), math.sqrt(0.2**2 + 0.4**2), rel_tol=1e-9)


def test_procrustes_never_reflects():
    target = torch.tensor(np.random.default_rng(1).normal(size=(1, 10, 3)))
    mirrored = target * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert float(p_mpjpe(mirrored, target)) > 0.1  # a mirror image is not a rotation


def test_frame_error_and_horizon_names():
    metric = FrameError(25)
    metric.update(torch.arange(25.0).repeat(2, 1))
    metric.update(torch.arange(25.0)[None] + 3)
    per_frame = metric.compute()
    assert float(per_frame[0]) == 1.0 and horizon_frame(80) == 1 and horizon_frame(1000) == 24
    out = horizon_metrics(per_frame, "test")
    assert math.isclose(out["test/mpjpe_1000ms"], 25.0)
    assert math.isclose(out["test/mpjpe_upto_400ms"], float(per_frame[:10].mean()))
    expected = np.mean([float(per_frame[horizon_frame(ms)]) for ms in (80, 160, 320, 400, 560, 720, 880, 1000)])
    assert math.isclose(out["test/mpjpe_avg"], expected)
