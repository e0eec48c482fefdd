"""Open-world detection metrics: hand-worked cases, a brute-force VOC evaluator and pycocotools."""

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from open_world_ood import evaluation
from open_world_ood.evaluation import (
    UNKNOWN_ID,
    _average_precision,
    _class_curves,
    _fpr_at_tpr,
    _parse_detections,
    _parse_gt,
    coco_map,
    evaluate,
)

NAMES = ("car", "person", "dog")  # dog is not known: it is an unknown object
KNOWN = ("car", "person")
CAR, PERSON, DOG = 1, 2, 3


def make_gt(objects, image_ids=(1,), names=NAMES):
    """gt dict from (image_id, category_id, [x, y, w, h], difficult) tuples; category ids 1..len(names)."""
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in image_ids],
        "annotations": [{"id": n + 1, "image_id": image, "category_id": category, "bbox": list(box),
                         "area": box[2] * box[3], "iscrowd": 0, "difficult": difficult}
                        for n, (image, category, box, difficult) in enumerate(objects)],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(names)],
        "image_root": "/nowhere",
    }


def det(category, box, score, image=1, **extra):
    return {"image_id": image, "category_id": category, "bbox": list(box), "score": score, **extra}


def test_hand_worked_image():
    # One 100 x 100 image: g1 car [0,0,10,10], g2 person [20,0,10,10], g3 dog [40,0,10,10] (unknown).
    gt = make_gt([(1, CAR, [0, 0, 10, 10], 0), (1, PERSON, [20, 0, 10, 10], 0), (1, DOG, [40, 0, 10, 10], 0)])
    detections = [
        det(CAR, [40, 0, 10, 10], 0.95),  # a: car on the dog: FP, open-set hit
        det(CAR, [0, 0, 10, 10], 0.9),  # b: TP on g1
        det(CAR, [0, 0, 10, 10], 0.8),  # c: second detection of g1: FP
        det(PERSON, [70, 70, 10, 10], 0.7),  # d: on nothing: FP
        det(PERSON, [20, 0, 10, 5], 0.6),  # e: IoU with g2 = 50 / 100 = 0.5 exactly: not a match, FP
        det(PERSON, [20, 0, 10, 10], 0.5),  # f: TP on g2
        det(PERSON, [40, 0, 10, 10], 0.1),  # g: person on the dog: FP, open-set hit
        det(UNKNOWN_ID, [40, 0, 10, 10], 0.4),  # h: unknown on the dog: TP of the unknown class
        det(UNKNOWN_ID, [70, 70, 10, 10], 0.2),  # i: unknown on nothing: FP
    ]
    metrics = evaluate(gt, detections, KNOWN)
    # car, ranked a b c: tp 0 1 1, fp 1 1 2, recall 0 1 1, precision 0 1/2 1/3: envelope 1/2 on (0, 1]: AP 50.
    assert metrics["ap50/car"] == pytest.approx(50.0)
    # person, ranked d e f g: tp 0 0 1 1, fp 1 2 2 3, recall 0 0 1 1, precision 0 0 1/3 1/4: AP 100 / 3.
    # (with e matched at IoU 0.5 it would be 0 1 1 1 / 1/2 1/2 ...: AP 50)
    assert metrics["ap50/person"] == pytest.approx(100.0 / 3.0)
    assert metrics["map50"] == pytest.approx((50.0 + 100.0 / 3.0) / 2.0)
    # unknown, ranked h i: one of one unknown object found.
    assert metrics["u_recall"] == pytest.approx(100.0)
    # A-OSE: a and g, whatever their rank.
    assert metrics["a_ose"] == 2.0
    # WI at recall 0.8: car recalls 0 1 1, nearest 0.8 first at b: TP + FP = 2, open-set hits = 1 (a);
    # person recalls 0 0 1 1, first nearest at f: TP + FP = 3, open-set hits = 0 (g ranks after f).
    # WI = mean(1, 0) / mean(2, 3) = 0.2.
    assert metrics["wi"] == pytest.approx(0.2)
    assert "auroc_unknown" not in metrics and "fpr95_unknown" not in metrics


def test_difficult_gt_is_neither_tp_nor_fp():
    gt = make_gt([(1, CAR, [0, 0, 10, 10], 1), (1, CAR, [50, 50, 10, 10], 0)])
    # ranked: ignored (on the difficult object), ignored again, TP: tp 0 0 1, fp 0 0 0, npos 1 -> AP 100.
    # Counted as FPs the precision at recall 1 would be 1/3; counted as positives the recall would stop at 1/2.
    detections = [det(CAR, [0, 0, 10, 10], 0.9), det(CAR, [0, 0, 10, 10], 0.85), det(CAR, [50, 50, 10, 10], 0.8)]
    assert evaluate(gt, detections, KNOWN)["ap50/car"] == pytest.approx(100.0)


