"""`make bench PROJECT=ego-motion-flow [ARGS="--only METHOD ..."]`: every method on the synthetic roads -> RESULTS.md.

Each row runs its config exactly as `make train` (learned methods: fit, then test the best checkpoint) or as
`ego-motion-flow test --config ...` (methods that learn nothing) into runs/ego-motion-flow/bench/<row>/:

- the geometric methods (`zero_flow`, `rigid_gt`, `homography`, `essential`, `probabilistic`) on the ground-
  truth flow, then on the flow of the trained `raft_small` (`*_raft` rows: what a deployment has);
- the learned ones: `raft_small` (flow only), `supervised` (the default), `self_supervised` (Monodepth2 +
  GeoNet residual flow), and `probabilistic_learned`: the new method on RAFT flow and self-supervised depth,
  no ground truth at all; `probabilistic_gt_pose`, the control: its test on the true camera motion;
- `*_kitti15`: two methods through the KITTI 2015 loader on the synthetic set written in that layout.

This process then times each method's `separate` on one test batch (pairs/s) in one run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared_utils.bench import (
    Store,
    bench_dir,
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
PROJECT = "ego-motion-flow"
CONFIGS = HERE / "configs"
LEARNED = ["raft_small", "supervised", "self_supervised"]
GEOMETRIC = ["zero_flow", "rigid_gt", "homography", "essential", "probabilistic"]
ON_RAFT = ["rigid_gt_raft", "homography_raft", "essential_raft", "probabilistic_raft"]
METHODS = [*LEARNED, *GEOMETRIC, "probabilistic_gt_pose", *ON_RAFT, "probabilistic_learned", "homography_kitti15",
           "probabilistic_kitti15"]


def run_dir(name: str) -> str:
    return str(latest_run(bench_dir(PROJECT) / name))


def plan(name: str) -> tuple[list[str], list[str], str]:
    """(configs, extra args, subcommand) of a row; `*_raft` rows read the raft_small row's run."""
    if name in LEARNED:
        return [f"{name}.yaml"], [], "fit"
    if name.endswith("_raft"):
        return [f"{name[:-5]}.yaml"], [f"--model.init_args.flow_checkpoint={run_dir('raft_small')}"], "test"
    if name == "probabilistic_gt_pose":
        return ["probabilistic.yaml"], ["--model.init_args.gt_pose=true"], "test"
    if name == "probabilistic_learned":
        return ["probabilistic.yaml"], [f"--model.init_args.flow_checkpoint={run_dir('raft_small')}",
                                        f"--model.init_args.depth_checkpoint={run_dir('self_supervised')}"], "test"
    if name.endswith("_kitti15"):
        kitti = synthetic_root() / "kitti15"
        return [f"{name[:-8]}.yaml", "kitti15.yaml"], [f"--data.init_args.root={kitti}"], "test"
    return [f"{name}.yaml"], [], "test"


def synthetic_root() -> Path:
    from ego_motion_flow.data.datamodule import SyntheticRoads

    return SyntheticRoads().root()


def run_method(name: str, extra: list[str]) -> dict:
    configs, args, subcommand = plan(name)
    run = run_config(PROJECT, [CONFIGS / c for c in configs], name, [*args, *extra], subcommand=subcommand)
    return {"metrics": run.metrics, "minutes": run.seconds / 60}


def speed(batch_size: int = 8) -> dict:
    """Pairs per second of each method's ``separate`` on one synthetic test batch (the learned ones from their
    bench runs), in this process, one after the other."""
    from ego_motion_flow.data.datamodule import SyntheticRoads
    from ego_motion_flow.methods.geometric import Essential, Homography, RigidGT, ZeroFlow
    from ego_motion_flow.methods.probabilistic import ProbabilisticMotion
    from shared_utils.checkpoints import load_model

    data = SyntheticRoads(test_batch_size=batch_size)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    methods = {"zero_flow": ZeroFlow(), "rigid_gt": RigidGT(), "homography": Homography(),
               "essential": Essential(), "probabilistic": ProbabilisticMotion()}
    for name in LEARNED:
        if (bench_dir(PROJECT) / name).is_dir():
            methods[name] = load_model(run_dir(name))
    result = {"batch": batch_size, "threads": torch.get_num_threads(),
              "size": list(batch["image1"].shape[-2:])}
    with torch.no_grad():
        for name, method in methods.items():
            result[f"{name}_pairs_per_s"] = batch_size / median_seconds(lambda m=method: m.separate(batch), repeats=3)
    return result


def out_of_frame() -> dict:
    """Where the learned flow fails: on the test split, the share of valid pixels whose true flow leaves the image
    (KITTI's flow_occ convention keeps them; nothing in frame 2 can be matched there) and the EPE of `raft_small`,
    `supervised` and zero flow on those pixels and on the others (per-image means averaged over images)."""
    from ego_motion_flow.data.datamodule import SyntheticRoads
    from ego_motion_flow.geometry import pixel_grid
    from shared_utils.checkpoints import load_model

    data = SyntheticRoads(test_batch_size=19)
    data.setup("test")
    networks = {name: load_model(run_dir(name)) for name in ("raft_small", "supervised")
                if (bench_dir(PROJECT) / name).is_dir()}
    sums: dict[str, list[float]] = {}
    out_share = []
    with torch.no_grad():
        for batch in data.test_dataloader():
            gt, valid = batch["flow"], batch["flow_valid"]
            h, w = gt.shape[-2:]
            target = pixel_grid(h, w) + gt
            inside = (target[:, 0] >= 0) & (target[:, 0] <= w - 1) & (target[:, 1] >= 0) & (target[:, 1] <= h - 1)
            out_share += [float((v & ~i).sum() / v.sum()) for v, i in zip(valid, inside)]
            flows = {"zero_flow": torch.zeros_like(gt)} | {n: m.predict_flow(batch["image1"], batch["image2"])
                                                             for n, m in networks.items()}
            for name, flow in flows.items():
                epe = (flow - gt).norm(dim=1)
                for part, mask in (("in", valid & inside), ("out", valid & ~inside)):
                    sums.setdefault(f"{name}_{part}", []).extend(
                        float(e[m].mean()) for e, m in zip(epe, mask) if m.any())
    return {"out_share": sum(out_share) / len(out_share)} | {k: sum(v) / len(v) for k, v in sums.items()}


