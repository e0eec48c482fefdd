"""Segmentation, calibration and uncertainty metrics of binary BEV segmentation (vehicle vs background).

The evaluation flattens the valid cells of every test sample into 1-D tensors and calls these functions once at
the end of the test epoch (millions of cells), so everything is vectorised and sort-based.

- `segmentation_metrics`: vehicle IoU, calibration (ECE, NLL, Brier), misclassification and out-of-distribution
  detection from the per-cell uncertainty (AUROC, AUPR), and AUSE.
- `sparsification`: sparsification curve, oracle curve and AUSE (Poggi et al., CVPR 2020).
- `reliability_bins`: the per-bin confidence/accuracy/count of a reliability diagram, the same bins as the ECE.

Conventions shared by all three: a cell is predicted "vehicle" when prob >= 0.5, and probabilities are clamped to
[PROB_EPS, 1 - PROB_EPS] wherever a log or a top-label confidence is taken.
"""

import math

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_jaccard_index,
    multiclass_calibration_error,
)

# Clamp of probabilities for the NLL (log 0) and the top-label confidence (see `_two_class_probs`).
PROB_EPS = 1e-7


def _check_1d(reference: str, **tensors: Tensor | None) -> int:
    """Check that every given tensor is 1-D with as many elements as `tensors[reference]`; return that number.

    The names in the error message are the argument names, so a caller sees which input is wrong.
    """
    ref = tensors[reference]
    if ref.ndim != 1 or ref.numel() == 0:
        raise ValueError(f"{reference} must be a non-empty 1-D tensor, got shape {tuple(ref.shape)}")
    for name, x in tensors.items():
        if x is not None and x.shape != ref.shape:
            raise ValueError(
                f"{name} must have the shape of {reference} {tuple(ref.shape)}, got shape {tuple(x.shape)}"
            )
    return ref.numel()


def _two_class_probs(prob: Tensor) -> Tensor:
    """(N, 2) float32 probabilities [1 - p, p] of (background, vehicle), with p clamped to [eps, 1 - eps].

    Why the clamp: torchmetrics bins top-label confidences with `bucketize(..., right=True)` on
    linspace(0, 1, n_bins + 1), which puts a confidence of exactly 1.0 in an extra (n_bins + 1)-th bin of its
    own. A saturated sigmoid gives exactly 0.0 or 1.0 in float32 for many background cells, so without the clamp
    the "15-bin" ECE would silently use 16 bins. Clamping moves those cells into the last bin [14/15, 1), as in
    Guo et al.'s bins, and changes the ECE by at most 1e-7.
    """
    p = prob.float().clamp(PROB_EPS, 1 - PROB_EPS)
    return torch.stack([1 - p, p], dim=1)


def _brier_per_cell(prob: Tensor, target: Tensor) -> Tensor:
    """Per-cell Brier score summed over the two classes: (p - y)^2 + ((1 - p) - (1 - y))^2 = 2 (p - y)^2."""
    return 2 * (prob.double() - target.double()) ** 2


def _dense_rank_01(score: Tensor) -> Tensor:
    """Map scores to [0, 1] keeping their order and their ties (dense rank / max rank).

    torchmetrics' binary AUROC/AP apply a sigmoid to scores outside [0, 1]; in float32 the sigmoid maps distinct
    large scores (e.g. variances, energies above ~17) to 1.0, which creates false ties and changes the result.
    """
    _, rank = torch.unique(score, sorted=True, return_inverse=True)
    return rank.double() / max(int(rank.max()), 1)


def auroc_aupr(score: Tensor, positive: Tensor) -> tuple[float, float]:
    """AUROC and average precision of `score` for detecting `positive`; NaN when a class is absent."""
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == positive.numel():
        return math.nan, math.nan
    preds, target = _dense_rank_01(score), positive.long()
    return float(binary_auroc(preds, target)), float(binary_average_precision(preds, target))


