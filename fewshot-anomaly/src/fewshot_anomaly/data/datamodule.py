"""LightningDataModules: MVTec AD, MVTec LOCO AD, VisA, ELPV (real, from a package), and the synthetic proxy
(MVTec layout).

Splits, as the few-shot literature uses them:
- train: ``k_shot`` normal training images per category (1, 2, 4, 8 or "all"), drawn with
  ``seed``; the held-out normal images are never trained on.
- val, two loaders: first the train images again, in order (trained models refit their
  statistics on them before each validation; training-free ones skip it), then
  ``val_images`` held-out normal images per category (MVTec LOCO: its own
  ``validation/good``), each once as it is and once with a synthetic defect (scratch, hole,
  stain or foreign part, exact mask), so that thresholds and checkpoint selection have
  anomalies to work with. Never the test set.
- test / predict: the official test split, all of it (ELPV has none: its fixed split is in formats.elpv).
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Literal

import numpy as np
from lightning.pytorch import LightningDataModule
from torch.utils.data import ConcatDataset, DataLoader

from fewshot_anomaly.data.dataset import AnomalyDataset
from fewshot_anomaly.data.formats import LAYOUT_DESCRIPTIONS, LAYOUTS, Sample, list_categories
from fewshot_anomaly.data.synthetic import add_defect, ensure_synthetic
from shared_utils.datasets import DatasetFormatError, folder_listing

VALIDATION_DEFECTS = ("scratch", "hole", "stain", "extra")


def synthetic_defect(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random generic defect on a normal image (validation anomalies); the dataset labels
    the item anomalous because the returned mask is not empty."""
    defective, defect_mask = add_defect(image, str(rng.choice(VALIDATION_DEFECTS)), rng)
    return defective, mask | defect_mask


