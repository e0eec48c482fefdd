"""Every method config driven through the CLI (fit, then test on the best checkpoint) on a tiny synthetic
nuScenes-layout dataset, checking metrics.json, the checkpoint and that the checkpoint reloads."""

from __future__ import annotations

import importlib
import inspect
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from bev_uncertainty.cli import cli as project_cli
from bev_uncertainty.data.datamodule import BEVDataModule
from bev_uncertainty.data.synthetic import VERSION, generate
from bev_uncertainty.methods.base import BEVSegmentation
from shared_utils.checkpoints import find_checkpoint, latest_run, load_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = ["entropy", "temperature", "mc_dropout", "ensemble", "aleatoric", "evidential", "kendall_weighting",
           "geometry"]
METRICS = {"iou", "ece", "nll", "brier", "auroc_misclassification", "aupr_misclassification", "auroc_ood",
           "aupr_ood", "ause", "auroc_unobserved", "unseen_score_unobserved_over_observed"}
TINY = ["--data.init_args.grid", "{x_min: -16, x_max: 16, y_min: -16, y_max: 16, resolution: 1.0}",
        "--data.init_args.image_size", "[32, 88]", "--data.init_args.batch_size", "2",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("nuscenes"), scenes={"train": 1, "val": 1, "test": 1},
                    samples_per_scene=2, seed=5)


def cli(root: Path, *args: str) -> None:
    project_cli([*args, "--data.class_path", "bev_uncertainty.data.datamodule.BEVDataModule",
          "--data.init_args.root", str(root), "--data.init_args.version", VERSION, *TINY])


@pytest.mark.parametrize("method", METHODS)
def test_method_fits_and_tests(method, root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli(root, "fit", "--config", str(CONFIGS / f"{method}.yaml"), "--test_after_fit", "true")
    run = latest_run(tmp_path / "runs" / "bev-uncertainty" / method)
    record = json.loads((run / "metrics.json").read_text())
    assert record["stage"] == "test"
    metrics = {k.removeprefix("test/"): v for k, v in record["metrics"].items()}
    assert METRICS <= set(metrics), METRICS - set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert 0 <= metrics["iou"] <= 1 and 0 <= metrics["ece"] <= 1 and metrics["nll"] > 0
    # The checkpoint reloads with its BEV grid and predicts without a datamodule.
    module = load_model(run, "best")
    assert module.networks()[0].grid.shape == (32, 32)
    sample = BEVDataModule(str(root), VERSION, grid={"x_min": -16, "x_max": 16, "y_min": -16, "y_max": 16,
                                                          "resolution": 1.0}, image_size=(32, 88)).dataset("test")[0]
    batch = {k: v[None] for k, v in sample.items() if torch.is_tensor(v)}
    with torch.no_grad():
        pred = module.predict(batch)
    assert pred["prob"].shape == pred["uncertainty"].shape == pred["ood_score"].shape == (1, 32, 32)
    assert find_checkpoint(run, "last").is_file()
    if method == "temperature":  # T was fitted at validation and travels with the weights it was fitted for
        assert module.temperature.item() == pytest.approx(metrics["temperature"]) and module.temperature.item() != 1.0


def test_nuscenes_config_composes(tmp_path, monkeypatch, root, capsys):
    """configs/nuscenes.yaml after a method config: the nuScenes datamodule, the method's model."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        project_cli(["fit", "--config", str(CONFIGS / "evidential.yaml"), "--config", str(CONFIGS / "nuscenes.yaml"),
              "--data.init_args.root", str(root), "--print_config"])
    printed = capsys.readouterr().out
    assert "bev_uncertainty.methods.evidential.Evidential" in printed
    assert "class_path: bev_uncertainty.data.datamodule.BEVDataModule" in printed
    assert "version: v1.0-mini" in printed and "resolution: 0.5" in printed


def test_default_config_is_the_entropy_config():
    """default.yaml is a symlink, so it cannot drift from the method config it stands for."""
    default = CONFIGS / "default.yaml"
    assert default.is_symlink() and default.resolve() == (CONFIGS / "entropy.yaml").resolve()


@pytest.mark.parametrize("method", METHODS)
def test_test_time_hparams_are_init_arguments(method):
    """Each name in a method's test_time_hparams is an __init__ argument the CLI can take from a config."""
    class_path = yaml.safe_load((CONFIGS / f"{method}.yaml").read_text())["model"]["class_path"]
    module_name, name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), name)
    arguments = {p for c in cls.__mro__ if issubclass(c, BEVSegmentation) for p in inspect.signature(c).parameters}
    assert set(cls.test_time_hparams) <= arguments