PICTURES = ["supervised", "self_supervised", "homography_raft", "probabilistic"]


def export_pictures() -> None:
    """The ground truth of four synthetic test pairs and the test pictures of the latest bench runs as PNG files
    under docs/ (the README shows them)."""
    import cv2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ego_motion_flow.data.datamodule import SyntheticRoads
    from ego_motion_flow.visualize import separation_panel

    (HERE / "docs").mkdir(exist_ok=True)
    data = SyntheticRoads(test_batch_size=19)  # one sequence's pairs: take four spread over it
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    rows = [separation_panel(batch["image1"][i], batch["flow"][i] * batch["flow_valid"][i],
                             batch["rigid_flow"][i] * batch["rigid_valid"][i], batch["moving"][i])
            for i in (0, 6, 12, 18)]
    picture = (torch.cat(rows, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    cv2.imwrite(str(HERE / "docs" / "synthetic.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    tag = "test/image_flow_rigid_residual_moving"
    for name in PICTURES:
        if not (bench_dir(PROJECT) / name).is_dir():
            continue
        for events in sorted(Path(run_dir(name)).glob("events.out.tfevents.*")):
            accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
            accumulator.Reload()
            if tag in accumulator.Tags()["images"]:
                (HERE / "docs" / f"{name}.png").write_bytes(accumulator.Images(tag)[-1].encoded_image_string)


COLUMNS = [("epe", "EPE", 2), ("fl_all", "Fl-all %", 1), ("epe_bg", "EPE bg", 2), ("epe_fg", "EPE fg", 2),
           ("epe_rigid_bg", "rigid EPE bg", 2), ("moving_iou", "moving IoU", 3), ("moving_f1", "moving F1", 3),
           ("ate", "ATE m", 3), ("rpe_trans", "RPE m", 3), ("rpe_rot", "RPE deg", 3)]
SOURCES = {"zero_flow": "-", "raft_small": "RAFT (own)", "supervised": "own", "self_supervised": "own (GeoNet)",
           "probabilistic_learned": "raft_small + self-sup. depth"}


def render(args, store: Store) -> str:
    data = store.data
    text = results_header(PROJECT, "ego-motion-flow results", args, store, notes=(
        "Synthetic road sequences (64 x 192, test split: 6 sequences x 19 pairs). EPE in pixels (per-image mean "
        "over valid pixels, averaged over images, as RAFT's KITTI evaluation); Fl-all: percentage of valid pixels "
        "with error > 3 px and > 5 % of the true flow, pooled (KITTI devkit); bg / fg: static / moving ground "
        "truth; rigid EPE bg: the method's rigid flow against the true flow on static pixels; moving IoU / F1 "
        "pooled over pixels; ATE / RPE: evo's APE (RMSE) and RPE (1 frame) of each sequence's chained camera "
        "motion (sim(3) alignment for monocular methods), averaged over sequences. Flow source: where the "
        "geometric methods get their flow (gt: the dataset's, so their EPE is 0 by construction)."))
    header = ["method", "flow source", *(c[1] for c in COLUMNS), "minutes"]
    rows = []
    for name, record in store.rows([m for m in METHODS if m in data]):
        m = record["metrics"]
        source = SOURCES.get(name, "raft_small" if name.endswith("_raft") else "gt")
        rows.append([name, source, *(fmt(m.get(f"test/{k}"), d) for k, _, d in COLUMNS), fmt(record["minutes"], 1)])
    text += "## Methods x metrics (synthetic test split)\n\n" + markdown_table(header, rows)
    if "out_of_frame" in data:
        o = data["out_of_frame"]
        names = [n for n in ("zero_flow", "raft_small", "supervised") if f"{n}_in" in o]
        text += (f"\n## Where the learned flow fails\n\n{fmt(100 * o['out_share'], 1)} % of the valid test pixels have "
                 "a true flow that leaves the image (KITTI's flow_occ convention keeps them; nothing in frame 2 "
                 "matches them). EPE on those pixels and on the others (per-image means averaged over images):\n\n")
        text += markdown_table(["pixels", *names], [["target in frame", *(fmt(o[f"{n}_in"], 2) for n in names)],
                                                    ["target out of frame", *(fmt(o[f"{n}_out"], 2) for n in names)]])
    if "speed" in data:
        s = data["speed"]
        names = [n for n in [*GEOMETRIC, *LEARNED] if f"{n}_pairs_per_s" in s]
        text += (f"\n## Speed\n\n`separate` on one batch of {s['batch']} pairs of {s['size'][0]} x {s['size'][1]}, "
                 f"{s['threads']} threads, median of 3, pairs per second:\n\n")
        text += markdown_table(names, [[fmt(s[f"{n}_pairs_per_s"], 1) for n in names]])
    return text


def main() -> None:
    args = parse_args(METHODS, description=__doc__)
    store = Store(HERE / "bench.json")
    failed = run_methods(args.methods, store, lambda name: run_method(name, args.extra))
    store.put("speed", speed())
    store.put("out_of_frame", out_of_frame())
    export_pictures()
    write_results(HERE / "RESULTS.md", render(args, store))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (their rows keep earlier numbers, if any)")


if __name__ == "__main__":
    main()
