"""Datamodules. Every one yields images as float tensors in [0, 1] (the models normalise them) and resolves,
in ``setup``, ``num_classes`` and ``classes``, which the CLI links into the model.

Classification (``ClassificationDataModule``): ``ShapeTexture`` (the generated default, cached), ``ImageFolder``
(torchvision's layout ``<root>/<split>/<class>/<image>``), ``ImagenetPhotos`` (the real photos that ship with
scikit-image, labelled with the ImageNet classes the pretrained Lite0 must predict; test only).
Detection: ``Scenes`` (the generated shape scenes in PASCAL VOC layout, or a VOC root of real images),
``CocoDetection`` (COCO instances files).
Re-identification: ``Market1501`` (the real layout, or the generated synthetic set written in it).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, TensorDataset

from shared_utils.datasets import DatasetFormatError
from shared_utils.paths import collection_root


def default_cache(name: str) -> Path:
    return collection_root() / "data" / "adversarial-defense" / name


def _read_rgb(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetFormatError(f"{path}: not a readable image")
    image = image[..., ::-1]
    if size is not None and image.shape[:2] != size:
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)


class AdversarialDataModule(LightningDataModule):
    """Base class of the project's datamodules (the CLI's ``data`` argument). Args common to all:
    batch_size, num_workers."""

    num_classes: int
    classes: list[str]

    def __init__(self, batch_size: int = 128, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.splits: dict[str, Dataset] = {}

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        if split not in self.splits:
            raise DatasetFormatError(f"{type(self).__name__} has no {split} split (it has: {sorted(self.splits)})")
        return DataLoader(self.splits[split], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=getattr(self, "collate", None),
                          drop_last=shuffle and len(self.splits[split]) > self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class ClassificationDataModule(AdversarialDataModule):
    """Base class of the classification sets: ``splits`` of (images, labels) tensors."""


class ShapeTexture(ClassificationDataModule):
    """The generated 10-class 32 x 32 shape-texture set (``data/shapetexture.py``), cached under ``cache_dir``
    (default ``data/adversarial-defense/shapetexture`` at the collection root).

    Args:
        sizes: images per split (``train``, ``val``, ``test``); the default is the generator's.
        seed: the generator's seed.
        test_size: evaluate on the first ``test_size`` test images only (attacks are the slow part).
    """

    def __init__(self, cache_dir: str | None = None, seed: int = 0, sizes: dict[str, int] | None = None,
                 test_size: int | None = None, batch_size: int = 128, num_workers: int = 0) -> None:
        super().__init__(batch_size, num_workers)
        self.cache_dir, self.seed, self.sizes, self.test_size = cache_dir, seed, sizes, test_size

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from adversarial_defense.data import shapetexture

        data = shapetexture.load(self.cache_dir or default_cache("shapetexture"), self.seed, self.sizes)
        self.classes = list(shapetexture.CLASSES)
        self.num_classes = len(self.classes)
        for split, (images, labels) in data.items():
            if split == "test" and self.test_size:
                images, labels = images[:self.test_size], labels[:self.test_size]
            self.splits[split] = TensorDataset(to_tensor(images), torch.as_tensor(labels, dtype=torch.long))


class _Files(Dataset):
    def __init__(self, paths: list[str], labels: list[int], size: tuple[int, int]) -> None:
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return to_tensor(_read_rgb(self.paths[i], self.size)[None])[0], self.labels[i]


class ImageFolder(ClassificationDataModule):
    """``<root>/{train,val,test}/<class>/<image>`` (torchvision's ImageFolder per split: classes are the sorted
    sub-folder names of ``train``; ``val`` and ``test`` must hold the same classes). Images are resized to
    ``image_size`` (square)."""

    def __init__(self, root: str, image_size: int = 32, batch_size: int = 128, num_workers: int = 0) -> None:
        super().__init__(batch_size, num_workers)
        self.root, self.image_size = Path(root), image_size

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from adversarial_defense.data.shapetexture import read_image_folder

        if not self.root.is_dir():
            raise DatasetFormatError(f"ImageFolder root {self.root} does not exist "
                                     "(expected <root>/{train,val,test}/<class>/<image>)")
        size = (self.image_size, self.image_size)
        for split in ("train", "val", "test"):
            if not (self.root / split).is_dir():
                continue
            paths, labels, classes = read_image_folder(self.root / split)
            if split == "train" or not hasattr(self, "classes"):
                self.classes = classes
            elif classes != self.classes:
                raise DatasetFormatError(f"{self.root / split}: classes {classes} differ from train's {self.classes}")
            self.splits[split] = _Files([str(p) for p in paths], list(labels), size)
        if not self.splits:
            raise DatasetFormatError(f"{self.root}: no train/, val/ or test/ folder "
                                     "(expected <root>/{train,val,test}/<class>/<image>)")
        self.num_classes = len(self.classes)


class ImagenetPhotos(ClassificationDataModule):
    """The real photos shipped inside scikit-image's wheel, for the pretrained ImageNet Lite0 (test only).
    Each photo's label is the pretrained model's clean top-1, which ``data/photos.py`` checks is one of the
    photo's semantically right ImageNet classes (a cat photo must be predicted as a cat class)."""

    def __init__(self, image_size: int = 224, batch_size: int = 8, num_workers: int = 0) -> None:
        super().__init__(batch_size, num_workers)
        self.image_size = image_size

    def setup(self, stage: str | None = None) -> None:
        if stage == "fit":
            raise DatasetFormatError("ImagenetPhotos is a test set (a handful of real photos): use "
                                     "`adversarial-defense test --config imagenet_photos.yaml`, not fit")
        if self.splits:
            return
        from adversarial_defense.data.photos import imagenet_photos

        photos = imagenet_photos(self.image_size)
        self.names = [name for name, _, _ in photos]
        self.accepted = [list(ids) for _, _, ids in photos]
        self.classes = [str(i) for i in range(1000)]
        self.num_classes = 1000
        images = torch.stack([image for _, image, _ in photos])
        self.splits["test"] = TensorDataset(images, torch.full((len(images),), -1, dtype=torch.long))


