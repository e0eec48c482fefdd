"""VOC and COCO reading and writing: fixtures written by hand in the official layouts under tmp_path (values
checked by hand), writers by round trip, every error naming its file and line or object."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared_utils.datasets import DatasetFormatError
from shared_utils.detection_formats import (
    GT_ROOT_KEY,
    read_coco,
    read_image_set,
    read_voc,
    read_voc_files,
    read_voc_ids,
    write_coco,
    write_voc,
)

# VOC XML as the devkit writes it: 1-based inclusive pixel indices.
XML = """<annotation>
  <filename>{stem}.jpg</filename>
  <size><width>32</width><height>24</height><depth>3</depth></size>
{objects}</annotation>
"""
OBJECT = ("  <object><name>{name}</name><difficult>{difficult}</difficult>"
          "<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>\n")


def image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((24, 32, 3), np.uint8))


def voc_root(root: Path, images: dict[str, list[tuple]], split: str = "trainval") -> Path:
    """A VOC layout: ``images`` maps an id to its objects (name, xmin, ymin, xmax, ymax, difficult)."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem, objects in images.items():
        image(root / "JPEGImages" / f"{stem}.jpg")
        text = "".join(OBJECT.format(name=n, xmin=x0, ymin=y0, xmax=x1, ymax=y1, difficult=d)
                       for n, x0, y0, x1, y1, d in objects)
        (root / "Annotations" / f"{stem}.xml").write_text(XML.format(stem=stem, objects=text))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in images))
    return root


def anns(gt: dict) -> list[tuple]:
    names = {c["id"]: c["name"] for c in gt["categories"]}
    return [(a["image_id"], names[a["category_id"]], a["bbox"], a["difficult"]) for a in gt["annotations"]]


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return voc_root(tmp_path / "voc", {"a": [("dog", 1, 1, 10, 8, 0), ("person", 5, 6, 32, 24, 1)], "b": [],
                                       "c": [("cat", 11, 3, 20, 22, 0)]})


def test_read_voc_converts_one_based_inclusive_boxes(voc: Path):
    gt = read_voc(voc, "trainval")
    assert gt[GT_ROOT_KEY] == str((voc / "JPEGImages").resolve())
    assert gt["images"] == [{"id": i, "file_name": f"{s}.jpg", "width": 32, "height": 24}
                            for i, s in enumerate("abc", start=1)]
    # Sorted names when no class list is given; xmin 1 .. xmax 10 -> x 0, w 10; "b" has no objects.
    assert [c["name"] for c in gt["categories"]] == ["cat", "dog", "person"]
    assert anns(gt) == [(1, "dog", [0, 0, 10, 8], 0), (1, "person", [4, 5, 28, 19], 1), (3, "cat", [10, 2, 10, 20], 0)]
    assert [a["area"] for a in gt["annotations"]] == [80, 532, 200]
    assert [c["id"] for c in read_voc(voc, "trainval", ["person", "dog", "cat"])["categories"]] == [1, 2, 3]


def test_write_voc_round_trip(voc: Path, tmp_path: Path):
    gt = read_voc(voc, "trainval", ["cat", "dog", "person", "bird"])
    out = tmp_path / "out"
    (out / "JPEGImages").mkdir(parents=True)
    for stem in "abc":
        image(out / "JPEGImages" / f"{stem}.jpg")
    write_voc(gt, out, "copy")
    assert (out / "ImageSets" / "Main" / "copy.txt").read_text() == "a\nb\nc\n"
    assert "<xmin>5</xmin>" in (out / "Annotations" / "a.xml").read_text()  # back to 1-based
    back = read_voc(out, "copy", ["cat", "dog", "person", "bird"])
    assert {k: v for k, v in back.items() if k != GT_ROOT_KEY} == {k: v for k, v in gt.items() if k != GT_ROOT_KEY}


@pytest.mark.parametrize(
    ("box", "expected"),
    [((11, 3, 40, 22), "outside the 32x24 image"), ((11, 3, 10, 22), "empty box"), ((11, 0, 20, 22), None),
     ((11, -1, 20, 22), "outside the 32x24 image")],
)
def test_voc_box_checks_name_the_xml_and_object(tmp_path: Path, box: tuple, expected: str | None):
    root = voc_root(tmp_path / "voc", {"x": [("cat", *box, 0)]})
    if expected is None:  # one pixel outside: tolerated (a few VOC boxes start at 0)
        assert read_voc(root, "trainval")["annotations"][0]["bbox"] == [10, -1, 10, 23]
        return
    with pytest.raises(DatasetFormatError) as e:
        read_voc(root, "trainval")
    assert f"{root / 'Annotations' / 'x.xml'} object 1 ('cat')" in str(e.value) and expected in str(e.value)