def test_second_detection_on_the_same_gt_is_fp_without_fall_back():
    # Two overlapping cars; both detections' best gt is g1 (IoU 1 and 0.9): VOC gives the second one no second
    # chance on g2 (IoU 0.75 > 0.5), it is an FP. tp 1 1, fp 0 1, recall 1/2 1/2: AP 50 (COCO would give 100).
    gt = make_gt([(1, CAR, [0, 0, 10, 10], 0), (1, CAR, [0, 0, 10, 7.5], 0)])
    detections = [det(CAR, [0, 0, 10, 10], 0.9), det(CAR, [0, 0, 10, 9], 0.8)]
    assert evaluate(gt, detections, KNOWN)["ap50/car"] == pytest.approx(50.0)


def test_a_ose_counts_every_known_detection_on_an_unknown_object():
    # ORE counts all the known class's detections, a true positive included, and difficult unknown objects.
    gt = make_gt([(1, CAR, [0, 0, 10, 10], 0), (1, DOG, [0, 0, 10, 9], 0), (1, DOG, [50, 50, 10, 10], 1)])
    detections = [det(CAR, [0, 0, 10, 10], 0.9), det(PERSON, [50, 50, 10, 10], 0.8)]
    metrics = evaluate(gt, detections, KNOWN)
    assert metrics["ap50/car"] == pytest.approx(100.0)  # the car detection is a TP
    assert metrics["a_ose"] == 2.0


def test_images_without_objects_or_detections():
    gt = make_gt([(1, CAR, [0, 0, 10, 10], 0)], image_ids=(1, 2))
    detections = [det(CAR, [0, 0, 10, 10], 0.9), det(CAR, [30, 30, 10, 10], 0.5)]
    with_empty = evaluate(gt, detections, KNOWN)
    assert with_empty == evaluate(make_gt([(1, CAR, [0, 0, 10, 10], 0)]), detections, KNOWN)
    assert with_empty["ap50/car"] == pytest.approx(100.0)
    assert with_empty["ap50/person"] == 0.0  # no detections: AP 0, as the references
    # A detection on the empty image is an FP like any other.
    assert evaluate(gt, [*detections, det(CAR, [0, 0, 10, 10], 0.95, image=2)], KNOWN)["ap50/car"] == 50.0
    # Nothing at all: every AP 0, no unknown recall, no open-set error.
    empty = evaluate(make_gt([], image_ids=(7,)), [], KNOWN)
    keys = ("map50", "ap50/car", "ap50/person", "u_recall", "wi", "a_ose")
    assert {k: empty[k] for k in keys} == dict.fromkeys(keys, 0.0)


def test_class_without_gt_objects_is_nan_as_the_reference():
    # ORE / detectron2: recall 0 / 0 = NaN carries through the all-point AP and the mean.
    gt = make_gt([(1, CAR, [0, 0, 10, 10], 0)])
    metrics = evaluate(gt, [det(CAR, [0, 0, 10, 10], 0.9), det(PERSON, [0, 0, 10, 10], 0.9)], KNOWN)
    assert metrics["ap50/car"] == 100.0
    assert math.isnan(metrics["ap50/person"]) and math.isnan(metrics["map50"])


def test_bad_categories_and_images_raise():
    gt = make_gt([(1, CAR, [0, 0, 10, 10], 0)])
    with pytest.raises(ValueError, match=r"detections\[1\]: category_id 3 "):
        evaluate(gt, [det(CAR, [0, 0, 10, 10], 0.9), det(DOG, [0, 0, 10, 10], 0.9)], KNOWN)
    with pytest.raises(ValueError, match=r"detections\[0\] \(category_id 1\): image_id 5"):
        evaluate(gt, [det(CAR, [0, 0, 10, 10], 0.9, image=5)], KNOWN)
    with pytest.raises(ValueError, match="truck"):
        evaluate(gt, [], ["car", "truck"])
    # gt with its own "unknown" category: its id is the unknown id, -1 is then an error.
    named = make_gt([(1, 4, [0, 0, 10, 10], 0)], names=(*NAMES, "unknown"))
    assert evaluate(named, [det(4, [0, 0, 10, 10], 0.9)], KNOWN)["u_recall"] == 100.0
    with pytest.raises(ValueError, match=r"detections\[0\]: category_id -1 "):
        evaluate(named, [det(UNKNOWN_ID, [0, 0, 10, 10], 0.9)], KNOWN)


