"""`make bench PROJECT=open-world-ood [ARGS="--only METHOD ..."]`: every method on the shape world -> RESULTS.md.

Each method runs its own config exactly as `make train CONFIG=<method>.yaml` does: task 1 (fit, then test the
best checkpoint on the road test split and on the aerial context shift), then tasks 2 and 3 incrementally,
each fitted from the previous task's best checkpoint (``init_from``, TASK_EPOCHS epochs on t{k}_train plus the
t{k}_ft exemplar replay set), into runs/open-world-ood/bench/<method>/t{k}/. This process then measures the
detector's speed (images/s at batch 1 and 16) and the evaluator's time against pycocotools on the same
detections. About 100 minutes on 2 cores.

`make bench PROJECT=open-world-ood ARGS="--real"` (after `make deepforest-tiles`): the task-1 checkpoint of
each method (the latest bench run) tested on deepforest's four real airborne tiles, where all 951 trees are
unknown: how many each method finds as unknown (U-Recall) and how many it calls a known class (A-OSE);
kept in bench.json as "deepforest/<method>".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from open_world_ood.evaluation import evaluate
from open_world_ood.methods.module import OpenWorldModule
from open_world_ood.models.open_set import ClosedSet
from shared_utils.bench import (
    Store,
    bench_dir,
    fmt,
    markdown_table,
    median_seconds,
    parse_args,
    results_header,
    run_config,
    write_results,
)
from shared_utils.checkpoints import find_checkpoint, latest_run

HERE = Path(__file__).resolve().parent
PROJECT = "open-world-ood"
CONFIGS = HERE / "configs"
METHODS = ["closed_set", "msp", "energy", "mahalanobis", "vos", "ore", "prob", "randbox", "conformal"]
TASK_EPOCHS = 3
TASK1 = [("mAP50", "map50", 1), ("U-Recall", "u_recall", 1), ("WI", "wi", 3), ("A-OSE", "a_ose", 0),
         ("AUROC unk.", "auroc_unknown", 1), ("FPR95 unk.", "fpr95_unknown", 1),
         ("false-unknown %", "false_unknown_rate", 1), ("confident unk.", "discovery_points", 0),
         ("clusters", "discovery_clusters", 0),
         ("purity %", "discovery_purity", 1)]
EVALUATOR_IMAGES = 1000


def run_method(name: str, extra: list[str]) -> dict:
    """Task 1 from scratch, then tasks 2 and 3 each from the previous task's best checkpoint."""
    record, previous = {}, None
    for task in (1, 2, 3):
        args = [] if task == 1 else [f"--data.init_args.task={task}", f"--model.init_args.init_from={previous}",
                                     f"--trainer.max_epochs={TASK_EPOCHS}"]
        run = run_config(PROJECT, [CONFIGS / f"{name}.yaml"], f"{name}/t{task}", [*args, *extra])
        previous = find_checkpoint(run.run_dir, "best")
        record[f"t{task}"] = run.metrics
        record[f"t{task}_minutes"] = run.seconds / 60
    return record


def detector_speed() -> dict:
    """Images per second of the detector's forward + candidates + decision at 128 px, batch 1 and 16."""
    module = OpenWorldModule(ClosedSet(), known_classes=["a", "b", "c", "d", "e"]).eval()
    result = {}
    for batch in (1, 16):
        images = torch.rand(batch, 3, 128, 128)
        targets = [{"scale": torch.ones(2)} for _ in range(batch)]
        with torch.inference_mode():
            seconds = median_seconds(lambda images=images, targets=targets: module.detect(images, targets),
                                     repeats=10 if batch == 1 else 5)
        result[f"images_per_s_batch{batch}"] = batch / seconds
    return result


