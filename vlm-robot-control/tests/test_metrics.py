"""Rollout metrics: Wilson intervals against published values and a brute-force inversion of the
score test; ``rollout_metrics`` against rates computed by hand from a hand-built list of episodes."""

from __future__ import annotations

import math

import pytest

from vlm_robot_control.metrics import EpisodeResult, rollout_metrics, wilson_interval

Z95 = 1.959964


def score_test_bounds(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Brute force: the Wilson interval is the set of p0 the score test does not reject,
    |k/n - p0| <= z sqrt(p0 (1 - p0) / n). Bisect for both ends of that set."""
    p_hat = k / n

    def rejected(p0: float) -> bool:
        return abs(p_hat - p0) > z * math.sqrt(p0 * (1 - p0) / n)

    def bisect(inside: float, outside: float) -> float:
        for _ in range(200):
            mid = (inside + outside) / 2
            if rejected(mid):
                outside = mid
            else:
                inside = mid
        return (inside + outside) / 2

    # p_hat itself is never rejected; 0 and 1 are rejected unless p_hat equals them.
    low = 0.0 if not rejected(0.0) else bisect(p_hat, 0.0)
    high = 1.0 if not rejected(1.0) else bisect(p_hat, 1.0)
    return low, high


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med. 17,
    # Table II, method 3 (score interval without continuity correction), 4 decimals.
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombe_1998(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    # By hand from the closed form: at k = 0 the upper end is z^2 / (n + z^2), at k = n the lower
    # end is n / (n + z^2); at k = n/2 the interval is 1/2 -+ z sqrt(1/(4n) + z^2/(4n^2)) / (1 + z^2/n).
    (0, 10, 0.0, 3.841459 / 13.841459),
    (10, 10, 10 / 13.841459, 1.0),
    (5, 10, 0.5 - 1.959964 * math.sqrt(0.025 + 3.841459 / 400) / 1.3841459,
     0.5 + 1.959964 * math.sqrt(0.025 + 3.841459 / 400) / 1.3841459),
])
def test_wilson_closed_form_by_hand(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-6) and hi == pytest.approx(high, abs=1e-6)


def test_wilson_interval_contains_the_rate_and_reaches_0_and_1_exactly():
    for n in range(1, 101):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n, lo, hi)
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0, n


@pytest.mark.parametrize(("k", "n", "z"), [(0, 10, Z95), (10, 10, Z95), (5, 10, Z95), (37, 50, Z95),
                                           (1, 3, Z95), (99, 100, Z95), (37, 50, 1.0), (3, 7, 2.575829)])
def test_wilson_inverts_the_score_test(k, n, z):
    lo, hi = wilson_interval(k, n, z)
    ref_lo, ref_hi = score_test_bounds(k, n, z)
    assert lo == pytest.approx(ref_lo, abs=1e-9) and hi == pytest.approx(ref_hi, abs=1e-9)


def test_wilson_narrows_with_more_episodes_and_lower_confidence():
    assert wilson_interval(37, 50)[1] - wilson_interval(37, 50)[0] > wilson_interval(370, 500)[1] - \
        wilson_interval(370, 500)[0]
    lo95, hi95 = wilson_interval(37, 50)
    lo68, hi68 = wilson_interval(37, 50, z=1.0)
    assert lo95 < lo68 < 37 / 50 < hi68 < hi95


@pytest.mark.parametrize("n", [0, -3])
def test_wilson_rejects_empty_samples(n):
    with pytest.raises(ValueError, match="n must be positive"):
        wilson_interval(0, n)


def episode(family, split, success, length, done, total, seed=0):
    return EpisodeResult(family, split, seed, f"{family} instruction", success, length, done, total)


# seen: pick_place 3/4, put_all 1/2 (sub-goals 3/3 and 1/3); unseen_combo: pick_place 0/2, sort 2/2.
RESULTS = [
    episode("pick_place", "seen", True, 50, 1, 1),
    episode("pick_place", "seen", True, 60, 1, 1),
    episode("pick_place", "seen", False, 100, 0, 1),
    episode("pick_place", "seen", True, 70, 1, 1),
    episode("put_all", "seen", True, 150, 3, 3),
    episode("put_all", "seen", False, 300, 1, 3),
    episode("pick_place", "unseen_combo", False, 100, 0, 1),
    episode("pick_place", "unseen_combo", False, 100, 0, 1),
    episode("sort", "unseen_combo", True, 200, 3, 3),
    episode("sort", "unseen_combo", True, 170, 3, 3),
]


def test_rollout_metrics_pooled_per_family_and_per_split():
    m = rollout_metrics(RESULTS)
    expected_rates = {
        "test/success_rate_seen": 4 / 6,                     # families pooled within a split
        "test/success_rate_unseen_combo": 2 / 4,
        "test/success_rate_seen_pick_place": 3 / 4,
        "test/success_rate_seen_put_all": 1 / 2,
        "test/success_rate_unseen_combo_pick_place": 0 / 2,
        "test/success_rate_unseen_combo_sort": 2 / 2,
        "test/success_rate_pick_place": 3 / 6,               # splits pooled within a family
        "test/success_rate_put_all": 1 / 2,
        "test/success_rate_sort": 2 / 2,
    }
    for key, rate in expected_rates.items():
        assert m[key] == pytest.approx(rate), key
    for split, (k, n) in {"seen": (4, 6), "unseen_combo": (2, 4)}.items():
        lo, hi = score_test_bounds(k, n)
        assert m[f"test/success_rate_{split}_ci_low"] == pytest.approx(lo, abs=1e-9)
        assert m[f"test/success_rate_{split}_ci_high"] == pytest.approx(hi, abs=1e-9)
    assert m["test/episode_length"] == pytest.approx((50 + 60 + 100 + 70 + 150 + 300 + 100 + 100 + 200 + 170) / 10)
    # Sub-goals completed: averaged over the multi-step families' episodes only (put_all, sort).
    assert m["test/multistep_completed"] == pytest.approx((3 + 1 + 3 + 3) / 4)
    assert m["test/episodes"] == 10.0
    assert set(m) == {*expected_rates, "test/episode_length", "test/multistep_completed", "test/episodes",
                      *(f"test/success_rate_{s}_ci_{e}" for s in ("seen", "unseen_combo") for e in ("low", "high"))}


def test_multistep_completed_falls_back_to_all_episodes_without_multistep_families():
    results = [episode("pick_place", "seen", True, 40, 1, 1), episode("push", "perturbed", False, 100, 0, 1),
               episode("stack", "perturbed", True, 55, 1, 1)]
    m = rollout_metrics(results)
    assert m["test/multistep_completed"] == pytest.approx(2 / 3)
    assert m["test/success_rate_perturbed"] == pytest.approx(1 / 2)
    assert m["test/success_rate_seen_ci_low"] == pytest.approx(score_test_bounds(1, 1)[0], abs=1e-9)
    assert m["test/success_rate_seen_ci_high"] == 1.0


def test_rollout_metrics_refuses_no_results():
    with pytest.raises(ValueError, match="no rollouts"):
        rollout_metrics([])