def segmentation_metrics(
    prob: Tensor,
    target: Tensor,
    uncertainty: Tensor,
    ood_score: Tensor | None = None,
    ood: Tensor | None = None,
    n_bins: int = 15,
) -> dict[str, float]:
    """All test metrics of binary BEV segmentation with per-cell uncertainty, over the cells passed in.

    Args:
        prob: (N,) probability of the vehicle class.
        target: (N,) vehicle label in {0, 1} (bool or int). Out-of-distribution cells count as their label says.
        uncertainty: (N,) higher = less certain; scores misclassification detection and AUSE.
        ood_score: (N,) higher = more likely out-of-distribution; defaults to `uncertainty`.
        ood: (N,) bool, True on cells of out-of-distribution objects. The OOD keys are NaN when it is None or
            has only one class.
        n_bins: number of equal-width confidence bins of the ECE.

    Returns:
        A dict of floats:

        - iou: vehicle IoU of the prediction prob >= 0.5 (torchmetrics `binary_jaccard_index` on the hard
          prediction, because torchmetrics' own threshold is prob > 0.5).
        - ece: top-label expected calibration error of Guo et al., "On Calibration of Modern Neural Networks",
          ICML 2017, eq. (3): n_bins equal-width bins of the confidence max(p, 1 - p), L1, computed by torchmetrics
          `multiclass_calibration_error` on [1 - p, p] (see `_two_class_probs` for the clamp). The other convention,
          torchmetrics `binary_calibration_error`, bins p itself and compares it with the vehicle frequency
          ("positive-class" ECE); it gives a different number. At p == 0.5 exactly, the top label is background
          (argmax takes the first maximum), whereas iou and the misclassification keys predict vehicle.
        - nll: mean of -log p(true class), p clamped to [1e-7, 1 - 1e-7].
        - brier: mean over cells of the sum over the two classes of (p_c - y_c)^2, the multi-class form of
          Brier, "Verification of forecasts expressed in terms of probability", Monthly Weather Review 1950.
          The binary convention (p - y)^2 (e.g. sklearn `brier_score_loss`) is exactly half of it.
        - auroc_misclassification, aupr_misclassification: detection of misclassified cells ((prob >= 0.5) !=
          target) by `uncertainty` (Hendrycks & Gimpel, ICLR 2017), torchmetrics `binary_auroc` and
          `binary_average_precision` (exact, no binning); NaN when no cell or every cell is misclassified.
        - auroc_ood, aupr_ood: detection of `ood` cells by `ood_score` over all cells passed in.
        - ause: area under the sparsification error of the per-cell Brier score ordered by `uncertainty`,
          see `sparsification`.
    """
    _check_1d("prob", prob=prob, target=target, uncertainty=uncertainty, ood_score=ood_score, ood=ood)
    target = target.long()
    predicted = prob >= 0.5
    misclassified = predicted != target.bool()

    p_true = torch.where(target.bool(), prob.double(), 1 - prob.double()).clamp(PROB_EPS, 1 - PROB_EPS)
    brier = _brier_per_cell(prob, target)
    ece = multiclass_calibration_error(_two_class_probs(prob), target, num_classes=2, n_bins=n_bins, norm="l1")

    auroc_mis, aupr_mis = auroc_aupr(uncertainty, misclassified)
    if ood is None:
        auroc_ood, aupr_ood = math.nan, math.nan
    else:
        auroc_ood, aupr_ood = auroc_aupr(uncertainty if ood_score is None else ood_score, ood.bool())

    return {
        "iou": float(binary_jaccard_index(predicted.long(), target)),
        "ece": float(ece),
        "nll": float(-p_true.log().mean()),
        "brier": float(brier.mean()),
        "auroc_misclassification": auroc_mis,
        "aupr_misclassification": aupr_mis,
        "auroc_ood": auroc_ood,
        "aupr_ood": aupr_ood,
        "ause": sparsification(brier, uncertainty)[3],
    }


