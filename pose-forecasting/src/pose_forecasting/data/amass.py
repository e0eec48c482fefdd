"""AMASS as the forecasting literature uses it: HisRepItself (Mao et al., ECCV 2020, ``utils/amass3d.py``)
and siMLPe (Guo et al., WACV 2023, ``lib/datasets/amass.py``).

Layout (the SMPL+H release): ``<root>/<subset>/<subject>/<name>_poses.npz`` with ``poses`` (T x 156
axis-angle: 52 SMPL-H joints x 3), ``trans``, ``mocap_framerate`` and ``betas``. Every ``*.npz`` of a
subject folder is a sequence except AMASS's per-subject body-shape file ``shape.npz`` (``betas``,
``gender``, no ``poses``), which both references pass over (siMLPe globs ``*poses.npz``, HisRepItself
skips files without ``poses``); any other file without ``poses`` is an error here.

Preprocessing, as both references do it:

- keep every ``int(mocap_framerate // 25)``-th frame. This is *not* exactly 25 fps for every subset
  (120 fps -> every 4th frame, i.e. 30 fps), but it is the sampling behind every published AMASS number;
- zero the global rotation (joint 0), ignore ``trans`` and ``betas``: all subjects share one mean
  skeleton, the ``smpl_skeleton.npz`` of HisRepItself/siMLPe (``p3d0`` ``(1, 52, 3)`` root-relative rest
  joint positions in metres, ``parents`` ``(52,)`` the SMPL-H kinematic tree);
- forward kinematics of all 52 joints (HisRepItself's ``ang2joint``); the models see the 18 joints
  4..21 (``AMASS_JOINTS_USED``: knees, spine, ankles, feet, neck, collars, head, shoulders, elbows,
  wrists), i.e. HisRepItself's ``joint_used = np.arange(4, 22)`` and siMLPe's ``[:, 4:22]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from pose_forecasting.data.skeleton import expmap_to_rotmat, forward_kinematics
from shared_utils.datasets import DatasetFormatError, folder_listing

# HisRepItself's ``amass_splits`` (train, val, test); siMLPe's data/amass_{train,test}.txt are the same
# train and test lists (siMLPe has no validation split).
AMASS_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("CMU", "MPI_Limits", "TotalCapture", "Eyes_Japan_Dataset", "KIT", "EKUT", "TCD_handMocap", "ACCAD"),
    "val": ("HumanEva", "MPI_HDM05", "SFU", "MPI_mosh"),
    "test": ("BioMotionLab_NTroje",),
}
NUM_JOINTS = 52  # SMPL-H: 22 body joints + 2 x 15 finger joints
AMASS_JOINTS_USED = np.arange(4, 22)
TARGET_FPS = 25
SHAPE_FILE = "shape.npz"


class SMPLSkeleton(NamedTuple):
    """The mean SMPL-H skeleton: rest joint positions ``p3d0`` ``(52, 3)`` (metres, root at the origin)
    and the kinematic tree ``parents`` ``(52,)`` (``parents[0] = -1``)."""

    p3d0: np.ndarray
    parents: np.ndarray


def load_skeleton(path: str | Path) -> SMPLSkeleton:
    """Reads ``smpl_skeleton.npz`` (``p3d0`` ``(1, 52, 3)``, ``parents`` ``(52,)``), as HisRepItself saves it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: skeleton file not found (expected the smpl_skeleton.npz of "
                                 "HisRepItself/siMLPe with 'p3d0' (1, 52, 3) and 'parents' (52,))")
    with np.load(path) as f:
        missing = [k for k in ("p3d0", "parents") if k not in f]
        if missing:
            raise DatasetFormatError(f"{path}: missing {missing} (expected 'p3d0' (1, 52, 3) and 'parents' (52,); "
                                     f"found {sorted(f.keys())})")
        p3d0, parents = f["p3d0"], f["parents"]
    if p3d0.size != NUM_JOINTS * 3:
        raise DatasetFormatError(f"{path}: 'p3d0' has shape {p3d0.shape}, expected (1, {NUM_JOINTS}, 3)")
    if parents.shape != (NUM_JOINTS,):
        raise DatasetFormatError(f"{path}: 'parents' has shape {parents.shape}, expected ({NUM_JOINTS},)")
    # parents[0] is -1 or its uint32 wrap-around (the SMPL kintree); FK needs every other parent earlier.
    parents = parents.astype(np.int64)
    parents[0] = -1
    bad = [i for i in range(1, NUM_JOINTS) if not 0 <= parents[i] < i]
    if bad:
        raise DatasetFormatError(f"{path}: 'parents' must list each joint after its parent (0 <= parents[i] < i); "
                                 f"joints {bad} break this")
    return SMPLSkeleton(p3d0.reshape(NUM_JOINTS, 3).astype(np.float32), parents)


