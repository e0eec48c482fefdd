"""Every method from its config through the CLI on tiny synthetic data: learned ones fit then test the best
checkpoint; the others run `test` directly, without a checkpoint; the geometric ones also on a trained flow
network's flow, and on the synthetic set read through the KITTI 2015 loader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import TINY
from ego_motion_flow.cli import cli
from ego_motion_flow.data.datamodule import SyntheticRoads
from ego_motion_flow.data.io import write_kitti_odometry_calib, write_kitti_poses

CONFIGS = Path(__file__).parents[1] / "configs"
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.enable_progress_bar=false"]
FLOW_KEYS = ["epe", "fl_all", "fl_bg", "fl_fg", "epe_bg", "epe_fg"]
ALL_KEYS = [*FLOW_KEYS, "epe_rigid_bg", "moving_iou", "moving_f1", "ate", "rpe_trans", "rpe_rot", "t_err", "r_err"]


def _metrics(root: Path) -> tuple[Path, dict]:
    [run] = [p.parent for p in root.rglob("metrics.json")]
    record = json.loads((run / "metrics.json").read_text())
    assert record["stage"] == "test"
    assert set(ALL_KEYS) <= {k.removeprefix("test/") for k in record["metrics"]}
    return run, {k.removeprefix("test/"): v for k, v in record["metrics"].items()}


def _fit(tmp_path: Path, method: str, tiny_data: list[str]) -> tuple[Path, dict]:
    cli(["fit", "--config", str(CONFIGS / f"{method}.yaml"), *tiny_data, *FAST, "--test_after_fit=true",
         f"--trainer.default_root_dir={tmp_path}"])
    run, metrics = _metrics(tmp_path)
    assert list((run / "checkpoints").glob("*.ckpt"))
    return run, metrics


def _test(root: Path, method: str, *args: str) -> dict:
    cli(["test", "--config", str(CONFIGS / f"{method}.yaml"), *args, "--trainer.enable_progress_bar=false",
         f"--trainer.default_root_dir={root}"])
    return _metrics(root)[1]


@pytest.fixture(scope="module")
def raft_run(tmp_path_factory, cache_dir) -> Path:
    """One tiny trained RAFT-small, the flow source of the geometric methods' tests."""
    root = tmp_path_factory.mktemp("raft")
    args = [f"--data.init_args.{k}={json.dumps(v)}" for k, v in TINY.items()]
    cli(["fit", "--config", str(CONFIGS / "raft_small.yaml"), *args, f"--data.init_args.cache_dir={cache_dir}",
         "--data.init_args.batch_size=2", *FAST, f"--trainer.default_root_dir={root}"])
    [run] = [p.parent.parent for p in root.rglob("last.ckpt")]
    return run


@pytest.mark.parametrize("method", ["supervised", "raft_small", "self_supervised"])
def test_learned_method_fits_and_tests(method, tmp_path, tiny_data):
    _, m = _fit(tmp_path, method, tiny_data)
    assert m["epe"] >= 0 and 0 <= m["fl_all"] <= 100
    if method == "raft_small":  # a flow source only: it separates nothing
        assert math.isnan(m["moving_iou"]) and math.isnan(m["ate"])
    else:
        assert 0 <= m["moving_iou"] <= 1 and m["epe_rigid_bg"] >= 0
    assert math.isnan(m["ate"]) == (method != "self_supervised")


@pytest.mark.parametrize("method", ["zero_flow", "rigid_gt", "homography", "essential", "probabilistic"])
def test_method_without_training_runs_test_directly(method, tmp_path, tiny_data):
    m = _test(tmp_path, method, *tiny_data)
    if method == "zero_flow":
        assert m["epe"] > 0 and m["moving_iou"] == 0
    else:  # the ground-truth flow is their source
        assert m["epe"] == 0
    if method == "rigid_gt":
        assert m["epe_rigid_bg"] < 0.05 and m["ate"] < 1e-6
    assert math.isnan(m["ate"]) == (method == "homography")


@pytest.mark.parametrize("method", ["homography", "essential", "probabilistic"])
def test_geometric_method_on_a_trained_flow_network(method, raft_run, tmp_path, tiny_data):
    m = _test(tmp_path, method, *tiny_data, f"--model.init_args.flow_checkpoint={raft_run}")
    assert m["epe"] > 0  # the network's flow, not the ground truth


