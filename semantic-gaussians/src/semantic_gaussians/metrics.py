"""Open-vocabulary query metrics as LangSplat evaluates them, and semantic mIoU of rendered features.

Relevancy (LERF, Kerr et al. ICCV 2023; LangSplat, Qin et al. CVPR 2024, ``OpenCLIPNetwork.get_relevancy``): for a
unit feature f and the unit text embeddings of the query q and of the canonical negatives n_i ("object", "things",
"stuff", "texture"), ``relevancy = min_i softmax(10 [f.q, f.n_i])_0``, i.e. ``min_i 1 / (1 + exp(10 (f.n_i - f.q)))``.

LangSplat's evaluation (``eval/evaluate_iou_loc.py``), per test image and text query present in it, with one
relevancy map per feature level (LangSplat: 3 SAM levels; here the levels a method has: object, part):

- localization: each level's map is box-filtered (``cv2.filter2D``, a k x k mean, k = 30 in their code at their
  ~1264-px width); the level with the highest maximum is chosen; the query is localised when any pixel attaining
  that maximum lies inside one of the query's ground-truth boxes (inclusive pixel bounds);
- mask IoU: each level's map becomes ``0.5 (box(r) + r)``, is min-max normalised to [0, 1] as ``(r - min) /
  (max(r - min) + 1e-9)``, mapped by ``2x - 1`` and clipped to [0, 1], thresholded at ``> 0.4`` (their
  ``mask_thresh``), then smoothed by a majority filter of half-size 3 (their ``smooth``, whose window stops one
  pixel short of the last row and column: kept); the level with the highest maximum of ``0.5 (box(r) + r)`` is
  chosen and its IoU with the ground-truth mask counts.

Their windows are sized for ~1264-px-wide images; here both scale with the image width: k = max(1,
round(30 W / 1264)) and the smoothing half-size max(1, round(3 W / 1264)) (3 and 1 at 128 px). ``loc_acc`` is the
share of localised (image, query) pairs, ``query_miou`` the mean IoU over them (LangSplat averages per scene over
queries; with one scene it is the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

NEGATIVES = ("object", "things", "stuff", "texture")
TEMPERATURE = 10.0
MASK_THRESHOLD = 0.4
REFERENCE_WIDTH, REFERENCE_BOX, REFERENCE_SMOOTH = 1264, 30, 3


def relevancy(features: Tensor, positives: Tensor, negatives: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """(Q, *S) relevancy of unit features (D, *S) to each unit positive (Q, D) against the negatives (M, D)."""
    flat = features.reshape(features.shape[0], -1)
    pos = positives @ flat  # (Q, S)
    neg = (negatives @ flat).max(0).values  # the hardest negative gives the minimum
    return torch.sigmoid(temperature * (pos - neg[None])).reshape(positives.shape[0], *features.shape[1:])


def window_sizes(width: int) -> tuple[int, int]:
    """LangSplat's box-filter size and smoothing half-size, scaled from their image width to ``width``."""
    return (max(1, round(REFERENCE_BOX * width / REFERENCE_WIDTH)),
            max(1, round(REFERENCE_SMOOTH * width / REFERENCE_WIDTH)))


def box_filter(x: np.ndarray, k: int) -> np.ndarray:
    return cv2.filter2D(x.astype(np.float32), -1, np.ones((k, k), np.float32) / (k * k))


def majority_smooth(mask: np.ndarray, scale: int) -> np.ndarray:
    """LangSplat's ``smooth``: each pixel takes the majority value (ties: 0) of the window rows
    [max(0, i - s), min(i + s + 1, h - 1)) x cols [max(0, j - s), min(j + s + 1, w - 1)) (their bounds)."""
    h, w = mask.shape
    integral = np.zeros((h + 1, w + 1), np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    i, j = np.arange(h)[:, None], np.arange(w)[None, :]
    r0, r1 = np.maximum(0, i - scale), np.minimum(i + scale + 1, h - 1)
    c0, c1 = np.maximum(0, j - scale), np.minimum(j + scale + 1, w - 1)
    ones = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    size = np.maximum(r1 - r0, 0) * np.maximum(c1 - c0, 0)
    return (ones > size - ones).astype(np.uint8)


@dataclass
class QueryResult:
    localized: bool
    iou: float
    level: int


def evaluate_query(levels: np.ndarray, gt_mask: np.ndarray, gt_boxes: np.ndarray,
                   threshold: float = MASK_THRESHOLD) -> QueryResult:
    """LangSplat's localization and mask IoU for one query on one image; ``levels`` (L, H, W) relevancy maps,
    ``gt_boxes`` (B, 4) inclusive pixel boxes x1, y1, x2, y2."""
    k, s = window_sizes(levels.shape[-1])
    filtered = np.stack([box_filter(r, k) for r in levels])
    level = int(np.argmax(filtered.reshape(len(levels), -1).max(1)))
    ys, xs = np.nonzero(filtered[level] == filtered[level].max())
    localized = any(bool(((xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)).any()) for x1, y1, x2, y2 in gt_boxes)

    blended = 0.5 * (filtered + levels)
    iou_level = int(np.argmax(blended.reshape(len(levels), -1).max(1)))
    out = blended[iou_level] - blended[iou_level].min()
    out = np.clip(out / (out.max() + 1e-9) * 2.0 - 1.0, 0, 1)
    pred = majority_smooth(out > threshold, s).astype(bool)
    union = np.logical_or(pred, gt_mask).sum()
    iou = float(np.logical_and(pred, gt_mask).sum() / union) if union else 0.0
    return QueryResult(localized, iou, iou_level)


def boxes_of(mask: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Inclusive pixel boxes (B, 4) of each instance's pixels within ``mask`` (one box per object, as the
    annotations of LERF-OVS draw one box per object instance)."""
    boxes = []
    for inst in np.unique(instances[mask]):
        ys, xs = np.nonzero(mask & (instances == inst))
        boxes.append((xs.min(), ys.min(), xs.max(), ys.max()))
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)


class ConfusionIoU:
    """Semantic mIoU from a confusion matrix accumulated over pixels (classes absent from both prediction and
    ground truth are left out of the mean)."""

    def __init__(self, num_classes: int) -> None:
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        n = len(self.matrix)
        self.matrix += np.bincount(gt.reshape(-1) * n + pred.reshape(-1), minlength=n * n).reshape(n, n)

    def compute(self) -> float:
        tp = np.diag(self.matrix)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        present = union > 0
        return float((tp[present] / union[present]).mean()) if present.any() else float("nan")
