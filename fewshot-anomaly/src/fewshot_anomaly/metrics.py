"""Anomaly detection and localisation metrics of MVTec AD, computed exactly.

The five numbers reported on MVTec AD (PaDiM, PatchCore, CutPaste, CFLOW-AD papers and anomalib):

- image AUROC and image F1-max: one score per image against its good/defective label;
- pixel AUROC and pixel F1-max: every pixel of every anomaly map against the ground-truth masks;
- AUPRO: area under the per-region-overlap curve up to a false positive rate of 0.3, normalised to [0, 1]
  (Bergmann et al., "The MVTec Anomaly Detection Dataset: A Comprehensive Real-World Dataset for Unsupervised
  Anomaly Detection", IJCV 2021; MVTec's official evaluation code `pro_curve_util.py`).

All three functions share one idea: sort the scores once in descending order, walk down the sorted list
accumulating per-pixel contributions with cumulative sums, and read the curve at the last element of each run of
tied scores (a threshold t labels "anomalous" everything with score >= t, so tied scores enter together). This
evaluates every distinct threshold exactly, with no binning, in O(n log n): about 20 million pixels (a full MVTec
category at 256 x 256) take a few seconds on a CPU.

We compute the curves ourselves rather than with torchmetrics' binary curves because those apply a sigmoid to
scores outside [0, 1]; in float32 the sigmoid maps distinct large scores (e.g. Mahalanobis distances of PaDiM)
to the same value, which creates false ties and changes the result.
"""

import cv2
import numpy as np
import torch
from torch import Tensor

ArrayLike = np.ndarray | Tensor


