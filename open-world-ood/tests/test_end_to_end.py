"""Every method from its config, through the CLI (fit, then test the best checkpoint), on the tiny shape
world and on the OWOD-layout and VOC-layout fixtures; predict writes detections.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, TINY_SIZES
from open_world_ood.cli import cli

CONFIGS = Path(__file__).parents[1] / "configs"
METHODS = ["closed_set", "msp", "energy", "mahalanobis", "vos", "ore", "prob", "randbox", "conformal"]
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.enable_progress_bar=false",
        "--model.init_args.weights=null", "--model.init_args.head_channels=16"]
# energy on the VOC-layout fixture (its trainval split also serves as test)
VOC_ENERGY = ["--config", str(CONFIGS / "energy.yaml"), "--config", str(CONFIGS / "voc.yaml"),
              f"--data.init_args.root={DATA / 'voc'}", "--data.init_args.test_set=trainval",
              "--data.init_args.image_size=64", "--data.init_args.num_workers=0"]
METRICS = {"map50", "u_recall", "wi", "a_ose", "auroc_unknown", "fpr95_unknown", "false_unknown_rate"}


def _run(tmp_path: Path, *args: str) -> dict:
    cli(["fit", *args, *FAST, "--test_after_fit=true", f"--trainer.default_root_dir={tmp_path}"])
    [run] = [p.parent for p in tmp_path.rglob("metrics.json")]
    assert list((run / "checkpoints").glob("best-epoch*.ckpt"))
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize("method", METHODS)
def test_method_on_the_shape_world(method, tmp_path, shapeworld_cache):
    metrics = _run(tmp_path, "--config", str(CONFIGS / f"{method}.yaml"),
                   f"--data.init_args.sizes={json.dumps(TINY_SIZES)}", "--data.init_args.exemplars=2",
                   f"--data.init_args.cache_dir={shapeworld_cache}", "--data.init_args.batch_size=4")
    assert metrics["stage"] == "test"
    keys = metrics["metrics"]
    for name in METRICS:
        assert f"test/{name}" in keys and f"test/aerial/{name}" in keys
    assert 0 <= keys["test/map50"] <= 100 and keys["test/a_ose"] >= 0


@pytest.mark.parametrize("method", METHODS)
def test_method_on_the_owod_layout(method, tmp_path):
    metrics = _run(tmp_path, "--config", str(CONFIGS / f"{method}.yaml"), "--config", str(CONFIGS / "owod.yaml"),
                   f"--data.init_args.root={DATA / 'owod'}", "--data.init_args.task=2",
                   "--data.init_args.image_size=64", "--data.init_args.num_workers=0")
    keys = metrics["metrics"]
    assert {"test/map50_prev", "test/map50_cur", "test/u_recall"} <= set(keys)


def test_voc_layout_then_predict_writes_detections(tmp_path):
    common = VOC_ENERGY
    _run(tmp_path / "fit", *common)
    [ckpt] = (tmp_path / "fit").rglob("best-epoch*.ckpt")
    cli(["predict", *common, "--model.init_args.weights=null", "--model.init_args.head_channels=16",
         f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path / 'predict'}"])
    [detections] = (tmp_path / "predict").rglob("detections.json")
    rows = json.loads(detections.read_text())
    assert rows and {"image_id", "category_id", "bbox", "score", "category", "file_name"} <= set(rows[0])


def test_task2_grows_the_class_head_from_task1(tmp_path, shapeworld_cache):
    import torch

    data = [f"--data.init_args.sizes={json.dumps(TINY_SIZES)}", "--data.init_args.exemplars=2",
            f"--data.init_args.cache_dir={shapeworld_cache}", "--data.init_args.batch_size=4"]
    _run(tmp_path / "t1", "--config", str(CONFIGS / "ore.yaml"), *data)
    [t1] = (tmp_path / "t1").rglob("best-epoch*.ckpt")
    checkpoint = torch.load(t1, weights_only=False)
    rows = checkpoint["state_dict"]["detector.heatmap.2.weight"]
    assert rows.shape[0] == 5 + 1  # task 1's known classes + ORE's unknown channel
    rows[:5], rows[-1] = 0.5, -0.5  # marked, so that the copy is told apart from a fresh initialisation
    torch.save(checkpoint, tmp_path / "marked.ckpt")
    _run(tmp_path / "t2", "--config", str(CONFIGS / "ore.yaml"), *data, "--data.init_args.task=2",
         f"--model.init_args.init_from={tmp_path / 'marked.ckpt'}")
    [t2] = (tmp_path / "t2").rglob("best-epoch*.ckpt")
    after = torch.load(t2, weights_only=False)["state_dict"]["detector.heatmap.2.weight"]
    assert after.shape[0] == 8 + 1
    # two AdamW steps (lr 1e-3) later, the task-1 rows and the unknown row are still the marked ones
    assert (after[:5] - 0.5).abs().max() < 0.01 and (after[-1] + 0.5).abs().max() < 0.01
    assert (after[5:8].abs() < 0.4).all()  # the new classes' rows start fresh


def test_coco_layout_logs_pycocotools_map(tmp_path):
    metrics = _run(tmp_path, "--config", str(CONFIGS / "closed_set.yaml"), "--config", str(CONFIGS / "coco.yaml"),
                   f"--data.init_args.root={DATA / 'coco'}", "--data.init_args.train_split=val2017",
                   "--data.init_args.image_size=64", "--data.init_args.num_workers=0")["metrics"]
    # an untrained detector on 2 fixture images: pycocotools ran and found nothing right (its -1 would be NaN)
    assert metrics["test/coco_map"] == 0.0 and metrics["test/coco_map50"] == 0.0


def test_a_test_only_datamodule_takes_the_checkpoints_classes(tmp_path):
    """deepforest.yaml knows no classes: testing a checkpoint on it builds the checkpoint's detector."""
    import shutil

    from open_world_ood.data.datamodule import DEEPFOREST_TILES

    common = VOC_ENERGY
    _run(tmp_path / "fit", *common)
    [ckpt] = (tmp_path / "fit").rglob("best-epoch*.ckpt")
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    shutil.copy(DATA / "voc_files" / "tile.png", tiles)
    for name in DEEPFOREST_TILES:  # the fixture tile under the four names the datamodule expects
        shutil.copy(DATA / "voc_files" / "tile.xml", tiles / f"{name}.xml")
    cli(["test", "--config", str(CONFIGS / "energy.yaml"), "--config", str(CONFIGS / "deepforest.yaml"),
         f"--data.init_args.root={tiles}", "--model.init_args.weights=null", "--model.init_args.head_channels=16",
         f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path / 'test'}"])
    [metrics] = (tmp_path / "test").rglob("metrics.json")
    keys = json.loads(metrics.read_text())["metrics"]
    assert {"test/u_recall", "test/a_ose"} <= set(keys)
