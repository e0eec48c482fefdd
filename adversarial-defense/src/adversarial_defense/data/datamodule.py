"""Datamodules. Every one yields images as float tensors in [0, 1] (the models normalise them) and resolves,
in ``setup``, ``num_classes`` and ``classes``, which the CLI links into the model.

Classification (``ClassificationDataModule``): ``ShapeTexture`` (the generated default, cached), ``ImageFolder``
(torchvision's layout ``<root>/<split>/<class>/<image>``), ``ImagenetPhotos`` (the real photos that ship with
scikit-image, labelled with the ImageNet classes the pretrained Lite0 must predict; test only).
Detection: ``Scenes`` (the generated shape scenes in PASCAL VOC layout, or a VOC root of real images).
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
