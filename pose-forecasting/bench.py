"""`make bench PROJECT=pose-forecasting [ARGS="--only METHOD ..."]`: every method on the synthetic proxy -> RESULTS.md.

Each method runs its own config exactly as `make train CONFIG=<method>.yaml` does (fit, then test on the best
checkpoint under the 256-windows protocol, with the robustness sweep; the training-free baselines fit one no-op
step) into runs/pose-forecasting/bench/<method>/, then its best checkpoint is tested again under the all-windows
protocol (bench/<method>_all/). This process then measures its parameters and CPU latency per forecast (batch 1
and batch 256). About 95 minutes on 2 cores.

Each method's numbers are kept in bench.json, from which RESULTS.md is written; ``--only obs_aware dstformer``
re-runs those methods and takes the others from bench.json (RESULTS.md then says which ran when).

`make bench PROJECT=pose-forecasting ARGS="--real"` (after `make mocap-clips`): the real-clip tables instead,
on the CMU ASF/AMC clip (configs/cmu_mocap.yaml) and the two BVH clips (configs/bvh.yaml): the baselines, and
siMLPe, STS-GCN and the observation-aware model trained on the clips from scratch and fine-tuned from their
proxy-trained weights (the best checkpoint of the latest bench/<method> run, trained first if there is none),
each with about REAL_STEPS Adam steps of batch 64; kept in bench.json as "real/<method>".
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import yaml

from pose_forecasting.data.datamodule import Mocap, Synthetic
from pose_forecasting.metrics import HORIZONS_MS
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
from shared_utils.checkpoints import find_checkpoint, latest_run, load_model

HERE = Path(__file__).resolve().parent
PROJECT = "pose-forecasting"
CONFIGS = HERE / "configs"
# (name in the tables, config, extra CLI arguments)
RUNS = [
    ("zero_velocity", "zero_velocity", []),
    ("constant_velocity", "constant_velocity", []),
    ("simlpe", "simlpe", []),
    ("stsgcn", "stsgcn", []),
    ("obs_aware", "obs_aware", []),
    ("dstformer", "dstformer", []),
    # Ablation: siMLPe trained with the same random masking as obs_aware (missing frames interpolated):
    # separates what the mask/time inputs and in-filling bring from what the augmentation brings.
    ("simlpe_masked_training", "simlpe", ["--model.init_args.train_missing=0.6",
                                          "--model.init_args.train_missing_tail=10"]),
]
METHODS = [name for name, _, _ in RUNS]
ROBUSTNESS = [("none", "test/mpjpe_{}ms"), ("random 20%", "test/robust_random20_mpjpe_{}ms"),
              ("random 40%", "test/robust_random40_mpjpe_{}ms"), ("random 60%", "test/robust_random60_mpjpe_{}ms"),
              ("last 2", "test/robust_last2_mpjpe_{}ms"), ("last 4", "test/robust_last4_mpjpe_{}ms"),
              ("last 8", "test/robust_last8_mpjpe_{}ms")]


# Real clips: (name, config, data root as the config gives it); the methods run on them, the trained ones twice.
REAL_DATA = [("CMU ASF/AMC", "cmu_mocap"), ("BVH", "bvh")]
REAL_METHODS = ["zero_velocity", "constant_velocity", "simlpe", "stsgcn", "obs_aware"]
REAL_TRAINED = ["simlpe", "stsgcn", "obs_aware"]
REAL_STEPS = 400
REAL_BATCH = 64


def latency_batch() -> dict:
    """256 test windows with their 2D inputs (DSTformer's), for the latencies: the default (relative) cache_dir
    is anchored at the collection root, as the runs' is, so nothing is generated twice."""
    dm = Synthetic(batch_size=256, with_2d=True)
    dm.setup("test")
    return next(iter(dm.test_dataloader()))


def latency_ms(module: torch.nn.Module, batch: dict, size: int, repeats: int) -> float:
    """Milliseconds per forward pass of ``size`` windows (inference mode, median of ``repeats``)."""
    windows = {k: v[:size] for k, v in batch.items()}
    with torch.inference_mode():
        return median_seconds(lambda: module.forecast(windows), repeats=repeats) * 1000


def run_method(name: str, config: str, method_args: list[str], extra: list[str], batch: dict) -> dict:
    """Fit + test one method, test it again on all windows, then measure its size and latency."""
    run = run_config(PROJECT, [CONFIGS / f"{config}.yaml"], name, [*method_args, *extra])
    ckpt = find_checkpoint(run.run_dir, "best")
    # The all-windows protocol: stride 1, 3.3x more windows, so without the robustness sweep.
    all_windows = run_config(PROJECT, [CONFIGS / f"{config}.yaml"], f"{name}_all",
                             ["--data.init_args.protocol=all", "--model.init_args.robustness=false",
                              f"--ckpt_path={ckpt}", *extra], subcommand="test")
    module = load_model(ckpt)
    return {"metrics": run.metrics, "metrics_all": all_windows.metrics, "minutes": run.seconds / 60,
            "params": sum(p.numel() for p in module.model.parameters()),
            "ms_batch1": latency_ms(module, batch, 1, 30), "ms_batch256": latency_ms(module, batch, 256, 3)}


def at_400_and_1000(metrics: dict[str, float], key: str, digits: int = 1) -> str:
    """The cell "<key at 400 ms> / <key at 1000 ms>"; ``key`` has a ``{}`` where the horizon goes."""
    return f"{fmt(metrics[key.format(400)], digits)} / {fmt(metrics[key.format(1000)], digits)}"


def render(args: argparse.Namespace, store: Store) -> str:
    """RESULTS.md from the numbers in the store."""
    rows = store.rows(METHODS)
    notes = ("Every number below comes from the `metrics.json` of a run under `runs/pose-forecasting/bench/`, "
             "except parameters and latencies (measured by bench.py). Synthetic data: 7 subjects x 15 actions x 2 "
             "sub-sequences of 20 s (seed 0), same splits as Human3.6M (train S1,6,7,8,9 / val S11 / test S5). "
             "MPJPE in mm at single future frames, 22 predicted joints written into the 32-joint truth and averaged "
             "over 32 joints (siMLPe's evaluation). These are not Human3.6M numbers.")
    text = results_header(PROJECT, "pose-forecasting: results on the synthetic Human3.6M-format proxy", args, store,
                          notes)
    protocols = (("256 windows per action (3840 windows)", "metrics"), ("all windows, stride 1", "metrics_all"))
    for protocol, key in protocols:
        text += f"## Forecasting MPJPE (mm), {protocol}\n\n" + markdown_table(
            ["method", *(f"{h} ms" for h in HORIZONS_MS), "avg"],
            [[name, *(fmt(r[key][f"test/mpjpe_{h}ms"], 1) for h in HORIZONS_MS), fmt(r[key]["test/mpjpe_avg"], 1)]
             for name, r in rows]) + "\n"
    text += ("## STS-GCN's convention: MPJPE averaged over all frames up to the horizon (256 protocol)\n\n"
             "STS-GCN's paper reports this average; the tables above report the error at the frame.\n\n")
    text += markdown_table(["method", "mean over 40-400 ms", "mean over 40-1000 ms"],
                           [[name, fmt(r["metrics"]["test/mpjpe_upto_400ms"], 1),
                             fmt(r["metrics"]["test/mpjpe_upto_1000ms"], 1)] for name, r in rows]) + "\n"
    text += ("## Robustness to missing observed frames (256 protocol, MPJPE mm at 400 / 1000 ms)\n\n"
             "Random: that fraction of the 50 observed frames is missing. Last k: the k frames just before the "
             "forecast starts are missing. Mask-unaware models see the missing frames linearly interpolated "
             "(held at the end); the observation-aware model sees the mask. Same masks for every method.\n\n")
    text += markdown_table(["method", *(condition for condition, _ in ROBUSTNESS)],
                           [[name, *(at_400_and_1000(r["metrics"], key) for _, key in ROBUSTNESS)]
                            for name, r in rows]) + "\n"
    # Only some methods estimate the observed poses (mpjpe) or predict an uncertainty (coverage_95).
    estimating = [(name, r["metrics"]) for name, r in rows
                  if "test/mpjpe" in r["metrics"] or "test/coverage_95" in r["metrics"]]
    if estimating:
        text += ("## Estimation and uncertainty (256 protocol)\n\n"
                 "`mpjpe` / `p_mpjpe`: 2D-to-3D lifting of the observed frames (noisy 2D from the 4 cameras), "
                 "root-relative, camera frame, mm. `coverage_95`: fraction of future joints whose error lies "
                 "inside the predicted 95 % ball of the per-joint Gaussian (0.95 when calibrated).\n\n")
        text += markdown_table(["method", "mpjpe", "p_mpjpe", "coverage_95"],
                               [[name, fmt(m.get("test/mpjpe"), 1), fmt(m.get("test/p_mpjpe"), 1),
                                 fmt(m.get("test/coverage_95"), 3)] for name, m in estimating]) + "\n"
    text += ("## Cost\n\n"
             "Parameters; CPU latency of one forward pass (median, inference mode, 2 threads) for 1 window and "
             "for 256 windows; fit + test = the whole `fit --test_after_fit true` run of the config (training, "
             "validation each epoch, the test with the robustness sweep).\n\n")
    text += markdown_table(["method", "params", "ms, batch 1", "ms, batch 256", "ms per window at 256",
                            "fit + test (min)"],
                           [[name, f"{r['params']:,}", fmt(r["ms_batch1"], 2), fmt(r["ms_batch256"], 1),
                             fmt(r["ms_batch256"] / 256, 2), fmt(r["minutes"], 1)] for name, r in rows]) + "\n"
    actions = sorted({key.split("/")[1] for key in rows[0][1]["metrics"] if key.startswith("test_action/")})
    text += "## Per action at 400 / 1000 ms (256 protocol)\n\n" + markdown_table(
        ["action", *METHODS],
        [[action, *(at_400_and_1000(r["metrics"], f"test_action/{action}/mpjpe_{{}}ms", 0) for _, r in rows)]
         for action in actions])
    return text + render_real(store)


def proxy_checkpoint(method: str, extra: list[str]) -> Path:
    """The best checkpoint of the latest proxy run of ``method`` (bench/<method>), trained now if there is none."""
    runs = bench_dir(PROJECT) / method
    run = latest_run(runs) if runs.is_dir() else None
    if run is None or not list((run / "checkpoints").glob("best*.ckpt")):
        print(f"== {method}: no proxy-trained checkpoint under {runs}: training it on the proxy", flush=True)
        run = run_config(PROJECT, [CONFIGS / f"{method}.yaml"], method, extra).run_dir
    return find_checkpoint(run, "best")


def real_run(method: str, data_config: str, variant: str, extra: list[str]) -> dict:
    """Fit + test one method on the real clips of ``data_config``: ``variant`` "scratch" or "proxy" (fine-tuned
    from the proxy-trained weights), "" for the training-free baselines."""
    configs = [CONFIGS / f"{method}.yaml", CONFIGS / f"{data_config}.yaml"]
    args = [f"--data.init_args.batch_size={REAL_BATCH}", "--trainer.enable_model_summary=false"]
    data = Mocap(**yaml.safe_load((CONFIGS / f"{data_config}.yaml").read_text())["data"]["init_args"])
    data.setup("fit")
    data.setup("test")
    windows = {split: len(data.datasets[split]) for split in ("train", "val", "test")}
    if method in REAL_TRAINED:
        # About REAL_STEPS steps whatever the data size; the config's LR milestones (set for its 8 proxy
        # epochs) scaled to the epochs this takes; validation about 8 times.
        epochs = math.ceil(REAL_STEPS / max(1, windows["train"] // REAL_BATCH))
        milestones = yaml.safe_load((CONFIGS / f"{method}.yaml").read_text())["model"]["init_args"]["milestones"]
        milestones = [max(1, round(m * epochs / 8)) for m in milestones]
        args += [f"--trainer.max_epochs={epochs}", f"--model.init_args.milestones={milestones}",
                 f"--trainer.check_val_every_n_epoch={max(1, epochs // 8)}"]
        if variant == "proxy":
            args.append(f"--model.init_args.init_from={proxy_checkpoint(method, extra)}")
    name = f"real/{data_config}/{method}" + (f"_{variant}" if variant else "")
    run = run_config(PROJECT, configs, name, [*args, *extra])
    return {"metrics": run.metrics, "minutes": run.seconds / 60, "windows": windows,
            "frames": {clip: len(joints) for clip, joints in data.clips().items()}}


def render_real(store: Store) -> str:
    """The real-clip section (absent until `make bench ... ARGS="--real"` has run)."""
    rows = [(m, store.data[f"real/{m}"]) for m in REAL_METHODS if f"real/{m}" in store.data]
    if not rows:
        return ""
    dates = sorted({r["date"] for _, r in rows})
    text = (f"\n## Real motion capture (`ARGS=\"--real\"`, {', '.join(dates)})\n\n"
            "Forward kinematics of real clips onto the 22 Human3.6M joints (root translation and rotation zeroed, "
            "25 fps, `src/pose_forecasting/data/mocap.py`), 50 observed -> 25 future frames, every test window "
            "scored. Split by time in each clip: frames [0, 65 %) train, [65 %, 80 %) validation, [80 %, 100 %) "
            f"test. Trained methods: about {REAL_STEPS} Adam steps of batch {REAL_BATCH} with their proxy "
            "config's optimiser, from scratch or fine-tuned from the proxy-trained weights (`ft`). MPJPE in mm "
            "over the 22 joints (no 32-joint protocol here).\n\n")
    for title, data_config in REAL_DATA:
        results = [(m + ("" if v == "" else " ft" if v == "proxy" else ""), r[data_config][v])
                   for m, r in rows if data_config in r for v in r[data_config]]
        if not results:
            continue
        first = results[0][1]
        frames = ", ".join(f"{clip}: {n}" for clip, n in first["frames"].items())
        text += (f"### {title}: {sum(first['frames'].values())} frames at 25 fps ({frames}); windows train "
                 f"{first['windows']['train']}, validation {first['windows']['val']}, test "
                 f"{first['windows']['test']}\n\n")
        text += markdown_table(
            ["method", *(f"{h} ms" for h in HORIZONS_MS), "avg", "fit + test (min)"],
            [[name, *(fmt(r["metrics"][f"test/mpjpe_{h}ms"], 1) for h in HORIZONS_MS),
              fmt(r["metrics"]["test/mpjpe_avg"], 1), fmt(r["minutes"], 1)] for name, r in results]) + "\n"
        text += f"Missing observed frames, MPJPE mm at 400 / 1000 ms ({title}):\n\n" + markdown_table(
            ["method", *(condition for condition, _ in ROBUSTNESS)],
            [[name, *(at_400_and_1000(r["metrics"], key) for _, key in ROBUSTNESS)] for name, r in results]) + "\n"
    return text


def main() -> None:
    args = parse_args(METHODS, description=__doc__.splitlines()[0])
    torch.set_num_threads(2)  # the latencies are those of 2 CPU threads, as in the Cost table, on any machine
    store = Store(HERE / "bench.json")
    if args.real:
        for method in [m for m in REAL_METHODS if m in args.methods]:
            record = {}
            for _, data_config in REAL_DATA:
                variants = ["scratch", "proxy"] if method in REAL_TRAINED else [""]
                record[data_config] = {}
                for variant in variants:
                    print(f"== {method} {variant} on {data_config}", flush=True)
                    record[data_config][variant] = real_run(method, data_config, variant, args.extra)
            store.put(f"real/{method}", record)
        write_results(HERE / "RESULTS.md", render(args, store))
        return
    batch = latency_batch()
    for name, config, method_args in RUNS:
        if name in args.methods:
            record = run_method(name, config, method_args, args.extra, batch)
            store.put(name, record)
            print(f"{name}: fit + test {record['minutes']:.1f} min, avg {record['metrics']['test/mpjpe_avg']:.1f} mm",
                  flush=True)
    write_results(HERE / "RESULTS.md", render(args, store))


if __name__ == "__main__":
    main()
