"""Readers and writers of the detection dataset layouts, all to and from one COCO-format dict ("gt").

The generic PASCAL VOC and COCO readers and writers (``read_voc``, ``read_voc_files``, ``read_coco``,
``write_voc``, ``write_coco``) are ``shared_utils.detection_formats``', re-exported here; this module adds the
open-world task splits and DOTA on top of them.

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

import math
from collections.abc import Sequence
from pathlib import Path

import cv2

from shared_utils.datasets import DatasetFormatError, folder_listing
from shared_utils.detection_formats import (
    GT_ROOT_KEY,
    VOC_LAYOUT,
    ParsedObject,
    assemble_gt,
    not_found,
    read_coco,
    read_image_set,
    read_voc,
    read_voc_files,
    read_voc_ids,
    write_coco,
    write_voc,
)

__all__ = [
    "DOTA_V15_CLASSES", "DOTA_V1_CLASSES", "GT_ROOT_KEY", "OWOD_CLASSES", "OWOD_NAME_ALIASES", "OWOD_STAGES",
    "OWOD_TEST_SPLIT", "UNKNOWN", "DatasetFormatError", "owod_split_file", "owod_view", "read_coco", "read_dota",
    "read_owod", "read_voc", "read_voc_files", "write_coco", "write_voc",
]

UNKNOWN = "unknown"

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
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

DOTA_LAYOUT = "DOTA layout <root>/images/<id>.png with <root>/labelTxt/<id>.txt"


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
    gt = read_voc_ids(root, split, read_image_set(split, VOC_LAYOUT), classes, OWOD_NAME_ALIASES)
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


def _parse_dota_label(label: Path, width: int, height: int) -> list[ParsedObject]:
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
        raise not_found(label_dir, DOTA_LAYOUT)
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
    return assemble_gt(images, objects, DOTA_V1_CLASSES if classes is None else classes, image_dir)
