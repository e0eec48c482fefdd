"""Every method config driven through the CLI (fit, then test on the best checkpoint) on a tiny synthetic
Human3.6M-format dataset; the training-free baselines with `test` directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pose_forecasting.cli import cli as project_cli
from pose_forecasting.data.synthetic import generate
from pose_forecasting.metrics import HORIZONS_MS
from shared_utils.cache import MARKER
from shared_utils.checkpoints import find_checkpoint, latest_run, load_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAST = ["--data.init_args.actions", "[walking, eating, sitting]", "--data.init_args.batch_size", "32",
        "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "2",
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("h36m"), frames=400, seed=3)


def cli(workdir: Path, dataset: Path, subcommand: str, method: str, *extra: str) -> Path:
    args = [subcommand, "--config", str(CONFIGS / f"{method}.yaml"),
            "--data.class_path", "pose_forecasting.data.datamodule.H36M", "--data.init_args.root", str(dataset),
            *FAST, *extra]
    project_cli(args)
    return latest_run(workdir / "runs" / "pose-forecasting" / method)


def check_metrics(run: Path, extra: set[str] = frozenset()) -> dict:
    record = json.loads((run / "metrics.json").read_text())
    assert record["stage"] == "test"
    metrics = record["metrics"]
    expected = {f"test/mpjpe_{ms}ms" for ms in HORIZONS_MS} | {"test/mpjpe_avg", "test/robust_last8_mpjpe_1000ms",
                                                               "test/robust_random60_mpjpe_400ms"} | set(extra)
    assert expected <= set(metrics), expected - set(metrics)
    assert any(k.startswith("test_action/") and k.endswith("/mpjpe_1000ms") for k in metrics)
    assert all(np.isfinite(v) and v >= 0 for v in metrics.values())
    return metrics


@pytest.mark.parametrize("method", ["zero_velocity", "constant_velocity"])
def test_training_free_baselines_test_directly(method, dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = cli(tmp_path, dataset, "test", method)
    metrics = check_metrics(run)
    assert metrics["test/mpjpe_1000ms"] > metrics["test/mpjpe_80ms"]


@pytest.mark.parametrize("method,extra", [("simlpe", set()), ("stsgcn", set()),
                                          ("obs_aware", {"test/coverage_95"}),
                                          ("dstformer", {"test/mpjpe", "test/p_mpjpe"})])
def test_method_fits_and_tests_from_its_config(method, extra, dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = cli(tmp_path, dataset, "fit", method, "--test_after_fit", "true")
    check_metrics(run, extra)
    best = find_checkpoint(run, "best")
    model = load_model(best)
    trained = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    assert set(trained) == set(model.state_dict())
    assert (run / "checkpoints" / "last.ckpt").is_file() and list(run.glob("events.out.tfevents.*"))


def test_the_horizon_is_set_once_in_the_data(dataset, tmp_path, monkeypatch):
    """`data.init_args.output_frames` is linked to the network's: a shorter horizon reaches both."""
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "simlpe.yaml"), "--data.class_path", "pose_forecasting.data.datamodule.H36M",
            "--data.init_args.root", str(dataset), *FAST, "--data.init_args.output_frames", "10"]
    built = project_cli(["fit", *args])
    assert built.model.model.output_frames == built.datamodule.output_frames == 10
    run = latest_run(tmp_path / "runs" / "pose-forecasting" / "simlpe")
    assert "output_frames: 10" in (run / "config.yaml").read_text()
    tested = project_cli(["test", "--config", str(run / "config.yaml"), f"--ckpt_path={find_checkpoint(run)}"])
    assert tested.model.model.output_frames == 10


def test_predict_writes_forecasts(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = cli(tmp_path, dataset, "predict", "zero_velocity")
    saved = np.load(run / "predictions.npz")
    assert saved["forecast"].shape == (3 * 256, 25, 22, 3) and len(saved["action"]) == 3 * 256


def test_synthetic_default_generates_once_into_its_cache(tmp_path):
    from pose_forecasting.data.datamodule import Synthetic

    dm = Synthetic(cache_dir=str(tmp_path / "cache"), lines=400, actions=["walking"], batch_size=8)
    dm.setup("test")
    (root,) = (tmp_path / "cache").iterdir()  # one folder per generator setting, named by its hash
    marker = (root / MARKER).read_text()
    assert json.loads(marker)["frames"] == 400
    batch = next(iter(dm.test_dataloader()))
    assert batch["history"].shape == (8, 50, 22, 3) and batch["future_full"].shape == (8, 25, 32, 3)
    stamp = (root / "S5" / "walking_1.txt").stat().st_mtime_ns
    Synthetic(cache_dir=str(tmp_path / "cache"), lines=400, actions=["walking"]).setup("test")
    assert (root / "S5" / "walking_1.txt").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert list((tmp_path / "cache").iterdir()) == [root]


def test_unknown_protocol_and_action_are_rejected(tmp_path):
    from pose_forecasting.data.datamodule import H36M

    with pytest.raises(ValueError, match="protocol must be '256' or 'all'"):
        H36M(str(tmp_path), protocol="100")
    with pytest.raises(ValueError, match=r"unknown \['jumping'\]"):
        H36M(str(tmp_path), actions=["jumping"])


def test_default_config_is_the_simlpe_config():
    """`default.yaml` cannot drift from the method it stands for: it is a link to it (issue 14, point 7)."""
    default = CONFIGS / "default.yaml"
    assert default.is_symlink() and default.resolve() == (CONFIGS / "simlpe.yaml").resolve()
