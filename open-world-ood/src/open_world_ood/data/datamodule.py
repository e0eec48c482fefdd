"""LightningDataModules: the shape world (default), OWOD task splits, PASCAL VOC, COCO, DOTA and the real
airborne tiles of ``deepforest``.

Every datamodule resolves, in ``setup``, three things from its files (``formats.py``), all COCO-format
dicts: the training split with the label rules of its stage (objects of unlabelled classes dropped), the
validation split labelled with the known classes only (it calibrates unknown thresholds, so it must hold
no unknown label), and one test split per *context* holding every class (the evaluator maps the classes
that are not known to ``unknown``). ``known_classes`` and ``contexts`` are linked to the model by the CLI.

Batches: ``(images (B, 3, S, S) in [0, 1], targets)``; each target holds ``boxes`` (n, 4) xyxy in the
resized image's pixels and ``labels`` (n,) indices into ``known_classes`` (the known, non-difficult,
non-crowd objects: what the detector trains on), ``scale`` (sx, sy) from original to resized pixels,
``image`` (the COCO image record) and ``annotations`` (every object of the image in original pixels, with
its category ``name``: what the evaluator scores against).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from open_world_ood.data import formats, shapeworld
from shared_utils.cache import generate_once
from shared_utils.datasets import DatasetFormatError, folder_listing
from shared_utils.paths import anchored


class DetectionDataset(Dataset):
    """The images of ``gt`` resized to ``image_size`` (square; ``None``: native size padded to a multiple of
    32 at the bottom right, for large tiles), with the targets described in the module docstring."""

    def __init__(self, gt: dict, known_classes: list[str], image_size: int | None) -> None:
        self.gt, self.image_size = gt, image_size
        names = {c["id"]: c["name"] for c in gt["categories"]}
        index = {name: i for i, name in enumerate(known_classes)}
        self.annotations: dict[int, list[dict]] = {image["id"]: [] for image in gt["images"]}
        for a in gt["annotations"]:
            self.annotations[a["image_id"]].append({**a, "name": names[a["category_id"]],
                                                    "label": index.get(names[a["category_id"]], -1)})

    def __len__(self) -> int:
        return len(self.gt["images"])

    def __getitem__(self, i: int) -> tuple[Tensor, dict]:
        record = self.gt["images"][i]
        path = Path(self.gt[formats.GT_ROOT_KEY]) / record["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetFormatError(f"{path}: not a readable image ({folder_listing(path.parent)})")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        if self.image_size is None:
            sx = sy = 1.0
            padded = np.zeros((-(-h // 32) * 32, -(-w // 32) * 32, 3), np.uint8)
            padded[:h, :w] = image
            image = padded
        else:
            sx, sy = self.image_size / w, self.image_size / h
            image = cv2.resize(image, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        objects = self.annotations[record["id"]]
        trained = [a for a in objects if a["label"] >= 0 and not a.get("difficult", 0) and not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in trained], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes *= torch.tensor([sx, sy, sx, sy])
        target = {"boxes": boxes, "labels": torch.tensor([a["label"] for a in trained], dtype=torch.long),
                  "scale": torch.tensor([sx, sy]), "image": record, "annotations": objects}
        return torch.from_numpy(image).permute(2, 0, 1).float() / 255, target


def collate(batch: list[tuple[Tensor, dict]]) -> tuple[Tensor, list[dict]]:
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


class DetectionDataModule(LightningDataModule, ABC):
    """Base: subclasses implement ``load() -> (train_gt, val_gt, {context: test_gt}, known_classes)``.

    Args:
        image_size: side of the square the images are resized to (``None``: native size, batch of 1).
        batch_size, num_workers: the loaders'.
    """

    def __init__(self, image_size: int | None = 128, batch_size: int = 16, num_workers: int = 0) -> None:
        super().__init__()
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self._loaded: tuple | None = None

    @abstractmethod
    def load(self) -> tuple[dict, dict, dict[str, dict], list[str]]:
        """(training gt, validation gt with known labels only, {context: test gt}, known classes)."""

    def _resolve(self) -> tuple[dict, dict, dict[str, dict], list[str]]:
        if self._loaded is None:
            self._loaded = self.load()
        return self._loaded

    @property
    def known_classes(self) -> list[str]:
        return self._resolve()[3]

    @property
    def num_previous(self) -> int:
        """How many of the known classes earlier tasks introduced (0 outside the OWOD task splits)."""
        return 0

    @property
    def contexts(self) -> list[str]:
        return list(self._resolve()[2])

    def setup(self, stage: str | None = None) -> None:
        self._resolve()

    def _loader(self, gt: dict, shuffle: bool) -> DataLoader:
        dataset = DetectionDataset(gt, self.known_classes, self.image_size)
        batch_size = self.batch_size if self.image_size is not None else 1
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=collate, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._resolve()[0], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._resolve()[1], shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(gt, shuffle=False) for gt in self._resolve()[2].values()]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()


def known_view(gt: dict, known_classes: list[str]) -> dict:
    """``gt`` with the annotations of ``known_classes`` only (a validation split: no unknown label)."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    view = copy.copy(gt)
    view["annotations"] = [a for a in gt["annotations"] if names[a["category_id"]] in known_classes]
    return view