@pytest.mark.parametrize("data_first", [True, False])
def test_geometric_method_through_the_kitti15_loader(data_first, tmp_path, cache_dir):
    """`test --config kitti15.yaml --config <method>.yaml` (the data config first, as the README writes it) reads
    KITTI 2015 one pair per batch, as does the other order: method configs leave the data to the data config."""
    root = SyntheticRoads(**TINY, cache_dir=str(cache_dir)).root() / "kitti15"
    configs = [str(CONFIGS / "kitti15.yaml"), str(CONFIGS / "probabilistic.yaml")]
    first, second = configs if data_first else configs[::-1]
    cli(["test", "--config", first, "--config", second, f"--data.init_args.root={root}",
         "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"])
    run, m = _metrics(tmp_path)
    assert m["epe"] == 0 and 0 <= m["moving_iou"] <= 1
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["class_path"].endswith("Kitti2015DataModule")
    assert config["data"]["init_args"]["test_batch_size"] is None  # one pair per batch (sizes vary in KITTI)


def test_fit_of_a_method_without_training_is_a_one_line_error(tmp_path, tiny_data, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", "--config", str(CONFIGS / "homography.yaml"), *tiny_data, *FAST,
             f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert "learns nothing" in capsys.readouterr().err
    assert not list(tmp_path.rglob("version_*"))


def _write_odometry(root: Path) -> Path:
    """A 3-frame KITTI odometry sequence 00 at 64 x 128 (big enough for RAFT-small), camera driving forward."""
    images = root / "sequences" / "00" / "image_2"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    texture = cv2.resize(rng.integers(0, 255, (16, 32, 3), dtype=np.uint8), (160, 96))
    for i in range(3):
        cv2.imwrite(str(images / f"{i:06d}.png"), texture[16 - 4 * i:80 - 4 * i, 16 - 4 * i:144 - 4 * i])
    write_kitti_odometry_calib(root / "sequences" / "00" / "calib.txt",
                               np.array([[100.0, 0, 64, 0], [0, 100, 32, 0], [0, 0, 1, 0]]))
    poses = np.repeat(np.eye(4)[None], 3, 0)
    poses[:, 2, 3] = [0, 1, 2]
    (root / "poses").mkdir()
    write_kitti_poses(root / "poses" / "00.txt", poses)
    return root


ODOMETRY = ["--config", str(CONFIGS / "kitti_odometry.yaml"), '--data.init_args.sequences=["00"]']


def test_geometric_method_without_a_flow_source_says_what_to_set(tmp_path, capsys):
    root = _write_odometry(tmp_path / "kitti_odometry")
    with pytest.raises(SystemExit) as exit_info:
        _test(tmp_path / "runs", "essential", *ODOMETRY, f"--data.init_args.root={root}")
    assert exit_info.value.code == 2
    assert "flow_checkpoint" in capsys.readouterr().err


def test_kitti_odometry_ego_motion_from_a_trained_flow_network(raft_run, tmp_path):
    root = _write_odometry(tmp_path / "kitti_odometry")
    m = _test(tmp_path / "runs", "essential", *ODOMETRY, f"--data.init_args.root={root}",
              f"--model.init_args.flow_checkpoint={raft_run}")
    assert math.isnan(m["epe"])  # no flow ground truth in KITTI odometry
    assert m["ate"] >= 0 and m["rpe_rot"] >= 0


@pytest.mark.parametrize("method", ["zero_flow", "rigid_gt", "homography", "essential", "probabilistic"])
@pytest.mark.parametrize("dataset", ["vkitti2", "sintel"])
def test_method_on_a_real_layout(dataset, method, tmp_path):
    """The tiny fixtures of test_loaders.py, in the official VKITTI2 and Sintel layouts, through the CLI."""
    from test_loaders import _write_sintel, _write_vkitti2

    if dataset == "vkitti2":
        root = _write_vkitti2(tmp_path / "vkitti2")
        args = ["--data.init_args.scenes=[Scene01]", "--data.init_args.variations=[clone]"]
    else:
        root = _write_sintel(tmp_path / "sintel")
        args = []
    m = _test(tmp_path / "runs", method, "--config", str(CONFIGS / f"{dataset}.yaml"),
              f"--data.init_args.root={root}", *args)
    assert m["epe"] >= 0 and 0 <= m["moving_iou"] <= 1