class AnomalyDataModule(LightningDataModule):
    """Common splits and loaders; subclasses name the on-disk layout.

    Args:
        root: dataset root, in the official layout of the subclass.
        category: a category, a list of them, or "all" (every category folder present).
        k_shot: normal training images per category: an int or "all".
        image_size: images are resized to image_size x image_size.
        val_images: held-out normal images per category for validation.
        batch_size, num_workers: DataLoader settings.
        seed: seed of the k-shot draw, the held-out split and the validation defects.
    """

    layout: str = "mvtec_ad"
    train_split, val_split, test_split = "train", None, "test"

    def __init__(self, root: str, category: str | list[str] = "all", k_shot: int | Literal["all"] = "all",
                 image_size: int = 128, val_images: int = 10, batch_size: int = 16, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__()
        if k_shot != "all" and (not isinstance(k_shot, int) or k_shot < 1):
            raise ValueError(f"k_shot must be a positive int or 'all', got {k_shot!r}")
        self.root = Path(root)
        self.category = category
        self.k_shot = k_shot
        self.image_size = image_size
        self.val_images = val_images
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._splits: dict[str, list[Sample]] | None = None

    @property
    def categories(self) -> list[str]:
        if self.category != "all":
            return [self.category] if isinstance(self.category, str) else list(self.category)
        root = self.dataset_root()
        found = list_categories(root, self.layout)
        if not found:  # an empty or wrong root: "all" of nothing would train on nothing
            raise DatasetFormatError(f"no category folder in dataset root {root} (category: all): expected the "
                                     f"{LAYOUT_DESCRIPTIONS[self.layout]}; {folder_listing(root)}")
        return found

    def dataset_root(self) -> Path:
        return self.root

    def splits(self) -> dict[str, list[Sample]]:
        """train / val / test samples of every category (computed once)."""
        if self._splits is None:
            root, index = self.dataset_root(), LAYOUTS[self.layout]
            splits: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
            for category in self.categories:
                normal = [s for s in index(root, category, self.train_split) if s.label == 0]
                rng = random.Random(f"{self.seed}/{category}")  # a category's draw ignores the others
                rng.shuffle(normal)
                if self.val_split is not None:
                    held_out = [s for s in index(root, category, self.val_split) if s.label == 0]
                    held_out = held_out[: self.val_images]
                else:
                    held_out, normal = normal[: self.val_images], normal[self.val_images:]
                    if not normal:
                        raise ValueError(f"{root}/{category}: {len(held_out)} normal training images, all held "
                                         f"out for validation; lower val_images (now {self.val_images})")
                k = len(normal) if self.k_shot == "all" else self.k_shot
                if k > len(normal):
                    raise ValueError(f"{root}/{category}: k_shot={k} but only {len(normal)} normal training "
                                     "images remain after holding out the validation images")
                splits["train"] += sorted(normal[:k], key=lambda s: s.image)
                splits["val"] += held_out
                splits["test"] += index(root, category, self.test_split)
            self._splits = splits
        return self._splits

    def setup(self, stage: str) -> None:
        # Index every split now: a missing or malformed dataset stops here, with its path, before any
        # run starts, rather than inside fit or only when the test split is reached.
        self.splits()

    def _loader(self, dataset, shuffle: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(AnomalyDataset(self.splits()["train"], self.image_size), shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        """[the training images in order (statistics of trained models), the validation set]."""
        statistics = self._loader(AnomalyDataset(self.splits()["train"], self.image_size))
        held_out = self.splits()["val"]
        clean = AnomalyDataset(held_out, self.image_size)
        defective = AnomalyDataset(held_out, self.image_size, transform=synthetic_defect, seed=self.seed)
        return [statistics, self._loader(ConcatDataset([clean, defective]))]

    def test_dataloader(self) -> DataLoader:
        return self._loader(AnomalyDataset(self.splits()["test"], self.image_size))

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


class MVTecAD(AnomalyDataModule):
    """MVTec AD (Bergmann et al., CVPR 2019):
    ``<root>/<category>/{train/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png}``."""

    layout = "mvtec_ad"


class MVTecLOCO(AnomalyDataModule):
    """MVTec LOCO AD (Bergmann et al., IJCV 2022): logical and structural anomalies; its own
    ``validation/good`` split is the held-out set."""

    layout = "mvtec_loco"
    val_split = "validation"


class VisA(AnomalyDataModule):
    """VisA (Zou et al., ECCV 2022): ``<root>/split_csv/1cls.csv`` lists the splits."""

    layout = "visa"


class ELPV(AnomalyDataModule):
    """ELPV (Buerhop-Lutz et al. 2018, Deitsch et al. 2019): 2,624 real electroluminescence images of solar
    cells, 300 x 300 grayscale, one category per cell type (mono, poly); image-level labels only, so the pixel
    metrics are NaN. Normal = defect probability 0, anomalous = 1; the uncertain 1/3 and 2/3 cells are scored
    and reported apart (see ``formats.elpv``). The grayscale PNGs are decoded with OpenCV's IMREAD_COLOR,
    which replicates the gray channel three times: the ImageNet backbone sees a gray RGB image, normalised
    with its usual mean and std, the way anomalib and timm feed grayscale data.

    Args:
        root: a folder in the dataset's layout (``labels.csv`` + ``images/``); None (default): the ``data``
            folder of the installed ``elpv-dataset`` package (``pip install -e "fewshot-anomaly[elpv]"``).
        Other arguments: as ``AnomalyDataModule``.
    """

    layout = "elpv"

    def __init__(self, root: str | None = None, category: str | list[str] = "all",
                 k_shot: int | Literal["all"] = "all", image_size: int = 128, val_images: int = 20,
                 batch_size: int = 16, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__(root or "", category, k_shot, image_size, val_images, batch_size, num_workers, seed)
        self.root = None if root is None else Path(root)

    def dataset_root(self) -> Path:
        return self.root if self.root is not None else elpv_package_root()


def elpv_package_root() -> Path:
    """The ``data`` folder of the installed ``elpv-dataset`` wheel, located without importing the package
    (its utils import Pillow, which the collection does not need)."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetFormatError(
            "the ELPV data comes from the optional extra [elpv] (package elpv-dataset), which is not installed: "
            'pip install -e "fewshot-anomaly[elpv]" (or make install EXTRAS=elpv), or give '
            "--data.init_args.root=<folder with labels.csv and images/>")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


class Synthetic(MVTecAD):
    """The procedural proxy (data/synthetic.py), written once in the MVTec AD layout under
    ``cache_dir`` and read by the MVTec AD loader: textures (fabric, wood) and objects with
    pose jitter (circuit, screws), each with scratch, hole, stain and missing/extra-part
    defects with exact masks.

    Args:
        cache_dir: where the generated dataset is cached (one folder per generator setting).
        generated_size: image size the generator draws at.
        n_train, n_test_good, n_test_per_defect: images per category.
        Other arguments: as ``AnomalyDataModule``.
    """

    def __init__(self, cache_dir: str = ".cache/fewshot-anomaly", category: str | list[str] = "all",
                 k_shot: int | Literal["all"] = "all", image_size: int = 128, val_images: int = 10,
                 batch_size: int = 16, num_workers: int = 0, seed: int = 0, generated_size: int = 128,
                 n_train: int = 60, n_test_good: int = 20, n_test_per_defect: int = 10) -> None:
        super().__init__(cache_dir, category, k_shot, image_size, val_images, batch_size, num_workers, seed)
        self.generator_args = {"image_size": generated_size, "n_train": n_train, "n_test_good": n_test_good,
                               "n_test_per_defect": n_test_per_defect}

    def dataset_root(self) -> Path:
        return ensure_synthetic(self.root, **self.generator_args)
