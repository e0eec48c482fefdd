"""Readers and writers of the detection dataset layouts, all to and from one COCO-format dict ("gt").

- PASCAL VOC (Everingham et al., IJCV 2010): ``<root>/ImageSets/Main/<set>.txt``, ``Annotations/<id>.xml``,
  ``JPEGImages/<id>.jpg``; boxes are 1-based inclusive pixel indices.
- COCO (Lin et al., ECCV 2014): an instances json, boxes ``[x, y, w, h]`` in continuous 0-based pixels.
- Open-world task splits, M-OWODB (Joseph et al., "Towards Open World Object Detection", CVPR 2021, ORE) and
  S-OWODB (Gupta et al., "OW-DETR: Open-world Detection Transformer", CVPR 2022), also used by PROB (Zohar et
  al., CVPR 2023): a VOC layout whose Annotations hold VOC and COCO images (COCO converted to VOC XML).
- DOTA v1.0 / v1.5 (Xia et al., CVPR 2018): ``<root>/images/P0001.png`` + ``labelTxt/P0001.txt`` with one
  quadrilateral per line, read as its axis-aligned box.
- Standalone VOC XML files beside their images (the layout ``deepforest`` ships in its wheel).

Every reader returns the gt of the interface: ``images`` / ``annotations`` / ``categories`` plus ``image_root``
(the absolute folder that ``file_name`` is relative to). Boxes are continuous 0-based ``[x, y, w, h]``: a VOC
box becomes ``x = xmin - 1, w = xmax - xmin + 1`` (the box detectron2's and ORE's VOC loader build by
subtracting 1 from xmin and ymin). Bad data raises :class:`~shared_utils.datasets.DatasetFormatError` naming
the file, the line or object, what was expected and what was found.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import cv2

from shared_utils.datasets import DatasetFormatError, folder_listing

GT_ROOT_KEY = "image_root"
UNKNOWN = "unknown"
# Boxes may stick out of the image by this much (pixels): VOC has a few xmin = 0 and OW-DETR's coco2voc.py
# writes xmax = int(x + w + 1), one past a COCO box that ends on the border.
BOX_TOLERANCE = 1.0

# The OWOD class splits, spelled as the reference code spells them (COCO names, except the VOC names of the
# 20 VOC classes). M-OWODB: ORE's split, JosephKJ/OWOD detectron2/data/datasets/pascal_voc.py (VOC_CLASS_NAMES,
# T2/T3/T4_CLASS_NAMES), identical to orrzohar/PROB datasets/torchvision_datasets/open_world.py ("TOWOD").
# S-OWODB: OW-DETR's superclass split, akshitac8/OW-DETR datasets/torchvision_datasets/open_world.py,
# identical to PROB's "OWDETR" lists (19 / 21 / 20 / 20 classes).
OWOD_CLASSES: dict[str, list[list[str]]] = {
    "MOWODB": [
        ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
         "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"],
        ["truck", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "elephant", "bear", "zebra",
         "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "microwave", "oven", "toaster", "sink",
         "refrigerator"],
        ["frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
         "surfboard", "tennis racket", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog",
         "pizza", "donut", "cake"],
        ["bed", "toilet", "laptop", "mouse", "remote", "keyboard", "cell phone", "book", "clock", "vase", "scissors",
         "teddy bear", "hair drier", "toothbrush", "wine glass", "cup", "fork", "knife", "spoon", "bowl"],
    ],
    "SOWODB": [
        ["aeroplane", "bicycle", "bird", "boat", "bus", "car", "cat", "cow", "dog", "horse", "motorbike", "sheep",
         "train", "elephant", "bear", "zebra", "giraffe", "truck", "person"],
        ["traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "chair", "diningtable", "pottedplant",
         "backpack", "umbrella", "handbag", "tie", "suitcase", "microwave", "oven", "toaster", "sink", "refrigerator",
         "bed", "toilet", "sofa"],
        ["frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
         "surfboard", "tennis racket", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog",
         "pizza", "donut", "cake"],
        ["laptop", "mouse", "remote", "keyboard", "cell phone", "book", "clock", "vase", "scissors", "teddy bear",
         "hair drier", "toothbrush", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "tvmonitor", "bottle"],
    ],
}
# The COCO-converted XMLs name six VOC classes the COCO way; all three reference loaders rename them
# (VOC_CLASS_NAMES_COCOFIED -> BASE_VOC_CLASS_NAMES in the files cited above).
OWOD_NAME_ALIASES = {"airplane": "aeroplane", "dining table": "diningtable", "motorcycle": "motorbike",
                     "potted plant": "pottedplant", "couch": "sofa", "tv": "tvmonitor"}
# The test split of each benchmark: ORE registers all_task_test (detectron2/data/datasets/builtin.py),
# OW-DETR's S-OWODB configs test on "test" (configs/OWOD_new_split.sh). Other benchmarks (the shape world) use "test".
OWOD_TEST_SPLIT = {"MOWODB": "all_task_test", "SOWODB": "test"}
# PROB keeps the splits in ImageSets/TOWOD/owod_<name>.txt and ImageSets/OWDETR/owdetr_<name>.txt
# (orrzohar/PROB configs/M_OWOD_BENCHMARK.sh, S_OWOD_BENCHMARK.sh, main_open_world.py).
_PROB_SPLIT_DIRS = {"MOWODB": ("TOWOD", "owod_"), "SOWODB": ("OWDETR", "owdetr_")}
OWOD_STAGES = ("train", "ft", "test")

# CAPTAIN-WHU/DOTA_devkit dota_utils.py wordname_15 (v1.0) and classnames_v1_5 (v1.5 adds container-crane).
DOTA_V1_CLASSES = ["plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle",
                   "ship", "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout",
                   "harbor", "swimming-pool", "helicopter"]
DOTA_V15_CLASSES = [*DOTA_V1_CLASSES, "container-crane"]
# deepforest's OSBS_029.xml names OSBS_029.tif while its wheel ships OSBS_029.png and .jpg: the image is then
# the first of these found with the same stem.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

VOC_LAYOUT = (
    "PASCAL VOC layout <root>/ImageSets/Main/<set>.txt, "
    "<root>/Annotations/<id>.xml, <root>/JPEGImages/<id>.jpg"
)
DOTA_LAYOUT = "DOTA layout <root>/images/<id>.png with <root>/labelTxt/<id>.txt"

# One object as parsed: (class name, [x, y, w, h], difficult, where it is written, for error messages).
_Object = tuple[str, list[float], int, str]


# ---------------------------------------------------------------------------------------------------- writers
def _voc_box(bbox: Sequence[float]) -> tuple[int, int, int, int]:
    """COCO xywh (0-based, continuous) -> VOC 1-based inclusive pixel indices: the inverse of the reader's
    x = xmin - 1, w = xmax - xmin + 1 (so xmax = x + w)."""
    x, y, w, h = bbox
    return round(x) + 1, round(y) + 1, round(x + w), round(y + h)


def _sub(parent: ET.Element, tag: str, text: object) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = str(text)
    return child


def write_voc(gt: dict, root: str | Path, image_set: str) -> None:
    """Write ``root/Annotations/<stem>.xml`` for each image of ``gt`` and ``root/ImageSets/Main/<image_set>.txt``
    listing the stems in ``gt`` order, in the PASCAL VOC layout (the images are expected in
    ``root/JPEGImages`` already). Boxes become 1-based inclusive integers; ``truncated`` is written 0."""
    root = Path(root)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    by_image: dict[int, list[dict]] = {im["id"]: [] for im in gt["images"]}
    for ann in gt["annotations"]:
        by_image[ann["image_id"]].append(ann)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    stems = []
    for im in gt["images"]:
        stem = Path(im["file_name"]).stem
        stems.append(stem)
        node = ET.Element("annotation")
        _sub(node, "folder", "JPEGImages")
        _sub(node, "filename", im["file_name"])
        size = ET.SubElement(node, "size")
        _sub(size, "width", int(im["width"]))
        _sub(size, "height", int(im["height"]))
        _sub(size, "depth", 3)
        _sub(node, "segmented", 0)
        for ann in by_image[im["id"]]:
            obj = ET.SubElement(node, "object")
            _sub(obj, "name", names[ann["category_id"]])
            _sub(obj, "pose", "Unspecified")
            _sub(obj, "truncated", 0)
            _sub(obj, "difficult", int(ann.get("difficult", 0)))
            box = ET.SubElement(obj, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), _voc_box(ann["bbox"]), strict=True):
                _sub(box, tag, value)
        ET.indent(node)
        ET.ElementTree(node).write(root / "Annotations" / f"{stem}.xml", encoding="utf-8")
    (root / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{s}\n" for s in stems))


def write_coco(gt: dict, path: str | Path) -> None:
    """Write ``gt`` as a COCO instances json (without our ``image_root`` key; ``info`` and ``licenses`` empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {"info": {}, "licenses": [], **{k: v for k, v in gt.items() if k != GT_ROOT_KEY}}
    path.write_text(json.dumps(out))


# ------------------------------------------------------------------------------------------- shared checks
def _not_found(path: Path, expected: str) -> DatasetFormatError:
    """Error for a missing ``path``: shows what its closest existing ancestor holds."""
    existing = path.parent
    while not existing.is_dir() and existing != existing.parent:
        existing = existing.parent
    return DatasetFormatError(f"{path} not found: expected the {expected}; {folder_listing(existing)}")


def _check_box(bbox: list[float], width: float, height: float, where: str) -> None:
    """A box must have positive size and lie in the image up to BOX_TOLERANCE pixels."""
    x, y, w, h = bbox
    if not (w > 0 and h > 0):
        raise DatasetFormatError(f"{where}: empty box [x, y, w, h] = {bbox}: expected w > 0 and h > 0")
    tol = BOX_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        raise DatasetFormatError(
            f"{where}: box [x, y, w, h] = {bbox} lies outside the {width}x{height} image "
            f"(expected 0 <= x, x + w <= width, 0 <= y, y + h <= height, {tol:g} px tolerance)"
        )


def _categories(objects: list[list[_Object]], classes: Sequence[str] | None) -> list[dict]:
    """Categories 1..K in the order of ``classes``, or of the sorted names found when none are given."""
    if classes is None:
        classes = sorted({obj[0] for objs in objects for obj in objs})
    if len(set(classes)) != len(classes):
        raise ValueError(f"class list has duplicates: {list(classes)}")
    return [{"id": i, "name": name} for i, name in enumerate(classes, start=1)]


def _assemble(images: list[tuple[str, int, int]], objects: list[list[_Object]], classes: Sequence[str] | None,
              image_root: Path) -> dict:
    """The gt of parsed images (file_name, width, height) and their objects: image ids 1..M in the given
    order, annotation ids 1..N, an object of a class outside ``classes`` is an error naming where it is."""
    categories = _categories(objects, classes)
    ids = {c["name"]: c["id"] for c in categories}
    annotations = []
    for image_id, objs in enumerate(objects, start=1):
        for name, bbox, difficult, where in objs:
            if name not in ids:
                raise DatasetFormatError(f"{where}: class {name!r} is not in the class list {list(ids)}")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[name],
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0, "difficult": difficult})
    return {
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, (f, w, h) in enumerate(images, start=1)],
        "annotations": annotations,
        "categories": categories,
        GT_ROOT_KEY: str(image_root.resolve()),
    }


