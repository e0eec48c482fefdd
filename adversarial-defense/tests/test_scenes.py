"""Shape scenes: written in the VOC layout, read back by the shared VOC reader with the boxes the renderer drew,
deterministic per (seed, split, index)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from adversarial_defense.data.scenes import CLASSES, SPLITS, _background, generate, render
from shared_utils.detection_formats import read_voc

SIZES = {"train": 5, "val": 2, "test": 3}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    generate(root, seed=3, sizes=SIZES, image_size=64)
    return root


def test_voc_layout_read_back_with_the_rendered_boxes(root: Path):
    for split, count in SIZES.items():
        gt = read_voc(root, split, CLASSES)
        assert [im["file_name"] for im in gt["images"]] == [f"{split}_{i:05d}.jpg" for i in range(count)]
        assert all(im["width"] == im["height"] == 64 for im in gt["images"])
        for i in range(count):
            _, objects = render(np.random.default_rng([3, SPLITS[split], i]), 64)
            read = [(CLASSES[a["category_id"] - 1], tuple(a["bbox"])) for a in gt["annotations"]
                    if a["image_id"] == i + 1]
            assert read == objects and 1 <= len(objects) <= 4
            for _, (x, y, w, h) in objects:
                assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64 and w > 0 and h > 0


def test_voc_boxes_are_one_based_inclusive(root: Path):
    _, objects = render(np.random.default_rng([3, SPLITS["train"], 0]), 64)
    box = ET.parse(root / "Annotations" / "train_00000.xml").find("object/bndbox")
    x, y, w, h = objects[0][1]
    assert [int(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")] == [x + 1, y + 1, x + w, y + h]


def test_the_box_is_tight_on_the_object():
    # The background is the renderer's first draw: redrawn alone, it gives each pixel's change. An object's
    # colour is at least 90 grey levels from the background's mean under it (in some channel): its pixels
    # change by far more than the pixel noise (under 20 here) does. Each box's border rows and columns hold
    # changed pixels; a box grown by one pixel adds none, apart from pixels in another object's box.
    for i in range(6):
        image, objects = render(np.random.default_rng([0, 0, i]), 96)
        background = _background(np.random.default_rng([0, 0, i]), 96)
        changed = np.pad(np.abs(image.astype(np.float32) - background).max(axis=2) > 30, 1)  # 1 px border
        assert changed.any()
        for k, (_, (x, y, w, h)) in enumerate(objects):
            x, y = x + 1, y + 1  # in the padded image
            inside = changed[y:y + h, x:x + w]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            others = np.zeros_like(changed)
            for j, (_, (ox, oy, ow, oh)) in enumerate(objects):
                others[oy + 1:oy + 1 + oh, ox + 1:ox + 1 + ow] |= j != k
            grown = changed[y - 1:y + h + 1, x - 1:x + w + 1] & ~others[y - 1:y + h + 1, x - 1:x + w + 1]
            assert grown.sum() == (inside & ~others[y:y + h, x:x + w]).sum()


def test_a_larger_split_extends_a_smaller_one(root: Path, tmp_path: Path):
    generate(tmp_path, seed=3, sizes={"train": 2, "val": 0, "test": 0}, image_size=64)
    assert (tmp_path / "ImageSets" / "Main" / "train.txt").read_text() == "train_00000\ntrain_00001\n"
    for name in ("train_00000.jpg", "train_00001.jpg"):
        assert (tmp_path / "JPEGImages" / name).read_bytes() == (root / "JPEGImages" / name).read_bytes()
    assert (tmp_path / "ImageSets" / "Main" / "val.txt").read_text() == ""


@pytest.mark.parametrize(("kwargs", "message"), [({"sizes": {"training": 3}}, "unknown scene splits"),
                                                 ({"image_size": 100}, "multiple of 32")])
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, **kwargs)
