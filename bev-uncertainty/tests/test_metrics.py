"""BEV segmentation metrics against hand-computed cases and brute-force references."""

import math

import numpy as np
import pytest
import torch

from bev_uncertainty.metrics import reliability_bins, segmentation_metrics, sparsification

# ---------------------------------------------------------------------------------------------------------------
# Brute-force references: direct transcriptions of the definitions.


def brute_auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Fraction of (positive, negative) pairs where the positive scores higher, ties counted 1/2."""
    diff = score[positive][:, None] - score[~positive][None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def brute_average_precision(score: np.ndarray, positive: np.ndarray) -> float:
    """Mean over positives of the precision among the cells ranked at or above it (distinct scores)."""
    ranked = positive[np.argsort(-score)]
    precision_at_rank = np.cumsum(ranked) / np.arange(1, ranked.size + 1)
    return float(precision_at_rank[ranked].mean())


def percentile_sparsification(error: np.ndarray, uncertainty: np.ndarray, steps: int) -> tuple:
    """Poggi et al.'s procedure in numpy: keep the cells whose negated score is >= its i/steps percentile."""
    fractions = np.arange(steps + 1) / steps

    def curve(score: np.ndarray) -> np.ndarray:
        neg = -score
        kept_means = [error[neg >= np.percentile(neg, 100 * i / steps)].mean() for i in range(steps)]
        return np.array([*kept_means, 0.0])

    sparse, oracle = curve(uncertainty), curve(error)
    return sparse, oracle, np.trapezoid(sparse, fractions) - np.trapezoid(oracle, fractions)


def random_cells(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g, dtype=torch.float64), torch.randint(0, 2, (n,), generator=g)


# ---------------------------------------------------------------------------------------------------------------
# Segmentation and calibration metrics on hand-computed cases.


def test_hand_example_iou_nll_brier():
    prob = torch.tensor([0.9, 0.7, 0.6, 0.3, 0.2, 0.5])
    target = torch.tensor([1, 0, 1, 1, 0, 0])
    m = segmentation_metrics(prob, target, uncertainty=torch.rand(6))
    # Prediction prob >= 0.5: [1, 1, 1, 0, 0, 1] -> TP cells 0, 2; FP cells 1, 5 (0.5 counts as vehicle); FN cell 3.
    assert m["iou"] == pytest.approx(2 / (2 + 2 + 1))
    # p(true class): 0.9, 1 - 0.7, 0.6, 0.3, 1 - 0.2, 1 - 0.5.
    nll = -(math.log(0.9) + math.log(0.3) + math.log(0.6) + math.log(0.3) + math.log(0.8) + math.log(0.5)) / 6
    assert m["nll"] == pytest.approx(nll, rel=1e-6)
    # Two-class Brier per cell = 2 (p - y)^2: 2 * (0.01 + 0.49 + 0.16 + 0.49 + 0.04 + 0.25) / 6.
    assert m["brier"] == pytest.approx(2 * 1.44 / 6, rel=1e-6)


def test_ece_and_reliability_bins_by_hand():
    prob = torch.tensor([0.9, 0.8, 0.6, 0.3])
    target = torch.tensor([1, 0, 1, 1])
    # Top label and confidence: vehicle 0.9 (right), vehicle 0.8 (wrong), vehicle 0.6 (right), background 0.7
    # (wrong). With 4 bins only [0.5, 0.75) and [0.75, 1) are used:
    #   [0.5, 0.75): confidences 0.6, 0.7 -> mean 0.65, accuracy 1/2
    #   [0.75, 1):   confidences 0.9, 0.8 -> mean 0.85, accuracy 1/2
    ece = 2 / 4 * abs(0.5 - 0.65) + 2 / 4 * abs(0.5 - 0.85)
    assert segmentation_metrics(prob, target, torch.rand(4), n_bins=4)["ece"] == pytest.approx(ece, abs=1e-6)

    confidence, accuracy, count = reliability_bins(prob, target, n_bins=4)
    assert count.tolist() == [0, 0, 2, 2]
    assert torch.isnan(confidence[:2]).all() and torch.isnan(accuracy[:2]).all()
    assert confidence[2:].tolist() == pytest.approx([0.65, 0.85], abs=1e-6)
    assert accuracy[2:].tolist() == [0.5, 0.5]


