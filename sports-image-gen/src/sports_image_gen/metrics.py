"""Test metrics of every method: camera fidelity read by the grid detector, players read by the player detector,
and image quality.

Camera fidelity (SoccerNet-calibration's protocol, Giancola et al., "SoccerNet 2022 Challenges Results", and its
``evaluate_camera.py``, applied to the 91 grid points instead of the line extremities): in the 960 x 540 frame, a
conditioned point visible in the image and detected within t pixels is a true positive; a detected point that is not
visible or lies farther than t is a false positive; a visible point not detected is a false negative; the accuracy
at t is TP / (TP + FP + FN) summed over the test set. ``reproj_px`` is the mean distance over points both visible and
detected. The same numbers against another sample's camera (``shuffled``) say what a model that ignores its
condition scores.

Players: a conditioned player is found when a detection of any class overlaps its box at IoU >= 0.5 (greedy, highest
score first, each detection used once); ``jersey_acc`` is the share of found players whose detection has the
conditioned team (left / right / referee).

Image quality: Fréchet and kernel distances (FID: Heusel et al. 2017; KID: Binkowski et al. 2018, the unbiased
cubic-polynomial-kernel MMD) on the globally pooled last stage of the shared ImageNet EfficientNet-Lite0, named
``fid_lite0`` / ``kid_lite0`` because they are not Inception distances and are not comparable with published FIDs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from shared_utils.boxes import box_iou

THRESHOLDS = (5, 10, 20)


def to_960(points: Tensor, offset: Tensor, scale: Tensor) -> Tensor:
    """(B, K, 2) returned-image pixels -> the 960 x 540 frame (undo the letterbox)."""
    return (points - offset[:, None]) * scale[:, None]


def camera_counts(detected: Tensor, found: Tensor, reference: Tensor, visible: Tensor) -> dict[str, Tensor]:
    """Per-threshold TP / FP / FN and the distances of visible-and-detected points, for a batch.

    ``detected`` (B, 91, 2) and ``reference`` (B, 91, 2) in 960 x 540 pixels; ``found`` / ``visible`` (B, 91)."""
    both = found & visible
    dist = (detected - torch.nan_to_num(reference, nan=0.0)).norm(dim=-1)
    out = {"distances": dist[both]}
    for t in THRESHOLDS:
        close = both & (dist < t)
        out[f"tp_{t}"] = close.sum()
        out[f"fp_{t}"] = (found & ~close).sum()
        out[f"fn_{t}"] = (visible & ~found).sum()
    return out


def camera_metrics(counts: list[dict[str, Tensor]]) -> dict[str, float]:
    """``reproj_px`` and ``acc_<t>`` from the batches' counts."""
    distances = torch.cat([c["distances"] for c in counts])
    out = {"reproj_px": distances.mean().item() if len(distances) else float("nan")}
    for t in THRESHOLDS:
        tp, fp, fn = (sum(c[f"{k}_{t}"].item() for c in counts) for k in ("tp", "fp", "fn"))
        out[f"acc_{t}"] = tp / max(tp + fp + fn, 1)
    return out


def match_players(detections: list[dict[str, Tensor]], boxes: Tensor, labels: Tensor, iou: float = 0.5
                  ) -> tuple[int, int, int]:
    """(conditioned players, found, found with the right team) over a batch; ``labels`` < 0 pads."""
    total = found = right = 0
    for det, gt_boxes, gt_labels in zip(detections, boxes, labels):
        keep = gt_labels >= 0
        gt_boxes, gt_labels = gt_boxes[keep], gt_labels[keep]
        total += len(gt_boxes)
        if not len(gt_boxes) or not len(det["boxes"]):
            continue
        overlaps = box_iou(det["boxes"], gt_boxes)  # detections sorted by score
        used = torch.zeros(len(gt_boxes), dtype=torch.bool)
        for d in range(len(det["boxes"])):
            candidates = overlaps[d].masked_fill(used, -1)
            best = int(candidates.argmax())
            if candidates[best] >= iou:
                used[best] = True
                found += 1
                right += int(det["labels"][d] == gt_labels[best])
    return total, found, right


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), the trace of the square root from the eigenvalues of
    S_a S_b (similar to a PSD matrix, so they are real and >= 0 up to rounding)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(cov_a @ cov_b)
    root_trace = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * root_trace)


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 20, subset_size: int = 50, seed: int = 0) -> float:
    """KID: the unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged over random subsets (as torchmetrics and
    the paper's code do; ``subset_size`` shrinks to the smaller set)."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(a), len(b))
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2 * kxy.mean())
    return float(np.mean(values))
