"""The synthetic street: geometry consistent with the written COLMAP model, labels, splits, proxy features, and
the dynamic variant's tracked poses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY
from semantic_gaussians.data import synthetic
from semantic_gaussians.data.colmap import ColmapScene
from semantic_gaussians.data.datamodule import SyntheticStreet, split_indices


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    return synthetic.write_street(tmp_path_factory.mktemp("street"), seed=3, width=48, height=36, drive_frames=6,
                                  side_views=2, moving_cars=1)


def _labels(root, name):
    with np.load(root / "labels" / f"{name.rsplit('.', 1)[0]}.npz") as f:
        return {k: f[k] for k in f.files}


def test_depth_unprojects_onto_the_ground_where_the_label_says_road(street):
    scene = ColmapScene(street, split="all")
    for i in range(len(scene)):
        view = scene[i]
        lab = _labels(street, view["image_name"])
        road = lab["semantic"] == synthetic.ROAD
        if road.sum() < 20:
            continue
        v, u = np.nonzero(road)
        K, w2c = view["K"].double().numpy(), view["world_to_camera"].double().numpy()
        rays = np.linalg.inv(K) @ np.stack([u + 0.5, v + 0.5, np.ones_like(u)])  # pixel centres at +0.5
        cam = rays * lab["depth"][v, u]
        world = w2c[:3, :3].T @ (cam - w2c[:3, 3:4])
        assert np.abs(world[2]).max() < 1e-4  # the road is the plane z = 0 (float32 depth and poses)
        assert np.abs(world[1]).max() < synthetic.ROAD_HALF + 1e-6


def test_sparse_points_project_onto_pixels_at_their_depth(street):
    scene = ColmapScene(street, split="all")
    xyz, _ = scene.points()
    by_name = {scene[i]["image_name"]: scene[i] for i in range(len(scene))}
    assert len(xyz) > 100
    checked = 0
    for point in list(scene.points3D.values())[:200]:
        img = next(im for im in scene.all_images if im.id == int(point.image_ids[0]))
        view = by_name[img.name]
        w2c, K = view["world_to_camera"].double().numpy(), view["K"].double().numpy()
        cam = w2c[:3, :3] @ point.xyz + w2c[:3, 3]
        u, v = (K @ cam)[:2] / cam[2]
        depth = _labels(street, img.name)["depth"][int(v), int(u)]
        if abs(u - round(u)) > 0.05 and abs(v - round(v)) > 0.05:  # away from pixel borders
            assert cam[2] == pytest.approx(depth, abs=0.08)  # 1 cm of SfM noise; a pixel's depth is its centre's
            checked += 1
    assert checked > 50


def test_labels_cover_every_class_and_the_sky_is_at_infinity(street):
    seen = set()
    for f in (street / "labels").iterdir():
        lab = dict(np.load(f))
        seen |= set(np.unique(lab["semantic"]).tolist())
        assert np.isinf(lab["depth"][lab["semantic"] == synthetic.SKY]).all()
        assert np.isfinite(lab["depth"][lab["semantic"] != synthetic.SKY]).all()
    assert seen == set(range(len(synthetic.CLASSES)))


def test_the_moving_car_follows_its_tracked_pose(street):
    meta = json.loads((street / "scene.json").read_text())
    [car] = meta["moving_objects"]
    lo, hi = np.array(car["box"][0]), np.array(car["box"][1])
    assert (hi - lo)[0] > 3.5 and (hi - lo)[2] > 1.2  # a car-sized box
    xs = [np.array(p)[0, 3] for p in car["poses"].values()]
    assert np.ptp(xs) > 2.0  # it moves along the street over the sequence
    scene = ColmapScene(street, split="all")
    hits = 0
    for i in range(len(scene)):
        view = scene[i]
        lab = _labels(street, view["image_name"])
        mask = lab["instance"] == car["instance"]
        if mask.sum() < 5:
            continue
        v, u = np.nonzero(mask)
        K, w2c = view["K"].double().numpy(), view["world_to_camera"].double().numpy()
        cam = np.linalg.inv(K) @ np.stack([u + 0.5, v + 0.5, np.ones_like(u)]) * lab["depth"][v, u]
        world = w2c[:3, :3].T @ (cam - w2c[:3, 3:4])
        pose = np.array(car["poses"][view["image_name"]])
        local = pose[:3, :3].T @ (world - pose[:3, 3:4])
        assert (local.T >= lo - 1e-4).all() and (local.T <= hi + 1e-4).all()  # inside its box at that time
        hits += 1
    assert hits >= 1


def test_splits_and_proxy_features(cache_dir):
    data = SyntheticStreet(**TINY, cache_dir=str(cache_dir))
    data.setup()
    n = TINY["drive_frames"] + TINY["side_views"]
    assert split_indices(n, 8, 4) == {"train": [1, 2, 3, 5, 6, 7, 9, 10, 11], "val": [4], "test": [0, 8]}
    assert {k: len(v) for k, v in data.sets.items()} == {"train": 9, "val": 1, "test": 2}
    view = data.sets["test"][0]
    assert view["image_name"] == "drive_000.png"
    assert view["features"]["object"].shape == (384, TINY["height"] // 4, TINY["width"] // 4)
    # A block of pure sky: its object-level feature is the sky embedding plus noise (cosine well above others).
    feats = torch.nn.functional.normalize(view["features"]["object"], dim=0)
    sky = torch.nn.functional.avg_pool2d((view["semantic"] == synthetic.SKY).float()[None, None], 4)[0, 0] == 1
    assert sky.any()
    sims = torch.einsum("dhw,cd->chw", feats, data.vocabulary.class_embeddings)[:, sky]
    assert (sims.argmax(0) == synthetic.SKY).all()
    assert data.vocabulary.classes == list(synthetic.CLASSES)
