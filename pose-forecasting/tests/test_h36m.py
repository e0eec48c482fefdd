"""Human3.6M expmap loader, forward kinematics and the two test protocols."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch

from conftest import FIXTURES, write_expmap
from pose_forecasting.data import h36m
from pose_forecasting.data.skeleton import (
    JOINTS_DUPLICATE,
    JOINTS_EQUAL,
    JOINTS_USED,
    OFFSETS_MM,
    PARENTS,
    expmap_to_rotmat,
    expmap_to_xyz,
)
from pose_forecasting.metrics import HORIZONS_MS, horizon_frame, mpjpe_h36m
from shared_utils.datasets import DatasetFormatError


def test_rest_pose_is_the_sum_of_offsets():
    xyz = expmap_to_xyz(torch.zeros(1, 99, dtype=torch.float64))[0].numpy()
    for j in range(1, 32):
        np.testing.assert_allclose(xyz[j], xyz[PARENTS[j]] + OFFSETS_MM[j], atol=1e-9)
    np.testing.assert_allclose(xyz[2], [-132.948591, -442.894612, 0.0], atol=1e-9)  # right knee


def test_hand_built_rotation_moves_children_and_global_motion_is_zeroed():
    frame = np.zeros(99)
    frame[3 + 3 * 1: 3 + 3 * 1 + 3] = [0, 0, np.pi / 2]  # right hip (joint 1): 90 degrees about z
    frame[:6] = [100.0, 200.0, 300.0, 0.3, -0.2, 0.1]  # translation + global rotation: zeroed
    xyz = expmap_to_xyz(torch.tensor(frame[None]))[0].numpy()
    # Row-vector convention: knee = offset_knee @ Rz(90) + hip = (0, -442.89, 0) @ Rz + (-132.95, 0, 0).
    np.testing.assert_allclose(xyz[1], [-132.948591, 0, 0], atol=1e-6)
    np.testing.assert_allclose(xyz[2], [-132.948591 - 442.894612, 0, 0], atol=1e-3)  # the 1e-7 guard of Rodrigues
    np.testing.assert_allclose(xyz[3], [-132.948591 - 442.894612 - 454.206447, 0, 0], atol=1e-3)
    np.testing.assert_allclose(xyz[0], 0, atol=1e-9)


def test_rodrigues_is_a_rotation():
    R = expmap_to_rotmat(torch.randn(100, 3, dtype=torch.float64))
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3),
                               atol=1e-6, rtol=0)  # the official 1e-7 guard on theta
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(100, dtype=torch.float64), atol=1e-6, rtol=0)


def _tiny_h36m(root, subjects, frames=400, actions=h36m.ACTIONS):
    rng = np.random.default_rng(0)
    for s in subjects:
        for a in actions:
            for sub in (1, 2):
                angles = np.cumsum(rng.normal(0, 0.01, (frames, 99)), axis=0)
                write_expmap(root / f"S{s}" / f"{a}_{sub}.txt", angles)
    return root


def test_loader_keeps_every_second_frame_in_metres(tmp_path):
    root = _tiny_h36m(tmp_path, [5], frames=401, actions=("walking",))
    seqs = h36m.load_h36m(root, [5], ("walking",))
    seq = seqs[(5, "walking", 1)]
    assert seq.shape == (201, 32, 3) and seq.dtype == np.float32
    raw = h36m.read_expmap(root / "S5" / "walking_1.txt")
    np.testing.assert_allclose(seq[3], expmap_to_xyz(torch.tensor(raw[6:7]).float())[0] / 1000, atol=1e-6)


def test_protocol_sample_counts(tmp_path):
    root = _tiny_h36m(tmp_path, [5], frames=400)
    seqs = h36m.load_h36m(root, [5])
    assert len(h36m.windows(seqs, 50, 25, "256")) == 256 * 15
    assert len(h36m.windows(seqs, 50, 25, "all")) == 30 * (200 - 75 + 1)
    assert len(h36m.windows(seqs, 50, 25, "all", stride=10)) == 30 * len(range(0, 126, 10))


def test_256_protocol_start_frames_follow_the_seeded_draws():
    i1, i2 = h36m.find_indices_256(1000, 900, 75, 50)
    rng = np.random.RandomState(1234567890)
    first = rng.randint(16, 850), rng.randint(16, 750)
    assert (i1[0, 0], i2[0, 0]) == first and i1.shape == (128, 75)
    np.testing.assert_array_equal(i1[5], np.arange(i1[5, 0], i1[5, 0] + 75))


def test_zero_velocity_matches_simlpe_evaluation_on_the_reference_set(tmp_path):
    """Loader + FK + 256 protocol + 32-joint MPJPE reproduce siMLPe's own numbers (fixture README)."""
    with tarfile.open(FIXTURES / "h36m_S5_synthetic.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    seqs = h36m.load_h36m(tmp_path / "h36m", [5])
    index = h36m.windows(seqs, 50, 25, "256")
    assert len(index) == 3840
    win = torch.from_numpy(np.stack([seqs[k][s:s + 75] for k, s in index]))
    zero_velocity = win[:, 49:50, JOINTS_USED].expand(-1, 25, -1, -1)
    per_frame = mpjpe_h36m(zero_velocity, win[:, 50:]).mean(0).numpy()
    reference = [19.678, 38.572, 71.452, 84.486, 102.411, 109.002, 106.305, 101.495]
    ours = [per_frame[horizon_frame(ms)] for ms in HORIZONS_MS]
    np.testing.assert_allclose(ours, reference, rtol=0.01)
    assert JOINTS_DUPLICATE.tolist() == [16, 20, 23, 24, 28, 31] and JOINTS_EQUAL.tolist() == [13, 19, 22, 13, 27, 30]


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = write_expmap(tmp_path / "S5" / "walking_1.txt", np.zeros((5, 99)))
    lines = path.read_text().splitlines()
    lines[3] = ",".join(["0"] * 98)
    path.write_text("\n".join(lines))
    with pytest.raises(DatasetFormatError, match=r"walking_1.txt:4: expected 99 .* found 98"):
        h36m.read_expmap(path)


def test_too_short_sequence_and_missing_subject(tmp_path):
    root = _tiny_h36m(tmp_path, [5], frames=300, actions=("walking",))
    seqs = h36m.load_h36m(root, [5], ("walking",))
    with pytest.raises(DatasetFormatError, match=r"S5/walking_1.txt: 150 frames .* too short .*256"):
        h36m.windows(seqs, 50, 25, "256")
    with pytest.raises(DatasetFormatError, match=r"S11: subject folder missing .*found in .*: S5/"):
        h36m.load_h36m(root, [11], ("walking",))
    with pytest.raises(DatasetFormatError, match=r"eating_1.txt: file not found"):
        h36m.load_h36m(root, [5], ("eating",))


def test_setup_checks_every_split_before_training(tmp_path):
    """`fit` stops in setup when the test subject is missing, not after training (issue 14, 2c)."""
    from pose_forecasting.data.datamodule import H36M

    root = _tiny_h36m(tmp_path, [1, 6, 7, 8, 9, 11], frames=300, actions=("walking",))
    dm = H36M(str(root), actions=["walking"])
    with pytest.raises(DatasetFormatError, match=r"S5: subject folder missing \(expected S5/ .*found in .*: S1/"):
        dm.setup("fit")
    assert dm.datasets == {}  # nothing loaded
    with pytest.raises(DatasetFormatError, match=r"nowhere: dataset root not found .*found nothing"):
        H36M(str(tmp_path / "nowhere")).setup("test")
