"""The AMASS loader against a tiny SMPL+H fixture in the release layout, with hand-computed kinematics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pose_forecasting.data.amass import AMASS_JOINTS_USED, load_amass, load_amass_sequence, load_skeleton
from shared_utils.datasets import DatasetFormatError

# The SMPL-H kinematic tree: 22 body joints, then 5 three-joint fingers per hand (joints 22-36 on the left
# wrist 20, 37-51 on the right wrist 21).
PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
                   + [p for wrist, first in ((20, 22), (21, 37)) for b in range(first, first + 15, 3)
                      for p in (wrist, b, b + 1)])
RZ90 = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
L_HIP, L_KNEE, R_KNEE, L_ANKLE, L_FOOT = 1, 4, 5, 7, 10


def rest_pose() -> np.ndarray:
    """Distinct, root-relative rest positions; the left leg is straight down, 0.4 m per bone."""
    p3d0 = np.random.default_rng(0).normal(scale=0.2, size=(52, 3))
    p3d0[0] = 0
    p3d0[L_HIP] = [0.1, -0.1, 0.0]
    p3d0[L_KNEE] = [0.1, -0.5, 0.0]
    p3d0[L_ANKLE] = [0.1, -0.9, 0.0]
    return p3d0


def write_skeleton(path: Path) -> Path:
    # HisRepItself saves the SMPL kintree's parents, whose root entry is the uint32 -1.
    np.savez(path, p3d0=rest_pose()[None].astype(np.float32), parents=PARENTS.astype(np.uint32))
    return path


def write_sequence(path: Path, frames: np.ndarray, fps: float = 120.0, **extra) -> Path:
    """An AMASS SMPL+H sequence file; ``extra`` overrides fields, ``None`` leaves one out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"poses": frames, "trans": np.ones((len(frames), 3)), "mocap_framerate": np.array(fps),
              "betas": np.zeros(16), **extra}
    np.savez(path, **{k: v for k, v in fields.items() if v is not None})
    return path


def rot(axis: str, degrees: float) -> np.ndarray:
    return np.radians(degrees) * np.eye(3)["xyz".index(axis)]


@pytest.fixture
def skeleton(tmp_path):
    return load_skeleton(write_skeleton(tmp_path / "smpl_skeleton.npz"))


def test_resampling_keeps_every_int_fps_over_25th_frame(tmp_path, skeleton):
    # 120 fps: sample_rate = int(120 // 25) = 4 -> frames 0, 4, ..., 116. Frame k's knee angle encodes k.
    poses = np.zeros((120, 156))
    poses[:, L_KNEE * 3 + 2] = np.radians(np.arange(120))
    out = load_amass_sequence(write_sequence(tmp_path / "s_poses.npz", poses), skeleton)
    assert out.shape == (30, 52, 3) and out.dtype == np.float32
    shin = out[:, L_ANKLE] - out[:, L_KNEE]
    angle = np.degrees(np.arctan2(shin[:, 0], -shin[:, 1]))  # rotation of (0, -0.4, 0) about z
    np.testing.assert_allclose(angle, np.arange(0, 120, 4), atol=1e-3)


def test_zero_rotation_gives_rest_pose_and_global_rotation_is_removed(tmp_path, skeleton):
    poses = np.zeros((50, 156))
    poses[:, :3] = rot("y", 70)  # the global rotation, zeroed by the loader; ``trans`` is ignored too
    out = load_amass_sequence(write_sequence(tmp_path / "s_poses.npz", poses, fps=50), skeleton)
    assert out.shape == (25, 52, 3)
    np.testing.assert_allclose(out, np.broadcast_to(rest_pose(), out.shape), atol=1e-6)


