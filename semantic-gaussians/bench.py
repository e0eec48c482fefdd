"""`make bench PROJECT=semantic-gaussians [ARGS="--only METHOD ..."]`: every method on the street -> RESULTS.md.

Each row runs its config exactly as `make train` does (fit, then test the last checkpoint) into
runs/semantic-gaussians/bench/<row>/:

- the static street: `3dgs` (colour only), `feature_3dgs` (the default), `langsplat`, `grouping`, `scale_field`
  (ours);
- the dynamic street (two cars drive along it): `3dgs_dynamic` (vanilla 3DGS on it, the comparison) and `dynamic`;
- `feature_3dgs_lite0`: the distillation-speed study, Feature 3DGS distilling the ImageNet Lite0's 40-d stride-8
  features of the real rendered images instead of the 384-d text-aligned proxy features.

This process then times the rasterizer, forward + backward, on the trained default scene seen from a test view:
the vectorised CPU path against the naive per-Gaussian reference (on a random subset of the Gaussians, so that the
reference finishes), the CPU path's tile sizes, and gsplat on a GPU when one is present.
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
PROJECT = "semantic-gaussians"
CONFIGS = HERE / "configs"
STATIC = ["3dgs", "feature_3dgs", "langsplat", "grouping", "scale_field"]
DYNAMIC = ["3dgs_dynamic", "dynamic"]
METHODS = [*STATIC, *DYNAMIC, "feature_3dgs_lite0"]
LITE0_CHANNELS = 40  # EfficientNet-Lite0's stride-8 stage


def plan(name: str) -> tuple[str, list[str]]:
    if name == "3dgs_dynamic":
        return "3dgs.yaml", ["--data.init_args.moving_cars=2"]
    if name == "feature_3dgs_lite0":
        return "feature_3dgs.yaml", ["--data.init_args.feature_source=lite0", "--model.init_args.level=image",
                                     f"--model.init_args.teacher_dim={LITE0_CHANNELS}"]
    return f"{name}.yaml", []


def run_method(name: str, extra: list[str]) -> dict:
    config, args = plan(name)
    run = run_config(PROJECT, [CONFIGS / config], name, [*args, *extra], subcommand="fit")
    return {"metrics": run.metrics, "minutes": run.seconds / 60}


def rasterizer_speed(subset: int = 2000) -> dict:
    """Forward + backward milliseconds of the rasterizer on the trained default scene from the first test view."""
    from semantic_gaussians.data.datamodule import SyntheticStreet
    from shared_utils.checkpoints import load_model
    from shared_utils.ops import gaussian_rasterize_gsplat, gaussian_rasterize_reference, gaussian_rasterize_torch
    from shared_utils.ops.gaussian_rasterize import gsplat_available

    model = load_model(str(latest_run(bench_dir(PROJECT) / "feature_3dgs")))
    data = SyntheticStreet()
    data.setup("test")
    view = data.sets["test"][0]
    g = model.gaussians
    h, w = view["image"].shape[1:]
    centre = -view["world_to_camera"][:3, :3].T @ view["world_to_camera"][:3, 3]

    def inputs(idx: torch.Tensor | None = None, device: str = "cpu") -> list[torch.Tensor]:
        with torch.no_grad():
            values = torch.cat([g.colours(centre, 3), g.features], 1)
            tensors = [g.means, g.quats, torch.exp(g.scales), torch.sigmoid(g.opacities), values]
            tensors = [t if idx is None else t[idx] for t in tensors]
        return [t.detach().to(device).requires_grad_() for t in tensors]

    def timed(fn, args, device: str = "cpu", **kwargs) -> float:
        def once():
            out = fn(*args, view["world_to_camera"].to(device), view["K"].to(device), w, h, **kwargs)
            (out.image.square().sum() + out.depth.mean()).backward()
            if device == "cuda":
                torch.cuda.synchronize()
        return 1000 * median_seconds(once, repeats=3)

    idx = torch.randperm(len(g), generator=torch.Generator().manual_seed(0))[:subset]
    small = inputs(idx)
    full = inputs()
    result = {"size": [h, w], "gaussians": len(g), "subset": subset, "channels": full[4].shape[1],
              "threads": torch.get_num_threads(),
              "reference_ms": timed(gaussian_rasterize_reference, small, tile_size=4),
              "torch_subset_ms": timed(gaussian_rasterize_torch, small),
              "torch_ms": timed(gaussian_rasterize_torch, full)}
    for tile in (8, 16):
        result[f"torch_tile{tile}_ms"] = timed(gaussian_rasterize_torch, full, tile_size=tile)
    if torch.cuda.is_available() and gsplat_available():
        cuda = inputs(device="cuda")
        result["gsplat_ms"] = timed(gaussian_rasterize_gsplat, cuda, device="cuda")
        result["torch_cuda_ms"] = timed(gaussian_rasterize_torch, cuda, device="cuda")
    return result


PICTURES = ["3dgs", "feature_3dgs", "langsplat", "grouping", "scale_field", "3dgs_dynamic", "dynamic"]


COLUMNS = [("psnr", "PSNR", 2), ("ssim", "SSIM", 3), ("miou", "mIoU", 3), ("loc_acc", "loc. acc.", 3),
           ("query_miou", "query mIoU", 3), ("part_acc", "part acc.", 3), ("part_miou", "part mIoU", 3),
           ("num_gaussians", "Gaussians", 0), ("train_seconds", "train s", 0), ("render_fps", "render FPS", 1),
           ("peak_memory_mb", "peak MB", 0)]


def _table(store: Store, names: list[str]) -> str:
    rows = []
    for name, record in store.rows([n for n in names if n in store.data]):
        m = record["metrics"]
        rows.append([name, *(fmt(m.get(f"test/{k}"), d) for k, _, d in COLUMNS), fmt(record["minutes"], 1)])
    return markdown_table(["method", *(c[1] for c in COLUMNS), "minutes (fit + test)"], rows)


def render(args, store: Store) -> str:
    data = store.data
    text = results_header(PROJECT, "semantic-gaussians results", args, store, notes=(
        "Synthetic street (128 x 96, 48 views: 36 train, 6 val, 6 test, the test views every 8th in name order). "
        "PSNR / SSIM (torchmetrics) per test view, averaged; mIoU: each pixel's class is the class name whose text "
        "embedding is nearest its rendered object-level feature; loc. acc. / query mIoU: LangSplat's protocol "
        "(relevancy against 'object', 'things', 'stuff', 'texture' at temperature 10, box filter, threshold 0.4; "
        "see metrics.py) over the object and part queries present in each test view, part acc. / part mIoU over "
        "the part queries ('lane marking', 'wall', 'window', 'car window', 'wheel', 'trunk', 'foliage'); train s: "
        "training steps only; render FPS: test views rendered with colour and features; peak MB: the process's "
        "peak resident memory (CPU). One seed."))
    text += "## Static street\n\n" + _table(store, STATIC)
    text += "\n## Dynamic street (two cars drive along it)\n\n" + _table(store, DYNAMIC)
    text += "\n## Distillation speed: text features (384-d) against Lite0 image features (40-d)\n\n"
    text += _table(store, ["feature_3dgs", "feature_3dgs_lite0"])
    if "rasterizer" in data:
        s = data["rasterizer"]
        text += (f"\n## Rasterizer, forward + backward\n\nThe trained default scene ({s['gaussians']} Gaussians, "
                 f"{s['channels']} channels: colour + feature) from a test view at {s['size'][1]} x {s['size'][0]}, "
                 f"{s['threads']} threads, median of 3. The naive reference loops over Gaussians in Python; it runs "
                 f"on a random subset of {s['subset']} Gaussians, against the vectorised path on the same subset.\n\n")
        rows = [["naive reference, subset", fmt(s["reference_ms"], 0)],
                ["vectorised CPU path (4 x 4 tiles), subset", fmt(s["torch_subset_ms"], 1)],
                ["reference / vectorised, subset", fmt(s["reference_ms"] / s["torch_subset_ms"], 1)],
                ["vectorised CPU path, full scene, 4 x 4 tiles", fmt(s["torch_ms"], 1)],
                ["vectorised CPU path, full scene, 8 x 8 tiles", fmt(s["torch_tile8_ms"], 1)],
                ["vectorised CPU path, full scene, 16 x 16 tiles", fmt(s["torch_tile16_ms"], 1)]]
        if "gsplat_ms" in s:
            rows += [["gsplat (CUDA), full scene", fmt(s["gsplat_ms"], 2)],
                     ["vectorised path on the GPU, full scene", fmt(s["torch_cuda_ms"], 2)]]
        else:
            rows.append(["gsplat (CUDA)", "no GPU in this run"])
        text += markdown_table(["rasterizer", "ms"], rows)
    return text


def main() -> None:
    args = parse_args(METHODS, description=__doc__)
    store = Store(HERE / "bench.json")
    failed = run_methods(args.methods, store, lambda name: run_method(name, args.extra))
    if (bench_dir(PROJECT) / "feature_3dgs").is_dir():
        store.put("rasterizer", rasterizer_speed())
    # the test picture (rendered | ground truth | depth | semantic | relevancy of 'car' and 'wheel') per run
    export_pictures(PROJECT, PICTURES, "test/rendered_gt_depth_semantic_relevancy", HERE / "docs")
    write_results(HERE / "RESULTS.md", render(args, store))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (their rows keep earlier numbers, if any)")


if __name__ == "__main__":
    main()
