"""Open-world object detection metrics as the OWOD papers' evaluation code computes them, vectorised.

What was read (facts taken, no code copied):

- ORE (Joseph et al., "Towards Open World Object Detection", CVPR 2021): ``JosephKJ/OWOD``
  ``detectron2/evaluation/pascal_voc_evaluation.py`` (``voc_eval``, ``compute_WI_at_a_recall_level``, the
  A-OSE sum in ``evaluate``);
- OW-DETR (Gupta et al., CVPR 2022): ``akshitac8/OW-DETR`` ``datasets/open_world_eval.py``, and PROB (Zohar
  et al., CVPR 2023): ``orrzohar/PROB`` ``datasets/open_world_eval.py`` (the same ``voc_eval``, WI and A-OSE;
  PROB returns them as ``WI`` = WI at recall 0.8, ``AOSA`` = A-OSE, ``U_R50`` = U-Recall);
- ``facebookresearch/detectron2`` ``detectron2/evaluation/pascal_voc_evaluation.py``, the VOC matching all
  three inherit from py-faster-rcnn's ``voc_eval``.

Definitions (those files' unless marked "ours"):

- Labels: every gt category whose name is not in ``known_classes`` is the class "unknown" (``parse_rec``
  renames it so), a category literally named "unknown" included.
- Matching, per class: detections in descending score (a stable sort: ties keep the input order; the
  references sort with quicksort after rounding scores to 3 decimals). A detection looks only at its best-IoU
  gt of its class in its image (the first in annotation order on a tie, difficult/crowd objects included). If
  that IoU is strictly above ``iou_threshold``: a difficult (or crowd) gt makes it neither TP nor FP, a gt not
  yet matched makes it a TP, a matched one an FP (no fall back to the second best gt); otherwise it is an FP.
  IoU in continuous coordinates: the references add 1 pixel to widths and heights, which boxes of this
  project (continuous, 0-based) do not. Positives: the gt objects neither difficult nor crowd.
- AP: all-point (VOC2010+), the area under the monotone envelope of precision = tp / max(tp + fp, eps) over
  recall. ORE forces it (``self._is_2007 = False``); OW-DETR's and PROB's ``OWEvaluator`` default to the
  VOC2007 11-point AP: we follow ORE. A class without detections has AP 0 (the references read an empty
  result file). A class with detections but no positive gt object has AP NaN: recall is 0 / 0 and the
  all-point sum carries the NaN (ORE and detectron2 alike; OW-DETR's and PROB's 11-point rule turns it into
  0), and ``map50`` is then NaN too (``np.mean``, as the references).
- U-Recall: the recall of the unknown class at its last detection, in percent (``recs[50][-1]``): 0 without
  unknown detections, NaN with unknown detections but no unknown gt object (the reference's 0 / 0).
- A-OSE: summed over the known classes, the number of the class's detections whose best-IoU unknown object
  of the same image has IoU above the threshold (``is_unk`` in ``voc_eval``). ALL the class's detections
  are counted, true positives, false positives and difficult-matched ones alike (not only false positives),
  and difficult/crowd unknown objects count (ORE does not check the flag there).
- WI, Wilderness Impact (Dhamija et al., WACV 2020), at recall 0.8: the paper writes P_K / P_{K u U} - 1,
  which the code evaluates as open-set hits / (TP + FP). For each known class with at least one detection,
  the ranked detection whose recall is nearest 0.8 (the first on a tie; index 0 when recall is NaN, as
  ORE's ``min`` over NaN keys); at that index the cumulative open-set hits (the A-OSE detections) and the
  cumulative TP + FP (difficult-matched detections are in neither). WI = mean(hits) / mean(TP + FP) over
  those classes, a ratio of sums; 0 when no known class has a detection.
- Every detection handed in counts: no score threshold, no per-image cap (OW-DETR's and PROB's
  post-processing keeps 100 per image before evaluation: that is the caller's choice).
- Ours (not in ORE / OW-DETR / PROB), when every detection carries ``"unknown_score"``: ``auroc_unknown``
  and ``fpr95_unknown`` (see ``evaluate``).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from shared_utils.datasets import DatasetFormatError

UNKNOWN = "unknown"
# Category id of unknown detections when gt has no category named "unknown" (gt's own id otherwise).
UNKNOWN_ID = -1
WI_RECALL = 0.8
TPR_LEVEL = 0.95
# Detection-gt pairs whose IoU is computed in one block: bounds memory (about 150 MB of temporaries) when
# images hold many objects, at no cost in speed.
_PAIR_BLOCK = 1 << 20


@dataclass(frozen=True)
class _GroundTruth:
    """gt objects as arrays; a class index is a position in ``classes`` (the known ones, then unknown)."""

    classes: list[str]
    image_index: dict  # gt image id -> row
    detection_class: dict  # detection category id -> class index (known ids and the unknown id)
    unknown_id: int
    image: np.ndarray  # (G,) image row
    label: np.ndarray  # (G,) class index
    boxes: np.ndarray  # (G, 4) xyxy
    ignore: np.ndarray  # (G,) difficult or crowd

    @property
    def unknown(self) -> int:
        return len(self.classes) - 1


@dataclass(frozen=True)
class _Detections:
    image: np.ndarray
    label: np.ndarray
    boxes: np.ndarray
    score: np.ndarray
    unknown_score: np.ndarray | None  # None unless every detection has one


@dataclass(frozen=True)
class _ClassCurve:
    """One class's detections in rank order, as cumulative counts."""

    tp: np.ndarray
    fp: np.ndarray  # difficult-matched detections add to neither tp nor fp
    open_set: np.ndarray  # detections overlapping an unknown object (zeros for the unknown class)
    n_positives: int

    @property
    def recall(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # no positives: 0 / 0 = NaN, as the reference
            return self.tp / np.float64(self.n_positives)

    @property
    def precision(self) -> np.ndarray:
        return self.tp / np.maximum(self.tp + self.fp, np.finfo(np.float64).eps)

    def average_precision(self) -> float:
        if self.tp.size == 0:
            return 0.0
        if self.n_positives == 0:
            return math.nan
        return _average_precision(self.recall, self.precision)


def _xyxy(xywh: list, what: str) -> np.ndarray:
    boxes = np.asarray(xywh, dtype=np.float64).reshape(-1, 4) if xywh else np.zeros((0, 4))
    if boxes.shape[0] != len(xywh):
        raise ValueError(f"{what}: every bbox must be [x, y, w, h]")
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def _parse_gt(gt: dict, known_classes: Sequence[str]) -> _GroundTruth:
    known = list(known_classes)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    if not known:
        raise ValueError("known_classes is empty: the open-world metrics need at least one known class")
    if UNKNOWN in known:
        raise ValueError(f"known_classes {known} holds {UNKNOWN!r}, which is the unknown class")
    missing = [name for name in known if name not in names.values()]
    if missing:
        raise ValueError(f"known classes {missing} are not categories of gt: found {sorted(names.values())}")
    class_of = {name: i for i, name in enumerate(known)}
    unknown = len(known)
    gt_class = {cid: class_of.get(name, unknown) for cid, name in names.items()}
    unknown_id = next((cid for cid, name in names.items() if name == UNKNOWN), UNKNOWN_ID)
    detection_class = {cid: class_of[name] for cid, name in names.items() if name in class_of}
    detection_class[unknown_id] = unknown

    image_index = {image["id"]: row for row, image in enumerate(gt["images"])}
    anns = gt["annotations"]
    label = np.array([gt_class.get(a["category_id"], -1) for a in anns], dtype=np.int64)
    image = np.array([image_index.get(a["image_id"], -1) for a in anns], dtype=np.int64)
    for field, values, expected in (("category_id", label, f"one of the category ids {sorted(names)}"),
                                    ("image_id", image, "the id of an image in gt['images']")):
        bad = np.flatnonzero(values < 0)
        if bad.size:
            raise DatasetFormatError(f"gt['annotations'][{bad[0]}]['{field}']: expected {expected}, "
                                     f"found {anns[bad[0]][field]!r}")
    ignore = np.array([bool(a.get("difficult", 0) or a.get("iscrowd", 0)) for a in anns], dtype=bool)
    return _GroundTruth(classes=[*known, UNKNOWN], image_index=image_index, detection_class=detection_class,
                        unknown_id=unknown_id, image=image, label=label,
                        boxes=_xyxy([a["bbox"] for a in anns], "gt['annotations']"), ignore=ignore)


def _parse_detections(detections: list[dict], truth: _GroundTruth) -> _Detections:
    label = np.array([truth.detection_class.get(d["category_id"], -1) for d in detections], dtype=np.int64)
    image = np.array([truth.image_index.get(d["image_id"], -1) for d in detections], dtype=np.int64)
    bad = np.flatnonzero((label < 0) | (image < 0))
    if bad.size:
        i = int(bad[0])
        category = detections[i]["category_id"]
        if label[i] < 0:
            known = {cid: truth.classes[c] for cid, c in truth.detection_class.items() if c != truth.unknown}
            raise ValueError(f"detections[{i}]: category_id {category!r} is neither a known class {known} nor "
                             f"unknown (id {truth.unknown_id})")
        raise ValueError(f"detections[{i}] (category_id {category!r}): image_id {detections[i]['image_id']!r} "
                         "is not an image of gt")
    with_unknown_score = all("unknown_score" in d for d in detections)
    return _Detections(
        image=image, label=label, boxes=_xyxy([d["bbox"] for d in detections], "detections"),
        score=np.array([d["score"] for d in detections], dtype=np.float64),
        unknown_score=(np.array([d["unknown_score"] for d in detections], dtype=np.float64)
                       if with_unknown_score else None))


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of the xyxy boxes ``a[i]`` and ``b[i]``, continuous coordinates; 0 where the union is empty."""
    inter = (np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
             * np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None))
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _best_overlap(det_key: np.ndarray, det_boxes: np.ndarray, gt_key: np.ndarray,
                  gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the highest IoU among the gts of the same key and that gt's index (the first in gt
    order on a tie, as ``np.argmax``); -inf and -1 where no gt has the key.

    Only the (detection, gt) pairs that share a key are formed, so the work is the number of such pairs, not
    detections x gts.
    """
    best_iou = np.full(len(det_key), -np.inf)
    best_gt = np.full(len(det_key), -1, dtype=np.int64)
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gt_order]
    start = np.searchsorted(sorted_keys, det_key, side="left")
    count = np.searchsorted(sorted_keys, det_key, side="right") - start
    dets = np.flatnonzero(count)
    if dets.size == 0:
        return best_iou, best_gt
    pairs_end = np.cumsum(count[dets])
    cuts = np.searchsorted(pairs_end, np.arange(_PAIR_BLOCK, pairs_end[-1], _PAIR_BLOCK), side="right")
    for block in np.split(dets, cuts):
        n = count[block]
        first_pair = np.cumsum(n) - n
        local = np.arange(n.sum()) - np.repeat(first_pair, n)  # position of the gt within its key
        gt = gt_order[np.repeat(start[block], n) + local]
        iou = _pair_iou(det_boxes[np.repeat(block, n)], gt_boxes[gt])
        block_max = np.maximum.reduceat(iou, first_pair)
        first_max = np.minimum.reduceat(np.where(iou == np.repeat(block_max, n), local, np.iinfo(np.int64).max),
                                        first_pair)
        best_iou[block] = block_max
        best_gt[block] = gt_order[start[block] + first_max]
    return best_iou, best_gt