def test_unknown_auroc_and_fpr95_hand_case():
    gt = make_gt([(1, CAR, [0, 0, 10, 10], 0), (1, DOG, [20, 0, 10, 10], 0), (1, DOG, [40, 0, 10, 10], 0),
                  (1, CAR, [60, 0, 10, 10], 1)])
    detections = [
        det(CAR, [0, 0, 10, 10], 0.9, unknown_score=0.2),  # on a car: negative
        det(UNKNOWN_ID, [0, 0, 10, 10], 0.5, unknown_score=0.6),  # on a car (its label does not matter): negative
        det(UNKNOWN_ID, [20, 0, 10, 10], 0.5, unknown_score=0.6),  # on a dog: positive
        det(CAR, [40, 0, 10, 10], 0.5, unknown_score=0.9),  # on a dog: positive
        det(CAR, [60, 0, 10, 10], 0.5, unknown_score=0.99),  # on a difficult object: left out
        det(CAR, [80, 80, 5, 5], 0.5, unknown_score=0.95),  # on nothing: left out
    ]
    metrics = evaluate(gt, detections, KNOWN)
    # positives 0.6 0.9, negatives 0.2 0.6: pairs won 1 (0.6 > 0.2) + 1/2 (tie) + 1 + 1 = 3.5 of 4.
    assert metrics["auroc_unknown"] == pytest.approx(87.5)
    # keeping 95% of 2 positives keeps both: threshold 0.6; negatives >= 0.6: 1 of 2.
    assert metrics["fpr95_unknown"] == pytest.approx(50.0)
    # 20 positives 0.05 0.10 ... 1.00: 95% keeps 19 of them, threshold 0.10; negatives >= 0.10: 2 of 4.
    assert _fpr_at_tpr(np.arange(1, 21) / 20.0, np.array([0.0, 0.06, 0.1, 0.5])) == pytest.approx(0.5)
    only_known = evaluate(gt, detections[:2], KNOWN)
    assert math.isnan(only_known["auroc_unknown"]) and math.isnan(only_known["fpr95_unknown"])
    assert "auroc_unknown" not in evaluate(gt, [*detections, det(CAR, [0, 0, 10, 10], 0.3)], KNOWN)


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def brute_force_ap50(gt, detections, known, threshold=0.5):
    """The VOC rule written out: per class, detections by descending score; each looks at its best-IoU gt."""
    name = {c["id"]: c["name"] for c in gt["categories"]}
    aps = {}
    for cls in known:
        objects = [a for a in gt["annotations"] if name[a["category_id"]] == cls]
        ignored = [bool(a["difficult"] or a["iscrowd"]) for a in objects]
        n_positives = ignored.count(False)
        taken = [False] * len(objects)
        ranked = sorted((d for d in detections if name.get(d["category_id"]) == cls), key=lambda d: -d["score"])
        tp = fp = 0
        points = []
        for d in ranked:
            best, best_j = -1.0, None
            for j, a in enumerate(objects):
                if a["image_id"] == d["image_id"] and _iou(d["bbox"], a["bbox"]) > best:
                    best, best_j = _iou(d["bbox"], a["bbox"]), j
            if best > threshold and ignored[best_j]:
                pass  # a difficult or crowd object: neither a hit nor a miss
            elif best > threshold and not taken[best_j]:
                taken[best_j] = True
                tp += 1
            else:
                fp += 1
            points.append((tp / n_positives if n_positives else math.nan, tp / (tp + fp) if tp + fp else 0.0))
        if not ranked:
            aps[cls] = 0.0
            continue
        # Area under the interpolated precision (the best precision at any recall >= r), step by recall step.
        ap, previous = 0.0, 0.0
        for recall, _ in points:
            if recall > previous:
                ap += (recall - previous) * max(p for r, p in points if r >= recall)
                previous = recall
        aps[cls] = 100.0 * ap if n_positives else math.nan
    return aps


