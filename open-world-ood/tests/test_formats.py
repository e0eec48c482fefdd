"""Loaders on the fixtures of tests/data (official layouts, values checked by hand), writers by round trip,
the OWOD label rules on a hand case, and every error naming its file and line or object."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest

from open_world_ood.data.formats import (
    DOTA_V15_CLASSES,
    OWOD_CLASSES,
    DatasetFormatError,
    owod_split_file,
    owod_view,
    read_coco,
    read_dota,
    read_owod,
    read_voc,
    read_voc_files,
    write_coco,
    write_voc,
)

DATA = Path(__file__).parent / "data"
MOWODB = [n for task in OWOD_CLASSES["MOWODB"] for n in task]


def cid(name: str) -> int:
    """Category id of an M-OWODB class when read_owod numbers the flattened list 1..80."""
    return MOWODB.index(name) + 1


def anns(gt: dict) -> list[tuple]:
    names = {c["id"]: c["name"] for c in gt["categories"]}
    return [(a["id"], a["image_id"], names[a["category_id"]], a["bbox"], a["difficult"]) for a in gt["annotations"]]


def without_root(gt: dict) -> dict:
    return {k: v for k, v in gt.items() if k != "image_root"}


@pytest.fixture
def voc_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA / "voc", tmp_path / "voc"))


# ----------------------------------------------------------------------------------------------------- VOC
def test_read_voc_converts_one_based_inclusive_boxes():
    gt = read_voc(DATA / "voc", "trainval")
    assert gt["image_root"] == str((DATA / "voc" / "JPEGImages").resolve())
    assert gt["images"] == [{"id": i, "file_name": f"00000{i}.jpg", "width": 32, "height": 24} for i in (1, 2, 3)]
    assert gt["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "person"}]
    # xmin=1, xmax=10 -> x = 0, w = 10 - 1 + 1 = 10; person (5, 6, 32, 24) -> [4, 5, 28, 19], difficult kept;
    # 000002 has no objects; cat (11, 3, 20, 22) -> [10, 2, 10, 20].
    assert anns(gt) == [(1, 1, "dog", [0, 0, 10, 8], 0), (2, 1, "person", [4, 5, 28, 19], 1),
                        (3, 3, "cat", [10, 2, 10, 20], 0)]
    assert [a["area"] for a in gt["annotations"]] == [80, 532, 200]
    assert all(a["iscrowd"] == 0 for a in gt["annotations"])


def test_read_voc_numbers_categories_in_the_given_order():
    gt = read_voc(DATA / "voc", "trainval", classes=["person", "dog", "cat", "bird"])
    assert [c["name"] for c in gt["categories"]] == ["person", "dog", "cat", "bird"]
    assert [a["category_id"] for a in gt["annotations"]] == [2, 1, 3]


def test_voc_missing_split_file_lists_the_folder():
    with pytest.raises(DatasetFormatError) as e:
        read_voc(DATA / "voc", "val")
    message = str(e.value)
    assert str(DATA / "voc" / "ImageSets" / "Main" / "val.txt") in message and "trainval.txt" in message


@pytest.mark.parametrize("missing", ["Annotations/000009.xml", "JPEGImages/000009.jpg"])
def test_voc_split_line_naming_a_missing_image(voc_copy: Path, missing: str):
    split = voc_copy / "ImageSets" / "Main" / "trainval.txt"
    split.write_text(split.read_text() + "000009\n")
    present = "JPEGImages/000009.jpg" if missing.startswith("Annotations") else "Annotations/000009.xml"
    shutil.copy(voc_copy / present.replace("000009", "000001"), voc_copy / present)
    with pytest.raises(DatasetFormatError) as e:
        read_voc(voc_copy, "trainval")
    assert f"{split} line 4" in str(e.value) and str(voc_copy / missing) in str(e.value)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("<xmax>20</xmax>", "<xmax>40</xmax>", "outside the 32x24 image"),
        ("<xmax>20</xmax>", "<xmax>10</xmax>", "empty box"),
        ("<ymin>3</ymin>", "<ymin>0</ymin>", None),  # 1 px outside: tolerated (a few VOC boxes start at 0)
        ("<ymin>3</ymin>", "<ymin>-1</ymin>", "outside the 32x24 image"),
        ("<xmin>11</xmin>", "<xmin>1l</xmin>", "<xmin> is not a number: '1l'"),
    ],
)
def test_voc_bad_box_names_the_xml_and_the_object(voc_copy: Path, old: str, new: str, expected: str | None):
    xml = voc_copy / "Annotations" / "000003.xml"
    edit(xml, old, new)
    if expected is None:
        assert read_voc(voc_copy, "trainval")["annotations"][2]["bbox"] == [10, -1, 10, 23]
        return
    with pytest.raises(DatasetFormatError) as e:
        read_voc(voc_copy, "trainval")
    assert f"{xml} object 1 ('cat')" in str(e.value) and expected in str(e.value)


def test_voc_unknown_class_names_the_xml_object_and_class_list():
    with pytest.raises(DatasetFormatError) as e:
        read_voc(DATA / "voc", "trainval", classes=["dog", "person"])
    assert str(e.value) == (f"{DATA / 'voc' / 'Annotations' / '000003.xml'} object 1 ('cat'): "
                            "class 'cat' is not in the class list ['dog', 'person']")


def test_write_voc_round_trip(tmp_path: Path):
    gt = read_voc(DATA / "voc", "trainval")
    shutil.copytree(DATA / "voc" / "JPEGImages", tmp_path / "JPEGImages")
    write_voc(gt, tmp_path, "roundtrip")
    assert (tmp_path / "ImageSets" / "Main" / "roundtrip.txt").read_text() == "000001\n000002\n000003\n"
    back = read_voc(tmp_path, "roundtrip", classes=[c["name"] for c in gt["categories"]])
    assert without_root(back) == without_root(gt)


def test_read_voc_files_finds_the_image_deepforest_ships():
    gt = read_voc_files([DATA / "voc_files" / "tile.xml"], DATA / "voc_files")
    # <filename> says tile.tif (as deepforest's OSBS_029.xml names OSBS_029.tif); the .png beside it is read.
    assert gt["images"] == [{"id": 1, "file_name": "tile.png", "width": 32, "height": 24}]
    assert gt["categories"] == [{"id": 1, "name": "Tree"}]
    assert anns(gt) == [(1, 1, "Tree", [0, 0, 10, 10], 0), (2, 1, "Tree", [19, 4, 13, 20], 0)]


def test_read_voc_files_unknown_class():
    expected = r"tile\.xml object 1 \('Tree'\): class 'Tree' is not in the class list \['Shrub'\]"
    with pytest.raises(DatasetFormatError, match=expected):
        read_voc_files([DATA / "voc_files" / "tile.xml"], DATA / "voc_files", classes=["Shrub"])


# ----------------------------------------------------------------------------------------------------- COCO
def test_read_coco_keeps_non_contiguous_ids_and_fills_defaults():
    gt = read_coco(DATA / "coco" / "annotations" / "instances_val2017.json")
    assert gt["image_root"] == str((DATA / "coco" / "val2017").resolve())  # COCO's layout: <root>/<split>
    assert gt["categories"] == [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}]
    assert [im["id"] for im in gt["images"]] == [139, 285]
    assert gt["annotations"] == [
        {"id": 10, "image_id": 139, "category_id": 90, "bbox": [2.5, 3.0, 10.0, 5.5], "area": 40.1, "iscrowd": 0,
         "difficult": 0},
        {"id": 11, "image_id": 139, "category_id": 1, "bbox": [0, 0, 32, 24], "area": 500, "iscrowd": 1,
         "difficult": 0},
        {"id": 12, "image_id": 285, "category_id": 3, "bbox": [20.25, 10.0, 11.75, 14.0], "area": 164.5,
         "iscrowd": 0, "difficult": 0},
    ]


def test_read_coco_beside_a_voc_layout_defaults_to_jpegimages(tmp_path: Path):
    # The shape world writes annotations/instances_<split>.json beside JPEGImages/, not <split>/.
    (tmp_path / "JPEGImages").mkdir()
    path = tmp_path / "annotations" / "instances_t1_train.json"
    path.parent.mkdir()
    shutil.copy(DATA / "coco" / "annotations" / "instances_val2017.json", path)
    assert read_coco(path)["image_root"] == str((tmp_path / "JPEGImages").resolve())


def test_write_coco_round_trip(tmp_path: Path):
    gt = read_coco(DATA / "coco" / "annotations" / "instances_val2017.json")
    path = tmp_path / "annotations" / "instances_copy.json"
    write_coco(gt, path)
    written = json.loads(path.read_text())
    assert "image_root" not in written and written["info"] == {} and written["licenses"] == []
    assert read_coco(path, image_dir=DATA / "coco" / "val2017") == gt


@pytest.mark.parametrize(
    ("index", "field", "value", "expected"),
    [
        (2, "bbox", [25.0, 10.0, 11.75, 14.0], "lies outside the 32x24 image"),
        (2, "bbox", [20.0, 10.0, 0.0, 14.0], "empty box"),
        (2, "bbox", [20.0, 10.0, "11", 14.0], "bbox must be 4 numbers"),
        (2, "category_id", 5, "category_id 5 is not among the category ids [1, 3, 90]"),
        (2, "image_id", 7, "image_id 7 is not an id of 'images'"),
    ],
)
def test_coco_errors_name_the_json_and_the_annotation(tmp_path: Path, index, field, value, expected):
    data = json.loads((DATA / "coco" / "annotations" / "instances_val2017.json").read_text())
    data["annotations"][index][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError) as e:
        read_coco(path, image_dir=DATA / "coco" / "val2017")
    assert str(e.value).startswith(f"{path}: annotations[2] (id 12): ") and expected in str(e.value)


# ----------------------------------------------------------------------------------------------------- OWOD
def test_owod_classes_are_the_published_splits():
    assert [len(t) for t in OWOD_CLASSES["MOWODB"]] == [20, 20, 20, 20]
    assert [len(t) for t in OWOD_CLASSES["SOWODB"]] == [19, 21, 20, 20]
    for tasks in OWOD_CLASSES.values():
        names = [n for t in tasks for n in t]
        assert len(set(names)) == 80 and {"aeroplane", "diningtable", "pottedplant", "tvmonitor"} <= set(names)


def test_owod_view_three_rules_on_a_hand_case():
    gt = {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 10, "height": 10}],
        "annotations": [{"id": i, "image_id": 1, "category_id": i, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0,
                         "difficult": 0} for i in (1, 2, 3, 4)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}, {"id": 4, "name": "d"}],
        "image_root": "/x",
    }
    before = copy.deepcopy(gt)
    tasks = [["a"], ["b", "c"]]  # d is in no task: unknown in every test view

    def view(task: int, stage: str) -> tuple[list[str], list[tuple[int, int]]]:
        out = owod_view(gt, tasks, task, stage)
        return [c["name"] for c in out["categories"]], [(a["id"], a["category_id"]) for a in out["annotations"]]

    assert view(1, "train") == (["a"], [(1, 1)])
    assert view(1, "ft") == (["a"], [(1, 1)])
    assert view(1, "test") == (["a", "unknown"], [(1, 1), (2, 5), (3, 5), (4, 5)])
    assert view(2, "train") == (["a", "b", "c"], [(2, 2), (3, 3)])  # task 1's a: dropped, background
    assert view(2, "ft") == (["a", "b", "c"], [(1, 1), (2, 2), (3, 3)])
    assert view(2, "test") == (["a", "b", "c", "unknown"], [(1, 1), (2, 2), (3, 3), (4, 5)])
    assert gt == before


def test_read_owod_train_keeps_only_the_task_classes():
    gt = read_owod(DATA / "owod", 2, "train")
    assert [im["file_name"] for im in gt["images"]] == ["000005.jpg", "000000000285.jpg"]
    # Full split: person, truck | laptop, traffic light; task 2 trains on truck and traffic light only.
    assert anns(gt) == [(2, 1, "truck", [9, 3, 21, 17], 0), (4, 2, "traffic light", [24, 1, 4, 11], 0)]
    assert [c["name"] for c in gt["categories"]] == MOWODB[:40]
    assert [c["id"] for c in gt["categories"]] == list(range(1, 41))


def test_read_owod_ft_keeps_known_classes_and_reads_coco_names():
    gt = read_owod(DATA / "owod", 2, "ft")
    # 000000000139 names airplane and tv (COCO names, as coco2voc.py writes them): read as aeroplane, tvmonitor;
    # tv's xmax = 33 = width + 1 is within the 1 px tolerance. frisbee (task 3) and laptop (task 4) drop out.
    assert anns(gt) == [(1, 1, "person", [0, 0, 8, 20], 0), (2, 1, "truck", [9, 3, 21, 17], 0),
                        (3, 2, "aeroplane", [1, 1, 11, 8], 0), (5, 2, "tvmonitor", [19, 9, 14, 16], 0),
                        (7, 3, "traffic light", [24, 1, 4, 11], 0)]
    assert [a["category_id"] for a in gt["annotations"]] == [cid(n) for n in
                                                             ("person", "truck", "aeroplane", "tvmonitor",
                                                              "traffic light")]


def test_read_owod_test_relabels_unknown():
    gt = read_owod(DATA / "owod", 1, "test")
    assert gt["categories"][-1] == {"id": 81, "name": "unknown"} and len(gt["categories"]) == 21
    assert [n for *_, n, _b, _d in anns(gt)] == ["person", "unknown", "aeroplane", "unknown", "tvmonitor", "unknown",
                                                 "unknown"]


def test_owod_both_split_layouts_read_the_same(tmp_path: Path):
    root = Path(shutil.copytree(DATA / "owod", tmp_path / "owod"))
    assert owod_split_file(root, "MOWODB", "t2_ft") == root / "ImageSets" / "MOWODB" / "t2_ft.txt"
    from_benchmark_dir = read_owod(root, 2, "ft")
    shutil.rmtree(root / "ImageSets" / "MOWODB")
    assert owod_split_file(root, "MOWODB", "t2_ft") == root / "ImageSets" / "Main" / "t2_ft.txt"
    assert read_owod(root, 2, "ft") == from_benchmark_dir
    # PROB's layout: ImageSets/TOWOD/owod_<name>.txt
    (root / "ImageSets" / "TOWOD").mkdir()
    shutil.move(root / "ImageSets" / "Main" / "t2_ft.txt", root / "ImageSets" / "TOWOD" / "owod_t2_ft.txt")
    assert read_owod(root, 2, "ft") == from_benchmark_dir


def test_owod_missing_split_lists_what_was_tried():
    with pytest.raises(DatasetFormatError) as e:
        owod_split_file(DATA / "owod", "MOWODB", "t3_ft")
    message = str(e.value)
    for tried in ("MOWODB/t3_ft.txt", "TOWOD/owod_t3_ft.txt", "Main/t3_ft.txt"):
        assert tried in message
    assert re.search(r"found in .*ImageSets: MOWODB/, Main/", message)


def test_owod_split_line_naming_a_missing_image(tmp_path: Path):
    root = Path(shutil.copytree(DATA / "owod", tmp_path / "owod"))
    split = root / "ImageSets" / "MOWODB" / "t1_train.txt"
    split.write_text("000005\n\n000000009999\n")
    with pytest.raises(DatasetFormatError, match=re.escape(f"{split} line 3: image id '000000009999'")):
        read_owod(root, 1, "train")


# ----------------------------------------------------------------------------------------------------- DOTA
def test_read_dota_boxes_header_lines_and_clipping():
    gt = read_dota(DATA / "dota")
    assert gt["images"] == [{"id": 1, "file_name": "P0001.png", "width": 32, "height": 24},
                            {"id": 2, "file_name": "P0002.png", "width": 32, "height": 24}]
    assert gt["categories"][0] == {"id": 1, "name": "plane"} and len(gt["categories"]) == 15
    # plane: x 2..12, y 3..9; small-vehicle: x 18..40 clipped to 18..32, y 10..20, difficult 1;
    # ship has no difficult field (0). P0002 holds only header lines: an image without objects.
    assert anns(gt) == [(1, 1, "plane", [2.0, 3.0, 10.0, 6.0], 0), (2, 1, "small-vehicle", [18.0, 10.0, 14.0, 10.0], 1),
                        (3, 1, "ship", [5.0, 15.0, 4.0, 5.0], 0)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("40 30 50 30 50 40 40 40 plane 0", "outside the 32x24 image"),
        ("2 3 12 3 12 x 2 9 plane 0", "malformed number"),
        ("2 3 12 3 12 9 2 9", "expected 'x1 y1 x2 y2 x3 y3 x4 y4 category [difficult]'"),
        ("2 3 12 3 12 9 2 9 container-crane 0", "class 'container-crane' is not in the class list"),
    ],
)
def test_dota_errors_name_the_file_and_line(tmp_path: Path, line: str, expected: str):
    root = Path(shutil.copytree(DATA / "dota", tmp_path / "dota"))
    label = root / "labelTxt" / "P0002.txt"
    label.write_text(label.read_text() + line + "\n")
    with pytest.raises(DatasetFormatError) as e:
        read_dota(root)
    assert str(e.value).startswith(f"{label} line 3: ") and expected in str(e.value)


def test_dota_v15_classes_read_container_crane(tmp_path: Path):
    root = Path(shutil.copytree(DATA / "dota", tmp_path / "dota"))
    (root / "labelTxt" / "P0002.txt").write_text("2 3 12 3 12 9 2 9 container-crane 0\n")
    gt = read_dota(root, classes=DOTA_V15_CLASSES)
    assert anns(gt)[-1] == (4, 2, "container-crane", [2.0, 3.0, 10.0, 6.0], 0)