def _class_curves(truth: _GroundTruth, dets: _Detections, iou_threshold: float) -> list[_ClassCurve]:
    """VOC greedy matching of every class at once; one curve per class of ``truth.classes``."""
    n_classes = len(truth.classes)
    gt_key = truth.image * n_classes + truth.label
    best_iou, best_gt = _best_overlap(dets.image * n_classes + dets.label, dets.boxes, gt_key, truth.boxes)
    hit = best_iou > iou_threshold
    ignored = np.zeros_like(hit)
    ignored[hit] = truth.ignore[best_gt[hit]]
    hit &= ~ignored
    # Rank order: class, then descending score. The VOC rule only ever looks at the best-IoU gt, so a hit is
    # a TP exactly when no higher-ranked detection hit the same gt: the first occurrence of each gt index.
    order = np.lexsort((-dets.score, dets.label))
    ranked_hits = order[hit[order]]
    _, first = np.unique(best_gt[ranked_hits], return_index=True)
    tp = np.zeros_like(hit)
    tp[ranked_hits[first]] = True
    fp = ~tp & ~ignored
    unknown_iou, _ = _best_overlap(dets.image * n_classes + truth.unknown, dets.boxes, gt_key, truth.boxes)
    open_set = (unknown_iou > iou_threshold) & (dets.label != truth.unknown)

    n_positives = np.bincount(truth.label[~truth.ignore], minlength=n_classes)
    bounds = np.searchsorted(dets.label[order], np.arange(n_classes + 1))
    curves = []
    for c in range(n_classes):
        ranked = order[bounds[c]:bounds[c + 1]]
        curves.append(_ClassCurve(tp=np.cumsum(tp[ranked]), fp=np.cumsum(fp[ranked]),
                                  open_set=np.cumsum(open_set[ranked]), n_positives=int(n_positives[c])))
    return curves


