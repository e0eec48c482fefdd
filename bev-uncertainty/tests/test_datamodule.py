"""The datamodule's argument names and its data check in ``setup`` (before any training)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bev_uncertainty.cli import cli as project_cli
from bev_uncertainty.data.datamodule import BEVDataModule
from bev_uncertainty.data.synthetic import VERSION, generate
from shared_utils.datasets import DatasetFormatError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("nuscenes"), scenes={"train": 1, "val": 1, "test": 1},
                    samples_per_scene=1, seed=3)


def test_dataroot_is_a_deprecated_alias_of_root(root):
    with pytest.deprecated_call(match=r"`dataroot` is deprecated .*use `root`"):
        dm = BEVDataModule(dataroot=str(root), version=VERSION)
    assert dm.root == str(root)
    dm.setup("test")
    assert len(dm.dataset("test")) == 1
    with pytest.raises(ValueError, match="once, as root"):
        BEVDataModule(root=str(root), dataroot=str(root))


@pytest.mark.parametrize("stage", ["fit", "validate", "test"])
def test_setup_checks_the_dataset(tmp_path, root, stage):
    """A root that does not exist, or lacks its tables, stops in setup with the path and what was found."""
    with pytest.raises(DatasetFormatError, match=r"absent does not exist \(expected samples/ and .* in it; found"):
        BEVDataModule(root=str(tmp_path / "absent"), version=VERSION).setup(stage)
    (tmp_path / "empty" / "samples").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match=rf"{VERSION} not found .*found in .*empty: samples/"):
        BEVDataModule(root=str(tmp_path / "empty"), version=VERSION).setup(stage)
    dm = BEVDataModule(root=str(root), version=VERSION)
    dm.setup(stage)
    assert set(dm.datasets) == {"fit": {"train", "val"}, "validate": {"val"}, "test": {"test"}}[stage]


def test_cli_fit_on_a_missing_root_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        project_cli(["fit", "--config", str(CONFIGS / "entropy.yaml"), "--config", str(CONFIGS / "nuscenes.yaml"),
              "--data.init_args.root", str(tmp_path / "nowhere"), "--trainer.default_root_dir",
              str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"nuScenes root {tmp_path / 'nowhere'} does not exist" in err and "Traceback" not in err
    assert not list((tmp_path / "runs").rglob("version_*"))


def test_cached_samples_are_read_once(tmp_path):
    """With cache_samples, the second epoch comes from memory: the same tensors, without touching the files."""
    root = generate(tmp_path / "world", scenes={"train": 1, "val": 1, "test": 1}, samples_per_scene=2, seed=4)
    dm = BEVDataModule(root=str(root), version=VERSION, image_size=(32, 88), batch_size=2, cache_samples=True)
    dm.setup("fit")
    first = next(iter(dm.val_dataloader()))
    shutil.rmtree(root / "samples")  # a read from disk would fail now
    again = next(iter(dm.val_dataloader()))
    assert first["token"] == again["token"] and torch.equal(first["images"], again["images"])
    assert torch.equal(first["depth"], again["depth"]) and torch.equal(first["bev"], again["bev"])
