"""Detection mAP at IoU 0.5, as PASCAL VOC's devkit computes it (Everingham et al., IJCV 2010), which is what
TOG reports its attacks against.

Per class: detections of all images sorted by decreasing score; a detection is a true positive when its IoU
with a not-yet-matched ground-truth box of its class in its image is the highest and >= 0.5, else a false
positive (a second detection of the same object is a false positive); AP is the area under the precision-
recall curve with precision made monotone (VOC 2010+ "all points" interpolation, the default of
``voc_eval.py``; VOC 2007's 11-point variant is ``use_07_metric`` there and not used here). A class with no
ground truth in the set is left out of the mean. VOC's ``difficult`` flag does not exist in generated scenes.
"""

from __future__ import annotations

import numpy as np
import torch

from shared_utils.boxes import box_iou


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-points interpolated AP (``voc_ap(..., use_07_metric=False)``)."""
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changes = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[changes + 1] - recall[changes]) * precision[changes + 1]))


def map50(detections: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]], num_classes: int,
          iou_threshold: float = 0.5) -> float:
    """Mean AP over the classes present in ``targets`` (percent). ``detections``: per image ``boxes`` (N, 4)
    xyxy, ``scores``, ``labels``; ``targets``: per image ``boxes``, ``labels``."""
    aps = []
    for c in range(num_classes):
        gt = [t["boxes"][t["labels"] == c].float().cpu() for t in targets]
        total = sum(len(g) for g in gt)
        if total == 0:
            continue
        entries = []  # (score, image, box)
        for i, d in enumerate(detections):
            keep = d["labels"] == c
            for score, box in zip(d["scores"][keep].tolist(), d["boxes"][keep].float().cpu()):
                entries.append((score, i, box))
        entries.sort(key=lambda e: -e[0])
        matched = [torch.zeros(len(g), dtype=torch.bool) for g in gt]
        tp = np.zeros(len(entries))
        for k, (_, i, box) in enumerate(entries):
            if len(gt[i]) == 0:
                continue
            iou = box_iou(box[None], gt[i])[0]
            best = int(iou.argmax())
            if iou[best] >= iou_threshold and not matched[i][best]:
                matched[i][best] = True
                tp[k] = 1
        cum_tp = np.cumsum(tp)
        recall = cum_tp / total
        precision = cum_tp / np.maximum(np.arange(1, len(entries) + 1), np.finfo(np.float64).eps)
        aps.append(average_precision(recall, precision) if len(entries) else 0.0)
    return 100 * float(np.mean(aps)) if aps else float("nan")