def random_detections(images: int, per_image: int = 100, seed: int = 0) -> tuple[dict, list[dict]]:
    """A COCO gt (5 known classes + 2 others, about 4 objects per image) and ``per_image`` detections per image
    jittered around it, for the evaluator's timing."""
    rng = np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": f"class{i}"} for i in range(7)]
    gt_images, annotations, detections = [], [], []
    for image_id in range(1, images + 1):
        gt_images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 128, "height": 128})
        boxes = np.concatenate([rng.uniform(0, 96, (4, 2)), rng.uniform(12, 32, (4, 2))], axis=1)
        for box, category in zip(boxes, rng.integers(1, 8, 4)):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(category),
                                "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": 0})
        for _ in range(per_image):
            box = boxes[rng.integers(0, 4)] + rng.normal(0, 4, 4)
            box[2:] = np.abs(box[2:]) + 1
            detections.append({"image_id": image_id, "category_id": int(rng.integers(1, 6)), "bbox": box.tolist(),
                               "score": float(rng.uniform())})
    return {"images": gt_images, "annotations": annotations, "categories": categories}, detections


def pycocotools_ap50(gt: dict, detections: list[dict]) -> None:
    """pycocotools' evaluate + accumulate at the single IoU threshold 0.5 (its cost for what we compute)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {**gt}
        coco.createIndex()
        results = coco.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(coco, results, "bbox")
        evaluator.params.iouThrs = np.array([0.5])
        evaluator.evaluate()
        evaluator.accumulate()


def evaluator_speed() -> dict:
    gt, detections = random_detections(EVALUATOR_IMAGES)
    known = [f"class{i}" for i in range(5)]
    ours = median_seconds(lambda: evaluate(gt, detections, known), repeats=3)
    start = time.perf_counter()
    pycocotools_ap50(gt, detections)
    theirs = time.perf_counter() - start
    return {"evaluator_images": EVALUATOR_IMAGES, "evaluator_s": ours, "pycocotools_s": theirs}


def run_real(name: str, extra: list[str]) -> dict:
    """The latest bench run's task-1 checkpoint of ``name`` tested on deepforest's tiles."""
    runs = bench_dir(PROJECT) / name / "t1"
    run = latest_run(runs) if runs.is_dir() else None
    if run is None:
        raise FileNotFoundError(f"{runs}: no task-1 bench run of {name}; run `make bench PROJECT={PROJECT}` first")
    ckpt = find_checkpoint(run, "best")
    test = run_config(PROJECT, [CONFIGS / f"{name}.yaml", CONFIGS / "deepforest.yaml"], f"deepforest/{name}",
                      [f"--ckpt_path={ckpt}", *extra], subcommand="test")
    return {"metrics": test.metrics, "minutes": test.seconds / 60}


def _row(name: str, metrics: dict, prefix: str) -> list[str]:
    return [name, *(fmt(metrics.get(prefix + key), digits) for _, key, digits in TASK1)]


def render(args: argparse.Namespace, store: Store) -> str:
    """RESULTS.md from the numbers in the store."""
    rows = store.rows(METHODS)
    notes = ("Every number below comes from the `metrics.json` of a run under `runs/open-world-ood/bench/`, except "
             "the speed figures (measured by bench.py). Shape world (seed 0): 12 shape classes, task 1 knows 5 "
             "(T2 adds 3, T3 adds 2, 2 are never known); training on road-like scenes, test on 300 road images and on "
             "300 aerial images (the context shift). OWOD metrics as ORE's evaluation computes them (all-point AP "
             "at IoU > 0.5, U-Recall and AP in percent, WI at recall 0.8 as a fraction, A-OSE a count); AUROC / FPR95 "
             "unk.: known vs unknown objects ranked by the method's unknown score (over the candidates that match an "
             "object); false-unknown %: the candidates on known objects labelled unknown (the conformal method "
             "guarantees <= 5 % on exchangeable data); confident unk. / clusters / purity: the confident unknowns "
             "(objectness >= 0.5, how many) clustered into candidate new classes, k chosen by the silhouette, "
             "and the share of them in their cluster's majority class (detections on no object count as one "
             "class). These are not VOC / COCO numbers.")
    text = results_header(PROJECT, "open-world-ood: results on the shape world", args, store, notes)
    header = ["method", *(title for title, _, _ in TASK1)]
    text += "## Task 1, road context (the training context)\n\n" + markdown_table(
        header, [_row(name, r["t1"], "test/") for name, r in rows]) + "\n"
    text += "## Task 1, aerial context (context shift: same classes, top-down views, other backgrounds)\n\n" + \
        markdown_table(header, [_row(name, r["t1"], "test/aerial/") for name, r in rows]) + "\n"
    text += (f"## Incremental tasks\n\nTask k is fitted for {TASK_EPOCHS} epochs from task k-1's best checkpoint on "
             "t{k}_train (the new classes labelled) plus the t{k}_ft exemplar replay set (every known class). "
             "Previously known / currently introduced classes' mAP50, and the unknown objects left (task 2: 4 "
             "classes, task 3: the 2 never-known).\n\n")
    for context, prefix in (("road", "test/"), ("aerial", "test/aerial/")):
        text += f"### {context.capitalize()} context\n\n" + markdown_table(
            ["method", "T2 prev", "T2 cur", "T2 mAP50", "T2 U-Recall", "T2 A-OSE", "T3 prev", "T3 cur", "T3 mAP50",
             "T3 U-Recall", "T3 A-OSE"],
            [[name, *(fmt(r[t].get(prefix + key), d) for t in ("t2", "t3") for key, d in
                      (("map50_prev", 1), ("map50_cur", 1), ("map50", 1), ("u_recall", 1), ("a_ose", 0)))]
             for name, r in rows]) + "\n"
    text += "## Training time\n\n" + markdown_table(
        ["method", "task 1 fit + test (min)", "task 2 (min)", "task 3 (min)"],
        [[name, fmt(r["t1_minutes"], 1), fmt(r["t2_minutes"], 1), fmt(r["t3_minutes"], 1)] for name, r in rows]) + "\n"
    speed = store.data.get("speed")
    if speed:
        text += ("## Speed\n\nDetector: forward + candidates + decision at 128 x 128, inference mode, median. "
                 f"Evaluator: `evaluate` against pycocotools' evaluate + accumulate at IoU 0.5 only, on the same "
                 f"{speed['evaluator_images']:,} images x 100 random detections.\n\n")
        text += markdown_table(["measure", "value"], [
            ["detector images/s, batch 1", fmt(speed["images_per_s_batch1"], 1)],
            ["detector images/s, batch 16", fmt(speed["images_per_s_batch16"], 1)],
            ["evaluate (s)", fmt(speed["evaluator_s"], 2)],
            ["pycocotools (s)", fmt(speed["pycocotools_s"], 2)],
            ["pycocotools / evaluate", fmt(speed["pycocotools_s"] / speed["evaluator_s"], 1)]]) + "\n"
    return text + render_real(store)


def render_real(store: Store) -> str:
    """The deepforest section (absent until `make bench ... ARGS="--real"` has run)."""
    rows = [(m, store.data[f"deepforest/{m}"]) for m in METHODS if f"deepforest/{m}" in store.data]
    if not rows:
        return ""
    return ("## Real context shift: deepforest's airborne tiles (951 trees, all unknown)\n\n"
            "Task-1 checkpoints of the table above, tested at native resolution (up to 1,000 candidates per tile). "
            "U-Recall: trees found as unknown (percent); A-OSE: detections of a known class on a tree (count).\n\n"
            + markdown_table(["method", "U-Recall", "A-OSE"],
                             [[name, fmt(r["metrics"].get("test/u_recall"), 1), fmt(r["metrics"].get("test/a_ose"), 0)]
                              for name, r in rows]) + "\n")


def main() -> None:
    args = parse_args(METHODS, description=__doc__)
    store = Store(HERE / "bench.json")
    for name in args.methods:
        print(f"== {name}", flush=True)
        if args.real:
            store.put(f"deepforest/{name}", run_real(name, args.extra))
        else:
            store.put(name, run_method(name, args.extra))
    if not args.real:
        store.put("speed", {**detector_speed(), **evaluator_speed()})
    write_results(HERE / "RESULTS.md", render(args, store))


if __name__ == "__main__":
    main()
