"""`make bench PROJECT=bev-uncertainty`: every method on the synthetic proxy -> RESULTS.md.

Each method runs its own config exactly as ``make train CONFIG=<method>.yaml`` does (fit, then test on the best
checkpoint), into ``runs/bev-uncertainty/bench/<method>/version_<n>/``; its wall time is that of the whole command.
The geometry method's OOD score is chosen among its candidates on the validation split, so its best checkpoint is
then validated (``bench/geometry_validation/``) and the candidates' validation AUROCs go into RESULTS.md next to the
test ones. The pseudo-method ``stages`` times the forward pass of one Lift-Splat network per stage (image encoder,
lift + splat, BEV encoder), batch 1, on the CPU, in this process.

The numbers of each method are kept with their date in ``bench.json``, from which RESULTS.md is written:
``python bench.py --only geometry stages`` re-runs those and keeps the other rows; arguments after ``--`` go to
every run (e.g. ``-- --trainer.max_epochs=1``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

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
from shared_utils.checkpoints import find_checkpoint

PROJECT = "bev-uncertainty"
HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
TRAINED = ["entropy", "temperature", "mc_dropout", "ensemble", "aleatoric", "evidential", "kendall_weighting",
           "geometry"]
METHODS = [*TRAINED, "stages"]
LABELS = {"geometry": "geometry (ours)"}
COLUMNS = [("iou", "IoU ↑"), ("ece", "ECE ↓"), ("nll", "NLL ↓"), ("brier", "Brier ↓"),
           ("auroc_misclassification", "AUROC mis ↑"), ("aupr_misclassification", "AUPR mis ↑"),
           ("auroc_ood", "AUROC OOD ↑"), ("aupr_ood", "AUPR OOD ↑"), ("ause", "AUSE ↓")]


def measure(method: str, extra: list[str]) -> dict:
    """fit + test of one method's config as `make train` runs it: the record bench.json keeps for the method."""
    config = CONFIGS / f"{method}.yaml"
    run = run_config(PROJECT, [config], method, extra)
    record = {"metrics": run.metrics, "minutes": run.seconds / 60}
    if method == "geometry":
        # Its OOD score is chosen among candidates on the validation split (the test only reports them on the test
        # split): validate the same best checkpoint to show every candidate's validation AUROC.
        best = find_checkpoint(run.run_dir, "best")
        validation = run_config(PROJECT, [config], "geometry_validation", [*extra, f"--ckpt_path={best}"],
                                subcommand="validate")
        record["val_metrics"] = validation.metrics
        saved = yaml.safe_load((run.run_dir / "config.yaml").read_text())
        record["ood_score"] = saved["model"]["init_args"]["ood_score"]
    return record


def stage_times(repeats: int = 20) -> dict[str, dict[str, float]]:
    """Milliseconds per sample (6 cameras) of each forward stage, batch 1, CPU, median of ``repeats``: the image
    encoder, the lift + splat (from the encoder's outputs) and the BEV encoder (from the splatted grid)."""
    from bev_uncertainty.data.datamodule import Synthetic
    from bev_uncertainty.models.lss import LiftSplat

    data = Synthetic(cache_dir=str(HERE.parent / ".cache" / "bev-uncertainty"))
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
            results[name] = {label: 1000 * median_seconds(fn, repeats=repeats) for label, fn in stages.items()}
    return results


def render(args: argparse.Namespace, store: Store) -> str:
    """RESULTS.md from the numbers in ``store``."""
    rows = [(LABELS.get(method, method), record) for method, record in store.rows(TRAINED)]
    geometry = store.data["geometry"]
    ((_, stages),) = store.rows(["stages"])
    notes = ("One seed (42), each method's own config (8 epochs of 240 training samples; 60 test samples, 6 scenes "
             "with OOD objects). Vehicle segmentation on a +-25 m grid at 0.5 m; metrics over the valid cells of the "
             "test split. Misclassification metrics and AUSE score cells by the method's total uncertainty, OOD "
             "metrics by its OOD score (entropy; mutual information for MC dropout and the ensemble; vacuity for the "
             f"evidential head; {geometry['ood_score'].replace('_', ' ')} for geometry, chosen on the validation "
             "split, whose gated vacuity scores unseen cells).")
    text = results_header(PROJECT, "bev-uncertainty: results on the synthetic nuScenes-layout proxy", args, store,
                          notes)

    header = ["method", *(label for _, label in COLUMNS), "fit + test (min)", "test s/sample"]
    text += markdown_table(header, [
        [label, *(fmt(r["metrics"][f"test/{key}"], 4 if key == "ause" else 3) for key, _ in COLUMNS),
         fmt(r["minutes"], 1), fmt(r["metrics"]["test/seconds_per_sample"])] for label, r in rows])

    text += ("\nUnseen cells: `observed` = crossed by a LiDAR ray below 2 m (see the README); AUROC of the method's "
             "unseen score (its OOD score; geometry: the gated vacuity) for unobserved vs observed cells, and the "
             "ratio of the score's means.\n\n")
    text += markdown_table(["method", "AUROC unobserved ↑", "unseen score, unobserved / observed"], [
        [label, fmt(r["metrics"]["test/auroc_unobserved"]),
         fmt(r["metrics"]["test/unseen_score_unobserved_over_observed"], 2)] for label, r in rows])

    text += ("\nRuns: " + ", ".join(f"{method}: {r['date']}" for method, r in store.rows(TRAINED)) + "\n"
             "Temperature scaling trains the entropy baseline's network (same config and seed), then fits T on the "
             "validation split at every validation (saved with the checkpoint).\n\n")

    text += ("Geometry (ours): its OOD score candidates (`methods/geometry.py`), AUROC on the validation split's OOD "
             "objects (crates, barriers), where the method's `ood_score` is chosen (the highest), and on the test "
             "split's (cylinders, blobs), shown after the choice and not used for it. Best checkpoint.\n\n")
    val, test = geometry["val_metrics"], geometry["metrics"]
    candidates = sorted(key.removeprefix("val/auroc_ood/") for key in val if key.startswith("val/auroc_ood/"))
    text += markdown_table(["OOD score", "val AUROC OOD", "test AUROC OOD"], [
        [name + (" (chosen)" if name == geometry["ood_score"] else ""), fmt(val[f"val/auroc_ood/{name}"]),
         fmt(test.get(f"test/auroc_ood/{name}"))] for name in candidates])

    text += ("\nForward pass per sample (6 cameras at 64 x 176, batch 1, CPU, median of 20, ms): the image encoder, "
             "the lift + splat from its outputs, the BEV encoder from the splatted grid.\n\n")
    text += markdown_table(["network", "image encoder", "lift + splat", "BEV encoder", "total"], [
        [name, *(fmt(t[key], 1) for key in ("image_encoder_ms", "lift_splat_ms", "bev_encoder_ms", "total_ms"))]
        for name, t in stages["networks"].items()])
    return text


def main() -> None:
    args = parse_args(METHODS, description=__doc__.splitlines()[0])
    store = Store(HERE / "bench.json")
    for method in args.methods:
        print(f"== {method}", flush=True)
        store.put(method, {"networks": stage_times()} if method == "stages" else measure(method, args.extra))
    write_results(HERE / "RESULTS.md", render(args, store))


if __name__ == "__main__":
    main()
