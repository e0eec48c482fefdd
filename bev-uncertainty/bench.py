"""`make bench PROJECT=bev-uncertainty`: every method on the synthetic proxy -> RESULTS.md.

Each method runs its own config exactly as ``make train CONFIG=<method>.yaml`` does (fit, then test on the
best checkpoint) in a subprocess; its metrics come from the run's metrics.json and its wall time is measured
here. Then the forward pass of one Lift-Splat network is timed per stage on the CPU (image encoder, lift +
splat, BEV encoder), batch 1, in this process.

Each method's numbers are kept in ``runs/bev-uncertainty/bench.json``; ``python bench.py --only geometry``
re-runs that method and takes the others from the file, or, where there is none (a fresh checkout), from the
tables of the committed RESULTS.md (which then says which rows ran when).

The geometry method's OOD score is chosen among its candidates on the validation split: after its run, its best
checkpoint is validated here and the candidates' validation AUROCs go into RESULTS.md next to the test ones.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch
import yaml

from shared_utils.checkpoints import latest_run, load_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUNS = ROOT / "runs" / "bev-uncertainty"
CLI = [sys.executable, "-c", "from bev_uncertainty.cli import main; main()"]
METHODS = ["entropy", "temperature", "mc_dropout", "ensemble", "aleatoric", "evidential", "kendall_weighting",
           "geometry"]
LABELS = {"geometry": "geometry (ours)"}
COLUMNS = [("iou", "IoU ↑"), ("ece", "ECE ↓"), ("nll", "NLL ↓"), ("brier", "Brier ↓"),
           ("auroc_misclassification", "AUROC mis ↑"), ("aupr_misclassification", "AUPR mis ↑"),
           ("auroc_ood", "AUROC OOD ↑"), ("aupr_ood", "AUPR OOD ↑"), ("ause", "AUSE ↓")]


def run_method(method: str, extra: list[str], record: dict) -> dict:
    """fit + test of one method config, from the collection root as `make train` runs it."""
    if method == "temperature" and record["methods"].get("entropy", {}).get("run"):
        return temperature_from_entropy(record["methods"]["entropy"])
    experiment = f"bench_{method}"
    start = time.perf_counter()
    subprocess.run([*CLI, "fit", "--config", str(HERE / "configs" / f"{method}.yaml"), "--test_after_fit", "true",
                    "--experiment", experiment, "--trainer.enable_progress_bar", "false", *extra],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    result = entry(latest_run(RUNS / experiment), time.perf_counter() - start)
    if method == "geometry":
        result["val_metrics"] = validation_metrics(ROOT / result["run"])
        config = yaml.safe_load((ROOT / result["run"] / "config.yaml").read_text())
        result["ood_score"] = config["model"]["init_args"]["ood_score"]
    return result


def validation_metrics(run: Path) -> dict[str, float]:
    """The best checkpoint's metrics on the validation split, where the geometry method's OOD score is chosen."""
    from lightning.pytorch import Trainer

    from bev_uncertainty.data.datamodule import Synthetic

    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(load_model(run, "best"),
                                  datamodule=Synthetic(cache_dir=str(ROOT / ".cache" / "bev-uncertainty")))
    return metrics


def carried_rows(results: Path) -> dict[str, dict]:
    """The methods' rows of a RESULTS.md written by this script (its two tables and the "Runs:" dates): with
    ``--only`` and no bench.json (a fresh checkout), the methods not re-run keep their committed numbers."""
    methods: dict[str, dict] = {}
    by_label = {LABELS.get(m, m): m for m in METHODS}
    dates = {}
    for line in results.read_text().splitlines():
        if line.startswith("Runs: "):
            dates = dict(item.split(": ", 1) for item in line.removeprefix("Runs: ").split(", "))
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or cells[0] not in by_label:
            continue
        row = methods.setdefault(by_label[cells[0]], {"metrics": {}, "run": None})
        values = [float(c) if c else None for c in cells[1:]]
        if len(values) == len(COLUMNS) + 2:  # the main table: metrics, fit + test minutes, test s/sample
            row["metrics"] |= {f"test/{k}": v for (k, _), v in zip(COLUMNS, values) if v is not None}
            row["fit_test_minutes"], row["metrics"]["test/seconds_per_sample"] = values[-2:]
        elif len(values) == 2:  # the unseen-cells table
            row["metrics"]["test/auroc_unobserved"], row["metrics"]["test/unseen_score_unobserved_over_observed"] = \
                values
    for method, row in methods.items():
        row["date"] = dates.get(method, "unknown").split()[0]
    return methods


def entry(run: Path, seconds: float) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    return {"metrics": metrics, "fit_test_minutes": seconds / 60, "run": str(run.relative_to(ROOT)),
            "date": date.today().isoformat()}


def temperature_from_entropy(entropy: dict) -> dict:
    """Temperature scaling trains exactly the entropy baseline's network (same config and seed), so it tests the
    entropy run's best weights with T fitted on the validation split; its time is the entropy fit plus this test.

    Done here, not with ``test --config temperature.yaml --ckpt_path ...``: LightningCLI takes the model class of
    a checkpoint from the checkpoint, so that command would test the entropy model.
    """
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    from bev_uncertainty.data.datamodule import Synthetic
    from bev_uncertainty.methods.temperature import TemperatureScaling
    from shared_utils.cli import MetricsJson, next_version

    start = time.perf_counter()
    baseline = load_model(ROOT / entropy["run"], "best")  # its network, weights and BEV grid
    module = TemperatureScaling(baseline.model, **{k: baseline.hparams[k] for k in
                                                   ("lr", "weight_decay", "depth_weight", "pos_weight")})
    experiment = RUNS / "bench_temperature"
    logger = TensorBoardLogger(RUNS, name=experiment.name, version=next_version(experiment), default_hp_metric=False)
    trainer = Trainer(logger=logger, callbacks=[MetricsJson()], enable_progress_bar=False, enable_checkpointing=False,
                      enable_model_summary=False)
    trainer.test(module, datamodule=Synthetic(cache_dir=str(ROOT / ".cache" / "bev-uncertainty")))
    return entry(Path(logger.log_dir), time.perf_counter() - start + entropy["fit_test_minutes"] * 60)


def stage_times(repeats: int = 20) -> dict[str, dict[str, float]]:
    """Milliseconds per sample (6 cameras) of each forward stage, batch 1, CPU, median of ``repeats``: the image
    encoder, the lift + splat (from the encoder's outputs) and the BEV encoder (from the splatted grid)."""
    from bev_uncertainty.data.datamodule import Synthetic
    from bev_uncertainty.models.lss import LiftSplat

    data = Synthetic(cache_dir=str(ROOT / ".cache" / "bev-uncertainty"))
    sample = data.dataset("test")[0]
    images, intrinsics, cam_to_ego = (sample[k][None] for k in ("images", "intrinsics", "cam_to_ego"))
    results = {}
    networks = {"lift_splat": LiftSplat(), "lift_splat_observation": LiftSplat(observation_channels=True)}
    for name, net in networks.items():
        net.set_geometry(data.grid, data.image_size)
        net.eval()
        with torch.inference_mode():
            encoded = net.encode(images)
            bev = net.splat_features(*encoded, intrinsics, cam_to_ego)["bev"]
            stages = {"image_encoder_ms": lambda n=net: n.encode(images),
                      "lift_splat_ms": lambda n=net, e=encoded: n.splat_features(*e, intrinsics, cam_to_ego),
                      "bev_encoder_ms": lambda n=net, x=bev: n.bev_encoder(x),
                      "total_ms": lambda n=net: n(images, intrinsics, cam_to_ego)}
            timing = {}
            for label, fn in stages.items():
                fn()
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - start) * 1000)
                timing[label] = sorted(times)[repeats // 2]
        results[name] = timing
    return results


def fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def metric(m: dict, key: str) -> float | None:
    # Runs before the unseen score existed logged the same quantity under the OOD score's name.
    if key == "unseen_score_unobserved_over_observed" and f"test/{key}" not in m:
        key = "ood_score_unobserved_over_observed"
    return m.get(f"test/{key}")


def write_results(record: dict, rerun: list[str]) -> str:
    geometry = record["methods"].get("geometry", {})
    geometry_ood = geometry.get("ood_score", "entropy").replace("_", " ")
    lines = ["# bev-uncertainty: results on the synthetic nuScenes-layout proxy", "",
             "Generated by `make bench PROJECT=bev-uncertainty` (`bench.py`); do not edit by hand. One seed (42), "
             "2 CPU cores, each method's own config (8 epochs of 240 training samples; 60 test samples, 6 scenes "
             "with OOD objects). Vehicle segmentation on a +-25 m grid at 0.5 m; metrics over the valid cells of "
             "the test split. Misclassification metrics and AUSE score cells by the method's total uncertainty, OOD "
             "metrics by its OOD score (entropy; mutual information for MC dropout and the ensemble; vacuity for "
             f"the evidential head; {geometry_ood} for geometry, chosen on the validation split, whose gated vacuity "
             "scores unseen cells).", ""]
    if rerun:
        lines += [f"Re-run by `bench.py --only {' '.join(rerun)}` on {date.today().isoformat()}: "
                  f"{', '.join(rerun)}. The other rows are carried over from earlier runs (dates under the tables), "
                  "with the code and the fit times of their date.", ""]
    lines += [
             "| method | " + " | ".join(label for _, label in COLUMNS) + " | fit + test (min) | test s/sample |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for method in METHODS:
        if method not in record["methods"]:
            continue
        entry = record["methods"][method]
        m = entry["metrics"]
        lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(fmt(metric(m, k), 4 if k == "ause" else 3)
                                                                     for k, _ in COLUMNS)
                     + f" | {entry['fit_test_minutes']:.1f} | {fmt(m.get('test/seconds_per_sample'), 3)} |")
    lines += ["", "Unseen cells: `observed` = crossed by a LiDAR ray below 2 m (see the README); AUROC of the "
              "method's unseen score (its OOD score; geometry: the gated vacuity) for unobserved vs observed cells, "
              "and the ratio of the score's means.", "",
              "| method | AUROC unobserved ↑ | unseen score, unobserved / observed |", "|---|---|---|"]
    for method in METHODS:
        if method in record["methods"]:
            m = record["methods"][method]["metrics"]
            lines.append(f"| {LABELS.get(method, method)} | {fmt(metric(m, 'auroc_unobserved'))} | "
                         f"{fmt(metric(m, 'unseen_score_unobserved_over_observed'), 2)} |")
    lines += ["", "Runs: " + ", ".join(f"{m}: {e['date']}" + (" (re-run)" if m in rerun else "")
                                       for m, e in record["methods"].items()),
              "Temperature scaling tests the entropy run's network (same config and seed); its time includes that "
              "fit.", ""]
    if "val_metrics" in geometry:
        val, test = geometry["val_metrics"], geometry["metrics"]
        lines += ["Geometry (ours): its OOD score candidates (`methods/geometry.py`), AUROC on the validation split's "
                  "OOD objects (crates, barriers), where the method's `ood_score` is chosen (the highest), and on the "
                  "test split's (cylinders, blobs), shown after the choice and not used for it. Best checkpoint.", "",
                  "| OOD score | val AUROC OOD | test AUROC OOD |", "|---|---|---|"]
        for name in sorted(k.removeprefix("val/auroc_ood/") for k in val if k.startswith("val/auroc_ood/")):
            chosen = " (chosen)" if name == geometry["ood_score"] else ""
            lines.append(f"| {name}{chosen} | {fmt(val[f'val/auroc_ood/{name}'])} | "
                         f"{fmt(test.get(f'test/auroc_ood/{name}'))} |")
        lines.append("")
    if "stages" in record:
        lines += ["Forward pass per sample (6 cameras at 64 x 176, batch 1, CPU, median of 20, ms): the image "
                  "encoder, the lift + splat from its outputs, the BEV encoder from the splatted grid.", "",
                  "| network | image encoder | lift + splat | BEV encoder | total |", "|---|---|---|---|---|"]
        for name, t in record["stages"].items():
            lines.append(f"| {name} | {t['image_encoder_ms']:.1f} | {t['lift_splat_ms']:.1f} | "
                         f"{t['bev_encoder_ms']:.1f} | {t['total_ms']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="re-run these methods, reuse the others")
    parser.add_argument("extra", nargs="*", help="extra CLI arguments for every method")
    args = parser.parse_args()
    store = RUNS / "bench.json"
    record = {"methods": {}}
    if args.only is not None:
        record = json.loads(store.read_text()) if store.is_file() else {"methods": carried_rows(HERE / "RESULTS.md")}
    todo = args.only if args.only is not None else METHODS
    for method in todo:
        print(f"== {method}", flush=True)
        record["methods"][method] = run_method(method, args.extra, record)
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(record, indent=1))
    record["stages"] = stage_times()
    store.write_text(json.dumps(record, indent=1))
    text = write_results(record, todo if args.only is not None else [])
    (HERE / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
