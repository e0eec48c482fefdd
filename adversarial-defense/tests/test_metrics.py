"""Metrics against hand-computed numbers and a brute-force loop over queries."""

from __future__ import annotations

import numpy as np
import pytest

from adversarial_defense.metrics import accuracy_eps_auc, market_cmc_map


def _hand_case() -> tuple[np.ndarray, ...]:
    # gallery:      g0      g1      g2      g3      g4      g5 (distractor)  g6
    g_pids = np.array([1, 1, 2, 2, 3, 0, 2])
    g_camids = np.array([0, 1, 0, 1, 1, 0, 2])
    q_pids = np.array([1, 2, 3, 5])
    q_camids = np.array([0, 1, 1, 0])
    distmat = np.array([
        [0.10, 0.50, 0.30, 0.90, 0.20, 0.40, 0.95],  # A: pid 1, camera 0
        [0.60, 0.70, 0.20, 0.10, 0.30, 0.80, 0.50],  # B: pid 2, camera 1
        [0.30, 0.20, 0.10, 0.40, 0.05, 0.60, 0.70],  # C: pid 3, only match g4 is in its own camera
        [0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70],  # D: pid 5, not in the gallery
    ])
    return distmat, q_pids, g_pids, q_camids, g_camids


def test_market_cmc_map_hand_worked() -> None:
    # A: sorted g0 g4 g2 g5 g1 g3 g6; g0 (pid 1, camera 0) removed; g2 and g5 are in A's camera but other pids,
    #    so they stay: g4 g2 g5 g1 g3 g6 -> matches 0 0 0 1 0 0: first match at rank 4, AP = (1/4) / 1 = 0.25.
    # B: sorted g3 g2 g4 g6 g0 g1 g5; g3 (pid 2, camera 1) removed: g2 g4 g6 g0 g1 g5 -> 1 0 1 0 0 0:
    #    first match at rank 1, AP = (1/1 + 2/3) / 2 = 5/6.
    # C: its only match g4 shares its camera -> skipped. D: pid absent from the gallery -> skipped.
    cmc, mAP = market_cmc_map(*_hand_case())
    np.testing.assert_allclose(cmc, [0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0])  # max_rank 50 cut to 7 gallery entries
    assert mAP == pytest.approx((0.25 + 5 / 6) / 2)
    cmc3, mAP3 = market_cmc_map(*_hand_case(), max_rank=3)
    np.testing.assert_allclose(cmc3, [0.5, 0.5, 0.5])
    assert mAP3 == pytest.approx(mAP)  # AP is over the whole ranking, not cut at max_rank


def test_market_cmc_map_no_valid_query_is_an_error() -> None:
    distmat, q_pids, g_pids, q_camids, g_camids = _hand_case()
    with pytest.raises(ValueError, match="no query"):
        market_cmc_map(distmat[2:], q_pids[2:], g_pids, q_camids[2:], g_camids)


def test_market_cmc_map_checks_shapes() -> None:
    distmat, q_pids, g_pids, q_camids, g_camids = _hand_case()
    with pytest.raises(ValueError, match="distmat"):
        market_cmc_map(distmat.T, q_pids, g_pids, q_camids, g_camids)


def _brute_force(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """One query at a time, written from the protocol's definition."""
    cmcs, aps = [], []
    for i in range(len(q_pids)):
        ranked = sorted(range(len(g_pids)), key=lambda j: distmat[i, j])
        ranked = [j for j in ranked if not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])]
        relevant = [g_pids[j] == q_pids[i] for j in ranked]
        if not any(relevant):
            continue
        first = relevant.index(True)
        cmcs.append([1.0 if k >= first else 0.0 for k in range(max_rank)])
        found, precisions = 0, []
        for k, rel in enumerate(relevant):
            if rel:
                found += 1
                precisions.append(found / (k + 1))
        aps.append(sum(precisions) / len(precisions))
    return np.mean(cmcs, axis=0), float(np.mean(aps))


@pytest.mark.parametrize("seed", [0, 1])
def test_market_cmc_map_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_q, num_g = 300, 120  # more queries than one chunk of the vectorised code
    g_pids = rng.integers(0, 25, num_g)  # pid 0: distractors
    g_camids = rng.integers(0, 4, num_g)
    q_pids = rng.integers(1, 30, num_q)  # pids 25-29 are not in the gallery: skipped queries
    q_camids = rng.integers(0, 4, num_q)
    distmat = rng.random((num_q, num_g))
    cmc, mAP = market_cmc_map(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20)
    ref_cmc, ref_map = _brute_force(distmat, q_pids, g_pids, q_camids, g_camids, 20)
    assert cmc.dtype == np.float32 and cmc.shape == (20,)
    np.testing.assert_allclose(cmc, ref_cmc, rtol=1e-6)
    assert mAP == pytest.approx(ref_map, rel=1e-12)
    assert 0 < cmc[0] < cmc[-1] <= 1


def test_accuracy_eps_auc_hand_worked() -> None:
    # eps in 1/255 units 0, 2, 4, 8: trapezoids (0.9+0.6)/2*2 + (0.6+0.3)/2*2 + (0.3+0.1)/2*4 = 3.2, / 8 = 0.4
    eps = np.array([0, 2, 4, 8]) / 255
    acc = np.array([0.9, 0.6, 0.3, 0.1])
    assert accuracy_eps_auc(eps, acc) == pytest.approx(0.4)
    assert accuracy_eps_auc(eps[::-1], acc[::-1]) == pytest.approx(0.4)  # order does not matter
    assert accuracy_eps_auc([0, 0.01, 0.03], [0.7, 0.7, 0.7]) == pytest.approx(0.7)  # flat curve: its level


@pytest.mark.parametrize("eps, acc, message", [
    ([2 / 255, 4 / 255], [0.5, 0.4], "including 0"),
    ([0, 4 / 255, 4 / 255], [0.9, 0.5, 0.4], "distinct"),
    ([0, 4 / 255], [0.9, 1.5], r"\[0, 1\]"),
    ([0], [0.9], "two points"),
])
def test_accuracy_eps_auc_rejects_bad_curves(eps, acc, message) -> None:
    with pytest.raises(ValueError, match=message):
        accuracy_eps_auc(eps, acc)
