"""The synthetic world: deterministic, in the nuScenes layout, OOD objects in val and test scenes only, and its
cameras, LiDAR and tables agree geometrically when read back by the nuScenes loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bev_uncertainty.data.datamodule import Synthetic
from bev_uncertainty.data.grid import BEVGrid
from bev_uncertainty.data.nuscenes import CAMERAS, NuScenesBEV
from bev_uncertainty.data.synthetic import VERSION, generate

SCENES = {"train": 1, "val": 1, "test": 1}


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synthetic"), scenes=SCENES, samples_per_scene=2, seed=1)


def table(root: Path, name: str) -> list[dict]:
    return json.loads((root / VERSION / f"{name}.json").read_text())


def test_same_seed_same_files(dataroot, tmp_path):
    again = generate(tmp_path, scenes=SCENES, samples_per_scene=2, seed=1)
    assert table(again, "sample_annotation") == table(dataroot, "sample_annotation")
    sample_data = table(dataroot, "sample_data")
    first_image = next(sd["filename"] for sd in sample_data if sd["fileformat"] == "jpg")
    assert (again / first_image).read_bytes() == (dataroot / first_image).read_bytes()


def test_layout_and_splits(dataroot):
    for name in ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
                 "sample_annotation", "sample_data", "scene", "sensor", "visibility"):
        assert (dataroot / VERSION / f"{name}.json").is_file(), name
    assert {s["channel"] for s in table(dataroot, "sensor")} == {*CAMERAS, "LIDAR_TOP"}
    splits = json.loads((dataroot / VERSION / "splits.json").read_text())
    assert {k: len(v) for k, v in splits.items()} == SCENES
    for split in SCENES:
        assert len(NuScenesBEV(dataroot, VERSION, split, image_size=(64, 176))) == 2


def test_ood_objects_in_val_and_test_scenes_of_different_kinds(dataroot):
    """Training scenes hold no OOD object; val and test scenes do, of kinds the other split does not hold (so an
    OOD choice made on val is tested on unseen objects)."""
    grid = BEVGrid(-25, 25, -25, 25, 0.5)
    ood_cells = {split: sum(float(NuScenesBEV(dataroot, VERSION, split, grid, (64, 176))[i]["bev"][2].sum())
                            for i in range(2)) for split in SCENES}
    assert ood_cells["train"] == 0 and ood_cells["val"] > 0 and ood_cells["test"] > 0
    categories = {c["token"]: c["name"] for c in table(dataroot, "category")}
    instances = {i["token"]: categories[i["category_token"]] for i in table(dataroot, "instance")}
    scene_split = {s["token"]: s["name"].split("-")[1] for s in table(dataroot, "scene")}
    sample_split = {s["token"]: scene_split[s["scene_token"]] for s in table(dataroot, "sample")}
    ood = {split: set() for split in SCENES}
    for annotation in table(dataroot, "sample_annotation"):
        if instances[annotation["instance_token"]].startswith("ood."):
            ood[sample_split[annotation["sample_token"]]].add(instances[annotation["instance_token"]])
    assert not ood["train"] and ood["val"] and ood["test"] and not ood["val"] & ood["test"]


def test_lidar_depth_lands_on_the_rendered_surfaces(dataroot):
    """Back-project every LiDAR depth pixel through the camera: ground hits come back at z = 0 (the renderer's
    ground plane), nothing comes back below it. Any error in the quaternions, the sensor chain or the intrinsics
    scatters these heights by metres."""
    sample = NuScenesBEV(dataroot, VERSION, "train", image_size=(112, 200))[0]
    heights = []
    for depth, k, cam_to_ego in zip(sample["depth"], sample["intrinsics"], sample["cam_to_ego"]):
        v, u = torch.nonzero((depth > 0) & (depth < 20), as_tuple=True)
        d = depth[v, u]
        rays = torch.stack([u.float(), v.float(), torch.ones_like(d)], 0)
        cam = (torch.linalg.inv(k) @ rays) * d
        heights.append((cam_to_ego[:3, :3] @ cam + cam_to_ego[:3, 3:])[2])
    z = torch.cat(heights)
    assert len(z) > 1000
    assert z.min() > -0.25
    assert (z.abs() < 0.25).float().mean() > 0.3


def test_visibility_levels_cover_the_range(dataroot):
    levels = {a["visibility_token"] for a in table(dataroot, "sample_annotation")}
    assert {"1", "4"} <= levels


def test_datamodule_generates_once_into_the_cache(tmp_path):
    dm = Synthetic(cache_dir=str(tmp_path), scenes={"train": 1, "val": 1, "test": 1}, samples_per_scene=1,
                   image_size=(32, 88))
    root = Path(dm.dataset_root())
    marker = root / "_COMPLETE.json"
    assert marker.is_file()
    stamp = marker.stat().st_mtime_ns
    again = Synthetic(cache_dir=str(tmp_path), scenes={"train": 1, "val": 1, "test": 1}, samples_per_scene=1)
    assert Path(again.dataset_root()) == root and marker.stat().st_mtime_ns == stamp
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (1, 6, 3, 32, 88) and batch["bev"].shape == (1, 3, 100, 100)
    assert np.isclose(float(batch["images"].max()), 1.0, atol=0.2)