def _average_precision(recall: np.ndarray, precision: np.ndarray, method: str = "all_points") -> float:
    """AP of a ranked precision/recall curve, as a fraction.

    ``"all_points"``: VOC2010+ (``voc_ap(use_07_metric=False)``), the area under the monotone precision
    envelope with sentinels (0, 0) and (1, 0). ``"coco101"``: pycocotools' ``COCOeval.accumulate``, the mean of
    the envelope at recall 0, 0.01, ..., 1 (the first ranked point reaching each level; 0 past the last).
    """
    if method == "all_points":
        mrec = np.concatenate(([0.0], recall, [1.0]))
        envelope = np.maximum.accumulate(np.concatenate(([0.0], precision, [0.0]))[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * envelope[steps + 1]))
    if method == "coco101":
        levels = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)  # COCO's recThrs, bit for bit
        envelope = np.maximum.accumulate(np.asarray(precision, dtype=np.float64)[::-1])[::-1]
        past_end = np.concatenate([envelope, [0.0]])  # a level no ranked point reaches scores 0
        return float(np.mean(past_end[np.searchsorted(recall, levels, side="left")]))
    raise ValueError(f"AP method {method!r}: expected 'all_points' or 'coco101'")


def _wilderness_impact(known: list[_ClassCurve]) -> float:
    hits, detections = [], []
    for curve in known:
        if curve.tp.size == 0:
            continue
        at = int(np.argmin(np.abs(curve.recall - WI_RECALL)))  # first minimum; NaN recall -> 0, as ORE
        hits.append(curve.open_set[at])
        detections.append(curve.tp[at] + curve.fp[at])
    if not detections:
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):  # every counted detection difficult-matched: as ORE
        return float(np.mean(hits) / np.mean(detections))


