"""Human3.6M in the exponential-map release that the forecasting literature uses.

Layout: ``<root>/S{1,5,6,7,8,9,11}/{action}_{1,2}.txt``, one 50 Hz frame per line, 99 comma-separated
floats (root translation + 32 joint exponential maps). As in HisRepItself (Mao et al., ECCV 2020) and
siMLPe (Guo et al., WACV 2023): keep every second frame (25 fps), zero the global translation and
rotation, forward kinematics on the 32-joint skeleton (mm), then metres for the models.

The two test protocols:

- ``"256"``: per action, 128 windows from each of the two sub-sequences, start frames drawn with
  ``numpy.random.RandomState(1234567890)`` re-seeded per action (HisRepItself's ``find_indices_256``,
  used by siMLPe's ``H36MEval``): 256 x 15 = 3840 test windows on S5;
- ``"all"``: every window at stride 1 (the protocol siMLPe argues is fairer, since 256 seeded windows
  are a small sample).

A synthetic dataset may add ``S{n}/skeleton_offsets.txt`` (32 lines ``x,y,z`` in mm: a per-subject
skeleton); the real release has none and uses :data:`skeleton.OFFSETS_MM`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pose_forecasting.data.skeleton import NUM_JOINTS, OFFSETS_MM, expmap_to_xyz
from shared_utils.datasets import DatasetFormatError, folder_listing

ACTIONS = ("walking", "eating", "smoking", "discussion", "directions", "greeting", "phoning", "posing",
           "purchases", "sitting", "sittingdown", "takingphoto", "waiting", "walkingdog", "walkingtogether")
SUBJECTS = {"train": [1, 6, 7, 8, 9], "val": [11], "test": [5]}
COLUMNS = 3 + 3 * NUM_JOINTS  # 99
SAMPLE_RATE = 2  # 50 Hz -> 25 fps
PROTOCOL_SEED = 1234567890


def read_expmap(path: str | Path) -> np.ndarray:
    """``(N, 99)`` float64 frames of one expmap file; a wrong line names the file, line and what was found."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: file not found (expected a Human3.6M expmap .txt, 99 values per line)")
    try:  # numpy's C parser; the line-by-line pass below only runs to explain a malformed file
        frames = np.loadtxt(path, delimiter=",", ndmin=2)
        if frames.shape[1] == COLUMNS and len(frames):
            return frames
    except ValueError:
        pass
    rows = []
    with path.open() as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            fields = line.split(",")
            if len(fields) != COLUMNS:
                raise DatasetFormatError(f"{path}:{number}: expected {COLUMNS} comma-separated values "
                                         f"(root translation + 32 joint expmaps), found {len(fields)}")
            try:
                rows.append([float(x) for x in fields])
            except ValueError as e:
                raise DatasetFormatError(f"{path}:{number}: not a number ({e})") from None
    if not rows:
        raise DatasetFormatError(f"{path}: empty file (expected one 99-value frame per line)")
    return np.asarray(rows)


def read_offsets(subject_dir: Path) -> np.ndarray:
    """The subject's bone offsets (mm): ``skeleton_offsets.txt`` when present, else the standard ones."""
    path = subject_dir / "skeleton_offsets.txt"
    if not path.is_file():
        return OFFSETS_MM
    offsets = np.loadtxt(path, delimiter=",", ndmin=2)
    if offsets.shape != (NUM_JOINTS, 3):
        raise DatasetFormatError(f"{path}: expected {NUM_JOINTS} lines of 'x,y,z' (mm), found shape {offsets.shape}")
    return offsets


def load_sequence(path: str | Path, offsets: np.ndarray = OFFSETS_MM) -> np.ndarray:
    """One expmap file -> ``(T, 32, 3)`` float32 joints in metres at 25 fps (every second line).

    FK runs in float32 on the kept frames only: the same numbers as siMLPe's, which runs FK on all
    frames and then subsamples.
    """
    expmap = read_expmap(path)[::SAMPLE_RATE]
    xyz = expmap_to_xyz(torch.from_numpy(expmap).float(), offsets)
    return (xyz / 1000.0).numpy()


