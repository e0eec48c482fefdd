"""Datamodules: a nuScenes folder (``BEVDataModule``) and the synthetic world written in its layout (``Synthetic``).

Both serve ``NuScenesBEV`` samples (see ``data/nuscenes.py`` for the keys): the model, metrics and
methods never know which one they got.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_deprecation
from torch.utils.data import DataLoader, Dataset

from bev_uncertainty.data.grid import BEVGrid
from bev_uncertainty.data.nuscenes import NuScenesBEV
from bev_uncertainty.data.synthetic import VERSION, ensure_synthetic


class CachedSamples(Dataset):
    """A dataset that keeps each sample after its first read, so later epochs skip the JPEG decoding, LiDAR
    projection and rasterising (deterministic: no augmentation here). For data that fits in memory: the synthetic
    world's 340 samples take ~0.4 GB."""

    def __init__(self, dataset: NuScenesBEV) -> None:
        self.dataset = dataset
        self.samples: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        if i not in self.samples:
            self.samples[i] = self.dataset[i]
        return self.samples[i]


def collate(samples: list[dict]) -> dict:
    """Stack tensors, keep strings (tokens) as lists."""
    return {k: torch.stack([s[k] for s in samples]) if torch.is_tensor(samples[0][k]) else [s[k] for s in samples]
            for k in samples[0]}


class BEVDataModule(LightningDataModule):
    """A nuScenes-layout folder split by scene (``v1.0-mini``: the official 8 / 2 scenes; test = val).

    Args:
        root: folder holding ``samples/`` and ``<version>/`` (nuScenes calls it the dataroot).
        version: ``v1.0-mini``, ``v1.0-trainval`` or a folder name with its own ``splits.json``.
        grid: ``BEVGrid`` fields (default +-50 m at 0.5 m); the model takes the grid from here.
        image_size: (H, W) after LSS's resize-and-crop; multiples of 8.
        min_visibility: vehicles less visible than this nuScenes level are ignored (CVT's setting: 2).
        ood_prefixes: category-name prefixes of the out-of-distribution class.
        split_file: JSON ``{"train": [scene names], "val": [...], "test": [...]}`` overriding the official split.
        cache_samples: keep decoded samples in memory after their first epoch (``CachedSamples``): for a dataset
            that fits in RAM (the synthetic world), not for nuScenes trainval.
        dataroot: deprecated name of ``root`` (every datamodule of the collection calls it ``root``); still
            accepted for one release, with a warning.
    """

    def __init__(self, root: str | None = None, version: str = "v1.0-mini", grid: dict | None = None,
                 image_size: tuple[int, int] = (64, 176), batch_size: int = 4, num_workers: int = 0,
                 min_visibility: int = 2, ood_prefixes: Sequence[str] = ("ood", "animal"),
                 split_file: str | None = None, cache_samples: bool = False, dataroot: str | None = None) -> None:
        super().__init__()
        if dataroot is not None:
            if root is not None:
                raise ValueError(f"give the dataset folder once, as root (got root={root!r} and the deprecated "
                                 f"dataroot={dataroot!r})")
            rank_zero_deprecation("BEVDataModule: `dataroot` is deprecated and will be removed in the next release; "
                                  "use `root` (--data.init_args.root)", stacklevel=2)
            root = dataroot
        if root is None:
            raise ValueError("BEVDataModule needs root: the nuScenes folder holding samples/ and <version>/ "
                             "(--data.init_args.root /data/nuscenes)")
        self.root, self.version = root, version
        self.grid = BEVGrid(**(grid or {}))
        self.image_size = tuple(image_size)
        self.batch_size, self.num_workers, self.cache_samples = batch_size, num_workers, cache_samples
        self.options = {"min_visibility": min_visibility, "ood_prefixes": tuple(ood_prefixes), "split_file": split_file}
        self.datasets: dict[str, NuScenesBEV] = {}
        self.cached: dict[str, CachedSamples] = {}

    def dataset_root(self) -> str:
        """The folder the loader reads (``Synthetic``: the generated one)."""
        return self.root

    def setup(self, stage: str) -> None:
        """Load and check the tables of the stage's splits now: a missing or malformed dataset stops here with a
        ``DatasetFormatError`` naming the path, before any training, not later inside fit."""
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, ())
        for split in splits:
            self.dataset(split)

    def dataset(self, split: str) -> NuScenesBEV:
        if split not in self.datasets:
            # The test split also carries the LiDAR's observed-cells map (evaluation of unseen cells).
            self.datasets[split] = NuScenesBEV(self.dataset_root(), self.version, split, self.grid, self.image_size,
                                               observed=split == "test", **self.options)
        return self.datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        if self.cache_samples:
            self.cached.setdefault(split, CachedSamples(dataset))
            dataset = self.cached[split]
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class Synthetic(BEVDataModule):
    """The procedural driving world (``data/synthetic.py``), generated once into ``cache_dir`` and read
    with the nuScenes loader. Val and test scenes hold out-of-distribution objects (of different kinds);
    training scenes do not.

    Args:
        scenes: scenes per split (default train 24, val 4, test 6; 10 keyframes each).
        cache_samples: on by default: the world is small, and decoding it again every epoch cost ~2 s an epoch
            on 2 CPU cores (profiled).
        grid: default +-25 m at 0.5 m: the synthetic cameras are 1/8 of nuScenes' resolution, so objects
            beyond ~30 m are a few pixels; nuScenes configs use the full +-50 m.
    """

    def __init__(self, cache_dir: str = ".cache/bev-uncertainty", scenes: dict[str, int] | None = None,
                 samples_per_scene: int = 10, seed: int = 0, grid: dict | None = None, cache_samples: bool = True,
                 **kwargs) -> None:
        grid = grid or {"x_min": -25.0, "x_max": 25.0, "y_min": -25.0, "y_max": 25.0, "resolution": 0.5}
        super().__init__(root=cache_dir, version=VERSION, grid=grid, cache_samples=cache_samples, **kwargs)
        self.generator = {"scenes": dict(scenes or {"train": 24, "val": 4, "test": 6}),
                          "samples_per_scene": samples_per_scene, "seed": seed}
        self._root: str | None = None

    def prepare_data(self) -> None:
        self.dataset_root()

    def dataset_root(self) -> str:
        if self._root is None:
            self._root = str(ensure_synthetic(self.root, **self.generator))
        return self._root