def test_one_joint_rotation_moves_its_descendants_only(tmp_path, skeleton):
    poses = np.zeros((25, 156))
    poses[:, L_KNEE * 3:L_KNEE * 3 + 3] = rot("z", 90)
    out = load_amass_sequence(write_sequence(tmp_path / "s_poses.npz", poses, fps=25), skeleton)[0]
    rest = rest_pose()
    # Rz(90) (0, -0.4, 0) = (0.4, 0, 0): the ankle swings to +x of the knee (column-vector convention).
    np.testing.assert_allclose(out[L_ANKLE], rest[L_KNEE] + [0.4, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out[L_FOOT] - out[L_ANKLE], RZ90 @ (rest[L_FOOT] - rest[L_ANKLE]), atol=1e-6)
    untouched = [j for j in range(52) if j not in (L_ANKLE, L_FOOT)]
    np.testing.assert_allclose(out[untouched], rest[untouched], atol=1e-6)


def test_rotations_compose_parent_first(tmp_path, skeleton):
    # Global rotation of the knee = R_hip @ R_knee: the shin (0, -0.4, 0) -> Rx(90) Rz(90) -> (0.4, 0, 0);
    # the reverse order would give (0, 0, -0.4).
    poses = np.zeros((25, 156))
    poses[:, L_HIP * 3:L_HIP * 3 + 3] = rot("x", 90)
    poses[:, L_KNEE * 3:L_KNEE * 3 + 3] = rot("z", 90)
    out = load_amass_sequence(write_sequence(tmp_path / "s_poses.npz", poses, fps=25), skeleton)[0]
    rest = rest_pose()
    np.testing.assert_allclose(out[L_KNEE], rest[L_HIP] + [0, 0, -0.4], atol=1e-6)
    np.testing.assert_allclose(out[L_ANKLE], out[L_KNEE] + [0.4, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out[R_KNEE], rest[R_KNEE], atol=1e-6)


@pytest.fixture
def amass_root(tmp_path):
    root = tmp_path / "amass"
    still = np.zeros((120, 156))
    write_sequence(root / "BioMotionLab_NTroje" / "rub001" / "0001_walk_poses.npz", still)
    write_sequence(root / "BioMotionLab_NTroje" / "rub002" / "0002_jog_poses.npz", still[:60])
    np.savez(root / "BioMotionLab_NTroje" / "rub001" / "shape.npz", betas=np.zeros(16), gender="female")
    write_sequence(root / "HumanEva" / "S1" / "Walking_1_poses.npz", still, fps=60)
    return root


def test_split_selects_its_subsets(amass_root, tmp_path):
    skeleton_path = write_skeleton(tmp_path / "smpl_skeleton.npz")
    test = load_amass(amass_root, "test", skeleton_path)
    assert [name for name, _ in test] == ["BioMotionLab_NTroje/rub001/0001_walk_poses",
                                          "BioMotionLab_NTroje/rub002/0002_jog_poses"]
    assert [seq.shape for _, seq in test] == [(30, 52, 3), (15, 52, 3)]
    assert len(AMASS_JOINTS_USED) == 18 and test[0][1][:, AMASS_JOINTS_USED].shape == (30, 18, 3)
    with pytest.raises(DatasetFormatError, match=r"subset folders \['MPI_HDM05', 'SFU', 'MPI_mosh'\] of split 'val'"):
        load_amass(amass_root, "val", skeleton_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_amass(amass_root, "validation", skeleton_path)


def test_missing_skeleton_file(amass_root, tmp_path):
    with pytest.raises(DatasetFormatError, match=r"nope\.npz: skeleton file not found .*'p3d0' \(1, 52, 3\)"):
        load_amass(amass_root, "test", tmp_path / "nope.npz")
    np.savez(tmp_path / "bad.npz", p3d0=rest_pose()[None])
    with pytest.raises(ValueError, match=r"bad\.npz: missing \['parents'\]"):
        load_skeleton(tmp_path / "bad.npz")


@pytest.mark.parametrize(("fields", "message"), [
    ({"poses": None}, r"bad_poses\.npz: missing \['poses'\].*found \['betas', 'mocap_framerate', 'trans'\]"),
    ({"mocap_framerate": None}, r"bad_poses\.npz: missing \['mocap_framerate'\]"),
    ({"poses": np.zeros((10, 165))}, r"bad_poses\.npz: 'poses' has shape \(10, 165\), expected \(T, 156\)"),
    ({"mocap_framerate": np.array(10.0)}, r"bad_poses\.npz: 'mocap_framerate' is 10\.0, expected >= 25"),
])
def test_malformed_sequence_names_file_and_field(amass_root, tmp_path, fields, message):
    write_sequence(amass_root / "BioMotionLab_NTroje" / "rub001" / "bad_poses.npz", np.zeros((10, 156)), **fields)
    with pytest.raises(ValueError, match=message):
        load_amass(amass_root, "test", write_skeleton(tmp_path / "smpl_skeleton.npz"))
