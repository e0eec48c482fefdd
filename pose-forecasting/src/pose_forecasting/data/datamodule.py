"""LightningDataModules: Human3.6M, its synthetic proxy (same format, same loader), AMASS and real
motion-capture clips (ASF/AMC, BVH).

A batch is a dict:

- ``history`` ``(B, T_in, J, 3)`` and ``future`` ``(B, T_out, J, 3)``: the joints the models see, metres
  (H36M: the 22 used joints; AMASS: 18);
- ``future_full`` ``(B, T_out, 32, 3)`` (Human3.6M only): the 32-joint ground truth the evaluation
  protocol writes predictions into (see :mod:`pose_forecasting.metrics`);
- ``action``, ``subject``, ``start`` (lists/tensor): where the window comes from;
- with ``with_2d=True``: ``keypoints_2d`` ``(B, T_in, J, 2)`` (MotionBERT-normalised), ``confidence``
  ``(B, T_in, J)`` and ``camera_R`` ``(B, 3, 3)`` (world -> camera), from the H36M-like cameras with
  detector-like noise (:mod:`pose_forecasting.data.cameras`).

Training windows are taken at ``train_stride`` from every training sequence and reversed in time with
probability ``reverse_prob`` (siMLPe's augmentation); validation uses all windows of the validation
subject at stride 10; test uses ``protocol``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from pose_forecasting.data import h36m
from pose_forecasting.data.skeleton import JOINTS_USED
from shared_utils.datasets import DatasetFormatError, folder_listing
from shared_utils.paths import anchored

Key = tuple


class PoseWindows(Dataset):
    """Fixed-length windows cut from sequences whose forward kinematics was done once at load time."""

    def __init__(self, sequences: dict[Key, np.ndarray], index: list[tuple[Key, int]], input_frames: int,
                 output_frames: int, joints: np.ndarray, keep_full: bool, reverse_prob: float = 0.0,
                 with_2d: bool = False, seed: int = 0) -> None:
        self.sequences, self.index = sequences, index
        self.input_frames, self.length = input_frames, input_frames + output_frames
        self.joints, self.keep_full = joints, keep_full
        self.reverse_prob, self.with_2d, self.seed = reverse_prob, with_2d, seed

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        key, start = self.index[i]
        window = self.sequences[key][start:start + self.length]
        if self.reverse_prob and np.random.random() < self.reverse_prob:
            window = window[::-1]
        window = torch.from_numpy(np.ascontiguousarray(window))
        item = {"history": window[:self.input_frames, self.joints], "future": window[self.input_frames:, self.joints],
                "subject": str(key[0]), "action": str(key[1]), "start": start}
        if self.keep_full:
            item["future_full"] = window[self.input_frames:]
        if self.with_2d:
            from pose_forecasting.data.observations import observe_2d

            # Training draws a fresh camera and noise each time; evaluation is seeded by the index.
            generator = None if self.reverse_prob else torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            item.update(observe_2d(item["history"], generator))
        return item


class PoseDataModule(LightningDataModule):
    """Windows of ``input_frames`` observed + ``output_frames`` future frames at 25 fps.

    Subclasses implement :meth:`load` (split -> sequences) and say which joints the models see.
    """

    joints: np.ndarray = JOINTS_USED
    keep_full = False  # the 32-joint ground truth for the Human3.6M evaluation protocol
    val_stride = 10  # validation windows are taken every val_stride frames

    def __init__(self, root: str, protocol: str = "256", input_frames: int = 50, output_frames: int = 25,
                 train_stride: int = 2, reverse_prob: float = 0.5, batch_size: int = 256, num_workers: int = 0,
                 with_2d: bool = False) -> None:
        super().__init__()
        if protocol not in ("256", "all"):
            raise ValueError(f"data.init_args.protocol must be '256' or 'all', got {protocol!r}")
        self.root, self.protocol = root, protocol
        self.input_frames, self.output_frames = input_frames, output_frames
        self.train_stride, self.reverse_prob = train_stride, reverse_prob
        self.batch_size, self.num_workers, self.with_2d = batch_size, num_workers, with_2d
        self.datasets: dict[str, PoseWindows] = {}

    def check(self) -> None:
        """Checks the on-disk layout of every split without reading the files, so that a missing dataset,
        subject or file stops the command in ``setup``, before training, not at the test after ``fit``.
        Raises :class:`shared_utils.datasets.DatasetFormatError` naming the path."""
        raise NotImplementedError

    def load(self, split: str) -> dict[Key, np.ndarray]:
        raise NotImplementedError

    def test_windows(self, sequences: dict[Key, np.ndarray]) -> list[tuple[Key, int]]:
        return h36m.windows(sequences, self.input_frames, self.output_frames, self.protocol)

    def _dataset(self, split: str) -> PoseWindows:
        if split not in self.datasets:
            sequences = self.load(split)
            if split == "test":
                index = self.test_windows(sequences)
            else:
                stride = self.train_stride if split == "train" else self.val_stride
                index = h36m.windows(sequences, self.input_frames, self.output_frames, "all", stride)
            self.datasets[split] = PoseWindows(
                sequences, index, self.input_frames, self.output_frames, self.joints, self.keep_full,
                reverse_prob=self.reverse_prob if split == "train" else 0.0, with_2d=self.with_2d,
                seed={"train": 0, "val": 1, "test": 2}[split])
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        self.check()
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["test"]}[stage]
        for split in splits:
            self._dataset(split)

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(self._dataset(split), batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, drop_last=shuffle, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")


class H36M(PoseDataModule):
    """Human3.6M expmap release: train S1,6,7,8,9 / val S11 / test S5, 15 actions, 22 joints predicted.

    ``root`` is the folder holding ``S1/ ... S11/`` (e.g. ``/data/h3.6m/dataset``).
    """

    keep_full = True

    def __init__(self, root: str, actions: list[str] | None = None, **kwargs) -> None:
        super().__init__(root, **kwargs)
        unknown = sorted(set(actions or []) - set(h36m.ACTIONS))
        if unknown:
            raise ValueError(f"data.init_args.actions: unknown {unknown}; Human3.6M actions are {h36m.ACTIONS}")
        self.actions = tuple(actions) if actions else h36m.ACTIONS

    def dataset_root(self) -> Path:
        return Path(self.root)

    def check(self) -> None:
        for subjects in h36m.SUBJECTS.values():
            h36m.expmap_files(self.dataset_root(), subjects, self.actions)

    def load(self, split: str) -> dict[Key, np.ndarray]:
        return h36m.load_h36m(self.dataset_root(), h36m.SUBJECTS[split], self.actions)


class Synthetic(H36M):
    """The synthetic proxy: generated once into ``cache_dir/<hash of the generator's arguments>/`` in the
    Human3.6M expmap format, then read by the same loader, forward kinematics and protocols as the real data
    (:mod:`pose_forecasting.data.synthetic`). ``lines``: 50 Hz lines per file (1000 = 20 s)."""

    def __init__(self, cache_dir: str = ".cache/pose-forecasting", lines: int = 1000, **kwargs) -> None:
        super().__init__(root=cache_dir, **kwargs)  # the dataset itself is in a sub-folder: dataset_root()
        self.cache_dir, self.lines = cache_dir, lines

    def prepare_data(self) -> None:
        self.dataset_root()

    def dataset_root(self) -> Path:
        # Generated on first use, then found by its record (``generate_once``); also covers setup() without
        # prepare_data (notebooks).
        from pose_forecasting.data.synthetic import ensure_synthetic

        return ensure_synthetic(self.cache_dir, frames=self.lines)


class AMASS(PoseDataModule):
    """AMASS with the standard subset split (test: BioMotionLab_NTroje), 25 fps, 18 joints predicted,
    forward kinematics from a user-provided skeleton file (``p3d0``, ``parents``), all windows tested."""

    def __init__(self, root: str, skeleton: str, protocol: str = "all", **kwargs) -> None:
        if protocol != "all":
            raise ValueError("data.init_args.protocol: AMASS is evaluated on all windows ('all'); the '256' "
                             "protocol is defined for the Human3.6M action pairs only")
        super().__init__(root, protocol=protocol, **kwargs)
        from pose_forecasting.data.amass import AMASS_JOINTS_USED

        self.skeleton = skeleton
        self.joints = np.asarray(AMASS_JOINTS_USED)

    def check(self) -> None:
        from pose_forecasting.data.amass import AMASS_SPLITS, load_skeleton, sequence_files

        load_skeleton(self.skeleton)
        for split in AMASS_SPLITS:
            sequence_files(self.root, split)

    def load(self, split: str) -> dict[Key, np.ndarray]:
        """``{(subset, subject/name, 0): joints}``; sequences shorter than one window are left out, as
        HisRepItself and siMLPe do (they yield no window)."""
        from pose_forecasting.data.amass import load_amass

        sequences = {}
        for name, joints in load_amass(self.root, split, self.skeleton):
            subset, rest = name.split("/", 1)
            if len(joints) >= self.input_frames + self.output_frames:
                sequences[(subset, rest, 0)] = joints
        if not sequences:
            raise DatasetFormatError(f"{self.root}: no AMASS sequence of the {split!r} split has "
                                     f"{self.input_frames + self.output_frames} frames at 25 fps")
        return sequences


class Mocap(PoseDataModule):
    """Real motion-capture clips, Acclaim ASF/AMC (CMU Mocap) or BVH, from a folder (searched recursively):
    forward kinematics, 25 fps, the 22 Human3.6M joints (:mod:`pose_forecasting.data.mocap`).

    Split by time within every clip, so that no test window overlaps training: the first ``train_fraction``
    of each clip is for fitting, of which the last ``val_fraction`` of the clip is held out for validation
    (checkpoint choice); the rest of the clip is the test part. Windows are cut inside each part; every test
    window is scored (protocol "all"), validation windows at stride 1 (the parts are short).

    Args:
        root: folder of ``.amc`` (with their ``.asf``) and/or ``.bvh`` clips; a relative path is taken from
            the collection root (``make mocap-clips`` writes ``data/mocap/{cmu,bvh}``).
        units: metres per BVH file unit (0.01: centimetres; Acclaim files give their own units).
        fps: frame rate of the AMC clips, which the files do not record (CMU: 120).
        joint_map: overrides of the joint mapping, {Human3.6M joint name: clip point name}.
    """

    joints = np.arange(len(JOINTS_USED))  # the clips are loaded as the 22 joints already
    val_stride = 1

    def __init__(self, root: str, units: float = 0.01, fps: float = 120.0, joint_map: dict[str, str] | None = None,
                 train_fraction: float = 0.8, val_fraction: float = 0.15, protocol: str = "all", **kwargs) -> None:
        if protocol != "all":
            raise ValueError("data.init_args.protocol: mocap clips are evaluated on all windows ('all')")
        if not 0 < val_fraction < train_fraction < 1:
            raise ValueError(f"need 0 < val_fraction < train_fraction < 1, got {val_fraction}, {train_fraction}")
        super().__init__(root, protocol=protocol, **kwargs)
        self.units, self.fps, self.joint_map = units, fps, joint_map
        self.train_fraction, self.val_fraction = train_fraction, val_fraction
        self._clips: dict[str, np.ndarray] | None = None

    def dataset_root(self) -> Path:
        return anchored(self.root)

    def clip_paths(self) -> list[Path]:
        root = self.dataset_root()
        if not root.is_dir():
            raise DatasetFormatError(f"mocap root {root} not found: expected a folder of .amc (+ .asf) or .bvh "
                                     "clips (make mocap-clips writes data/mocap/cmu and data/mocap/bvh)")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".amc", ".bvh"))
        if not paths:
            raise DatasetFormatError(f"{root}: no .amc or .bvh clip; {folder_listing(root)}")
        return paths

    def check(self) -> None:
        self.clips()

    def clips(self) -> dict[str, np.ndarray]:
        """``{clip name (relative path): (T, 22, 3) metres at 25 fps}``, read once."""
        if self._clips is None:
            from pose_forecasting.data.mocap import load_clip

            root = self.dataset_root()
            self._clips = {str(p.relative_to(root)): load_clip(p, self.units, self.fps, self.joint_map)
                           for p in self.clip_paths()}
        return self._clips

    def parts(self, frames: int) -> dict[str, slice]:
        """The frames of each split in a clip of ``frames`` frames."""
        fit_end = round(frames * self.train_fraction)
        val_start = round(frames * (self.train_fraction - self.val_fraction))
        return {"train": slice(0, val_start), "val": slice(val_start, fit_end), "test": slice(fit_end, frames)}

    def load(self, split: str) -> dict[Key, np.ndarray]:
        length = self.input_frames + self.output_frames
        sequences = {}
        for name, joints in self.clips().items():
            part = joints[self.parts(len(joints))[split]]
            if len(part) >= length:  # a part shorter than a window has none
                sequences[("mocap", name, 0)] = part
        if not sequences:
            raise DatasetFormatError(f"{self.root}: no clip has a {split!r} part of {length} frames at 25 fps "
                                     f"(clip lengths: { {n: len(j) for n, j in self.clips().items()} })")
        return sequences
