"""The test metrics on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sports_image_gen.metrics import (
    camera_counts,
    camera_metrics,
    frechet_distance,
    kernel_distance,
    match_players,
    to_960,
)


def _grid(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    points = torch.rand(batch, 91, 2, generator=gen) * torch.tensor([960.0, 540.0])
    visible = torch.rand(batch, 91, generator=gen) > 0.3
    return points, visible


def test_perfect_detection_scores_zero_error_and_full_accuracy():
    ref, vis = _grid()
    m = camera_metrics([camera_counts(ref.clone(), vis.clone(), ref, vis)])
    assert m["reproj_px"] == 0 and m["acc_5"] == m["acc_10"] == m["acc_20"] == 1


def test_accuracy_counts_by_hand():
    ref = torch.zeros(1, 91, 2)
    vis = torch.zeros(1, 91, dtype=torch.bool)
    vis[0, :4] = True
    det = ref.clone()
    det[0, 1, 0] = 7.0    # 7 px off: a TP at 10 and 20, an FP at 5
    det[0, 2, 0] = 15.0   # 15 px off: a TP at 20 only
    found = vis.clone()
    found[0, 3] = False   # a visible point missed: FN at every threshold
    found[0, 10] = True   # a point detected where none is visible: FP at every threshold
    m = camera_metrics([camera_counts(det, found, ref, vis)])
    assert m["reproj_px"] == pytest.approx((0 + 7 + 15) / 3)
    # at 5: TP {0}, FP {1, 2, 10}, FN {3}; at 10: TP {0, 1}, FP {2, 10}, FN {3}; at 20: TP {0, 1, 2}, FP {10}, FN {3}
    assert m["acc_5"] == pytest.approx(1 / 5) and m["acc_10"] == pytest.approx(2 / 5)
    assert m["acc_20"] == pytest.approx(3 / 5)


def test_shuffled_reference_is_far():
    ref, vis = _grid(batch=8)
    m = camera_metrics([camera_counts(ref, vis, ref.roll(1, 0), vis.roll(1, 0))])
    assert m["reproj_px"] > 100 and m["acc_20"] < 0.1


def test_to_960_undoes_the_letterbox():
    points = torch.tensor([[[32.0, 18.0]]])
    assert torch.allclose(to_960(points, torch.zeros(1, 2), torch.tensor([[15.0, 15.0]])), torch.tensor([[[480.0,
                                                                                                           270.0]]]))
    # a 4:3 frame letterboxed into 64 x 36: 48 px wide at x offset 8
    out = to_960(torch.tensor([[[8.0, 0.0]]]), torch.tensor([[8.0, 0.0]]), torch.tensor([[960 / 48, 540 / 36]]))
    assert torch.allclose(out, torch.zeros(1, 1, 2))


def test_player_matching():
    gt = torch.tensor([[[0.0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 0, 0]]])
    labels = torch.tensor([[0, 1, -1]])
    det = [{"boxes": torch.tensor([[0.0, 0, 10, 9], [20, 20, 30, 30], [50, 50, 60, 60]]),
            "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 1])}]
    assert match_players(det, gt, labels) == (2, 2, 1)
    # one detection cannot find two players
    det = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}]
    gt2 = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 10]]])
    assert match_players(det, gt2, torch.tensor([[0, 0]])) == (2, 1, 1)


def test_frechet_distance_matches_scipy():
    import scipy.linalg as scipy_linalg
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 6)), rng.normal(1.0, 2.0, size=(150, 6))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * scipy_linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert abs(frechet_distance(a, a)) < 1e-8


def test_kernel_distance_is_unbiased_near_zero_for_one_distribution():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 8)), rng.normal(size=(100, 8))
    far = rng.normal(2.0, 1.0, size=(100, 8))
    assert abs(kernel_distance(a, b)) < 0.05 < kernel_distance(a, far)