def random_scene(seed, n_images=12, grid=False):
    """Random gts (difficult/crowd ones included unless ``grid``) and detections, some near gts, tied scores.

    ``grid``: at most one gt per 25 x 25 cell, no difficult or crowd objects, so that no box can overlap two gts
    above IoU 0.5 and VOC and COCO matching coincide."""
    rng = np.random.default_rng(seed)
    objects = []
    for image in range(1, n_images + 1):
        if grid:
            for cell in rng.choice(16, size=rng.integers(1, 9), replace=False):
                w, h = rng.uniform(8, 22, 2)
                x, y = 25 * (cell % 4) + rng.uniform(0, 25 - w), 25 * (cell // 4) + rng.uniform(0, 25 - h)
                objects.append((image, int(rng.integers(1, 5)), [x, y, w, h], 0))
        else:
            for _ in range(rng.integers(0, 9)):
                x, y = rng.uniform(0, 70, 2)
                w, h = rng.uniform(5, 30, 2)
                objects.append((image, int(rng.integers(1, 5)), [x, y, w, h], int(rng.random() < 0.2)))
    gt = make_gt(objects, image_ids=range(1, n_images + 1), names=("a", "b", "c", "d"))
    if not grid:
        for a in gt["annotations"][::7]:
            a["iscrowd"] = 1
    detections = []
    for image, category, box, _ in objects:
        for _ in range(rng.integers(0, 4)):
            label = category if rng.random() < 0.7 else int(rng.integers(1, 5))
            score = float(rng.choice([0.5, rng.random()]))  # ties at 0.5: the stable order matters
            detections.append(det(label, np.asarray(box) + rng.normal(0, 2.5, 4), score, image=image))
    for _ in range(3 * n_images):
        x, y = rng.uniform(0, 70, 2)
        detections.append(det(int(rng.integers(1, 5)), [x, y, *rng.uniform(5, 30, 2)], float(rng.random()),
                              image=int(rng.integers(1, n_images + 1))))
    return gt, detections


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_equals_brute_force_voc(seed, monkeypatch):
    gt, detections = random_scene(seed)
    known = ["a", "b", "c"]  # d is unknown: detections of d are dropped, known ones on d objects are open-set errors
    detections = [d for d in detections if d["category_id"] != 4]
    expected = brute_force_ap50(gt, detections, known)
    metrics = evaluate(gt, detections, known)
    for cls in known:
        assert metrics[f"ap50/{cls}"] == pytest.approx(expected[cls], abs=1e-9, nan_ok=True), cls
    assert 0.0 < metrics["map50"] < 100.0 and metrics["a_ose"] > 0 and metrics["wi"] > 0
    # IoUs computed in blocks of a few detection-gt pairs give the same numbers.
    monkeypatch.setattr(evaluation, "_PAIR_BLOCK", 5)
    assert evaluate(gt, detections, known) == pytest.approx(metrics, nan_ok=True)


def pycocotools_ap50_per_class(gt, detections):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {k: gt[k] for k in ("images", "annotations", "categories")}
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes([dict(d) for d in detections]), "bbox")
        coco_eval.params.iouThrs = np.array([0.5])
        coco_eval.evaluate()
        coco_eval.accumulate()
    precision = coco_eval.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, every recall level, area "all", 100 dets
    return {cat: float(np.mean(precision[:, k])) for k, cat in enumerate(coco_eval.params.catIds)}


@pytest.mark.parametrize("seed", [3, 4])
def test_matching_and_coco101_equal_pycocotools(seed):
    gt, detections = random_scene(seed, n_images=20, grid=True)
    names = ["a", "b", "c", "d"]
    truth = _parse_gt(gt, names)
    curves = _class_curves(truth, _parse_detections(detections, truth), 0.5)
    ours = {k + 1: _average_precision(curves[k].recall, curves[k].precision, "coco101") for k in range(len(names))}
    reference = pycocotools_ap50_per_class(gt, detections)
    assert ours == pytest.approx(reference, abs=1e-6)
    assert 0.0 < min(ours.values()) and max(ours.values()) < 1.0
    # coco_map's AP50 is the same 101-point AP at IoU 0.5, averaged over the classes.
    assert coco_map(gt, detections)["map50"] == pytest.approx(100.0 * np.mean(list(ours.values())), abs=1e-6)


def test_average_precision_all_points_and_coco101_by_hand():
    recall, precision = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2.0 / 3.0])
    # all points: 0.5 * 1 + 0.5 * 2/3; 101 points: 51 levels <= 0.5 at 1, 50 levels above at 2/3.
    assert _average_precision(recall, precision) == pytest.approx(0.5 + 1.0 / 3.0)
    assert _average_precision(recall, precision, "coco101") == pytest.approx((51 + 50 * 2.0 / 3.0) / 101)
    # recall that stops at 0.5: the levels past it score 0.
    assert _average_precision(np.array([0.5]), np.array([1.0]), "coco101") == pytest.approx(51 / 101)
    assert _average_precision(np.array([0.5]), np.array([1.0])) == pytest.approx(0.5)


def test_coco_map_range_and_perfect_detections():
    gt, detections = random_scene(5)
    metrics = coco_map(gt, detections)
    assert set(metrics) == {"map", "map50"}
    assert 0.0 < metrics["map"] < metrics["map50"] < 100.0
    perfect = [det(a["category_id"], a["bbox"], 1.0, image=a["image_id"]) for a in gt["annotations"]]
    before = [dict(d) for d in perfect]
    assert coco_map(gt, perfect) == {"map": pytest.approx(100.0), "map50": pytest.approx(100.0)}
    assert perfect == before  # pycocotools got copies
    # difficult objects are crowds for pycocotools: left undetected, they are not misses.
    assert any(a["difficult"] for a in gt["annotations"])
    found = [d for d, a in zip(perfect, gt["annotations"]) if not a["difficult"]]
    assert coco_map(gt, found)["map"] == pytest.approx(100.0)
    assert coco_map(gt, []) == {"map": 0.0, "map50": 0.0}