def every_nth(gt: dict, n: int, keep: bool) -> dict:
    """The images whose position is a multiple of ``n`` (``keep``) or the others, with their annotations:
    a validation split carved out of a training split that has none."""
    images = [image for i, image in enumerate(gt["images"]) if (i % n == 0) == keep]
    ids = {image["id"] for image in images}
    return {**gt, "images": images, "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}


class ShapeWorld(DetectionDataModule):
    """The synthetic shape world (``shapeworld.py``), generated once into ``cache_dir``: OWOD task ``task``
    (1-3) trained on ``t{task}_train`` (task > 1: plus the ``t{task}_ft`` exemplars with every known class,
    ORE's replay set, in one stage), validated on ``val`` (known labels only), tested on the road ``test``
    and the ``aerial_test`` context shift.

    Args:
        task: the OWOD task whose classes are known (those of tasks 1..task).
        sizes: images per split (``shapeworld.DEFAULT_SIZES`` when omitted; tests use a few).
        exemplars: instances per known class in the ``t2_ft`` / ``t3_ft`` replay sets (ORE's 50).
        seed: the generator's seed.
        cache_dir: where generated data is cached (relative: at the collection root).
    """

    def __init__(self, task: int = 1, sizes: dict[str, int] | None = None, exemplars: int = 50, seed: int = 0,
                 cache_dir: str = ".cache/open-world-ood", image_size: int | None = 128, batch_size: int = 16,
                 num_workers: int = 0) -> None:
        super().__init__(image_size, batch_size, num_workers)
        if not 1 <= task <= len(shapeworld.TASKS):
            raise ValueError(f"task {task}: the shape world has tasks 1..{len(shapeworld.TASKS)}")
        self.task, self.sizes, self.exemplars, self.seed, self.cache_dir = task, sizes, exemplars, seed, cache_dir

    @property
    def num_previous(self) -> int:
        return sum(len(classes) for classes in shapeworld.TASKS[:self.task - 1])

    def root(self) -> Path:
        record = {"generator": "shapeworld", "version": shapeworld.VERSION, "seed": self.seed,
                  "sizes": self.sizes or shapeworld.DEFAULT_SIZES, "exemplars": self.exemplars}
        return generate_once(self.cache_dir, record, lambda folder: shapeworld.generate(
            folder, seed=self.seed, sizes=self.sizes, exemplars=self.exemplars))

    def load(self) -> tuple[dict, dict, dict[str, dict], list[str]]:
        root, tasks = self.root(), shapeworld.TASKS
        known = [name for classes in tasks[:self.task] for name in classes]
        train = formats.owod_view(formats.read_voc(root, f"t{self.task}_train", shapeworld.CLASSES), tasks,
                                  self.task, "train")
        if self.task > 1:
            replay = formats.owod_view(formats.read_voc(root, f"t{self.task}_ft", shapeworld.CLASSES), tasks,
                                       self.task, "ft")
            train = merge(train, replay)
        val = known_view(formats.read_voc(root, "val", shapeworld.CLASSES), known)
        tests = {"road": formats.read_voc(root, "test", shapeworld.CLASSES),
                 "aerial": formats.read_voc(root, "aerial_test", shapeworld.CLASSES)}
        return train, val, tests, known


def merge(a: dict, b: dict) -> dict:
    """Two gts over the same categories and image root, as one (image and annotation ids renumbered)."""
    images, annotations = [], []
    for gt in (a, b):
        offset = len(images)
        remap = {image["id"]: offset + i + 1 for i, image in enumerate(gt["images"])}
        images += [{**image, "id": remap[image["id"]]} for image in gt["images"]]
        annotations += [{**x, "image_id": remap[x["image_id"]], "id": len(annotations) + j + 1}
                        for j, x in enumerate(gt["annotations"])]
    return {**a, "images": images, "annotations": annotations}


class OWOD(DetectionDataModule):
    """The OWOD benchmarks' task splits (ORE's M-OWODB, OW-DETR's S-OWODB) in either published layout
    (``formats.read_owod``): task ``task`` trained on ``t{task}_train`` (+ ``t{task}_ft`` for task > 1),
    validated on every 10th training image with the known labels, tested on the test split.

    Args:
        root: the folder with JPEGImages/, Annotations/ and ImageSets/.
        task: 1-4; benchmark: ``MOWODB`` or ``SOWODB``; task_classes: class lists per task for another
            benchmark (default: the benchmark's, ``formats.OWOD_CLASSES``).
    """

    def __init__(self, root: str, task: int = 1, benchmark: str = "MOWODB",
                 task_classes: list[list[str]] | None = None, image_size: int | None = 512, batch_size: int = 8,
                 num_workers: int = 2) -> None:
        super().__init__(image_size, batch_size, num_workers)
        self.root, self.task, self.benchmark, self.task_classes = root, task, benchmark, task_classes

    @property
    def num_previous(self) -> int:
        tasks = self.task_classes or formats.OWOD_CLASSES[self.benchmark]
        return sum(len(classes) for classes in tasks[:self.task - 1])

    def load(self) -> tuple[dict, dict, dict[str, dict], list[str]]:
        root = anchored(self.root)
        tasks = self.task_classes or formats.OWOD_CLASSES[self.benchmark]
        known = [name for classes in tasks[:self.task] for name in classes]
        train = formats.read_owod(root, self.task, "train", self.benchmark, tasks)
        if self.task > 1:
            train = merge(train, formats.read_owod(root, self.task, "ft", self.benchmark, tasks))
        test = formats.read_owod(root, self.task, "test", self.benchmark, tasks)
        return every_nth(train, 10, keep=False), known_view(every_nth(train, 10, keep=True), known), \
            {"test": test}, known


class VOC(DetectionDataModule):
    """PASCAL VOC (``formats.read_voc``): ``train_set`` minus every 10th image for training, those for
    validation, ``test_set`` for test. ``known_classes`` (default: all of ``classes``) makes it open-set:
    the other classes' objects are unlabelled in training and ``unknown`` at test.

    Args:
        root: VOCdevkit/VOC2007-style folder; classes: the class list (default: the 20 VOC classes).
    """

    def __init__(self, root: str, train_set: str = "trainval", test_set: str = "test",
                 classes: list[str] | None = None, known_classes: list[str] | None = None,
                 image_size: int | None = 512, batch_size: int = 8, num_workers: int = 2) -> None:
        super().__init__(image_size, batch_size, num_workers)
        self.root, self.train_set, self.test_set = root, train_set, test_set
        self.classes = classes or formats.OWOD_CLASSES["MOWODB"][0]
        self._known = known_classes

    def load(self) -> tuple[dict, dict, dict[str, dict], list[str]]:
        root = anchored(self.root)
        known = self._known or list(self.classes)
        train = known_view(formats.read_voc(root, self.train_set, self.classes), known)
        test = formats.read_voc(root, self.test_set, self.classes)
        return every_nth(train, 10, keep=False), every_nth(train, 10, keep=True), {"test": test}, known


class COCO(DetectionDataModule):
    """COCO instances jsons (``formats.read_coco``): ``annotations/instances_<split>.json`` with the images
    in ``<root>/<split>/``; validation = every 10th training image; ``known_classes`` as in ``VOC``."""

    def __init__(self, root: str, train_split: str = "train2017", test_split: str = "val2017",
                 known_classes: list[str] | None = None, image_size: int | None = 512, batch_size: int = 8,
                 num_workers: int = 2) -> None:
        super().__init__(image_size, batch_size, num_workers)
        self.root, self.train_split, self.test_split, self._known = root, train_split, test_split, known_classes

    def load(self) -> tuple[dict, dict, dict[str, dict], list[str]]:
        root = anchored(self.root)
        train = formats.read_coco(root / "annotations" / f"instances_{self.train_split}.json")
        test = formats.read_coco(root / "annotations" / f"instances_{self.test_split}.json")
        known = self._known or [c["name"] for c in train["categories"]]
        train = known_view(train, known)
        return every_nth(train, 10, keep=False), every_nth(train, 10, keep=True), {"test": test}, known


class DOTA(DetectionDataModule):
    """DOTA (``formats.read_dota``, oriented boxes read as axis-aligned): ``<root>/train`` minus every 10th
    image for training, those for validation, ``<root>/val`` for test (DOTA's test labels are not public);
    ``known_classes`` as in ``VOC`` (default: all 15 DOTA v1.0 classes)."""

    def __init__(self, root: str, train_dir: str = "train", test_dir: str = "val",
                 known_classes: list[str] | None = None, image_size: int | None = 1024, batch_size: int = 2,
                 num_workers: int = 2) -> None:
        super().__init__(image_size, batch_size, num_workers)
        self.root, self.train_dir, self.test_dir, self._known = root, train_dir, test_dir, known_classes

    def load(self) -> tuple[dict, dict, dict[str, dict], list[str]]:
        root = anchored(self.root)
        train = formats.read_dota(root, self.train_dir)
        test = formats.read_dota(root, self.test_dir)
        known = self._known or [c["name"] for c in train["categories"]]
        train = known_view(train, known)
        return every_nth(train, 10, keep=False), every_nth(train, 10, keep=True), {"aerial": test}, known


DEEPFOREST_TILES = ("OSBS_029", "SOAP_061", "2019_YELL_2_541000_4977000_image_crop",
                    "2019_YELL_2_528000_4978000_image_crop2")


class DeepForest(DetectionDataModule):
    """Test-only: the four real airborne RGB tiles with VOC boxes of trees that ``deepforest`` 2.1.0 (MIT)
    ships in its wheel (``make deepforest-tiles`` copies them to ``data/deepforest``). Trees are a class
    no road-trained detector knows: every tree is ``unknown``. Composed after a method config to ``test``
    a checkpoint: it only provides test data, so ``known_classes`` are the checkpoint's.

    Args:
        root: the folder holding ``<tile>.xml`` and ``<tile>.png``.
        image_size: ``None`` (native resolution, the trees' true size in pixels) or a square side.
    """

    def __init__(self, root: str = "data/deepforest", known_classes: list[str] | None = None,
                 image_size: int | None = None, batch_size: int = 1, num_workers: int = 0) -> None:
        super().__init__(image_size, batch_size, num_workers)
        self.root, self._known = root, known_classes or []

    def load(self) -> tuple[dict, dict, dict[str, dict], list[str]]:
        root = anchored(self.root)
        missing = [t for t in DEEPFOREST_TILES if not (root / f"{t}.xml").exists()]
        if missing:
            raise DatasetFormatError(f"{root}: expected deepforest's tiles {', '.join(missing)}.xml and .png "
                                     f"(run `make deepforest-tiles`); {folder_listing(root)}")
        test = formats.read_voc_files([root / f"{t}.xml" for t in DEEPFOREST_TILES], root)
        empty = {**test, "images": [], "annotations": []}
        return empty, empty, {"deepforest": test}, list(self._known)