def test_voc_errors_name_the_split_line_and_the_class_list(voc: Path):
    with pytest.raises(DatasetFormatError, match="class 'cat' is not in the class list \\['dog', 'person'\\]"):
        read_voc(voc, "trainval", ["dog", "person"])
    split = voc / "ImageSets" / "Main" / "trainval.txt"
    split.write_text(split.read_text() + "\nmissing\n")
    with pytest.raises(DatasetFormatError) as e:
        read_voc(voc, "trainval")
    assert f"{split} line 5: image id 'missing'" in str(e.value)
    with pytest.raises(DatasetFormatError) as e:
        read_voc(voc, "val")
    assert "val.txt not found" in str(e.value) and "trainval.txt" in str(e.value)  # lists what is there


def test_read_voc_ids_with_aliases_and_repeated_ids(tmp_path: Path):
    root = voc_root(tmp_path / "voc", {"a": [("airplane", 1, 1, 4, 4, 0)], "b": [("dog", 1, 1, 4, 4, 0)]})
    split = root / "ImageSets" / "Main" / "trainval.txt"
    split.write_text("a\nb\na\n")
    entries = read_image_set(split, "a VOC split")
    assert entries == [(1, "a"), (2, "b")]  # an id listed twice is read once
    gt = read_voc_ids(root, split, entries, ["aeroplane", "dog"], {"airplane": "aeroplane"})
    assert [n for _, n, _, _ in anns(gt)] == ["aeroplane", "dog"]


def test_read_voc_files_finds_the_image_by_stem(tmp_path: Path):
    image(tmp_path / "tile.png")  # the XML names tile.jpg (deepforest's XMLs name a .tif beside a .png)
    (tmp_path / "tile.xml").write_text(XML.format(stem="tile", objects=OBJECT.format(
        name="Tree", xmin=1, ymin=1, xmax=10, ymax=10, difficult=0)))
    gt = read_voc_files([tmp_path / "tile.xml"], tmp_path)
    assert gt["images"] == [{"id": 1, "file_name": "tile.png", "width": 32, "height": 24}]
    assert anns(gt) == [(1, "Tree", [0, 0, 10, 10], 0)]


COCO = {
    "images": [{"id": 139, "file_name": "a.jpg", "width": 32, "height": 24}],
    "annotations": [{"id": 10, "image_id": 139, "category_id": 90, "bbox": [2.5, 3.0, 10.0, 5.5], "area": 40.1},
                    {"id": 11, "image_id": 139, "category_id": 1, "bbox": [0, 0, 32, 24], "iscrowd": 1}],
    "categories": [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}],
}


def test_read_coco_keeps_ids_fills_defaults_and_finds_the_image_folder(tmp_path: Path):
    path = tmp_path / "annotations" / "instances_val.json"
    path.parent.mkdir()
    path.write_text(json.dumps(COCO))
    (tmp_path / "val").mkdir()
    gt = read_coco(path)
    assert gt[GT_ROOT_KEY] == str((tmp_path / "val").resolve())  # COCO's layout: <root>/<split>/
    assert gt["annotations"] == [
        {"id": 10, "image_id": 139, "category_id": 90, "bbox": [2.5, 3.0, 10.0, 5.5], "area": 40.1, "iscrowd": 0,
         "difficult": 0},
        {"id": 11, "image_id": 139, "category_id": 1, "bbox": [0, 0, 32, 24], "area": 768, "iscrowd": 1,
         "difficult": 0},
    ]
    (tmp_path / "val").rmdir()
    (tmp_path / "JPEGImages").mkdir()  # a COCO json written beside a VOC layout
    gt = read_coco(path)
    assert gt[GT_ROOT_KEY] == str((tmp_path / "JPEGImages").resolve())
    copy = tmp_path / "copy.json"
    write_coco(gt, copy)
    written = json.loads(copy.read_text())
    assert GT_ROOT_KEY not in written and written["info"] == {} and written["licenses"] == []
    assert read_coco(copy, image_dir=tmp_path / "JPEGImages") == gt


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("bbox", [25.0, 3.0, 10.0, 5.5], "lies outside the 32x24 image"), ("bbox", [2, 3, 0, 5], "empty box"),
     ("category_id", 5, "category_id 5 is not among the category ids [1, 90]"),
     ("image_id", 7, "image_id 7 is not an id of 'images'")],
)
def test_coco_errors_name_the_json_and_the_annotation(tmp_path: Path, field: str, value, expected: str):
    data = json.loads(json.dumps(COCO))
    data["annotations"][0][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError) as e:
        read_coco(path)
    assert str(e.value).startswith(f"{path}: annotations[0] (id 10): ") and expected in str(e.value)
