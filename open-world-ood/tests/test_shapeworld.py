"""Shape world: layout, determinism, tight boxes, task coverage, exemplar sets, perspective, VOC/COCO agreement."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from open_world_ood.data.shapeworld import (
    CLASSES,
    FT_SPLITS,
    IMAGE_SIZE,
    NEVER_KNOWN,
    RENDERED_SPLITS,
    TASKS,
    exemplar_split,
    generate,
    image_id,
    render,
)

SIZES = {"t1_train": 24, "t2_train": 8, "t3_train": 8, "val": 3, "test": 3, "aerial_val": 3, "aerial_test": 3}
EXEMPLARS = 3
ALL_SPLITS = [*RENDERED_SPLITS, *FT_SPLITS]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapeworld")
    generate(root, seed=0, sizes=SIZES, exemplars=EXEMPLARS)
    return root


def _ids(root: Path, split: str) -> list[str]:
    return (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


def _coco(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def _voc_objects(root: Path, stem: str) -> list[tuple[str, list[int]]]:
    node = ET.parse(root / "Annotations" / f"{stem}.xml").getroot()
    return [
        (obj.findtext("name"), [int(obj.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")])
        for obj in node.iter("object")
    ]


def _by_image(coco: dict) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {im["id"]: [] for im in coco["images"]}
    for ann in coco["annotations"]:
        out[ann["image_id"]].append(ann)
    return out


def test_classes_and_tasks_partition_the_classes(root: Path):
    assert len(CLASSES) == 12 and len(set(CLASSES)) == 12
    assert [len(t) for t in TASKS] == [5, 3, 2] and len(NEVER_KNOWN) == 2
    assert sorted(c for t in [*TASKS, NEVER_KNOWN] for c in t) == sorted(CLASSES)
    meta = json.loads((root / "classes.json").read_text())
    assert meta["classes"] == CLASSES and meta["tasks"] == TASKS and meta["never_known"] == NEVER_KNOWN
    assert meta["contexts"] == {s: "aerial" if s.startswith("aerial") else "road" for s in ALL_SPLITS}


def test_layout_and_ids(root: Path):
    for split, size in SIZES.items():
        ids = _ids(root, split)
        assert ids == [image_id(split, i) for i in range(size)]
        assert all(i.startswith(RENDERED_SPLITS[split][1] + "_") for i in ids)
        for stem in ids:
            image = cv2.imread(str(root / "JPEGImages" / f"{stem}.jpg"))
            assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    rendered = [i for s in SIZES for i in _ids(root, s)]
    assert len(rendered) == len(set(rendered))
    with pytest.raises(ValueError, match="unknown shape world splits"):
        generate(root / "bad", sizes={"train": 3})


def test_same_seed_same_files_and_a_smaller_size_the_same_first_images(root: Path, tmp_path: Path):
    generate(tmp_path, seed=0, sizes={**SIZES, "t1_train": 12}, exemplars=1)
    for split in RENDERED_SPLITS:
        for stem in _ids(tmp_path, split):
            for sub, ext in (("Annotations", "xml"), ("JPEGImages", "jpg")):
                assert (tmp_path / sub / f"{stem}.{ext}").read_bytes() == (root / sub / f"{stem}.{ext}").read_bytes()
    image, objects = render(0, "t1_train", 5)
    again, objects_again = render(0, "t1_train", 5)
    other, _ = render(1, "t1_train", 5)
    assert np.array_equal(image, again) and [o["bbox"] for o in objects] == [o["bbox"] for o in objects_again]
    assert np.abs(image.astype(int) - other).mean() > 10


def test_boxes_are_the_tight_boxes_of_the_drawn_masks(root: Path):
    for split in RENDERED_SPLITS:
        coco = _coco(root, split)
        anns = _by_image(coco)
        for index, im in enumerate(coco["images"]):
            image, objects = render(0, split, index)
            written = cv2.imread(str(root / "JPEGImages" / im["file_name"]))[..., ::-1]
            # The JPEG of the rendered image (chroma subsampling blurs the textures; other images differ by > 30).
            assert np.abs(written.astype(int) - image).mean() < 12
            assert [a["category_id"] for a in anns[im["id"]]] == [CLASSES.index(o["category"]) + 1 for o in objects]
            for ann, obj in zip(anns[im["id"]], objects):
                rows, cols = np.nonzero(obj["mask"])
                x, y = cols.min(), rows.min()
                assert ann["bbox"] == [x, y, cols.max() - x + 1, rows.max() - y + 1] == obj["bbox"]
                assert 0 <= x and 0 <= y and x + ann["bbox"][2] <= IMAGE_SIZE and y + ann["bbox"][3] <= IMAGE_SIZE
                assert ann["area"] == ann["bbox"][2] * ann["bbox"][3]
                assert obj["mask"].sum() >= 0.2 * ann["area"]  # a shape, not a sliver at the image border


def test_every_task_and_never_known_class_appears_in_t1_train(root: Path):
    coco = _coco(root, "t1_train")
    present = {CLASSES[a["category_id"] - 1] for a in coco["annotations"]}
    for classes in [*TASKS, NEVER_KNOWN]:
        assert present & set(classes), classes
    assert any(not anns for anns in _by_image(coco).values())  # an empty image (t1_train index 13 for seed 0)


def test_exemplar_splits_cover_known_classes_greedily(root: Path):
    for split, task in FT_SPLITS.items():
        known = {CLASSES.index(c) + 1 for t in TASKS[:task] for c in t}
        train = [_coco(root, f"t{k + 1}_train") for k in range(task)]
        train_images = [im for t in train for im in t["images"]]
        train_anns = {im_id: anns for t in train for im_id, anns in _by_image(t).items()}
        ft = _coco(root, split)
        # A subsequence of the training images, with their annotations unchanged.
        positions = [train_images.index(im) for im in ft["images"]]
        assert positions == sorted(positions)
        assert _by_image(ft) == {im["id"]: train_anns[im["id"]] for im in ft["images"]}
        counts = {c: sum(a["category_id"] == c for a in ft["annotations"]) for c in known}
        assert min(counts.values()) >= EXEMPLARS
        # Greedy: the last image was still needed, and every kept image had a known class below the quota.
        last = ft["annotations"][-len(_by_image(ft)[ft["images"][-1]["id"]]) :]
        assert any(counts[a["category_id"]] - sum(b["category_id"] == a["category_id"] for b in last) < EXEMPLARS
                   for a in last if a["category_id"] in known)
    with pytest.raises(ValueError, match="too few instances"):
        exemplar_split([_coco(root, "t1_train")], TASKS[0], 1000, root)


def test_road_objects_grow_towards_the_bottom():
    near, far = [], []
    for index in range(40):
        for obj in render(0, "val", index)[1]:
            x, y, w, h = obj["bbox"]
            if y + h > 110:
                near.append(max(w, h))
            elif y + h < 70:
                far.append(max(w, h))
    assert np.mean(near) > np.mean(far) + 10
    assert 11 <= min(far) and max(near) <= 41  # the longer side: 12-40 px, +-1 for the rasterisation
    aerial = [max(o["bbox"][2:]) for i in range(20) for o in render(0, "aerial_val", i)[1]]
    assert 13 <= min(aerial) and max(aerial) <= 31


def test_split_files_voc_and_coco_agree(root: Path):
    for split in ALL_SPLITS:
        coco = _coco(root, split)
        assert coco["categories"] == [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
        assert _ids(root, split) == [Path(im["file_name"]).stem for im in coco["images"]]
        assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
        for im in coco["images"]:
            voc = _voc_objects(root, Path(im["file_name"]).stem)
            anns = _by_image(coco)[im["id"]]
            expected = [(CLASSES[a["category_id"] - 1], [round(a["bbox"][0]) + 1, round(a["bbox"][1]) + 1,
                         round(a["bbox"][0] + a["bbox"][2]), round(a["bbox"][1] + a["bbox"][3])]) for a in anns]
            assert voc == expected
