"""Every method from its config through the CLI on a tiny synthetic street: fit, then test the last checkpoint
(metrics.json with every metric), and predict's fly-through video."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from semantic_gaussians.cli import cli

CONFIGS = Path(__file__).parents[1] / "configs"
FAST = ["--trainer.max_steps=12", "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false",
        "--model.init_args.densify_start=2", "--model.init_args.densify_every=4", "--model.init_args.reset_every=8",
        "--model.init_args.densify_stop=10", "--model.init_args.sh_every=4"]
KEYS = ["psnr", "ssim", "miou", "loc_acc", "query_miou", "part_acc", "part_miou", "num_gaussians", "render_fps",
        "train_seconds", "peak_memory_mb"]


def _fit(tmp_path: Path, method: str, tiny_data: list[str], *extra: str) -> tuple[Path, dict]:
    cli(["fit", "--config", str(CONFIGS / f"{method}.yaml"), *tiny_data, *FAST, *extra, "--test_after_fit=true",
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