class _Detection(Dataset):
    """COCO-format ground truth (``shared_utils.detection_formats``) as (image, {"boxes", "labels"}) pairs,
    images resized to ``image_size`` (boxes scaled with them)."""

    def __init__(self, gt: dict, classes: list[str], image_size: int) -> None:
        self.root, self.images, self.size = Path(gt["image_root"]), gt["images"], image_size
        names = {c["id"]: c["name"] for c in gt["categories"]}
        self.objects: dict[int, list[tuple[list[float], int]]] = {image["id"]: [] for image in gt["images"]}
        for a in gt["annotations"]:
            self.objects[a["image_id"]].append((a["bbox"], classes.index(names[a["category_id"]])))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        record = self.images[i]
        image = _read_rgb(self.root / record["file_name"])
        sy, sx = self.size / image.shape[0], self.size / image.shape[1]
        image = _read_rgb(self.root / record["file_name"], (self.size, self.size))
        objects = self.objects[record["id"]]
        boxes = torch.tensor([[x * sx, y * sy, (x + w) * sx, (y + h) * sy] for (x, y, w, h), _ in objects],
                             dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([label for _, label in objects], dtype=torch.long)
        return to_tensor(image[None])[0], {"boxes": boxes, "labels": labels}


def _collate_detection(batch: list) -> tuple[torch.Tensor, list[dict]]:
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


class Scenes(AdversarialDataModule):
    """Detection in the PASCAL VOC layout (``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/<split>.txt``):
    the generated shape scenes (``data/scenes.py``, cached) when ``root`` is None, else a real VOC root with
    the ``classes`` to keep (default: every class found in the train split).

    Args:
        sizes: generated images per split (default the generator's: 400 / 100 / 100).
        image_size: the side images are resized to (a multiple of 32).
        splits: the image sets used as train, val and test.
    """

    def __init__(self, root: str | None = None, cache_dir: str | None = None, seed: int = 0,
                 sizes: dict[str, int] | None = None, classes: list[str] | None = None, image_size: int = 96,
                 splits: dict[str, str] | None = None, batch_size: int = 16, num_workers: int = 0) -> None:
        super().__init__(batch_size, num_workers)
        self.root, self.cache_dir, self.seed, self.sizes = root, cache_dir, seed, sizes
        self.class_names, self.image_size = classes, image_size
        self.split_names = splits or {"train": "train", "val": "val", "test": "test"}
        self.collate = _collate_detection

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from adversarial_defense.data import scenes
        from shared_utils.cache import generate_once
        from shared_utils.detection_formats import read_voc

        if self.root is None:
            record = {"dataset": "shape_scenes", "version": scenes.VERSION, "seed": self.seed,
                      "sizes": self.sizes or scenes.DEFAULT_SIZES, "image_size": self.image_size}
            root = generate_once(self.cache_dir or default_cache("scenes"), record,
                                 lambda path: scenes.generate(path, self.seed, self.sizes, self.image_size))
            self.classes = list(scenes.CLASSES)
        else:
            root = Path(self.root)
            self.classes = self.class_names
        for split, image_set in self.split_names.items():
            gt = read_voc(root, image_set, self.classes)
            if self.classes is None:
                self.classes = [c["name"] for c in gt["categories"]]
            self.splits[split] = _Detection(gt, self.classes, self.image_size)
        self.num_classes = len(self.classes)


class CocoDetection(Scenes):
    """Detection from COCO instances files: ``<root>/annotations/instances_<split>.json`` with the images in
    COCO's layout (``<root>/<split>/``; ``shared_utils.detection_formats.read_coco``), e.g. ``splits: {train:
    train2017, val: val2017, test: val2017}``; ``classes`` keeps those categories (default: all, in id order)."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from shared_utils.detection_formats import read_coco

        if self.root is None:
            raise DatasetFormatError("CocoDetection needs data.init_args.root (<root>/annotations/"
                                     "instances_<split>.json and <root>/<split>/ images)")
        self.classes = self.class_names
        for split, name in self.split_names.items():
            gt = read_coco(Path(self.root) / "annotations" / f"instances_{name}.json")
            if self.classes is None:
                self.classes = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
            keep = {c["id"] for c in gt["categories"] if c["name"] in self.classes}
            gt = {**gt, "annotations": [a for a in gt["annotations"] if a["category_id"] in keep]}
            self.splits[split] = _Detection(gt, self.classes, self.image_size)
        self.num_classes = len(self.classes)


class _ReIDImages(Dataset):
    def __init__(self, samples: list[tuple[Path, int, int]], size: tuple[int, int]) -> None:
        self.samples, self.size = samples, size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        path, pid, camid = self.samples[i]
        return to_tensor(_read_rgb(path, self.size)[None])[0], pid, camid


class _PKSampler(torch.utils.data.Sampler):
    """P identities x K images per batch (Hermans et al. 2017), identities with fewer images repeated."""

    def __init__(self, pids: list[int], ids_per_batch: int, instances: int, seed: int = 0) -> None:
        self.by_pid: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            self.by_pid.setdefault(pid, []).append(index)
        self.p, self.k, self.epoch, self.seed = ids_per_batch, instances, 0, seed

    def __iter__(self):
        generator = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        pids = generator.permutation(list(self.by_pid))
        for start in range(0, len(pids) - self.p + 1, self.p):
            for pid in pids[start:start + self.p]:
                indices = self.by_pid[pid]
                yield from generator.choice(indices, self.k, replace=len(indices) < self.k).tolist()

    def __len__(self) -> int:
        return (len(self.by_pid) // self.p) * self.p * self.k


class Market1501(AdversarialDataModule):
    """Market-1501 (Zheng et al., ICCV 2015): ``<root>/bounding_box_train``, ``query``, ``bounding_box_test``
    (``data/reid.py``: names ``pid_cCsS_frame_box.jpg``, junk pid -1 dropped, distractors 0000 kept in the
    gallery). ``root`` None: the synthetic set written in that layout (``generate_synthetic_reid``, cached).
    ``num_classes`` is the number of training identities (relabelled 0..N-1 for the classifier).

    Args:
        image_size: (height, width) crops are resized to (Market's are 128 x 64).
        ids_per_batch, instances: the P x K training batches (batch size P K).
        num_train_ids, num_test_ids: the synthetic set's identities.
    """

    def __init__(self, root: str | None = None, cache_dir: str | None = None, seed: int = 0,
                 num_train_ids: int = 100, num_test_ids: int = 100, image_size: tuple[int, int] = (64, 32),
                 ids_per_batch: int = 8, instances: int = 4, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__(batch_size, num_workers)
        self.root, self.cache_dir, self.seed = root, cache_dir, seed
        self.num_train_ids, self.num_test_ids = num_train_ids, num_test_ids
        self.image_size, self.ids_per_batch, self.instances = tuple(image_size), ids_per_batch, instances

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from adversarial_defense.data.reid import ensure_synthetic_reid, read_market1501, relabel_pids

        root = (Path(self.root) if self.root is not None else
                ensure_synthetic_reid(self.cache_dir or default_cache("market1501"), self.seed,
                                      self.num_train_ids, self.num_test_ids))
        data = read_market1501(root)
        train = relabel_pids(data["train"])
        self.num_classes = len({pid for _, pid, _ in train})
        self.classes = [str(i) for i in range(self.num_classes)]
        self.splits = {"train": _ReIDImages(train, self.image_size),
                       "gallery": _ReIDImages(data["gallery"], self.image_size),
                       "query": _ReIDImages(data["query"], self.image_size)}

    def train_dataloader(self) -> DataLoader:
        train = self.splits["train"]
        sampler = _PKSampler([pid for _, pid, _ in train.samples], self.ids_per_batch, self.instances, self.seed)
        return DataLoader(train, batch_size=self.ids_per_batch * self.instances, sampler=sampler,
                          num_workers=self.num_workers, drop_last=True)

    def test_dataloader(self) -> list[DataLoader]:
        """The gallery first, then the queries (the module embeds the gallery before attacking queries)."""
        return [self._loader("gallery"), self._loader("query")]