def sparsification(error: Tensor, uncertainty: Tensor, steps: int = 20) -> tuple[Tensor, Tensor, Tensor, float]:
    """Sparsification curve, oracle curve and AUSE (area under the sparsification error).

    Poggi et al., "On the uncertainty of self-supervised monocular depth estimation", CVPR 2020, reference code
    github.com/mattpoggi/mono-uncertainty, `evaluate.py`, function `compute_aucs`. What that code does, and we do:

    - Fractions removed: f_i = i / steps for i = 0..steps (there `intervals`, default 50; ours 20). For i < steps
      it removes the most uncertain cells with a percentile threshold, `uncert >= np.percentile(uncert, 100 f_i)`
      on the negated uncertainty. With distinct scores and numpy's linear interpolation this removes exactly
      ceil(f_i (N - 1)) cells, which is what we remove.
    - Curve value: the mean error of the cells kept (for its RMSE metric the square root of that mean; for ours,
      the plain mean). The point f = 1 (nothing left) is appended with value 0.
    - Oracle curve: the same with the cells ordered by their true error (largest removed first).
    - No normalisation by the first value (unlike Ilg et al., ECCV 2018, whose curves start at 1).
    - AUSE = trapz(curve, f) - trapz(oracle, f), trapezoid rule over the fraction axis.

    Where we differ: Poggi's errors are per-pixel depth errors (abs_rel, RMSE, delta outliers) and AUSE is averaged
    over images; for segmentation we pass the per-cell Brier score (our choice) and compute one AUSE over all
    cells. Tied uncertainties: the percentile threshold keeps a whole tie run together; we order ties
    deterministically by a stable sort (among equal uncertainties, the earlier cell is removed first). Ties in
    the error do not change the oracle curve.

    Args:
        error: (N,) per-cell error, lower is better.
        uncertainty: (N,) per-cell uncertainty, higher = removed first.
        steps: number of intervals of the fraction axis.

    Returns:
        (fractions, curve, oracle, ause): three float64 tensors of steps + 1 points and the AUSE as a float.
    """
    n = _check_1d("error", error=error, uncertainty=uncertainty)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    i = torch.arange(steps)
    removed = (i * (n - 1) + steps - 1) // steps  # ceil(i (N - 1) / steps), in integers to avoid rounding
    fractions = torch.arange(steps + 1, dtype=torch.float64) / steps

    def curve_for(order_key: Tensor) -> Tensor:
        order = torch.sort(order_key, descending=True, stable=True).indices
        sorted_error = error.double()[order]
        # kept_sum[k] = sum of the errors left after removing the first k; a suffix sum, not total - prefix sum,
        # so that the few cells left at the end of the curve do not suffer from cancellation.
        kept_sum = sorted_error.flip(0).cumsum(0).flip(0)
        kept_mean = kept_sum[removed] / (n - removed)
        return torch.cat([kept_mean, kept_mean.new_zeros(1)])

    curve = curve_for(uncertainty)
    oracle = curve_for(error)
    ause = float(torch.trapezoid(curve - oracle, fractions))
    return fractions, curve, oracle, ause


def reliability_bins(prob: Tensor, target: Tensor, n_bins: int = 15) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin mean top-label confidence, accuracy and cell count, for a reliability diagram (Guo et al. 2017).

    The bins are those of the `ece` of `segmentation_metrics`: n_bins equal-width bins [k / n_bins,
    (k + 1) / n_bins) of the confidence max(p, 1 - p) (p clamped as there), the top label being the argmax of
    [1 - p, p]; so sum_k count_k / N * |accuracy_k - confidence_k| over non-empty bins is that ECE. The
    confidence is at least 0.5, so the bins below 0.5 are always empty.

    Returns:
        (confidence, accuracy, count): float64, float64 and int64 tensors of n_bins entries; confidence and
        accuracy are NaN in empty bins.
    """
    _check_1d("prob", prob=prob, target=target)
    confidence, label = _two_class_probs(prob).max(dim=1)
    correct = (label == target.long()).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype)
    index = torch.bucketize(confidence, edges, right=True) - 1  # same binning as torchmetrics
    count = torch.bincount(index, minlength=n_bins)
    conf_sum = torch.bincount(index, weights=confidence.double(), minlength=n_bins)
    correct_sum = torch.bincount(index, weights=correct, minlength=n_bins)
    return conf_sum / count, correct_sum / count, count
