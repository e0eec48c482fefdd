"""Reading and writing the two generic detection dataset layouts, PASCAL VOC and COCO, to and from one
COCO-format dict (the "gt"): what every detection project of the collection reads its data with
(open-world-ood adds its OWOD and DOTA readers on top, adversarial-defense writes its scenes with it).

- PASCAL VOC (Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010):
  ``<root>/ImageSets/Main/<set>.txt``, ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``; boxes are 1-based
  inclusive pixel indices. Also standalone VOC XML files beside their images (the layout ``deepforest``
  ships in its wheel).
- COCO (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014): an instances json, boxes
  ``[x, y, w, h]`` in continuous 0-based pixels.

Every reader returns the gt: ``images`` / ``annotations`` / ``categories`` plus ``image_root`` (``GT_ROOT_KEY``,
the absolute folder that ``file_name`` is relative to). Boxes are continuous 0-based ``[x, y, w, h]``: a VOC box
becomes ``x = xmin - 1, w = xmax - xmin + 1`` (the box detectron2's and ORE's VOC loaders build by subtracting 1
from xmin and ymin), and ``write_voc`` writes the inverse, so integer boxes round-trip exactly. Bad data raises
:class:`~shared_utils.datasets.DatasetFormatError` naming the file, the line or object, what was expected and
what was found.

The building blocks other readers need are public: ``read_image_set`` (a split file), ``read_voc_ids`` (the
VOC images of a split, with class-name aliases), ``assemble_gt`` (parsed images and objects -> gt, checking
class names) and ``not_found`` (the error for a missing path).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from shared_utils.datasets import DatasetFormatError, folder_listing

GT_ROOT_KEY = "image_root"
# Boxes may stick out of the image by this much (pixels): VOC has a few xmin = 0 and OW-DETR's coco2voc.py
# writes xmax = int(x + w + 1), one past a COCO box that ends on the border.
BOX_TOLERANCE = 1.0
# deepforest's OSBS_029.xml names OSBS_029.tif while its wheel ships OSBS_029.png and .jpg: the image is then
# the first of these found with the same stem.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

VOC_LAYOUT = (
    "PASCAL VOC layout <root>/ImageSets/Main/<set>.txt, "
    "<root>/Annotations/<id>.xml, <root>/JPEGImages/<id>.jpg"
)

# One object as parsed: (class name, [x, y, w, h], difficult, where it is written, for error messages).
ParsedObject = tuple[str, list[float], int, str]


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
def not_found(path: Path, expected: str) -> DatasetFormatError:
    """The error (returned, to be raised) for a missing ``path`` where the ``expected`` thing should be: it shows
    what the closest existing ancestor holds."""
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


def _categories(objects: list[list[ParsedObject]], classes: Sequence[str] | None) -> list[dict]:
    """Categories 1..K in the order of ``classes``, or of the sorted names found when none are given."""
    if classes is None:
        classes = sorted({obj[0] for objs in objects for obj in objs})
    if len(set(classes)) != len(classes):
        raise ValueError(f"class list has duplicates: {list(classes)}")
    return [{"id": i, "name": name} for i, name in enumerate(classes, start=1)]


def assemble_gt(images: list[tuple[str, int, int]], objects: list[list[ParsedObject]], classes: Sequence[str] | None,
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
def read_image_set(split: Path, expected: str) -> list[tuple[int, str]]:
    """(line number, image id) of a split file, one id per line; an id listed twice is read once (the OWOD test
    lists are reported to repeat ids, which would count those images twice in the evaluation)."""
    if not split.is_file():
        raise not_found(split, expected)
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
                   ) -> tuple[str | None, int, int, list[ParsedObject]]:
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


def read_voc_ids(root: Path, split: Path, entries: list[tuple[int, str]], classes: Sequence[str] | None,
                 aliases: dict[str, str]) -> dict:
    """The gt of the VOC images ``entries`` (as ``read_image_set`` returns them from the split file ``split``)
    under ``root``'s Annotations/ and JPEGImages/. ``aliases`` renames class names absent from ``classes`` (an
    image id without its XML or JPEG is an error naming the split file's line)."""
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
    return assemble_gt(images, objects, classes, root / "JPEGImages")


def read_voc(root: str | Path, image_set: str, classes: Sequence[str] | None = None) -> dict:
    """Read the PASCAL VOC split ``root/ImageSets/Main/<image_set>.txt`` (e.g. VOC2007 ``trainval``).

    file_name is ``<id>.jpg`` under ``root/JPEGImages``; width and height come from the XML's <size>.
    ``difficult`` is kept; categories are 1..K in ``classes`` order (sorted names found when None).
    """
    root = Path(root)
    split = root / "ImageSets" / "Main" / f"{image_set}.txt"
    return read_voc_ids(root, split, read_image_set(split, VOC_LAYOUT), classes, {})


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
            raise not_found(xml_path, "VOC XML annotation file")
        filename, width, height, objs = _parse_voc_xml(xml_path, {}, classes)
        images.append((_resolve_image(image_dir, filename, xml_path).name, width, height))
        objects.append(objs)
    return assemble_gt(images, objects, classes, image_dir)


# ----------------------------------------------------------------------------------------------------- COCO
def _coco_default_image_dir(json_path: Path) -> Path:
    """COCO's layout puts ``annotations/instances_<split>.json`` beside the image folder ``<split>/``
    (``instances_val2017.json`` -> ``val2017/``). Where that folder is missing and ``<root>/JPEGImages`` exists
    (a synthetic generator may write its COCO files beside a VOC layout), that one. Any other json: its own folder."""
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
        raise not_found(json_path, "COCO instances json")
    try:
        data = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{json_path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{json_path}: expected a JSON object with images/annotations/categories")
    image_dir = Path(image_dir) if image_dir is not None else _coco_default_image_dir(json_path)
    if not image_dir.is_dir():
        raise not_found(image_dir, f"image folder of {json_path} (COCO layout <root>/annotations/instances_<split>"
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