def test_saturated_probabilities_fall_in_the_last_bin():
    # p = 1.0 exactly (a saturated float32 sigmoid) must share the bin [14/15, 1) with p = 0.95, as in Guo et al.,
    # not get the extra bin that torchmetrics keeps for a confidence of exactly 1.0 (which would give 0.525).
    prob, target = torch.tensor([1.0, 0.95]), torch.tensor([0, 1])
    ece = abs(0.5 - (1 + 0.95) / 2)
    assert segmentation_metrics(prob, target, torch.rand(2))["ece"] == pytest.approx(ece, abs=1e-6)
    assert reliability_bins(prob, target)[2].tolist() == [0] * 14 + [2]


def test_reliability_bins_reproduce_the_ece():
    prob, target = random_cells(2000, seed=0)
    prob[:30] = torch.tensor([0.0, 1.0, 0.5]).repeat(10)  # saturated and tied probabilities too
    confidence, accuracy, count = reliability_bins(prob, target)
    used = count > 0
    ece_from_bins = (count[used] / count.sum() * (accuracy[used] - confidence[used]).abs()).sum()
    assert count.sum() == 2000 and not used[:7].any()  # top-label confidence >= 0.5
    assert float(ece_from_bins) == pytest.approx(segmentation_metrics(prob, target, prob)["ece"], abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Misclassification and OOD detection against brute force.


def test_misclassification_auroc_and_aupr_brute_force():
    prob, target = random_cells(400, seed=1)
    g = torch.Generator().manual_seed(2)
    misclassified = ((prob >= 0.5) != target.bool()).numpy()
    # Scores far outside [0, 1]: a sigmoid inside torchmetrics would tie them all at 1.0 in float32.
    tied = (torch.randn(400, generator=g) * 30).round()  # many ties: they count 1/2 in the AUROC
    assert segmentation_metrics(prob, target, tied)["auroc_misclassification"] == pytest.approx(
        brute_auroc(tied.numpy(), misclassified), abs=1e-6
    )
    distinct = torch.randn(400, generator=g) * 30
    m = segmentation_metrics(prob, target, distinct)
    assert m["auroc_misclassification"] == pytest.approx(brute_auroc(distinct.numpy(), misclassified), abs=1e-6)
    assert m["aupr_misclassification"] == pytest.approx(
        brute_average_precision(distinct.numpy(), misclassified), abs=1e-6
    )


def test_ood_auroc_and_aupr_brute_force():
    prob, target = random_cells(400, seed=3)
    g = torch.Generator().manual_seed(4)
    uncertainty, ood_score = torch.rand(400, generator=g), torch.randn(400, generator=g) * 30 + 50
    ood = torch.rand(400, generator=g) < 0.1

    m = segmentation_metrics(prob, target, uncertainty, ood_score=ood_score, ood=ood)
    assert m["auroc_ood"] == pytest.approx(brute_auroc(ood_score.numpy(), ood.numpy()), abs=1e-6)
    assert m["aupr_ood"] == pytest.approx(brute_average_precision(ood_score.numpy(), ood.numpy()), abs=1e-6)

    default = segmentation_metrics(prob, target, uncertainty, ood=ood)  # ood_score defaults to uncertainty
    assert default["auroc_ood"] == pytest.approx(brute_auroc(uncertainty.numpy(), ood.numpy()), abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Sparsification and AUSE.


def test_sparsification_by_hand():
    error = torch.tensor([1.0, 2.0, 3.0, 4.0])
    uncertainty = torch.tensor([0.1, 0.4, 0.3, 0.2])  # removal order: errors 2, 3, 4, then 1
    # N = 4, steps = 4: ceil(i * 3 / 4) = i cells removed at fraction i / 4, then 0 appended at fraction 1.
    fractions, curve, oracle, ause = sparsification(error, uncertainty, steps=4)
    assert fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert curve.tolist() == pytest.approx([10 / 4, (1 + 3 + 4) / 3, (1 + 4) / 2, 1, 0])
    assert oracle.tolist() == pytest.approx([10 / 4, (1 + 2 + 3) / 3, (1 + 2) / 2, 1, 0])
    # Differences 0, 2/3, 1, 0, 0; trapezoid rule with step 1/4.
    assert ause == pytest.approx(0.25 * (2 / 3 + 1))


def test_sparsification_reversed_ordering():
    error = torch.tensor([1.0, 2.0, 3.0, 4.0])
    _, curve, _, ause = sparsification(error, -error, steps=4)  # most uncertain = smallest error
    assert curve.tolist() == pytest.approx([2.5, 3, 3.5, 4, 0])
    assert ause == pytest.approx(0.25 * (1 + 2 + 3)) and ause > 0


def test_sparsification_perfect_ordering_gives_zero():
    error, _ = random_cells(1000, seed=5)
    _, curve, oracle, ause = sparsification(error, 3 * error + 1)  # any increasing function of the error
    assert torch.equal(curve, oracle) and ause == 0


def test_sparsification_ties_are_removed_in_index_order():
    error = torch.tensor([1.0, 2.0, 3.0, 4.0])
    _, curve, _, _ = sparsification(error, torch.zeros(4), steps=4)
    assert curve.tolist() == pytest.approx([2.5, 3, 3.5, 4, 0])


def test_sparsification_and_ause_key_match_percentile_procedure():
    # N - 1 = 1001 is coprime with steps = 20, so no percentile falls exactly on a cell and rounding cannot matter;
    # ceil(i (N - 1) / steps) = 50 i + 1 cells removed, where i N / steps rounded would give 50 i.
    prob, target = random_cells(1002, seed=6)
    uncertainty = torch.rand(1002, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    error = 2 * (prob - target) ** 2
    sparse_ref, oracle_ref, ause_ref = percentile_sparsification(error.numpy(), uncertainty.numpy(), steps=20)

    _, curve, oracle, ause = sparsification(error, uncertainty, steps=20)
    np.testing.assert_allclose(curve.numpy(), sparse_ref, rtol=1e-12)
    np.testing.assert_allclose(oracle.numpy(), oracle_ref, rtol=1e-12)
    assert ause == pytest.approx(ause_ref, rel=1e-9) and ause > 0.01  # random uncertainty is far from the oracle
    assert segmentation_metrics(prob, target, uncertainty)["ause"] == pytest.approx(ause_ref, rel=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Undefined metrics and bad inputs.


def test_undefined_detection_metrics_are_nan():
    target = torch.tensor([1, 0, 1, 0])
    prob, uncertainty = target.double(), torch.rand(4)
    ood_keys = ("auroc_ood", "aupr_ood")
    misclassification_keys = ("auroc_misclassification", "aupr_misclassification")
    for ood in (None, torch.zeros(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)):
        m = segmentation_metrics(prob, target, uncertainty, ood=ood)
        assert all(math.isnan(m[k]) for k in ood_keys + misclassification_keys)  # prob == target: no errors
        assert m["iou"] == 1 and not math.isnan(m["ause"])
    all_wrong = segmentation_metrics(1 - prob, target, uncertainty, ood=torch.tensor([True, False, False, False]))
    assert all(math.isnan(all_wrong[k]) for k in misclassification_keys)
    assert all_wrong["auroc_ood"] == pytest.approx(
        brute_auroc(uncertainty.numpy(), np.array([True, False, False, False]))
    )


def test_bad_shapes_raise_value_error_naming_the_argument():
    prob, target, uncertainty = torch.rand(5), torch.ones(5), torch.rand(5)
    with pytest.raises(ValueError, match=r"target .*\(5,\).*\(4,\)"):
        segmentation_metrics(prob, target[:4], uncertainty)
    with pytest.raises(ValueError, match="ood_score"):
        segmentation_metrics(prob, target, uncertainty, ood_score=torch.rand(6))
    with pytest.raises(ValueError, match=r"prob .*\(1, 5\)"):
        segmentation_metrics(prob[None], target, uncertainty)
    with pytest.raises(ValueError, match="uncertainty"):
        sparsification(torch.rand(5), torch.rand(5, 1))
