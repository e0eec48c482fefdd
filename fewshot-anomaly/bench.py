"""`make bench PROJECT=fewshot-anomaly [ARGS="--only METHOD ..."]`: the results table, regenerated in one command.

Every method (its config in configs/) x k-shot (1, 4, all) on the synthetic proxy, all four categories, run
exactly as `make train` runs it (fit, then test of the best checkpoint), into
runs/fewshot-anomaly/bench/<method>_k<k>/. This process then times the inference of each fitted model
(images/s) and, with PaDiM, its scoring against its backbone (the Mahalanobis step must not dominate
inference). Each method's numbers are kept in bench.json, from which RESULTS.md is written: mean metrics per
method and k, per-category tables, fit time, inference images/s, peak memory and PaDiM's scoring time.

Trained methods (CutPaste, CFLOW-AD) get about the same number of optimiser steps whatever k is (TRAIN_STEPS),
validating once at the end: with k=1 an epoch is a single step.

`make bench PROJECT=fewshot-anomaly ARGS="--real"` (after `make install EXTRAS=elpv`): the real-data table
instead, every method x k in REAL_SHOTS on ELPV's two cell types (configs/elpv.yaml), into
runs/fewshot-anomaly/bench/elpv/<method>_k<k>/; kept in bench.json as "elpv/<method>".
"""

from __future__ import annotations

import argparse
import json
import math
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

from fewshot_anomaly.data.datamodule import ELPV, Synthetic
from fewshot_anomaly.models.filters import gaussian_blur2d
from fewshot_anomaly.models.padim import PaDiM
from shared_utils.bench import (
    Store,
    fmt,
    markdown_table,
    median_seconds,
    parse_args,
    results_header,
    run_config,
    write_results,
)
from shared_utils.checkpoints import load_model

HERE = Path(__file__).resolve().parent
PROJECT = "fewshot-anomaly"
METHODS = ("padim", "aligned_padim", "patchcore", "cutpaste", "cflow")
TRAINED = ("cutpaste", "cflow")
SHOTS = ("1", "4", "all")
METRICS = ("image_auroc", "pixel_auroc", "aupro", "image_f1max", "pixel_f1max")
TRAIN_STEPS = 60
BATCH = 16
SCORING_SIZES = ("128", "256")  # strings: they are keys in bench.json
REAL_SHOTS = ("1", "4", "16", "all")
REAL_METRICS = ("image_auroc", "image_f1max", "image_auroc_uncertain")


class ChildPeakMemory:
    """Peak resident memory in MB of the processes started inside the ``with`` block (the run of run_config,
    a subprocess whose peak this process cannot see otherwise). A thread reads their kernel high-water mark
    (VmHWM in /proc, Linux only) every 0.2 s; ``mb`` stays None where there is no /proc."""

    def __init__(self) -> None:
        self.mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ChildPeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for children in Path("/proc/self/task").glob("*/children"):
                for pid in children.read_text().split():
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:  # the child has just exited
                        continue
                    if "VmHWM:" in status:  # absent once the child is a zombie
                        kb = int(status.split("VmHWM:")[1].split()[0])
                        self.mb = max(self.mb or 0.0, kb / 1024)


def synthetic(**kwargs: object) -> Synthetic:
    """The data of the runs: the default (relative) cache_dir is anchored at the collection root, as the runs'
    is, so the data is not generated a second time."""
    return Synthetic(batch_size=BATCH, **kwargs)


def images_per_second(run_dir: Path) -> float:
    """Inference speed of the fitted per-category models alone (no data loading, no metrics), on the test
    images of the categories the run fitted."""
    module = load_model(run_dir)
    batches = [(b["category"], b["image"]) for b in synthetic(category=list(module.models)).test_dataloader()]
    n_images = sum(len(images) for _, images in batches)

    def infer() -> None:
        for categories, images in batches:
            for category in dict.fromkeys(categories):
                keep = torch.tensor([c == category for c in categories])
                module.models[category](images[keep])

    with torch.no_grad():
        return n_images / median_seconds(infer, repeats=3)


def run_shot(method: str, k: str, extra: list[str], real: bool = False) -> dict:
    """Fit + test one method with k training images per category, then (synthetic proxy) time its inference."""
    args = [f"--data.init_args.k_shot={k}", f"--data.init_args.batch_size={BATCH}",
            "--trainer.enable_model_summary=false"]
    data = ELPV(batch_size=BATCH, k_shot=k if k == "all" else int(k)) if real else synthetic(
        k_shot=k if k == "all" else int(k))
    if method in TRAINED:
        epochs = math.ceil(TRAIN_STEPS / math.ceil(len(data.splits()["train"]) / BATCH))
        args += [f"--trainer.max_epochs={epochs}", f"--trainer.check_val_every_n_epoch={epochs}"]
    configs = [HERE / "configs" / f"{method}.yaml", *([HERE / "configs" / "elpv.yaml"] if real else [])]
    with ChildPeakMemory() as memory:
        run = run_config(PROJECT, configs, f"{'elpv/' if real else ''}{method}_k{k}", [*args, *extra])
    # "fit s" leaves the test out: metrics.json's "seconds" is the duration of the run's last test.
    test_seconds = json.loads((run.run_dir / "metrics.json").read_text())["seconds"]
    record = {"metrics": run.metrics, "fit_seconds": run.seconds - test_seconds, "test_seconds": test_seconds,
              "peak_mb": memory.mb, "n_train": len(data.splits()["train"]), "n_test": len(data.splits()["test"])}
    if not real:
        record["images_per_second"] = images_per_second(run.run_dir)
    for ckpt in (run.run_dir / "checkpoints").glob("*.ckpt"):
        ckpt.unlink()  # up to hundreds of MB each; the tables need only the numbers
    return record


