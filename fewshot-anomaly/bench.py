"""`make bench PROJECT=fewshot-anomaly`: the results table, regenerated in one command.

Every method (its config in configs/) x k-shot (1, 4, all) on the synthetic proxy, all four
categories, through the CLI as a user runs it (fit, then test of the best checkpoint). Each
run is a subprocess, so that its peak memory is its own. Writes RESULTS.md beside this file:
mean metrics per method and k, per-category tables, fit time, inference images/s and peak
memory, and PaDiM's scoring time against its backbone (the Mahalanobis step must not
dominate inference).

Trained methods (CutPaste, CFLOW-AD) get about the same number of optimiser steps whatever
k is (TRAIN_STEPS), validating once at the end: with k=1 an epoch is a single step.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
METHODS = ("padim", "aligned_padim", "patchcore", "cutpaste", "cflow")
TRAINED = ("cutpaste", "cflow")
SHOTS = ("1", "4", "all")
METRICS = ("image_auroc", "pixel_auroc", "aupro", "image_f1max", "pixel_f1max")
TRAIN_STEPS = 60
BATCH = 16
RUNS = Path("runs/fewshot-anomaly-bench")


def run_one(method: str, k: str, out: Path) -> None:
    """Fit + test one configuration in this process, then time inference; write a JSON record."""
    from fewshot_anomaly.data.datamodule import AnomalyDataModule, Synthetic
    from fewshot_anomaly.methods.module import AnomalyModule
    from shared_utils.checkpoints import find_checkpoint, load_model
    from shared_utils.cli import run_cli

    data = Synthetic(k_shot=k if k == "all" else int(k))
    n_train = len(data.splits()["train"])
    args = ["fit", "--config", str(HERE / "configs" / f"{method}.yaml"), f"--data.init_args.k_shot={k}",
            f"--data.init_args.batch_size={BATCH}", f"--experiment={method}_k{k}", "--test_after_fit=true",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    if method in TRAINED:
        epochs = math.ceil(TRAIN_STEPS / math.ceil(n_train / BATCH))
        args += [f"--trainer.max_epochs={epochs}", f"--trainer.check_val_every_n_epoch={epochs}"]
    start = time.perf_counter()
    cli = run_cli(AnomalyModule, AnomalyDataModule, project=str(RUNS.relative_to("runs")), args=args)
    run_dir = Path(cli.trainer.log_dir)
    record = json.loads((run_dir / "metrics.json").read_text())
    fit_seconds = time.perf_counter() - start - record["seconds"]

    # Inference speed of the fitted models alone (no data loading, no metrics).
    module = load_model(find_checkpoint(run_dir))
    batches = [(b["category"], b["image"]) for b in data.test_dataloader()]
    n_images = sum(len(images) for _, images in batches)
    with torch.no_grad():
        module.models[batches[0][0][0]](batches[0][1])  # warm-up
        start = time.perf_counter()
        for categories, images in batches:
            for category in dict.fromkeys(categories):
                keep = torch.tensor([c == category for c in categories])
                module.models[category](images[keep])
        images_per_second = n_images / (time.perf_counter() - start)
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        ckpt.unlink()  # hundreds of MB each; the table needs only metrics.json
    out.write_text(json.dumps({
        "method": method, "k": k, "n_train": n_train, "metrics": record["metrics"], "fit_seconds": fit_seconds,
        "images_per_second": images_per_second, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def padim_scoring_ratio(image_size: int, d: int = 100, batch: int = 16) -> tuple[float, float]:
    """(backbone ms, scoring ms) per batch: embedding vs Mahalanobis + upsampling + smoothing."""
    import torch.nn.functional as F

    from fewshot_anomaly.models.filters import gaussian_blur2d
    from fewshot_anomaly.models.padim import PaDiM

    model = PaDiM(d=d)
    images = torch.rand(batch, 3, image_size, image_size)
    model.update(images)
    model.update(torch.rand(batch, 3, image_size, image_size))
    model.finalize()

    def median_ms(fn, repeats: int = 5) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2] * 1e3

    with torch.no_grad():
        embeddings = model.embed(images)

        def score() -> None:
            distances = model.mahalanobis(embeddings)
            maps = F.interpolate(distances[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)
            gaussian_blur2d(maps, model.sigma).flatten(1).amax(dim=1)

        return median_ms(lambda: model.embed(images)), median_ms(score)


def table(rows: list[dict], columns: list[str], header: list[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=3, metavar=("METHOD", "K", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--shots", nargs="+", default=list(SHOTS), choices=SHOTS)
    args = parser.parse_args()
    if args.run:
        run_one(args.run[0], args.run[1], Path(args.run[2]))
        return

    shutil.rmtree(RUNS, ignore_errors=True)
    records = []
    scratch = RUNS / "records"
    scratch.mkdir(parents=True, exist_ok=True)
    for method in args.methods:
        for k in args.shots:
            out = scratch / f"{method}_k{k}.json"
            print(f"== {method}, k={k}", flush=True)
            subprocess.run([sys.executable, __file__, "--run", method, k, str(out)], check=True, cwd=Path.cwd())
            records.append(json.loads(out.read_text()))

    categories = sorted({key.split("/")[1] for r in records for key in r["metrics"] if key.count("/") == 2})
    lines = [
        "# fewshot-anomaly results",
        "",
        "Generated by `make bench PROJECT=fewshot-anomaly` (fewshot-anomaly/bench.py); do not edit by hand.",
        f"Synthetic proxy (configs/default.yaml data: {', '.join(categories)}), 128 px, EfficientNet-Lite0 "
        f"ImageNet backbone, seed 42; k normal training images per category; trained methods: about "
        f"{TRAIN_STEPS} Adam steps of batch {BATCH}. Machine: {torch.get_num_threads()} CPU threads, "
        f"torch {torch.__version__}.",
        "",
        "## Mean over categories",
        "",
    ]
    rows = []
    for r in records:
        row = {"method": r["method"], "k": r["k"]}
        row.update({m: f"{r['metrics'][f'test/{m}']:.3f}" for m in METRICS})
        row.update(fit=f"{r['fit_seconds']:.0f}", ips=f"{r['images_per_second']:.0f}", mem=f"{r['peak_mb']:.0f}")
        rows.append(row)
    lines += table(rows, ["method", "k", *METRICS, "fit", "ips", "mem"],
                   ["method", "k", *METRICS, "fit s", "images/s", "peak MB"])
    for category in categories:
        lines += ["", f"## {category}", ""]
        rows = [{"method": r["method"], "k": r["k"],
                 **{m: f"{r['metrics'][f'test/{category}/{m}']:.3f}" for m in METRICS}} for r in records]
        lines += table(rows, ["method", "k", *METRICS], ["method", "k", *METRICS])
    lines += ["", "## PaDiM: scoring vs backbone (batch 16, d=100)", "",
              "| image size | backbone ms | scoring ms | scoring / backbone |", "|---|---:|---:|---:|"]
    for size in (128, 256):
        backbone_ms, scoring_ms = padim_scoring_ratio(size)
        lines.append(f"| {size} | {backbone_ms:.1f} | {scoring_ms:.1f} | {scoring_ms / backbone_ms:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if set(args.methods) == set(METHODS) and set(args.shots) == set(SHOTS):
        (HERE / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
