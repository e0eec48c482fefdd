"""The datamodules on the tiny shape world and on every loader's fixture in its official layout."""

from __future__ import annotations

import pytest
import torch

from conftest import DATA
from open_world_ood.data import shapeworld
from open_world_ood.data.datamodule import COCO, DOTA, OWOD, VOC, DeepForest, ShapeWorld, merge
from shared_utils.datasets import DatasetFormatError


def _batches(loader):
    return list(loader)


def test_shapeworld_views_follow_the_owod_label_rules(tiny_shapeworld):
    data = ShapeWorld(task=1, **tiny_shapeworld)
    data.setup("fit")
    assert data.known_classes == shapeworld.TASKS[0] and data.num_previous == 0
    assert data.contexts == ["road", "aerial"]
    images, targets = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 128, 128) and 0 <= images.min() and images.max() <= 1
    # training labels only the task's classes; the evaluator's annotations keep every object
    for target in targets:
        assert all(0 <= label < 5 for label in target["labels"].tolist())
        assert len(target["annotations"]) >= len(target["labels"])
    val_names = {a["name"] for _, ts in _batches(data.val_dataloader()) for t in ts for a in t["annotations"]}
    assert val_names <= set(shapeworld.TASKS[0])  # validation holds no unknown label
    road, aerial = data.test_dataloader()
    test_names = {a["name"] for _, ts in _batches(road) for t in ts for a in t["annotations"]}
    assert test_names - set(shapeworld.TASKS[0])  # unknown objects are in the test split
    assert len(aerial.dataset) == 6


def test_shapeworld_task2_adds_the_replay_set(tiny_shapeworld):
    data = ShapeWorld(task=2, **tiny_shapeworld)
    data.setup("fit")
    assert data.num_previous == 5 and len(data.known_classes) == 8
    labels = torch.cat([t["labels"] for _, ts in _batches(data.train_dataloader()) for t in ts])
    assert labels.min() < 5 <= labels.max()  # task-1 classes come back through the exemplars
    with pytest.raises(ValueError, match="tasks 1..3"):
        ShapeWorld(task=4)


def test_voc_fixture_keeps_an_image_without_objects():
    data = VOC(root=str(DATA / "voc"), train_set="trainval", test_set="trainval", image_size=64, batch_size=3,
               num_workers=0)
    data.setup("test")
    (loader,) = data.test_dataloader()
    images, targets = next(iter(loader))
    assert images.shape == (3, 3, 64, 64)
    assert [len(t["annotations"]) for t in targets] == [2, 0, 1]
    # the difficult person is evaluated (ignored there) but not trained on
    assert [len(t["labels"]) for t in targets] == [1, 0, 1]
    # boxes scale with the resize: the dog of 000001 is (x 7..., VOC 1-based) -> 0-based pixels x 64/32
    dog = targets[0]["annotations"][0]["bbox"]
    assert torch.allclose(targets[0]["boxes"][0], torch.tensor([dog[0] * 2, dog[1] * 64 / 24,
                                                                (dog[0] + dog[2]) * 2, (dog[1] + dog[3]) * 64 / 24]))


def test_owod_task1_and_task2_views():
    data = OWOD(root=str(DATA / "owod"), task=2, image_size=64, batch_size=2, num_workers=0)
    data.setup("fit")
    assert data.num_previous == 20 and len(data.known_classes) == 40
    (loader,) = data.test_dataloader()
    names = {a["name"] for _, ts in _batches(loader) for t in ts for a in t["annotations"]}
    assert "unknown" in names  # classes of tasks 3-4 are unknown at task 2


def test_coco_and_dota_fixtures_load():
    coco = COCO(root=str(DATA / "coco"), train_split="val2017", test_split="val2017", image_size=64, num_workers=0)
    coco.setup("fit")
    assert coco.known_classes == ["person", "car", "toothbrush"]
    dota = DOTA(root=str(DATA / "dota"), train_dir="", test_dir="", image_size=64, num_workers=0)
    dota.setup("test")
    (loader,) = dota.test_dataloader()
    _, targets = next(iter(loader))
    assert sum(len(t["annotations"]) for t in targets) == 3


def test_deepforest_without_tiles_names_the_make_step(tmp_path):
    with pytest.raises(DatasetFormatError, match="make deepforest-tiles"):
        DeepForest(root=str(tmp_path)).setup("test")


def test_merge_renumbers_ids():
    a = {"images": [{"id": 7}], "annotations": [{"id": 3, "image_id": 7}], "categories": []}
    merged = merge(a, a)
    assert [i["id"] for i in merged["images"]] == [1, 2]
    assert [(x["id"], x["image_id"]) for x in merged["annotations"]] == [(1, 1), (2, 2)]