def padim_scoring_ms(image_size: int, d: int = 100, batch: int = 16) -> dict[str, float]:
    """Milliseconds per batch of PaDiM's backbone (embedding) and of its scoring (Mahalanobis + upsampling +
    smoothing), on random images."""
    model = PaDiM(d=d)
    images = torch.rand(batch, 3, image_size, image_size)
    model.update(images)
    model.update(torch.rand(batch, 3, image_size, image_size))
    model.finalize()
    with torch.no_grad():
        embeddings = model.embed(images)

        def score() -> None:
            distances = model.mahalanobis(embeddings)
            maps = F.interpolate(distances[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)
            gaussian_blur2d(maps, model.sigma).flatten(1).amax(dim=1)

        return {"backbone": median_seconds(lambda: model.embed(images)) * 1e3, "scoring": median_seconds(score) * 1e3}


def render(args: argparse.Namespace, store: Store) -> str:
    """RESULTS.md from the numbers in the store."""
    records = store.rows(METHODS)
    runs = [(method, k, shot) for method, record in records for k, shot in record["shots"].items()]
    categories = sorted({key.split("/")[1] for _, _, shot in runs for key in shot["metrics"] if key.count("/") == 2})
    notes = (f"Synthetic proxy (configs/default.yaml data: {', '.join(categories)}), 128 px, EfficientNet-Lite0 "
             f"ImageNet backbone, seed 42; k normal training images per category; trained methods: about "
             f"{TRAIN_STEPS} Adam steps of batch {BATCH}. fit s: the run's `fit` command without its test; "
             "images/s: the fitted models alone; peak MB: the run's process.")
    text = results_header(PROJECT, "fewshot-anomaly results", args, store, notes)
    text += "## Mean over categories\n\n" + markdown_table(
        ["method", "k", *METRICS, "fit s", "images/s", "peak MB"],
        [[method, k, *(fmt(shot["metrics"][f"test/{m}"]) for m in METRICS), fmt(shot["fit_seconds"], 0),
          fmt(shot["images_per_second"], 0), fmt(shot["peak_mb"], 0)] for method, k, shot in runs])
    for category in categories:  # a run on fewer categories (ARGS="-- --data.init_args.category=...") shows '–'
        text += f"\n## {category}\n\n" + markdown_table(
            ["method", "k", *METRICS],
            [[method, k, *(fmt(shot["metrics"].get(f"test/{category}/{m}")) for m in METRICS)]
             for method, k, shot in runs])
    scoring = dict(records)["padim"]["scoring_ms"]
    text += "\n## PaDiM: scoring vs backbone (batch 16, d=100)\n\n" + markdown_table(
        ["image size", "backbone ms", "scoring ms", "scoring / backbone"],
        [[size, fmt(ms["backbone"], 1), fmt(ms["scoring"], 1), fmt(ms["scoring"] / ms["backbone"], 2)]
         for size, ms in scoring.items()])
    return text + render_real(store)


def render_real(store: Store) -> str:
    """The ELPV section (absent until `make bench ... ARGS="--real"` has run)."""
    runs = [(method, k, shot) for method in METHODS for k, shot in store.data.get(f"elpv/{method}", {}).get(
        "shots", {}).items()]
    if not runs:
        return ""
    dates = sorted({store.data[f"elpv/{m}"]["date"] for m in METHODS if f"elpv/{m}" in store.data})
    shot = next(shot for _, k, shot in runs if k == "all")
    text = (f"\n## Real data: ELPV solar cells (`ARGS=\"--real\"`, {', '.join(dates)})\n\n"
            "configs/elpv.yaml on the `elpv-dataset` package: 128 px, grayscale replicated to RGB, the same "
            "backbone and settings as above. Per cell type, half the normal cells (fixed seeded split) are test "
            "cells with every defective (p = 1) cell; k-shot training and the 20 validation cells come from the "
            f"other half (k=all: {shot['n_train']} training cells, both types together; test: "
            f"{shot['n_test']} cells, the uncertain ones included). `auroc unc.`: normal test cells against the "
            "experts' uncertain 1/3 and 2/3 "
            "cells, kept out of the other metrics. No masks: no pixel metrics. fit s / test s: the run's `fit` "
            "(without its test) and its test.\n\n")
    header = ["method", "k"]
    for category in ("mono", "poly"):
        header += [f"{category} image_auroc", f"{category} image_f1max", f"{category} auroc unc."]
    text += markdown_table(
        [*header, "mean image_auroc", "fit s", "test s"],
        [[method, k, *(fmt(shot["metrics"].get(f"test/{c}/{m}")) for c in ("mono", "poly") for m in REAL_METRICS),
          fmt(shot["metrics"]["test/image_auroc"]), fmt(shot["fit_seconds"], 0), fmt(shot["test_seconds"], 0)]
         for method, k, shot in runs])
    return text


def main() -> None:
    args = parse_args(METHODS, description=__doc__.splitlines()[0])
    store = Store(HERE / "bench.json")
    for method in args.methods:
        shots = {}
        for k in REAL_SHOTS if args.real else SHOTS:
            print(f"== {method}, k={k}{' (ELPV)' if args.real else ''}", flush=True)
            shots[k] = run_shot(method, k, args.extra, real=args.real)
        record = {"shots": shots}
        if method == "padim" and not args.real:  # the scoring table is PaDiM's: re-measured with its runs
            record["scoring_ms"] = {size: padim_scoring_ms(int(size)) for size in SCORING_SIZES}
        store.put(f"elpv/{method}" if args.real else method, record)
    write_results(HERE / "RESULTS.md", render(args, store))


if __name__ == "__main__":
    main()
