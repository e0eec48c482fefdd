"""Every method from its config through the CLI on a tiny synthetic street: fit, then test the last checkpoint
(metrics.json with every metric), and predict's fly-through video."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from semantic_gaussians.cli import cli

CONFIGS = Path(__file__).parents[1] / "configs"
FAST = ["--trainer.max_steps=12", "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false",
        "--model.init_args.densify_start=2", "--model.init_args.densify_every=4", "--model.init_args.reset_every=8",
        "--model.init_args.densify_stop=10", "--model.init_args.sh_every=4"]
# LangSplat fits its autoencoder before the Gaussians: a few steps are enough to exercise it.
EXTRA = {"langsplat": ["--model.init_args.ae_steps=20"]}
KEYS = ["psnr", "ssim", "miou", "loc_acc", "query_miou", "part_acc", "part_miou", "num_gaussians", "render_fps",
        "train_seconds", "peak_memory_mb"]


def _fit(tmp_path: Path, method: str, tiny_data: list[str], *extra: str) -> tuple[Path, dict]:
    cli(["fit", "--config", str(CONFIGS / f"{method}.yaml"), *tiny_data, *FAST, *EXTRA.get(method, []), *extra,
         "--test_after_fit=true",
         f"--trainer.default_root_dir={tmp_path}"])
    [run] = [p.parent for p in tmp_path.rglob("metrics.json")]
    record = json.loads((run / "metrics.json").read_text())
    assert record["stage"] == "test"
    metrics = {k.removeprefix("test/"): v for k, v in record["metrics"].items()}
    assert set(KEYS) <= set(metrics)
    assert (run / "checkpoints" / "last.ckpt").exists()
    return run, metrics


@pytest.mark.parametrize("method", ["default", "langsplat", "grouping", "scale_field"])
def test_feature_methods_fit_and_test(tmp_path, tiny_data, method):
    _, m = _fit(tmp_path, method, tiny_data)
    assert 5 < m["psnr"] < 60 and 0 < m["ssim"] <= 1
    assert m["num_gaussians"] > 0 and m["render_fps"] > 0 and m["train_seconds"] > 0
    for key in ("miou", "loc_acc", "query_miou", "part_acc", "part_miou"):  # every feature method answers queries
        assert 0 <= m[key] <= 1, key


def test_vanilla_3dgs_has_no_query_metrics(tmp_path, tiny_data):
    _, m = _fit(tmp_path, "3dgs", tiny_data)
    assert m["psnr"] > 5 and math.isnan(m["miou"]) and math.isnan(m["loc_acc"])


def test_dynamic_street(tmp_path, tiny_data):
    _, m = _fit(tmp_path, "dynamic", tiny_data)
    assert m["psnr"] > 5


def test_dynamic_needs_moving_objects(tmp_path, tiny_data, capsys):
    with pytest.raises(SystemExit):
        _fit(tmp_path, "dynamic", tiny_data, "--data.init_args.moving_cars=0")
    assert "moving_cars > 0" in capsys.readouterr().err


def test_predict_writes_a_flythrough_video(tmp_path, tiny_data):
    run, _ = _fit(tmp_path, "default", tiny_data)
    cli(["predict", "--config", str(CONFIGS / "default.yaml"), *tiny_data, "--trainer.enable_progress_bar=false",
         f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"--trainer.default_root_dir={tmp_path / 'predict'}"])
    [video] = list((tmp_path / "predict").rglob("flythrough.mp4"))
    assert video.stat().st_size > 1000


@pytest.fixture(scope="module")
def colmap_scene(tmp_path_factory, cache_dir) -> tuple[Path, Path]:
    """The tiny street as a user's COLMAP folder: images/, sparse/0, Gaussian Grouping's object_mask/, and
    LangSplat-layout features (level 1: part names, level 3: class names) in a separate folder."""
    import shutil

    import cv2
    import numpy as np

    from conftest import TINY
    from semantic_gaussians.data.datamodule import SyntheticStreet, Vocabulary
    from semantic_gaussians.data.synthetic import CLASSES, PARTS

    src = SyntheticStreet(**TINY, cache_dir=str(cache_dir)).root()
    root = tmp_path_factory.mktemp("colmap") / "scene"
    shutil.copytree(src / "images", root / "images")
    shutil.copytree(src / "sparse", root / "sparse")
    (root / "object_mask").mkdir()
    features = root.parent / "language_feature"
    features.mkdir()
    vocab = Vocabulary.encode(list(CLASSES), list(PARTS))
    rows = torch.cat([vocab.part_embeddings, vocab.class_embeddings]).numpy()
    for labels in sorted((src / "labels").glob("*.npz")):
        with np.load(labels) as lab:
            cv2.imwrite(str(root / "object_mask" / f"{labels.stem}.png"), lab["instance"].astype(np.uint16))
            seg = np.full((4,) + lab["part"].shape, -1, np.int64)
            seg[1] = lab["part"]
            seg[3] = lab["semantic"] + len(PARTS)  # global row indices into _f.npy, as LangSplat stores them
        np.save(features / f"{labels.stem}_s.npy", seg)
        np.save(features / f"{labels.stem}_f.npy", rows)
    return root, features


@pytest.mark.parametrize("method", ["langsplat", "grouping"])
def test_methods_run_on_a_colmap_folder(tmp_path, colmap_scene, method):
    root, features = colmap_scene
    data = [f"--data.init_args.root={root}", f"--data.init_args.features_dir={features}",
            "--data.init_args.downscale=1", "--data.init_args.val_offset=4"]
    cli(["fit", "--config", str(CONFIGS / f"{method}.yaml"), "--config", str(CONFIGS / "colmap.yaml"), *data, *FAST,
         *EXTRA.get(method, []), "--test_after_fit=true", f"--trainer.default_root_dir={tmp_path}"])
    [run] = [p.parent for p in tmp_path.rglob("metrics.json")]
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["test/psnr"] > 5
    assert math.isnan(metrics["test/loc_acc"])  # no labelled queries in a plain COLMAP scene


def test_vanilla_3dgs_runs_on_a_nerf_synthetic_folder(tmp_path, cache_dir):
    """The tiny street's views written as transforms_{train,val,test}.json (OpenGL camera-to-world)."""
    import shutil

    import numpy as np

    from conftest import TINY
    from semantic_gaussians.data.colmap import ColmapScene
    from semantic_gaussians.data.datamodule import SyntheticStreet

    src = SyntheticStreet(**TINY, cache_dir=str(cache_dir)).root()
    scene = ColmapScene(src, split="all")
    root = tmp_path / "blender"
    for split, indices in {"train": range(2, 12), "val": [1], "test": [0]}.items():
        (root / split).mkdir(parents=True)
        frames = []
        for i in indices:
            view = scene[i]
            c2w = np.linalg.inv(view["world_to_camera"].double().numpy()) @ np.diag([1.0, -1.0, -1.0, 1.0])
            c2w[:3, 3] = (c2w[:3, 3] - [14.0, 0.0, 1.5]) / 12.0  # the street scaled into the [-1.3, 1.3]^3 cube
            shutil.copy(src / "images" / view["image_name"], root / split / f"r_{i}.png")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
        fx = float(scene[0]["K"][0, 0])
        angle = 2 * math.atan(TINY["width"] / (2 * fx))
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    cli(["fit", "--config", str(CONFIGS / "3dgs.yaml"), "--config", str(CONFIGS / "blender.yaml"),
         f"--data.init_args.root={root}", "--data.init_args.downscale=1", "--data.init_args.num_points=500", *FAST,
         "--test_after_fit=true", f"--trainer.default_root_dir={tmp_path / 'runs'}"])
    [run] = [p.parent for p in (tmp_path / "runs").rglob("metrics.json")]
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["test/psnr"] > 0 and metrics["test/num_gaussians"] > 0  # 12 steps: it ran, not converged


def test_feature_3dgs_distils_lite0_image_features(tmp_path, tiny_data):
    """The distillation-speed study's row: Lite0's 40-d stride-8 features of the images (not text-aligned: no
    query metrics)."""
    _, m = _fit(tmp_path, "feature_3dgs", tiny_data, "--data.init_args.feature_source=lite0",
                "--model.init_args.level=image", "--model.init_args.teacher_dim=40")
    assert m["psnr"] > 5 and math.isnan(m["loc_acc"]) and math.isnan(m["miou"])