# ------------------------------------------------------------------------------------------------------ VOC
def _read_split(split: Path, expected: str) -> list[tuple[int, str]]:
    """(line number, image id) of a split file, one id per line; an id listed twice is read once (the OWOD test
    lists are reported to repeat ids, which would count those images twice in the evaluation)."""
    if not split.is_file():
        raise _not_found(split, expected)
    entries, seen = [], set()
    for line_no, line in enumerate(split.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 1:
            raise DatasetFormatError(f"{split} line {line_no}: expected one image id, found {line.strip()!r}")
        if tokens[0] not in seen:
            seen.add(tokens[0])
            entries.append((line_no, tokens[0]))
    return entries


def _xml_number(node: ET.Element, tag: str, xml_path: Path, where: str) -> float:
    text = node.findtext(tag)
    if text is None:
        raise DatasetFormatError(f"{where}: <{tag}> missing in {xml_path}")
    try:
        value = float(text)
    except ValueError:
        raise DatasetFormatError(f"{where}: <{tag}> is not a number: {text.strip()!r}") from None
    if not math.isfinite(value):
        raise DatasetFormatError(f"{where}: <{tag}> is not a finite number: {text.strip()!r}")
    return value


def _parse_voc_xml(xml_path: Path, aliases: dict[str, str], classes: Sequence[str] | None
                   ) -> tuple[str | None, int, int, list[_Object]]:
    """<filename>, image width and height (from <size>) and the objects of one VOC XML, boxes converted and
    checked. ``aliases`` renames classes absent from ``classes`` (the OWOD COCO-fied VOC names)."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise DatasetFormatError(f"{xml_path}: not a readable XML file ({e})") from None
    size = root.find("size")
    if size is None:
        raise DatasetFormatError(f"{xml_path}: <size> missing: expected <size><width>..<height>..</size>")
    width, height = (_xml_number(size, tag, xml_path, f"{xml_path} <size>") for tag in ("width", "height"))
    if width <= 0 or height <= 0 or width != int(width) or height != int(height):
        raise DatasetFormatError(f"{xml_path}: <size> must hold positive integers, found {width} x {height}")
    width, height = int(width), int(height)
    objects = []
    for index, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if name in aliases and (classes is None or name not in classes):
            name = aliases[name]
        where = f"{xml_path} object {index} ({name!r})"
        if not name:
            raise DatasetFormatError(f"{where}: <name> missing or empty: expected the class name")
        box = obj.find("bndbox")
        if box is None:
            raise DatasetFormatError(f"{where}: <bndbox> missing")
        xmin, ymin, xmax, ymax = (_xml_number(box, t, xml_path, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = obj.findtext("difficult")
        if difficult is not None and difficult.strip() not in ("0", "1"):
            raise DatasetFormatError(f"{where}: <difficult> must be 0 or 1, found {difficult.strip()!r}")
        bbox = [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]
        _check_box(bbox, width, height, f"{where} (xmin={xmin:g}, ymin={ymin:g}, xmax={xmax:g}, ymax={ymax:g})")
        objects.append((name, bbox, int(difficult is not None and difficult.strip() == "1"), where))
    return root.findtext("filename"), width, height, objects


def _read_voc_ids(root: Path, split: Path, entries: list[tuple[int, str]], classes: Sequence[str] | None,
                  aliases: dict[str, str]) -> dict:
    images, objects = [], []
    for line_no, stem in entries:
        xml_path = root / "Annotations" / f"{stem}.xml"
        jpeg = root / "JPEGImages" / f"{stem}.jpg"
        for path, what in ((xml_path, "annotation"), (jpeg, "image")):
            if not path.is_file():
                raise DatasetFormatError(
                    f"{split} line {line_no}: image id {stem!r} has no {what} file {path}; "
                    f"{folder_listing(path.parent)}"
                )
        _, width, height, objs = _parse_voc_xml(xml_path, aliases, classes)
        images.append((jpeg.name, width, height))
        objects.append(objs)
    return _assemble(images, objects, classes, root / "JPEGImages")


def read_voc(root: str | Path, image_set: str, classes: Sequence[str] | None = None) -> dict:
    """Read the PASCAL VOC split ``root/ImageSets/Main/<image_set>.txt`` (e.g. VOC2007 ``trainval``).

    file_name is ``<id>.jpg`` under ``root/JPEGImages``; width and height come from the XML's <size>.
    ``difficult`` is kept; categories are 1..K in ``classes`` order (sorted names found when None).
    """
    root = Path(root)
    split = root / "ImageSets" / "Main" / f"{image_set}.txt"
    return _read_voc_ids(root, split, _read_split(split, VOC_LAYOUT), classes, {})


def _resolve_image(image_dir: Path, filename: str | None, xml_path: Path) -> Path:
    """The image an XML's <filename> names, or one with its stem and another image suffix (see IMAGE_SUFFIXES)."""
    if not filename:
        raise DatasetFormatError(f"{xml_path}: <filename> missing: expected the name of the image in {image_dir}")
    named = image_dir / Path(filename).name
    if named.is_file():
        return named
    for suffix in IMAGE_SUFFIXES:
        if (candidate := named.with_suffix(suffix)).is_file():
            return candidate
    raise DatasetFormatError(
        f"{xml_path}: image {filename!r} named by <filename> not found in {image_dir} (nor with a suffix among "
        f"{list(IMAGE_SUFFIXES)}); {folder_listing(image_dir)}"
    )


def read_voc_files(xml_paths: Sequence[str | Path], image_dir: str | Path, classes: Sequence[str] | None = None
                   ) -> dict:
    """Read standalone VOC XML files whose <filename> names an image in ``image_dir`` (the layout ``deepforest``
    ships: ``deepforest/data/OSBS_029.xml`` beside ``OSBS_029.png``, class "Tree"). Same checks as read_voc;
    image ids 1..M in the order of ``xml_paths``."""
    image_dir = Path(image_dir)
    images, objects = [], []
    for xml_path in map(Path, xml_paths):
        if not xml_path.is_file():
            raise _not_found(xml_path, "VOC XML annotation file")
        filename, width, height, objs = _parse_voc_xml(xml_path, {}, classes)
        images.append((_resolve_image(image_dir, filename, xml_path).name, width, height))
        objects.append(objs)
    return _assemble(images, objects, classes, image_dir)


# ----------------------------------------------------------------------------------------------------- COCO
def _coco_default_image_dir(json_path: Path) -> Path:
    """COCO's layout puts ``annotations/instances_<split>.json`` beside the image folder ``<split>/``
    (``instances_val2017.json`` -> ``val2017/``). Where that folder is missing and ``<root>/JPEGImages`` exists
    (the shape world writes its COCO files beside a VOC layout), that one. Any other json: its own folder."""
    match = re.fullmatch(r"instances_(.+)\.json", json_path.name)
    if match is None or json_path.parent.name != "annotations":
        return json_path.parent
    root = json_path.parent.parent
    split_dir = root / match.group(1)
    if not split_dir.is_dir() and (root / "JPEGImages").is_dir():
        return root / "JPEGImages"
    return split_dir


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _coco_list(data: dict, key: str, json_path: Path) -> list:
    if not isinstance(data.get(key), list):
        raise DatasetFormatError(f"{json_path}: expected a list under {key!r} (COCO instances format), "
                                 f"found {type(data.get(key)).__name__}")
    return data[key]


def read_coco(json_path: str | Path, image_dir: str | Path | None = None) -> dict:
    """Read a COCO instances json. Category ids are kept as the json has them (COCO's are 1..90 with gaps);
    image and annotation ids too, since results files and the official evaluation refer to them.

    ``image_dir`` defaults to COCO's layout (see _coco_default_image_dir). Checks: ids unique, every
    annotation's image and category exist, bbox is 4 finite numbers with w, h > 0 inside the image (1 px
    tolerance). A missing ``iscrowd`` is 0, a missing ``area`` is w * h, a missing ``difficult`` 0; other
    keys (segmentation) are dropped.
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        raise _not_found(json_path, "COCO instances json")
    try:
        data = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{json_path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{json_path}: expected a JSON object with images/annotations/categories")
    image_dir = Path(image_dir) if image_dir is not None else _coco_default_image_dir(json_path)
    if not image_dir.is_dir():
        raise _not_found(image_dir, f"image folder of {json_path} (COCO layout <root>/annotations/instances_<split>"
                                    ".json beside <root>/<split>/)")

    categories, images, annotations = [], {}, []
    for index, cat in enumerate(_coco_list(data, "categories", json_path)):
        if not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            raise DatasetFormatError(f"{json_path}: categories[{index}] needs an integer id and a name, found {cat}")
        if any(c["id"] == cat["id"] for c in categories):
            raise DatasetFormatError(f"{json_path}: categories[{index}]: category id {cat['id']} repeated")
        categories.append({"id": cat["id"], "name": cat["name"]})
    category_ids = {c["id"] for c in categories}
    for index, im in enumerate(_coco_list(data, "images", json_path)):
        where = f"{json_path}: images[{index}] (id {im.get('id')})"
        if not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise DatasetFormatError(f"{where}: needs an integer id and a file_name, found {im}")
        if not all(_is_number(im.get(k)) and im[k] > 0 for k in ("width", "height")):
            raise DatasetFormatError(f"{where}: width and height must be positive numbers, found "
                                     f"{im.get('width')!r} x {im.get('height')!r}")
        if im["id"] in images:
            raise DatasetFormatError(f"{where}: image id repeated")
        images[im["id"]] = {"id": im["id"], "file_name": im["file_name"], "width": im["width"], "height": im["height"]}
    ann_ids = set()
    for index, ann in enumerate(_coco_list(data, "annotations", json_path)):
        where = f"{json_path}: annotations[{index}] (id {ann.get('id')})"
        if not isinstance(ann.get("id"), int) or ann["id"] in ann_ids:
            raise DatasetFormatError(f"{where}: expected a unique integer annotation id")
        ann_ids.add(ann["id"])
        if ann.get("image_id") not in images:
            raise DatasetFormatError(f"{where}: image_id {ann.get('image_id')!r} is not an id of 'images'")
        if ann.get("category_id") not in category_ids:
            raise DatasetFormatError(f"{where}: category_id {ann.get('category_id')!r} is not among the category "
                                     f"ids {sorted(category_ids)}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            raise DatasetFormatError(f"{where}: bbox must be 4 numbers [x, y, w, h], found {bbox!r}")
        image = images[ann["image_id"]]
        _check_box(bbox, image["width"], image["height"], where)
        area = ann.get("area", bbox[2] * bbox[3])
        if not _is_number(area):
            raise DatasetFormatError(f"{where}: area must be a number, found {area!r}")
        annotations.append({"id": ann["id"], "image_id": ann["image_id"], "category_id": ann["category_id"],
                            "bbox": bbox, "area": area, "iscrowd": int(ann.get("iscrowd", 0)),
                            "difficult": int(ann.get("difficult", 0))})
    return {"images": list(images.values()), "annotations": annotations, "categories": categories,
            GT_ROOT_KEY: str(image_dir.resolve())}


# ----------------------------------------------------------------------------------------------------- OWOD
def _check_task_classes(task_classes: list[list[str]], task: int, stage: str) -> None:
    names = [n for t in task_classes for n in t]
    if len(set(names)) != len(names) or UNKNOWN in names:
        raise ValueError(f"task classes must be distinct and not {UNKNOWN!r}: {task_classes}")
    if not 1 <= task <= len(task_classes):
        raise ValueError(f"task {task} out of range: {len(task_classes)} tasks")
    if stage not in OWOD_STAGES:
        raise ValueError(f"unknown OWOD stage {stage!r}: expected one of {list(OWOD_STAGES)}")


def owod_view(gt: dict, task_classes: list[list[str]], task: int, stage: str) -> dict:
    """The labels a method sees at ``stage`` of ``task`` (1-based), as a new gt (``gt`` is left untouched).

    The three rules of ORE (JosephKJ/OWOD detectron2/data/build.py) as OW-DETR and PROB write them
    (datasets/torchvision_datasets/open_world.py):

    - "train" (remove_prev_class_and_unk_instances): only objects of task ``task``'s own classes; objects of
      earlier and later tasks are dropped, i.e. unlabelled background, as ORE trains.
    - "ft" (remove_unknown_instances): objects of every class known up to ``task``.
    - "test" (label_known_class_and_unknown): every object, those of classes not yet known (later tasks and
      classes in no task) relabelled ``unknown``, a category added with the next free id.

    Categories: the known classes (tasks 1..``task``) first, in task order, with their ids in ``gt``, then
    ``unknown`` for "test". Images are all kept, also those left without objects (OW-DETR and PROB keep them;
    ORE's loader drops them from training). Annotation ids are kept.
    """
    _check_task_classes(task_classes, task, stage)
    by_name = {c["name"]: c["id"] for c in gt["categories"]}
    known = [n for t in task_classes[:task] for n in t]
    missing = [n for n in known if n not in by_name]
    if missing:
        raise ValueError(f"known classes {missing} are not categories of the gt: {list(by_name)}")
    categories = [{"id": by_name[n], "name": n} for n in known]
    known_ids = {by_name[n] for n in known}
    if stage == "train":
        own = {by_name[n] for n in task_classes[task - 1]}
        annotations = [dict(a) for a in gt["annotations"] if a["category_id"] in own]
    elif stage == "ft":
        annotations = [dict(a) for a in gt["annotations"] if a["category_id"] in known_ids]
    else:
        unknown_id = max(by_name.values(), default=0) + 1
        categories.append({"id": unknown_id, "name": UNKNOWN})
        annotations = [dict(a, category_id=a["category_id"] if a["category_id"] in known_ids else unknown_id)
                       for a in gt["annotations"]]
    return {"images": [dict(im) for im in gt["images"]], "annotations": annotations, "categories": categories,
            GT_ROOT_KEY: gt[GT_ROOT_KEY]}


def _owod_split_candidates(root: Path, benchmark: str, name: str) -> list[Path]:
    image_sets = root / "ImageSets"
    candidates = [image_sets / benchmark / f"{name}.txt"]  # ImageSets/MOWODB|SOWODB (e.g. YOLO-UniOW)
    if benchmark in _PROB_SPLIT_DIRS:
        folder, prefix = _PROB_SPLIT_DIRS[benchmark]
        candidates.append(image_sets / folder / f"{prefix}{name}.txt")
    # ORE's (and OW-DETR's loader's) ImageSets/Main; OW-DETR's repository ships its split files flat in ImageSets/.
    return [*candidates, image_sets / "Main" / f"{name}.txt", image_sets / f"{name}.txt"]


def owod_split_file(root: str | Path, benchmark: str, name: str) -> Path:
    """The OWOD split file ``name`` (e.g. ``t2_ft``, ``all_task_test``) of ``benchmark`` under ``root``, the first
    found of: ``ImageSets/<benchmark>/<name>.txt``, PROB's ``ImageSets/TOWOD/owod_<name>.txt`` (M-OWODB) or
    ``ImageSets/OWDETR/owdetr_<name>.txt`` (S-OWODB), ORE's ``ImageSets/Main/<name>.txt``, ``ImageSets/<name>.txt``.
    The benchmark's own folders come first: ImageSets/Main holds whichever benchmark the root was made for."""
    root = Path(root)
    candidates = _owod_split_candidates(root, benchmark, name)
    for path in candidates:
        if path.is_file():
            return path
    raise DatasetFormatError(
        f"OWOD split {name!r} of {benchmark} not found under {root}: tried {', '.join(map(str, candidates))}; "
        f"{folder_listing(root / 'ImageSets')}"
    )


def read_owod(root: str | Path, task: int, stage: str, benchmark: str = "MOWODB",
              task_classes: list[list[str]] | None = None) -> dict:
    """Read an OWOD split and return its :func:`owod_view` for ``task`` / ``stage``.

    The split is ``t{task}_train`` ("train"), ``t{task}_ft`` ("ft") or the benchmark's test split
    (OWOD_TEST_SPLIT, "test" for other benchmarks), found by :func:`owod_split_file`. The gt is first built with
    all classes (categories 1..K over the flattened ``task_classes``, by default OWOD_CLASSES[benchmark]), the
    COCO names of six VOC classes read as their VOC names (OWOD_NAME_ALIASES), as the reference loaders do.
    """
    root = Path(root)
    if task_classes is None:
        if benchmark not in OWOD_CLASSES:
            raise ValueError(f"no default classes for benchmark {benchmark!r}: pass task_classes or use one of "
                             f"{list(OWOD_CLASSES)}")
        task_classes = OWOD_CLASSES[benchmark]
    _check_task_classes(task_classes, task, stage)
    name = {"train": f"t{task}_train", "ft": f"t{task}_ft", "test": OWOD_TEST_SPLIT.get(benchmark, "test")}[stage]
    split = owod_split_file(root, benchmark, name)
    classes = [n for t in task_classes for n in t]
    gt = _read_voc_ids(root, split, _read_split(split, VOC_LAYOUT), classes, OWOD_NAME_ALIASES)
    return owod_view(gt, task_classes, task, stage)


# ----------------------------------------------------------------------------------------------------- DOTA
def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR header (DOTA's images are PNGs of up to 20000 px a side: no need to
    decode them), any other image through cv2."""
    with path.open("rb") as f:
        head = f.read(24)
    if head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetFormatError(f"{path}: not a readable image")
    return image.shape[1], image.shape[0]


def _parse_dota_label(label: Path, width: int, height: int) -> list[_Object]:
    """Objects of one labelTxt file: ``x1 y1 ... x4 y4 category [difficult]`` per line (DOTA_devkit
    dota_utils.parse_dota_poly: difficult 0 when absent); ``imagesource:...`` / ``gsd:...`` header lines are
    skipped. The box is the min/max of the 4 points, clipped to the image as the devkit's ImgSplit clips
    polygons to each patch (ImgSplit_multi_process.py savepatches)."""
    objects = []
    for line_no, line in enumerate(label.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens or (len(tokens) == 1 and ":" in tokens[0]):
            continue
        where = f"{label} line {line_no}"
        if len(tokens) not in (9, 10):
            raise DatasetFormatError(f"{where}: expected 'x1 y1 x2 y2 x3 y3 x4 y4 category [difficult]', "
                                     f"found {line.strip()!r}")
        try:
            coords = [float(t) for t in tokens[:8]]
            difficult = int(tokens[9]) if len(tokens) == 10 else 0
        except ValueError:
            raise DatasetFormatError(f"{where}: malformed number in {line.strip()!r}") from None
        if not all(map(math.isfinite, coords)):
            raise DatasetFormatError(f"{where}: non-finite coordinate in {line.strip()!r}")
        xs, ys = coords[0::2], coords[1::2]
        x0, x1 = max(min(xs), 0.0), min(max(xs), float(width))
        y0, y1 = max(min(ys), 0.0), min(max(ys), float(height))
        if x1 <= x0 or y1 <= y0:
            raise DatasetFormatError(f"{where}: polygon {coords} is outside the {width}x{height} image or "
                                     "degenerate after clipping to it")
        objects.append((tokens[8], [x0, y0, x1 - x0, y1 - y0], int(difficult != 0), where))
    return objects


def read_dota(root: str | Path, split_dir: str = "", classes: Sequence[str] | None = None) -> dict:
    """Read DOTA v1.0 / v1.5 (``root/<split_dir>/images/*.png`` + ``labelTxt/*.txt``), one image per label
    file in sorted order. ``classes`` defaults to DOTA v1.0's 15 (DOTA_V1_CLASSES; pass DOTA_V15_CLASSES for
    v1.5). A label file without objects is a valid image without objects."""
    base = Path(root) / split_dir
    label_dir, image_dir = base / "labelTxt", base / "images"
    if not label_dir.is_dir():
        raise _not_found(label_dir, DOTA_LAYOUT)
    labels = sorted(label_dir.glob("*.txt"))
    if not labels:
        raise DatasetFormatError(f"no label files in {label_dir}: expected the {DOTA_LAYOUT}; "
                                 f"{folder_listing(label_dir)}")
    images, objects = [], []
    for label in labels:
        image = image_dir / f"{label.stem}.png"
        if not image.is_file():
            raise DatasetFormatError(f"{label}: its image {image} not found ({DOTA_LAYOUT}); "
                                     f"{folder_listing(image_dir)}")
        width, height = _image_size(image)
        images.append((image.name, width, height))
        objects.append(_parse_dota_label(label, width, height))
    return _assemble(images, objects, DOTA_V1_CLASSES if classes is None else classes, image_dir)