def _auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(positive > negative) + P(equal) / 2 (Mann-Whitney U with mid-ranks); NaN when a side is empty."""
    if positive.size == 0 or negative.size == 0:
        return math.nan
    _, group, counts = np.unique(np.concatenate([positive, negative]), return_inverse=True, return_counts=True)
    mid_rank = np.cumsum(counts) - (counts - 1) / 2.0
    u = mid_rank[group[:positive.size]].sum() - positive.size * (positive.size + 1) / 2.0
    return float(u / (positive.size * negative.size))


def _fpr_at_tpr(positive: np.ndarray, negative: np.ndarray, level: float = TPR_LEVEL) -> float:
    """Fraction of negatives scoring >= the highest threshold that keeps ``level`` of the positives."""
    if positive.size == 0 or negative.size == 0:
        return math.nan
    kept = math.ceil(level * positive.size - 1e-9)  # 0.95 * n in floating point may land just above an integer
    threshold = np.sort(positive)[positive.size - kept]
    return float(np.mean(negative >= threshold))


def _unknown_separation(truth: _GroundTruth, dets: _Detections, iou_threshold: float) -> dict[str, float]:
    best_iou, best_gt = _best_overlap(dets.image, dets.boxes, truth.image, truth.boxes)
    on_object = best_iou > iou_threshold
    on_object[on_object] = ~truth.ignore[best_gt[on_object]]
    is_unknown = truth.label[best_gt[on_object]] == truth.unknown
    score = dets.unknown_score[on_object]
    return {"auroc_unknown": 100.0 * _auroc(score[is_unknown], score[~is_unknown]),
            "fpr95_unknown": 100.0 * _fpr_at_tpr(score[is_unknown], score[~is_unknown])}


def evaluate(gt: dict, detections: list[dict], known_classes: Sequence[str],
             iou_threshold: float = 0.5) -> dict[str, float]:
    """Open-world detection metrics of ``detections`` against ``gt`` (definitions in the module docstring).

    Args:
        gt: COCO-format dict holding every class (the project's interface); categories whose name is not in
            ``known_classes`` are unknown.
        detections: COCO results ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``; the category is
            a known class's id or the unknown id: the id of gt's category named "unknown", or ``UNKNOWN_ID``
            (-1) when gt has none. Optional ``"unknown_score"`` (higher = more unknown).
        known_classes: names of the known classes.
        iou_threshold: a match needs IoU strictly above it.

    Returns:
        ``map50`` (mean all-point AP over the known classes, percent), ``ap50/<class>`` (percent), ``u_recall``
        (percent), ``wi`` (fraction, at recall 0.8), ``a_ose`` (a count). When every detection has
        ``"unknown_score"`` (ours, not in ORE / OW-DETR): over the detections whose best-IoU gt of any class
        in their image has IoU > ``iou_threshold`` and is neither difficult nor crowd, positive = that gt is
        unknown, ``auroc_unknown`` (percent, ties count half) and ``fpr95_unknown`` (percent: the fraction of
        known-matched detections scoring >= the highest threshold that keeps 95% of the unknown-matched ones,
        the OOD literature's FPR@95TPR); NaN when either side is empty.

    Raises:
        ValueError: a detection whose category is neither known nor unknown, or whose image is not in gt
            (naming the detection's index and category); a known class that is not a gt category.
        DatasetFormatError: a gt annotation naming a category or image that gt does not hold.
    """
    truth = _parse_gt(gt, known_classes)
    dets = _parse_detections(detections, truth)
    curves = _class_curves(truth, dets, iou_threshold)
    known, unknown = curves[:truth.unknown], curves[truth.unknown]
    aps = [100.0 * curve.average_precision() for curve in known]
    metrics = {"map50": float(np.mean(aps))}
    metrics.update({f"ap50/{name}": ap for name, ap in zip(truth.classes, aps)})
    metrics["u_recall"] = float(100.0 * unknown.recall[-1]) if unknown.tp.size else 0.0
    metrics["wi"] = _wilderness_impact(known)
    metrics["a_ose"] = float(sum(int(curve.open_set[-1]) for curve in known if curve.open_set.size))
    if dets.unknown_score is not None:
        metrics.update(_unknown_separation(truth, dets, iou_threshold))
    return metrics


def coco_map(gt: dict, detections: list[dict]) -> dict[str, float]:
    """COCO box mAP through pycocotools: ``map`` = AP@[.5:.95], ``map50`` = AP@.5, percent, every gt category.

    COCO's protocol, not VOC's (``evaluate``): AP at 101 recall points (VOC: all-point area); IoU >= t (VOC: >),
    a detection takes its best unmatched gt (VOC: its best gt only); crowd (here difficult too) gts absorb any
    detection, IoU = overlap / detection area; top 100 per image and class; area range "all"; no-gt class skipped.

    ``difficult`` becomes ``iscrowd`` for pycocotools: ``COCOeval`` overwrites any ``ignore`` flag with
    ``iscrowd``, so a crowd is its only way to ignore an object, as ``evaluate`` ignores difficult ones. NaN
    when gt has no object to evaluate (pycocotools' -1).
    """
    annotations = [{**a, "area": a.get("area", a["bbox"][2] * a["bbox"][3]),
                    "iscrowd": int(bool(a.get("iscrowd", 0) or a.get("difficult", 0)))} for a in gt["annotations"]]
    dataset = {"images": gt["images"], "annotations": annotations, "categories": gt["categories"]}
    image_ids = {image["id"] for image in gt["images"]}
    for i, d in enumerate(detections):
        if d["image_id"] not in image_ids:
            raise ValueError(f"detections[{i}] (category_id {d['category_id']!r}): image_id {d['image_id']!r} "
                             "is not an image of gt")
    # loadRes writes area, id and segmentation into the dicts it gets: give it copies.
    results = [{"image_id": d["image_id"], "category_id": d["category_id"], "bbox": [float(v) for v in d["bbox"]],
                "score": float(d["score"])} for d in detections]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            coco_dt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    ap, ap50 = (float(v) for v in coco_eval.stats[:2])
    return {"map": 100.0 * ap if ap >= 0 else math.nan, "map50": 100.0 * ap50 if ap50 >= 0 else math.nan}
