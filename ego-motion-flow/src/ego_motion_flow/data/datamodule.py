"""LightningDataModules: the synthetic road sequences (default) and the four real layouts.

Every dataset yields the same sample dict (``data/sample.py``): the frame pair, ground-truth flow, depth of
frame 1, K, the camera motion ``T_21`` and the moving-object mask, each with its validity mask, so that every
method and metric runs on every dataset and a missing modality is an invalid mask, not a missing key.

Splits: the synthetic set has train / val / test sequences. A real dataset is a test set (its ``scenes`` /
``sequences`` / ids); training on it is possible where it has a training part named in the config
(``train_scenes``, ``train_sequences``): otherwise ``fit`` stops with an error that says so, since the
methods are trained on the synthetic set and evaluated on the real one with ``test --ckpt_path``.
Real images differ in size (KITTI: 370-376 x 1224-1242): their test batches hold one pair, and metrics are
computed at native resolution, never on a resized ground truth.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ego_motion_flow.data.kitti15 import Kitti2015
from ego_motion_flow.data.kitti_odometry import KittiOdometry
from ego_motion_flow.data.sintel import Sintel
from ego_motion_flow.data.synthetic import write_synthetic
from ego_motion_flow.data.vkitti2 import VirtualKitti2
from shared_utils.cache import generate_once
from shared_utils.cli import ConfigFileError
from shared_utils.paths import anchored

# Bump when the synthetic generator's output changes: the cache key holds it.
SYNTHETIC_VERSION = 1


class FlowDataModule(LightningDataModule, ABC):
    """Loaders over the datasets of ``splits()``: ``{"train": ..., "val": ..., "test": ...}``, train and val
    optional. ``test_batch_size`` None: one pair per batch where image sizes vary (``same_size`` False, the real
    datasets), else ``batch_size``. (None rather than a number per class: jsonargparse carries a value over when a
    later config switches the data class, and a carried-over 8 would break KITTI's varying sizes.)"""

    same_size = False  # True where every image of the dataset has one size (the synthetic roads)

    def __init__(self, batch_size: int = 8, test_batch_size: int | None = None, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.test_batch_size = test_batch_size or (batch_size if self.same_size else 1)
        self.sets: dict[str, Dataset] = {}

    @abstractmethod
    def splits(self) -> dict[str, Dataset]:
        """The split datasets (built in ``setup``: building reads the folders and checks their layout)."""

    def setup(self, stage: str | None = None) -> None:
        if not self.sets:
            self.sets = self.splits()

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        if split not in self.sets:
            raise ConfigFileError(
                f"{type(self).__name__} has no {split} split: the methods train on the synthetic set (configs/"
                f"default.yaml's data) and are tested here with `test --ckpt_path`; name a training part of this "
                f"dataset in data.init_args to {'fit' if split != 'test' else 'test'} on it")
        return DataLoader(self.sets[split], batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.test_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.test_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


class SyntheticRoads(FlowDataModule):
    """Ray-cast road sequences (``data/synthetic.py``) written once into ``cache_dir`` in the Virtual KITTI 2
    layout and read back by its loader: ``sequences`` per split, ``frames`` per sequence (``frames - 1`` pairs)."""

    same_size = True

    def __init__(self, sequences: dict[str, int] | None = None, frames: int = 20, height: int = 64,
                 width: int = 192, seed: int = 0, cache_dir: str = ".cache/ego-motion-flow",
                 batch_size: int = 8, test_batch_size: int | None = None, num_workers: int = 0) -> None:
        super().__init__(batch_size, test_batch_size, num_workers)
        self.sequences = sequences or {"train": 24, "val": 4, "test": 6}
        self.frames, self.height, self.width, self.seed, self.cache_dir = frames, height, width, seed, cache_dir

    def root(self) -> Path:
        total = sum(self.sequences.values())
        record = {"generator": "synthetic_roads", "version": SYNTHETIC_VERSION, "sequences": total,
                  "frames": self.frames, "height": self.height, "width": self.width, "seed": self.seed}
        return generate_once(self.cache_dir, record, lambda folder: write_synthetic(
            folder, total, height=self.height, width=self.width, frames=self.frames, seed=self.seed))

    def splits(self) -> dict[str, Dataset]:
        root = self.root() / "vkitti2"
        scenes = sorted(p.name for p in root.iterdir() if p.is_dir())
        sets, start = {}, 0
        for split in ("train", "val", "test"):
            count = self.sequences.get(split, 0)
            if count:
                sets[split] = VirtualKitti2(root, scenes=scenes[start:start + count], variations=["clone"])
            start += count
        return sets


class Kitti2015DataModule(FlowDataModule):
    """KITTI 2015 scene flow ``training/`` pairs under ``root`` (all, or the ids of ``split_file``): a test set."""

    def __init__(self, root: str, split_file: str | None = None, batch_size: int = 1,
                 test_batch_size: int | None = None, num_workers: int = 0) -> None:
        super().__init__(batch_size, test_batch_size, num_workers)
        self.root, self.split_file = root, split_file

    def splits(self) -> dict[str, Dataset]:
        return {"test": Kitti2015(anchored(self.root), split_file=self.split_file)}


class KittiOdometryDataModule(FlowDataModule):
    """KITTI odometry ``sequences`` (test; ego-motion metrics only: no flow ground truth) and optionally
    ``train_sequences`` / ``val_sequences`` (self-supervised training needs only images)."""

    def __init__(self, root: str, sequences: list[str] | None = None, train_sequences: list[str] | None = None,
                 val_sequences: list[str] | None = None, batch_size: int = 8, test_batch_size: int | None = None,
                 num_workers: int = 0) -> None:
        super().__init__(batch_size, test_batch_size, num_workers)
        self.root, self.sequences = root, sequences or ["09", "10"]
        self.train_sequences, self.val_sequences = train_sequences, val_sequences

    def splits(self) -> dict[str, Dataset]:
        root = anchored(self.root)
        named = {"test": self.sequences, "train": self.train_sequences, "val": self.val_sequences}
        return {split: KittiOdometry(root, sequences) for split, sequences in named.items() if sequences}


class VirtualKitti2DataModule(FlowDataModule):
    """Virtual KITTI 2: every forward-flow pair of ``scenes`` x ``variations`` is the test split;
    ``train_scenes`` / ``val_scenes`` (same variations) give training parts."""

    def __init__(self, root: str, scenes: list[str] | None = None, variations: list[str] | None = None,
                 train_scenes: list[str] | None = None, val_scenes: list[str] | None = None,
                 camera: str = "Camera_0", batch_size: int = 4, test_batch_size: int | None = None,
                 num_workers: int = 0) -> None:
        super().__init__(batch_size, test_batch_size, num_workers)
        self.root, self.camera = root, camera
        self.scenes, self.variations = scenes or ["Scene18"], variations or ["clone"]
        self.train_scenes, self.val_scenes = train_scenes, val_scenes

    def splits(self) -> dict[str, Dataset]:
        root = anchored(self.root)
        named = {"test": self.scenes, "train": self.train_scenes, "val": self.val_scenes}
        return {split: VirtualKitti2(root, scenes=scenes, variations=self.variations, camera=self.camera)
                for split, scenes in named.items() if scenes}


class SintelDataModule(FlowDataModule):
    """MPI-Sintel ``training`` pairs of ``pass_name`` (final or clean), all scenes or ``scenes`` (test), and
    ``train_scenes`` / ``val_scenes`` for a training part."""

    def __init__(self, root: str, pass_name: str = "final", scenes: list[str] | None = None,
                 train_scenes: list[str] | None = None, val_scenes: list[str] | None = None,
                 batch_size: int = 4, test_batch_size: int | None = None, num_workers: int = 0) -> None:
        super().__init__(batch_size, test_batch_size, num_workers)
        self.root, self.pass_name, self.scenes = root, pass_name, scenes
        self.train_scenes, self.val_scenes = train_scenes, val_scenes

    def splits(self) -> dict[str, Dataset]:
        root = anchored(self.root)
        sets = {"test": Sintel(root, pass_name=self.pass_name, scenes=self.scenes)}
        for split, scenes in (("train", self.train_scenes), ("val", self.val_scenes)):
            if scenes:
                sets[split] = Sintel(root, pass_name=self.pass_name, scenes=scenes)
        return sets
