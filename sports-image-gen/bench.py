"""`make bench PROJECT=sports-image-gen [ARGS="--only METHOD ..."]`: every method on the broadcast proxy -> RESULTS.md.

Each row runs its config exactly as `make train` does (fit, then test the last checkpoint) into
runs/sports-image-gen/bench/<row>/; every config trains 300 steps of batch 16 (equal training compute). The first row
trains the judges (cached per dataset), so its minutes are those of a first `make train` on a new machine:

- ``text2img``, ``latent``: no camera condition (their camera errors are what ignoring the condition scores);
- ``camera_concat``, ``camera_controlnet``, ``geometry`` (ours): camera conditioning;
- ``camera_pitch`` (the default): the grid map + the pitch-template map, predicting x_0 at lr 2e-3, 200 steps;
- ``players_map``, ``players_gligen``, ``skeleton``: camera + players / skeletons;
- ``frugal_100``, ``frugal_300`` (+ ``camera_concat``, trained on all 1000): the frugality curve;
- ``concat_x0_300``, ``concat_x0_600``, ``geometry_x0_300``: ``camera_concat`` (trained 300 and 600 steps) and
  ``geometry`` predicting x_0 (DDPM's other parameterisation) instead of v.

This process then times DDIM sampling of every trained method at 10 / 25 / 50 steps (a batch of 4, with
classifier-free guidance: two UNet passes per step) and exports each run's condition | generated | rendered picture
to docs/<row>.png.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared_utils.bench import (
    Store,
    bench_dir,
    export_pictures,
    fmt,
    markdown_table,
    median_seconds,
    parse_args,
    results_header,
    run_config,
    run_methods,
    write_results,
)
from shared_utils.checkpoints import latest_run

HERE = Path(__file__).resolve().parent
PROJECT = "sports-image-gen"
CONFIGS = HERE / "configs"
CAMERA = ["camera_concat", "camera_controlnet", "geometry", "text2img", "latent", "camera_pitch"]
PLAYERS = ["players_map", "players_gligen", "skeleton"]
FRUGAL = {"frugal_100": 100, "frugal_300": 300, "camera_concat": 1000}
# camera_concat (300 and 600 steps) and geometry predicting x_0 instead of v: on validation, v-prediction's samples
# ignored the camera after 300 steps and x_0-prediction's followed it (README, "Choices")
X0 = {"concat_x0_300": ("camera_concat.yaml", 300), "concat_x0_600": ("camera_concat.yaml", 600),
      "geometry_x0_300": ("geometry.yaml", 300)}
METHODS = [*CAMERA, *PLAYERS, "frugal_100", "frugal_300", *X0]
SAMPLING_STEPS = (10, 25, 50)


def plan(name: str) -> tuple[str, list[str]]:
    if name.startswith("frugal_"):
        return "camera_concat.yaml", [f"--data.init_args.train_size={FRUGAL[name]}"]
    if name in X0:
        config, steps = X0[name]
        return config, ["--model.init_args.prediction_type=sample", f"--trainer.max_steps={steps}"]
    return f"{name}.yaml", []


def run_method(name: str, extra: list[str]) -> dict:
    config, args = plan(name)
    run = run_config(PROJECT, [CONFIGS / config], name, [*args, *extra], subcommand="fit")
    return {"metrics": run.metrics, "minutes": run.seconds / 60}


def sampling_speed(names: list[str], batch: int = 4) -> dict:
    """Images per second of DDIM sampling at each step count, per trained method."""
    from shared_utils.checkpoints import load_model
    from sports_image_gen.data.datamodule import SyntheticBroadcast

    data = SyntheticBroadcast()
    data.setup("test")
    items = [data.sets["test"][i] for i in range(batch)]
    loader = torch.utils.data.DataLoader(items, batch_size=batch)
    conditions = next(iter(loader))
    out = {"threads": torch.get_num_threads(), "batch": batch}
    for name in names:
        if not (bench_dir(PROJECT) / name).is_dir():
            continue
        model = load_model(str(latest_run(bench_dir(PROJECT) / name)), which="last").eval()
        out[name] = {str(s): batch / median_seconds(lambda s=s, m=model: m.sample(conditions, steps=s), repeats=1,
                                                    warmup=0) for s in SAMPLING_STEPS}
    return out


COLUMNS = [("camera_reproj_px", "reproj px", 1), ("camera_reproj_px_shuffled", "reproj px, shuffled", 1),
           ("reproj_ratio", "reproj / shuffled (target < 0.5)", 2),
           ("camera_acc_5", "acc@5", 3), ("camera_acc_10", "acc@10", 3), ("camera_acc_20", "acc@20", 3),
           ("player_recall", "player recall", 3), ("jersey_acc", "jersey acc.", 3), ("fid_lite0", "FID (Lite0)", 2),
           ("kid_lite0", "KID (Lite0)", 3), ("psnr_render", "PSNR vs render", 2)]
COST = [("parameters_m", "params (M)", 2), ("train_steps_per_s", "train steps/s", 2),
        ("peak_memory_mb", "peak MB", 0)]


def _table(store: Store, names: list[str], columns=COLUMNS, minutes: bool = True) -> str:
    rows = []
    for name, record in store.rows([n for n in names if n in store.data]):
        m = dict(record["metrics"])
        m["test/reproj_ratio"] = m["test/camera_reproj_px"] / m["test/camera_reproj_px_shuffled"]
        row = [name, *(fmt(m.get(f"test/{k}"), d) for k, _, d in columns)]
        rows.append(row + ([fmt(record["minutes"], 1)] if minutes else []))
    return markdown_table(["method", *(c[1] for c in columns), *(["minutes (fit + test)"] if minutes else [])], rows)


def render(args, store: Store) -> str:
    data = store.data
    text = results_header(PROJECT, "sports-image-gen results", args, store, notes=(
        "Synthetic broadcast proxy: 1000 train / 64 val / 64 test frames rendered at 320 x 180, read back through "
        "the SoccerNet loaders and letterboxed to 64 x 36. Every method trains 300 steps of batch 16 (latent: "
        "100 autoencoder steps first; concat_x0_600: 600 steps; camera_pitch: 200 steps), then samples the 64 test "
        "conditions with DDIM "
        "(25 steps, guidance 2 on the text). Every row predicts v at AdamW lr 5e-4, the camera rows from the grid "
        "map, except the x_0 rows and camera_pitch (the default: the grid and pitch-template maps, x_0, lr 2e-3). "
        "Camera columns: the judge grid detector's 91 points in the generated "
        "image against the "
        "conditioning camera, in 960 x 540 pixels (SoccerNet-calibration's TP / (TP + FP + FN) at 5 / 10 / 20 px); "
        "'shuffled': against another test sample's camera. Player recall: conditioned players found at IoU 0.5 by "
        "the judge CenterNet; jersey acc.: found players with the right team. FID / KID on the pooled last stage "
        "of the ImageNet Lite0 (not Inception: not comparable with published FIDs; 64 images against 64). "
        "One seed."))
    judge = next((r["metrics"] for _, r in store.rows([n for n in METHODS if n in data])), None)
    if judge:
        text += (f"The judges on the rendered test images themselves (their error floor): grid reprojection "
                 f"{fmt(judge.get('test/detector_reproj_px'), 1)} px, player recall "
                 f"{fmt(judge.get('test/detector_player_recall'), 3)}.\n\n")
    missing = [n for n in METHODS if n not in data]
    if missing:
        text += (f"Not measured yet (no row in bench.json; `make bench PROJECT={PROJECT} ARGS=\"--only "
                 f"{' '.join(missing)}\"` adds them): {', '.join(missing)}.\n\n")
    text += "## Text and camera conditioning\n\n" + _table(store, CAMERA)
    text += "\n## Players and skeletons (camera conditioned too)\n\n" + _table(store, PLAYERS)
    text += "\n## Frugality: camera_concat trained on 100 / 300 / 1000 images\n\n"
    text += _table(store, list(FRUGAL))
    text += ("\n## Predicting x_0 instead of v: camera_concat (300 and 600 steps) and geometry (300 steps), and "
             "their v rows\n\n")
    text += _table(store, [*X0, "camera_concat", "geometry"])
    text += "\n## Cost\n\n" + _table(store, [*CAMERA, *PLAYERS], COST, minutes=False)
    if "sampling" in data:
        s = data["sampling"]
        text += (f"\n## Sampling speed\n\nDDIM images per second, a batch of {s['batch']}, {s['threads']} CPU "
                 f"threads, with guidance (two UNet passes per step).\n\n")
        rows = [[name, *(fmt(s[name][str(k)], 2) for k in SAMPLING_STEPS)] for name in [*CAMERA, *PLAYERS]
                if name in s]
        text += markdown_table(["method", *(f"{k} steps" for k in SAMPLING_STEPS)], rows)
    return text


def main() -> None:
    args = parse_args(METHODS, description=__doc__)
    store = Store(HERE / "bench.json")
    failed = run_methods(args.methods, store, lambda name: run_method(name, args.extra))
    store.put("sampling", sampling_speed([*CAMERA, *PLAYERS]))
    # condition | generated | rendered per run, for the README
    export_pictures(PROJECT, [*CAMERA, *PLAYERS, *X0], "test/condition_generated_rendered", HERE / "docs")
    write_results(HERE / "RESULTS.md", render(args, store))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (their rows keep earlier numbers, if any)")


if __name__ == "__main__":
    main()