def _to_numpy(x: ArrayLike) -> np.ndarray:
    """Return a numpy view/copy of a numpy array or a torch tensor (any device)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _check_binary(labels: np.ndarray, name: str) -> np.ndarray:
    """Return labels as bool, refusing anything but {0, 1} (e.g. a 0/255 mask read from a PNG)."""
    if labels.dtype != np.bool_ and not ((labels == 0) | (labels == 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1, found values {np.unique(labels)[:10]}")
    return labels.astype(bool, copy=False)


def _scores_and_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Flatten scores and binary labels of the same number of elements."""
    scores = _to_numpy(scores).ravel()
    labels = _to_numpy(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in size: {scores.size} vs {labels.size}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return scores, _check_binary(labels, "labels")


def _descending_run_ends(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort scores in descending order; return the order and the index of the last element of each tie run.

    Reading a cumulative sum over the sorted elements at these indices gives its value at every distinct
    threshold t with the rule "score >= t", from the highest threshold to the lowest.
    """
    order = np.argsort(scores)[::-1]  # the order within a tie run does not matter: only run ends are read
    sorted_scores = scores[order]
    run_ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    return order, run_ends


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Exact area under the ROC curve, i.e. the Mann-Whitney U statistic with ties counted 1/2.

    AUROC = P(score of a random positive > score of a random negative) + 1/2 P(equal)
    (Hanley & McNeil, "The meaning and use of the area under a ROC curve", Radiology 1982). This is the value of
    `sklearn.metrics.roc_auc_score` and of torchmetrics' exact `binary_auroc` (thresholds=None) on scores in
    [0, 1], which anomalib's image/pixel AUROC wraps. Inputs of any shape are flattened.

    Raises:
        ValueError: if labels contain a single class (the statistic is then undefined).
    """
    scores, labels = _scores_and_labels(scores, labels)
    num_pos = int(labels.sum())
    num_neg = labels.size - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError(f"AUROC needs both classes, labels have {num_pos} positives and {num_neg} negatives")

    order, run_ends = _descending_run_ends(scores)
    # ROC points (false positives, true positives) as integer counts, one per distinct threshold, from (0, 0).
    tp = np.append(0, np.cumsum(labels[order])[run_ends])
    fp = np.append(0, run_ends + 1 - tp[1:])
    # Trapezoids under the ROC curve: a run of tied scores is a diagonal segment, which is exactly the
    # "ties count 1/2" of the rank statistic. Integers until the last division, so the result is exact.
    twice_area = np.sum(np.diff(fp) * (tp[1:] + tp[:-1]))
    return float(twice_area / (2 * num_pos * num_neg))


def f1_max(scores: ArrayLike, labels: ArrayLike) -> float:
    """Maximum F1 score over all thresholds (anomalib `F1Max`).

    anomalib computes torchmetrics' precision-recall curve over every distinct score and returns
    max 2 P R / (P + R). We evaluate the same thresholds exactly on the raw scores (no sigmoid, no min-max
    normalisation, which could merge distinct scores), using F1 = 2 TP / (2 TP + FP + FN),
    i.e. 2 TP / (#predicted + #positives).
    Inputs of any shape are flattened.

    Raises:
        ValueError: if labels contain no positive (F1 is then 0/0 at every threshold).
    """
    return f1_max_threshold(scores, labels)[0]


def f1_max_threshold(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """The maximum F1 (see ``f1_max``) and the threshold t that reaches it (predict "score >= t"),
    anomalib's F1AdaptiveThreshold."""
    scores, labels = _scores_and_labels(scores, labels)
    num_pos = int(labels.sum())
    if num_pos == 0:
        raise ValueError("F1-max needs at least one positive label")

    order, run_ends = _descending_run_ends(scores)
    tp = np.cumsum(labels[order])[run_ends]
    num_predicted = run_ends + 1
    f1 = 2 * tp / (num_predicted + num_pos)
    best = int(np.argmax(f1))
    return float(f1[best]), float(scores[order][run_ends[best]])


def aupro(maps: ArrayLike, masks: ArrayLike, fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap (PRO) curve up to `fpr_limit`, divided by `fpr_limit`.

    Bergmann et al., IJCV 2021, as implemented by MVTec's evaluation code (`compute_pro`,
    `trapezoid`) and anomalib `_AUPRO`:

    - regions are the connected components of each image's ground-truth mask, computed per image (a defect
      never continues into the next image) with 8-connectivity (`cv2.connectedComponents(connectivity=8)`,
      the 3 x 3 structuring element of MVTec's `scipy.ndimage.label` call and anomalib's CCA);
    - at threshold t, PRO(t) = mean over all regions r of all images of |{p in r : map(p) >= t}| / |r|, and
      FPR(t) = fraction of all normal pixels (mask == 0) of all images with map >= t;
    - the curve starts at (0, 0); the PRO at exactly FPR = fpr_limit is linearly interpolated between its two
      neighbouring points; the trapezoid integral over [0, fpr_limit] is divided by fpr_limit so that a
      perfect map scores 1.

    Every distinct threshold is evaluated exactly (MVTec's way; anomalib resamples per-region ROC curves onto a
    common grid; the two agree to 1e-5 on the shared reference fixture).

    Args:
        maps: (N, H, W) anomaly maps, higher is more anomalous.
        masks: (N, H, W) ground truth, 1 on defects, 0 elsewhere.
        fpr_limit: upper integration limit on the false positive rate, in (0, 1].

    Raises:
        ValueError: if the masks contain no defect or no normal pixel.
    """
    maps = _to_numpy(maps)
    masks = _to_numpy(masks)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"maps and masks must both be (N, H, W), got {maps.shape} and {masks.shape}")
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must lie in (0, 1], got {fpr_limit}")
    if np.isnan(maps).any():
        raise ValueError("maps contain NaN")
    masks = _check_binary(masks, "masks")

    # Region id of every pixel: 0 for normal pixels, 1..R for the regions of all images (ids made unique
    # across images by an offset, since components are labelled per image).
    regions = np.zeros(masks.shape, dtype=np.int64)
    num_regions = 0
    for i, mask in enumerate(masks):
        num_labels, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        regions[i] = np.where(components > 0, components + num_regions, 0)
        num_regions += num_labels - 1  # label 0 is the background
    regions = regions.ravel()
    region_size = np.bincount(regions, minlength=num_regions + 1)
    num_normal = int(region_size[0])
    if num_regions == 0 or num_normal == 0:
        raise ValueError(
            f"AUPRO needs defect and normal pixels, masks have {num_regions} regions and {num_normal} normal pixels"
        )

    # Each pixel of region r adds 1 / (|r| R) to the PRO once the threshold passes below its score; each normal
    # pixel adds 1 / N_normal to the FPR.
    pro_step = np.append(0.0, 1.0 / (region_size[1:] * num_regions))
    order, run_ends = _descending_run_ends(maps.ravel())
    sorted_regions = regions[order]
    fpr = np.append(0.0, np.cumsum(sorted_regions == 0)[run_ends] / num_normal)  # integer counts: ends at 1 exactly
    pro = np.append(0.0, np.cumsum(pro_step[sorted_regions])[run_ends])

    # Keep the points with FPR <= fpr_limit and close the curve at exactly fpr_limit by linear interpolation
    # (MVTec's `trapezoid(x_max=...)`). fpr ends at 1 >= fpr_limit, so a next point exists whenever one is needed.
    num_kept = int(np.searchsorted(fpr, fpr_limit, side="right"))
    fpr_kept, pro_kept = fpr[:num_kept], pro[:num_kept]
    if fpr_kept[-1] < fpr_limit:
        weight = (fpr_limit - fpr[num_kept - 1]) / (fpr[num_kept] - fpr[num_kept - 1])
        pro_at_limit = pro[num_kept - 1] + weight * (pro[num_kept] - pro[num_kept - 1])
        fpr_kept = np.append(fpr_kept, fpr_limit)
        pro_kept = np.append(pro_kept, pro_at_limit)
    return float(np.trapezoid(pro_kept, fpr_kept) / fpr_limit)


class AnomalyMetrics:
    """Accumulates anomaly maps, image scores, masks and labels over batches; computes the five MVTec AD metrics.

    Pixel metrics (pixel AUROC, pixel F1-max, AUPRO) run over all pixels of all accumulated images, image metrics
    over the image scores, as in anomalib and the papers. Maps are kept as float32 CPU tensors (an MVTec test
    set at 256 x 256 is about 20 million pixels, 80 MB).

    A metric that is undefined on the accumulated data is returned as float('nan') instead of raising, so that
    e.g. a validation set of normal images only does not stop training: AUROCs and AUPRO need both classes
    (of images, respectively pixels), F1-max needs at least one anomalous image, respectively pixel.
    """

    def __init__(self, fpr_limit: float = 0.3) -> None:
        self.fpr_limit = fpr_limit
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.maps: list[Tensor] = []
        self.scores: list[Tensor] = []
        self.masks: list[Tensor] = []
        self.labels: list[Tensor] = []

    def update(self, maps: Tensor, scores: Tensor, masks: Tensor, labels: Tensor) -> None:
        """Add a batch: maps (B, H, W) float, scores (B,) float, masks (B, H, W) in {0, 1}, labels (B,) in {0, 1}."""
        batch = maps.shape[:1]
        if maps.ndim != 3 or masks.shape != maps.shape or scores.shape != batch or labels.shape != batch:
            raise ValueError(
                "expected maps (B, H, W), scores (B,), masks (B, H, W), labels (B,); got "
                f"{tuple(maps.shape)}, {tuple(scores.shape)}, {tuple(masks.shape)}, {tuple(labels.shape)}"
            )
        # Check before casting to bool, which would silently turn a 0/255 or soft mask into 0/1.
        for name, target in (("masks", masks), ("labels", labels)):
            if not ((target == 0) | (target == 1)).all():
                raise ValueError(f"{name} must contain only 0 and 1")
        self.maps.append(maps.detach().to("cpu", torch.float32))
        self.scores.append(scores.detach().to("cpu", torch.float64))
        self.masks.append(masks.detach().to("cpu", torch.bool))
        self.labels.append(labels.detach().to("cpu", torch.bool))

    def compute(self) -> dict[str, float]:
        """Return image_auroc, pixel_auroc, aupro, image_f1max, pixel_f1max (NaN where undefined)."""
        if not self.maps:
            raise RuntimeError("AnomalyMetrics.compute() called before any update()")
        maps = torch.cat(self.maps).numpy()
        scores = torch.cat(self.scores).numpy()
        masks = torch.cat(self.masks).numpy()
        labels = torch.cat(self.labels).numpy()

        has_anomalous_image, has_normal_image = bool(labels.any()), not bool(labels.all())
        has_anomalous_pixel, has_normal_pixel = bool(masks.any()), not bool(masks.all())
        nan = float("nan")
        return {
            "image_auroc": auroc(scores, labels) if has_anomalous_image and has_normal_image else nan,
            "pixel_auroc": auroc(maps, masks) if has_anomalous_pixel and has_normal_pixel else nan,
            "aupro": aupro(maps, masks, self.fpr_limit) if has_anomalous_pixel and has_normal_pixel else nan,
            "image_f1max": f1_max(scores, labels) if has_anomalous_image else nan,
            "pixel_f1max": f1_max(maps, masks) if has_anomalous_pixel else nan,
        }

    def f1_threshold(self) -> float | None:
        """The pixel threshold of maximum F1 on what was accumulated (None without defect pixels):
        the threshold pictures and users apply to maps, chosen on validation as anomalib does."""
        masks = torch.cat(self.masks)
        if not bool(masks.any()):
            return None
        return f1_max_threshold(torch.cat(self.maps), masks)[1]