def load_amass_sequence(path: str | Path, skeleton: SMPLSkeleton) -> np.ndarray:
    """One AMASS ``.npz`` -> ``(T25, 52, 3)`` float32 joint positions in metres (see the module docstring).

    ``ang2joint`` composes 4x4 transforms ``G_i = G_parent [R_i | p3d0_i - p3d0_parent]`` (column vectors);
    :func:`skeleton.forward_kinematics` composes row vectors, so it gets the transposed rotations and the
    same bone offsets, which gives the same positions. Vectorised over frames.
    """
    path = Path(path)
    with np.load(path) as f:
        missing = [k for k in ("poses", "mocap_framerate") if k not in f]
        if missing:
            raise DatasetFormatError(f"{path}: missing {missing} (expected an AMASS SMPL+H sequence with 'poses' "
                                     f"(T, {NUM_JOINTS * 3}) and 'mocap_framerate'; found {sorted(f.keys())})")
        poses, framerate = f["poses"], float(f["mocap_framerate"])
    if poses.ndim != 2 or poses.shape[1] != NUM_JOINTS * 3:
        raise DatasetFormatError(f"{path}: 'poses' has shape {poses.shape}, expected (T, {NUM_JOINTS * 3}) "
                                 f"(SMPL-H: {NUM_JOINTS} joints x 3 axis-angle)")
    sample_rate = int(framerate // TARGET_FPS)
    if sample_rate < 1:
        raise DatasetFormatError(f"{path}: 'mocap_framerate' is {framerate}, expected >= {TARGET_FPS} fps")
    poses = torch.from_numpy(poses[::sample_rate]).float().reshape(-1, NUM_JOINTS, 3)
    poses[:, 0] = 0  # remove the global rotation
    offsets = skeleton.p3d0 - skeleton.p3d0[np.maximum(skeleton.parents, 0)]
    offsets[0] = skeleton.p3d0[0]
    rotmats = expmap_to_rotmat(poses).transpose(-1, -2)
    return forward_kinematics(rotmats, torch.from_numpy(offsets), skeleton.parents).numpy()


def sequence_files(root: str | Path, split: str) -> list[Path]:
    """The sequence files of ``split`` (``AMASS_SPLITS``), sorted, after checking that every subset of the split
    is present under ``root``: the layout check (no file is read) the datamodule runs before training."""
    if split not in AMASS_SPLITS:
        raise ValueError(f"split must be one of {sorted(AMASS_SPLITS)}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: AMASS root not found (expected <root>/<subset>/<subject>/*_poses.npz "
                                 f"with subsets {list(AMASS_SPLITS[split])} for split {split!r})")
    missing = [s for s in AMASS_SPLITS[split] if not (root / s).is_dir()]
    if missing:
        raise DatasetFormatError(f"{root}: subset folders {missing} of split {split!r} are missing (expected "
                                 f"{list(AMASS_SPLITS[split])} from the SMPL+H AMASS release; {folder_listing(root)})")
    files = sorted(path for subset in AMASS_SPLITS[split] for subject in (root / subset).iterdir()
                   if subject.is_dir() for path in subject.glob("*.npz") if path.name != SHAPE_FILE)
    if not files:
        raise DatasetFormatError(f"{root}: no sequence in {list(AMASS_SPLITS[split])} (expected "
                                 "<subset>/<subject>/*_poses.npz)")
    return files


def load_amass(root: str | Path, split: str, skeleton_path: str | Path) -> list[tuple[str, np.ndarray]]:
    """``[("<subset>/<subject>/<file stem>", (T25, 52, 3) metres)]`` for the subsets of ``split``
    (``AMASS_SPLITS``), sorted by name. Every subset of the split must be present under ``root``."""
    files = sequence_files(root, split)
    skeleton = load_skeleton(skeleton_path)
    return [(path.relative_to(root).with_suffix("").as_posix(), load_amass_sequence(path, skeleton))
            for path in files]