def expmap_files(root: str | Path, subjects: list[int], actions: tuple[str, ...] = ACTIONS
                 ) -> dict[tuple[int, str, int], Path]:
    """``{(subject, action, subaction): path}``, after checking that every file exists: a cheap check of the
    layout (no file is read) that the datamodule runs for every split before training starts."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset root not found (expected S1/, S5/, ... with "
                                 f"{{action}}_{{1,2}}.txt expmap files; {folder_listing(root)})")
    files = {}
    for subject in subjects:
        folder = root / f"S{subject}"
        if not folder.is_dir():
            raise DatasetFormatError(f"{folder}: subject folder missing (expected S{subject}/ under {root}; "
                                     f"{folder_listing(root)})")
        for action in actions:
            for sub in (1, 2):
                path = folder / f"{action}_{sub}.txt"
                if not path.is_file():
                    raise DatasetFormatError(f"{path}: file not found (expected a Human3.6M expmap .txt, 99 "
                                             f"values per line; {folder_listing(folder)})")
                files[(subject, action, sub)] = path
    return files


def load_h36m(root: str | Path, subjects: list[int], actions: tuple[str, ...] = ACTIONS
              ) -> dict[tuple[int, str, int], np.ndarray]:
    """``{(subject, action, subaction): (T, 32, 3) metres}`` with forward kinematics done once per file."""
    files = expmap_files(root, subjects, actions)
    offsets = {subject: read_offsets(Path(root) / f"S{subject}") for subject in subjects}
    return {key: load_sequence(path, offsets[key[0]]) for key, path in files.items()}


def find_indices_256(frames1: int, frames2: int, seq_len: int, input_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start frames of the 256-windows protocol for one action's two sub-sequences.

    HisRepItself's ``find_indices_256`` (utils/data_utils.py) as siMLPe calls it: a fresh
    ``RandomState(1234567890)`` per action, 128 draws alternating between the sub-sequences,
    ``randint(16, T - 150)``, window starting ``50 - input_n`` frames after the draw.
    Returns the ``(128, seq_len)`` frame indices of each sub-sequence.
    """
    rng = np.random.RandomState(PROTOCOL_SEED)
    idx1, idx2 = [], []
    for _ in range(128):
        r1 = rng.randint(16, frames1 - 150)
        r2 = rng.randint(16, frames2 - 150)
        idx1.append(np.arange(r1 + 50 - input_n, r1 + 50 - input_n + seq_len))
        idx2.append(np.arange(r2 + 50 - input_n, r2 + 50 - input_n + seq_len))
    return np.stack(idx1), np.stack(idx2)


def windows(sequences: dict[tuple[int, str, int], np.ndarray], input_frames: int, output_frames: int,
            protocol: str, stride: int = 1) -> list[tuple[tuple[int, str, int], int]]:
    """``[(sequence key, start frame)]`` of the windows of a split.

    ``protocol="256"``: the seeded test protocol (needs both sub-sequences of each action);
    ``"all"``: every window at ``stride`` (1 for the all-windows test protocol; training uses it too).
    """
    seq_len = input_frames + output_frames
    for key, seq in sequences.items():
        minimum = 167 if protocol == "256" else seq_len  # randint(16, T - 150) needs T - 150 > 16
        if len(seq) < minimum:
            subject, action, sub = key
            raise DatasetFormatError(f"S{subject}/{action}_{sub}.txt: {len(seq)} frames at 25 fps, too short for "
                                     f"protocol {protocol!r} with {input_frames}+{output_frames}-frame windows "
                                     f"(needs >= {minimum})")
    out: list[tuple[tuple[int, str, int], int]] = []
    if protocol == "256":
        pairs = sorted({(s, a) for s, a, _ in sequences})
        for subject, action in pairs:
            k1, k2 = (subject, action, 1), (subject, action, 2)
            i1, i2 = find_indices_256(len(sequences[k1]), len(sequences[k2]), seq_len, input_frames)
            out += [(k1, int(i)) for i in i1[:, 0]] + [(k2, int(i)) for i in i2[:, 0]]
    elif protocol == "all":
        for key, seq in sequences.items():
            out += [(key, start) for start in range(0, len(seq) - seq_len + 1, stride)]
    else:
        raise ValueError(f"protocol must be '256' or 'all', got {protocol!r}")
    return out
