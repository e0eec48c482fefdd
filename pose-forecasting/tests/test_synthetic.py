"""The synthetic generator writes real-format Human3.6M files with plausible, non-trivial motion."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pose_forecasting.data import h36m, synthetic
from pose_forecasting.data.skeleton import JOINTS_USED, OFFSETS_MM, PARENTS, expmap_to_xyz
from shared_utils.cache import MARKER

FRAMES = inspect.signature(synthetic.generate).parameters["frames"].default  # the 256-window protocol needs it


def _xyz(path: Path) -> np.ndarray:
    """``(T, 32, 3)`` mm at 50 Hz, read independently of the loader: np.loadtxt + forward kinematics."""
    offsets = np.loadtxt(path.parent / "skeleton_offsets.txt", delimiter=",")
    return expmap_to_xyz(torch.from_numpy(np.loadtxt(path, delimiter=",")), offsets).numpy()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("synthetic"), subjects=(5, 9))


@pytest.fixture(scope="module")
def subject5(dataset: Path) -> dict[str, np.ndarray]:
    return {a: _xyz(dataset / "S5" / f"{a}_1.txt") for a in h36m.ACTIONS}


def test_every_action_has_primitives():
    assert set(synthetic.ACTION_PRIMITIVES) == set(h36m.ACTIONS)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = synthetic.generate(tmp_path / "a", subjects=(1,), frames=60, seed=3)
    b = synthetic.generate(tmp_path / "b", subjects=(1,), frames=60, seed=3)
    c = synthetic.generate(tmp_path / "c", subjects=(1,), frames=60, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*.txt"))
    assert len(files) == 2 * len(h36m.ACTIONS) + 1
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "S1/walking_1.txt").read_bytes() != (c / "S1/walking_1.txt").read_bytes()


def test_release_format(dataset):
    number = re.compile(r"-?\d+\.\d{6}")
    for subject in (5, 9):
        lines = (dataset / f"S{subject}" / "eating_2.txt").read_text().splitlines()
        assert len(lines) == FRAMES
        assert all(len(f) == 99 and all(number.fullmatch(x) for x in f) for f in (li.split(",") for li in lines))
        offsets = (dataset / f"S{subject}" / "skeleton_offsets.txt").read_text().splitlines()
        assert len(offsets) == 32 and all(len(li.split(",")) == 3 for li in offsets)
    # The loader of the real release reads it as it is, at 25 fps.
    sequence = h36m.load_h36m(dataset, [5], ("walking",))[(5, "walking", 1)]
    assert sequence.shape == (FRAMES // 2, 32, 3)


def test_formatter_matches_printf():
    rows = np.random.default_rng(0).normal(0, 3, (7, 99)) * np.logspace(-7, 5, 99)
    rows[0, :3] = [0.0, 2.5e-7, -4e-7]  # rounding to zero drops the sign, as the real files have no "-0"
    expected = "".join(",".join(f"{x:.6f}" for x in row) + "\n" for row in rows).replace("-0.000000", "0.000000")
    assert synthetic._format(rows).decode() == expected


def test_anatomy_on_every_frame(dataset, subject5):
    for subject, sequences in ((5, subject5), (9, {a: _xyz(dataset / "S9" / f"{a}_2.txt") for a in h36m.ACTIONS})):
        for action, xyz in sequences.items():
            hips_y = xyz[:, [1, 6], 1].min(1)
            assert (xyz[:, [3, 4, 8, 9], 1].max(1) < hips_y - 300).all(), (subject, action)  # feet (mm)
            assert (xyz[:, 15, 1] > hips_y + 300).all(), (subject, action)  # head top


def test_arms_hang_in_the_neutral_posture():
    style, offsets = synthetic._subject(1, seed=0)
    rots = synthetic._local_rotations(style.base[None])
    expmap = np.zeros((1, 33, 3))
    for joint, m in rots.items():
        expmap[:, joint + 1] = synthetic._log(m)
    xyz = expmap_to_xyz(torch.from_numpy(expmap.reshape(1, 99)), offsets)[0].numpy()
    for hand, hip in ((19, 6), (27, 1)):  # wrists beside the hips, at about hip height
        assert abs(xyz[hand, 1] - xyz[hip, 1]) < 150 and np.linalg.norm(xyz[hand] - xyz[hip]) < 250


def test_bone_lengths_are_the_written_offsets(dataset, subject5):
    offsets = {s: np.loadtxt(dataset / f"S{s}" / "skeleton_offsets.txt", delimiter=",") for s in (5, 9)}
    for xyz in subject5.values():
        lengths = np.linalg.norm(xyz[:, 1:] - xyz[:, PARENTS[1:]], axis=-1)
        np.testing.assert_allclose(lengths, np.broadcast_to(np.linalg.norm(offsets[5][1:], axis=1), lengths.shape),
                                   atol=1e-3)  # 1e-3 mm: the 1e-7 guard of Rodrigues
    # Per-subject skeletons: scaled copies of the Human3.6M one, different for each subject.
    assert not np.allclose(offsets[5], offsets[9], atol=1.0) and not np.allclose(offsets[5], OFFSETS_MM, atol=1.0)
    np.testing.assert_array_equal(offsets[5] == 0, OFFSETS_MM == 0)


def _zero_velocity_error(xyz: np.ndarray, frames_ahead: int) -> float:
    """Mean joint error (mm, 22 joints, 25 fps) of holding the last pose ``frames_ahead`` frames."""
    x = xyz[::2, JOINTS_USED]
    return float(np.linalg.norm(x[frames_ahead:] - x[:-frames_ahead], axis=-1).mean())


def test_motion_is_non_trivial(subject5):
    short = np.mean([_zero_velocity_error(x, 2) for x in subject5.values()])  # 80 ms
    long = np.mean([_zero_velocity_error(x, 25) for x in subject5.values()])  # 1 s
    assert long > 2.5 * short and long > 50


def test_actions_differ(subject5):
    # Per action: mean posture and mean speed of each joint (hips-relative, mm).
    features = {a: np.concatenate([x[:, JOINTS_USED].mean(0).ravel(),
                                   10 * np.linalg.norm(np.diff(x[:, JOINTS_USED], axis=0), axis=-1).mean(0)])
                for a, x in subject5.items()}
    names = sorted(features)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.linalg.norm(features[a] - features[b]) > 100, (a, b)


def test_the_256_protocol_runs_on_the_default_length(dataset):
    sequences = h36m.load_h36m(dataset, [5])
    assert len(h36m.windows(sequences, 50, 25, "256")) == 256 * len(h36m.ACTIONS)


def test_ensure_synthetic_generates_once_per_setting(tmp_path):
    root = synthetic.ensure_synthetic(tmp_path, subjects=(1,), frames=40)
    assert root.parent == tmp_path and (root / "S1" / "walking_1.txt").is_file()
    record = json.loads((root / MARKER).read_text())
    assert record == {"version": synthetic.VERSION, "subjects": [1], "frames": 40, "seed": 0}
    stamp = (root / "S1" / "walking_1.txt").stat().st_mtime_ns
    assert synthetic.ensure_synthetic(tmp_path, subjects=[1], frames=40) == root  # a YAML list: same record
    assert (root / "S1" / "walking_1.txt").stat().st_mtime_ns == stamp  # reused
    other = synthetic.ensure_synthetic(tmp_path, subjects=(1,), frames=50)  # other arguments: another folder
    assert other != root and len((other / "S1" / "walking_1.txt").read_text().splitlines()) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([root.name, other.name])  # no temporary left
