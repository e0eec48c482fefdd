"""Every method from its config through the CLI on a tiny rendered set: fit, then test the last checkpoint
(metrics.json with every metric), and the GPU config's shapes on the CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sports_image_gen.cli import cli

CONFIGS = Path(__file__).parents[1] / "configs"
FAST = ["--trainer.max_steps=3", "--trainer.enable_progress_bar=false", "--model.init_args.judge_grid_steps=6",
        "--model.init_args.judge_player_steps=3", "--model.init_args.geometry_detector_steps=3",
        "--model.init_args.sampling_steps=2",
        "--model.init_args.log_images=2", "--model.init_args.ae_steps=2"]
KEYS = ["camera_reproj_px", "camera_reproj_px_shuffled", "camera_acc_5", "camera_acc_10", "camera_acc_20",
        "detector_reproj_px", "player_recall", "jersey_acc", "detector_player_recall", "fid_lite0", "kid_lite0",
        "psnr_render", "sampling_images_per_s", "train_steps_per_s", "peak_memory_mb", "parameters_m"]
METHODS = ["text2img", "latent", "camera_concat", "camera_controlnet", "players_map", "players_gligen", "skeleton",
           "geometry", "camera_pitch"]


def _fit(tmp_path: Path, configs: list[str], args: list[str]) -> dict:
    cli(["fit", *(f"--config={CONFIGS / c}" for c in configs), *args, *FAST, "--test_after_fit=true",
         f"--trainer.default_root_dir={tmp_path}"])
    [run] = [p.parent for p in tmp_path.rglob("metrics.json")]
    record = json.loads((run / "metrics.json").read_text())
    assert record["stage"] == "test" and (run / "checkpoints" / "last.ckpt").exists()
    metrics = {k.removeprefix("test/"): v for k, v in record["metrics"].items()}
    assert set(KEYS) <= set(metrics)
    return metrics


@pytest.mark.parametrize("method", METHODS)
def test_method_fits_and_tests(tmp_path, tiny_data, method):
    m = _fit(tmp_path, [f"{method}.yaml"], tiny_data)
    assert m["camera_reproj_px"] >= 0 and 0 <= m["camera_acc_10"] <= 1
    assert m["psnr_render"] > 0 and m["sampling_images_per_s"] > 0 and m["parameters_m"] > 0
    assert not math.isnan(m["fid_lite0"])


def test_default_config_is_a_method():
    default = CONFIGS / "default.yaml"
    assert default.is_symlink() and (CONFIGS / default.readlink()).is_file()


def test_gpu_config_shapes_on_cpu():
    """The GPU config (latent, 256 x 144) builds and denoises a batch of its size on the CPU."""
    from jsonargparse import ArgumentParser

    from sports_image_gen.methods.diffusion import ConditionalDiffusion

    parser = ArgumentParser()
    parser.add_argument("--model", type=dict)
    parser.add_argument("--data", type=dict)
    parser.add_argument("--trainer", type=dict)
    parser.add_argument("--experiment", type=str)
    config = parser.parse_path(str(CONFIGS / "gpu_latent_256.yaml"))
    model = ConditionalDiffusion(**config.model["init_args"])
    h, w = config.data["init_args"]["height"], config.data["init_args"]["width"]
    batch = {"image": torch.rand(2, 3, h, w), "camera_map": torch.rand(2, 3, h, w), "text": torch.randn(2, 384)}
    z = model._encode(batch["image"])
    assert z.shape == (2, 4, h // 4, w // 4)
    eps = model.predict(z, torch.tensor([10, 500]), batch["text"], batch)
    assert eps.shape == z.shape and model._decode(z).shape == (2, 3, h, w)


def test_predict_writes_pictures(tmp_path, tiny_data):
    _fit(tmp_path / "fit", ["camera_concat.yaml"], tiny_data)
    [ckpt] = (tmp_path / "fit").rglob("last.ckpt")
    cli(["predict", f"--config={CONFIGS / 'camera_concat.yaml'}", *tiny_data, *FAST, f"--ckpt_path={ckpt}",
         f"--trainer.default_root_dir={tmp_path / 'predict'}"])
    pictures = sorted((tmp_path / "predict").rglob("predictions/*.png"))
    assert len(pictures) == 4  # the tiny test split
    import cv2
    assert cv2.imread(str(pictures[0])).shape == (36, 3 * 64, 3)


@pytest.mark.parametrize("method", ["camera_controlnet", "players_gligen", "skeleton"])
def test_methods_on_a_soccernet_folder(tmp_path, tiny_data, method):
    """soccernet.yaml + a method config on a folder in the SoccerNet-calibration layout (the tiny rendered one:
    jpgs, camera_<name>.json, Labels-GameState.json, person_keypoints.json)."""
    from sports_image_gen.data.datamodule import SyntheticBroadcast

    data_args = dict(a.removeprefix("--data.init_args.").split("=", 1) for a in tiny_data if "data.init_args" in a)
    root = SyntheticBroadcast(**{k: (v if k == "cache_dir" else int(v)) for k, v in data_args.items()
                                 if k != "batch_size"}).dataset_root()
    judges = [a for a in tiny_data if "judge_dir" in a]
    m = _fit(tmp_path, ["soccernet.yaml", f"{method}.yaml"],
             [f"--data.init_args.root={root}", "--data.init_args.batch_size=4", *judges])
    assert m["camera_reproj_px"] >= 0 and m["psnr_render"] > 0
