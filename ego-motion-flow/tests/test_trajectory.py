"""Trajectory metrics: hand-computed cases, and evo / the KITTI devkit on evo's KITTI 00 test trajectories.

The reference numbers are in `tests/data/` (its README says how they were made), copied from the lab's shared
fixtures (`shared/fixtures/ego-motion-flow/`) so that every clone runs the comparison.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ego_motion_flow.trajectory import ate, chain_relative, kitti_odometry_errors, rpe, umeyama_alignment

FIXTURES = Path(__file__).resolve().parent / "data"


def rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def pose(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def straight_line(n: int, step: float = 1.0) -> np.ndarray:
    """n camera_to_world poses driving forward (+z) by `step` metres per frame, no rotation."""
    return np.stack([pose(np.eye(3), [0.0, 0.0, step * k]) for k in range(n)])


def small_rotation(rng: np.random.Generator, sigma_deg: float) -> np.ndarray:
    """Rodrigues' formula for a random axis and an angle ~ N(0, sigma_deg)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    K = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    a = math.radians(rng.normal(scale=sigma_deg))
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def wiggly_trajectory(n: int, seed: int = 0) -> np.ndarray:
    """A non-degenerate 3D trajectory: about 1 m forward per frame with random turns and sideways motion."""
    rng = np.random.default_rng(seed)
    poses = [np.eye(4)]
    for _ in range(n - 1):
        step = pose(small_rotation(rng, 5.0), [0.0, 0.0, 1.0] + rng.normal(scale=0.3, size=3))
        poses.append(poses[-1] @ step)
    return np.stack(poses)


# ---------------------------------------------------------------------------------------------------------------
# Umeyama


def test_umeyama_recovers_a_known_sim3() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 30))
    R, t, s = random_rotation(rng), np.array([1.0, -2.0, 0.5]), 2.5
    y = s * R @ x + t[:, None]
    R_est, t_est, s_est = umeyama_alignment(x, y, with_scale=True)
    np.testing.assert_allclose(R_est, R, atol=1e-12)
    np.testing.assert_allclose(t_est, t, atol=1e-12)
    assert s_est == pytest.approx(s, rel=1e-12)
    # without scale: s = 1 and the rotation is still a proper rotation (no reflection)
    R_se3, _, s_se3 = umeyama_alignment(x, R @ x + t[:, None], with_scale=False)
    assert s_se3 == 1.0
    np.testing.assert_allclose(R_se3, R, atol=1e-12)


def test_umeyama_returns_a_rotation_for_mirrored_points() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 20))
    y = np.diag([1.0, 1.0, -1.0]) @ x  # a reflection: the best proper rotation is not the identity map
    R, _, _ = umeyama_alignment(x, y)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)


def test_umeyama_degenerate_points_raise() -> None:
    x = np.stack([np.arange(5.0), np.zeros(5), np.zeros(5)])  # collinear: rotation about the line is free
    with pytest.raises(ValueError, match="degenerate"):
        umeyama_alignment(x, x + 1.0)


# ---------------------------------------------------------------------------------------------------------------
# ATE


def test_ate_hand_case_without_alignment() -> None:
    gt = straight_line(3)
    est = gt.copy()
    est[0, :3, 3] = [0.0, 1.0, 0.0]  # frame 0 off by 1 m, the others exact: errors (1, 0, 0)
    stats = ate(gt, est, align=False, correct_scale=False)
    assert stats["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert stats["mean"] == pytest.approx(1 / 3)
    assert stats["median"] == 0.0
    assert stats["std"] == pytest.approx(math.sqrt(1 / 3 - 1 / 9))
    assert (stats["min"], stats["max"]) == (0.0, 1.0)
    assert stats["sse"] == pytest.approx(1.0)


def test_ate_is_zero_after_sim3_alignment_of_a_sim3_copy() -> None:
    gt = wiggly_trajectory(40)
    rng = np.random.default_rng(3)
    R, t, s = random_rotation(rng), np.array([10.0, -3.0, 2.0]), 0.3
    est = gt.copy()
    est[:, :3, :3] = R @ gt[:, :3, :3]
    est[:, :3, 3] = s * gt[:, :3, 3] @ R.T + t
    assert ate(gt, est, align=True, correct_scale=True)["rmse"] < 1e-9
    assert ate(gt, est, align=True, correct_scale=False)["rmse"] > 0.1  # the scale cannot be undone by SE(3)
    assert ate(gt, est, align=False, correct_scale=False)["rmse"] > 1.0


def test_ate_translation_offset_and_scale_only() -> None:
    gt = wiggly_trajectory(20)
    shifted = gt.copy()
    shifted[:, :3, 3] += [0.0, 0.0, 5.0]
    assert ate(gt, shifted, align=False, correct_scale=False)["rmse"] == pytest.approx(5.0)
    assert ate(gt, shifted, align=True, correct_scale=False)["rmse"] < 1e-9
    # correct_scale alone (evo -s without -a) only rescales: a half-size copy about the origin comes back exactly
    half = gt.copy()
    half[:, :3, 3] *= 0.5
    assert ate(gt, half, align=False, correct_scale=True)["rmse"] < 1e-9
    assert ate(gt, half, align=False, correct_scale=False)["rmse"] > 0.1


def test_pose_arrays_are_checked() -> None:
    with pytest.raises(ValueError, match="same frames"):
        ate(straight_line(5), straight_line(4))
    with pytest.raises(ValueError, match="N x 4 x 4"):
        ate(straight_line(5)[:, :3], straight_line(5)[:, :3])
    with pytest.raises(ValueError, match="no pair"):
        rpe(straight_line(3), straight_line(3), delta=3)


# ---------------------------------------------------------------------------------------------------------------
# RPE


def test_rpe_hand_case_one_turn() -> None:
    """gt drives 1 m per frame along z; the estimate turns by theta about y before its first step, then drives
    straight along its own z. Only pairs containing step 0 -> 1 have an error: for delta = 2 the error pose is
    [Ry(theta) | Ry(theta) e_z - e_z], translation 2 sin(theta / 2), angle theta."""
    theta = 2.0
    n = 7
    gt = straight_line(n)
    est = [np.eye(4), pose(rot_y(theta), [0.0, 0.0, 1.0])]
    for _ in range(n - 2):
        est.append(est[-1] @ pose(np.eye(3), [0.0, 0.0, 1.0]))
    est = np.stack(est)
    trans = 2 * math.sin(math.radians(theta) / 2)

    every = rpe(gt, est, delta=2, all_pairs=True)  # pairs (0,2) .. (4,6): one error among five
    assert every["rot_max_deg"] == pytest.approx(theta)
    assert every["rot_mean_deg"] == pytest.approx(theta / 5)
    assert every["rot_rmse_deg"] == pytest.approx(theta / math.sqrt(5))
    assert every["rot_median_deg"] == pytest.approx(0.0, abs=1e-12)
    assert every["trans_max"] == pytest.approx(trans)
    assert every["trans_mean"] == pytest.approx(trans / 5)

    consecutive = rpe(gt, est, delta=2, all_pairs=False)  # pairs (0,2), (2,4), (4,6): one among three
    assert consecutive["rot_mean_deg"] == pytest.approx(theta / 3)
    assert consecutive["trans_rmse"] == pytest.approx(trans / math.sqrt(3))

    one = rpe(gt, est, delta=1)  # only (0,1) differs: E = [Ry(theta) | 0]
    assert one["rot_max_deg"] == pytest.approx(theta)
    assert one["trans_max"] == pytest.approx(0.0, abs=1e-12)


def test_rpe_scale_correction_changes_only_the_translation_part() -> None:
    gt = wiggly_trajectory(30)
    est = gt.copy()
    est[:, :3, 3] *= 2.0  # right shape, twice the size: every relative translation is twice the true one
    raw = rpe(gt, est, delta=1)
    steps = np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1)
    assert raw["trans_mean"] == pytest.approx(steps.mean())
    assert raw["rot_max_deg"] == pytest.approx(0.0, abs=1e-9)
    corrected = rpe(gt, est, delta=1, align=True, correct_scale=True)
    assert corrected["trans_rmse"] < 1e-9


# ---------------------------------------------------------------------------------------------------------------
# KITTI odometry errors


def kitti_segment_counts(n_frames: int) -> dict[int, int]:
    """For a straight 1 m/frame ground truth: a segment of length L from frame f ends at f + L + 1 (the first
    frame whose distance exceeds L); it exists when f + L + 1 <= n_frames - 1, for f = 0, 10, 20, ..."""
    return {L: len(range(0, n_frames - L - 1, 10)) for L in (100, 200, 300, 400, 500, 600, 700, 800)}


def test_kitti_errors_straight_line_with_scale_drift() -> None:
    """Estimate drives 1.01 m per frame instead of 1 m: every segment of L m (L + 1 frames of motion) has a
    translation error 0.01 (L + 1), i.e. 0.01 (L + 1) / L per metre; no rotation error."""
    n = 1001
    gt, est = straight_line(n), straight_line(n, step=1.01)
    counts = kitti_segment_counts(n)
    assert counts[100] == 90 and counts[800] == 20
    expected = sum(c * 0.01 * (L + 1) / L for L, c in counts.items()) / sum(counts.values()) * 100
    t_err, r_err = kitti_odometry_errors(gt, est)
    assert t_err == pytest.approx(expected, rel=1e-9)
    assert t_err == pytest.approx(1.0, abs=0.01)  # about 1 %, as the drift says
    assert r_err == pytest.approx(0.0, abs=1e-6)


def test_kitti_errors_straight_line_with_heading_drift() -> None:
    """Same positions, but the estimated heading turns by omega degrees per frame: a segment of L + 1 frames has
    a rotation error (L + 1) omega, i.e. (L + 1) omega / L degrees per metre."""
    n, omega = 1001, 0.01
    gt = straight_line(n)
    est = gt.copy()
    est[:, :3, :3] = np.stack([rot_y(omega * k) for k in range(n)])
    counts = kitti_segment_counts(n)
    expected = sum(c * (L + 1) * omega / L for L, c in counts.items()) / sum(counts.values()) * 100
    _, r_err = kitti_odometry_errors(gt, est)
    assert r_err == pytest.approx(expected, rel=1e-6)


def test_kitti_errors_nan_below_100_m() -> None:
    t_err, r_err = kitti_odometry_errors(straight_line(101), straight_line(101, step=1.1))
    assert math.isnan(t_err) and math.isnan(r_err)  # 100 m exactly: no frame lies *beyond* 100 m
    t_err, _ = kitti_odometry_errors(straight_line(102), straight_line(102, step=1.1))
    assert t_err == pytest.approx(10.0 * 101 / 100)  # one segment, frames 0 -> 101


# ---------------------------------------------------------------------------------------------------------------
# chain_relative


def test_chain_relative_hand_case_and_round_trip() -> None:
    forward = pose(np.eye(3), [0.0, 0.0, -1.0])  # X_cam2 = X_cam1 - e_z: the camera moved 1 m forward
    np.testing.assert_allclose(chain_relative([forward]), [np.eye(4), pose(np.eye(3), [0.0, 0.0, 1.0])])
    poses = wiggly_trajectory(10)
    T_21 = [np.linalg.inv(poses[k + 1]) @ poses[k] for k in range(len(poses) - 1)]
    np.testing.assert_allclose(chain_relative(T_21), poses, atol=1e-9)
    np.testing.assert_array_equal(chain_relative([]), np.eye(4)[None])


# ---------------------------------------------------------------------------------------------------------------
# References: evo 1.38.1 and the KITTI devkit on evo's KITTI 00 test trajectories


@pytest.fixture(scope="module")
def kitti_00() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "kitti_00_trajectories.npz") as data:
        bottom = np.array([[[0.0, 0.0, 0.0, 1.0]]])
        return {k: np.concatenate([data[k].reshape(-1, 3, 4), np.repeat(bottom, len(data[k]), 0)], 1) for k in data}


def load_reference(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_ate_and_rpe_match_evo(kitti_00: dict[str, np.ndarray]) -> None:
    reference = load_reference("evo_reference.json")
    checked = 0
    for case in reference["cases"]:
        gt, est = kitti_00["gt"], kitti_00[case["est"]]
        if case["metric"] == "ape":
            ours = ate(gt, est, align=case["align"], correct_scale=case["correct_scale"])
            keys = {k: k for k in case["stats"]}
        else:
            ours = rpe(gt, est, case["delta"], case["all_pairs"], case["align"], case["correct_scale"])
            prefix, suffix = ("trans_", "") if case["pose_relation"] == "translation_part" else ("rot_", "_deg")
            keys = {k: f"{prefix}{k}{suffix}" for k in case["stats"] if k != "sse"}
        for theirs, mine in keys.items():
            assert ours[mine] == pytest.approx(case["stats"][theirs], rel=1e-6), (case["command"], theirs)
            checked += 1
    assert checked == 2 * 2 * 7 + 2 * 12 * 6  # every statistic of the 28 cases


def test_kitti_errors_match_the_devkit(kitti_00: dict[str, np.ndarray]) -> None:
    reference = load_reference("kitti_devkit_reference.json")
    tolerance = {"devkit_float64": 1e-8, "devkit_float32": 1e-3}  # the published devkit sums in 32-bit floats
    for case in reference["cases"]:
        t_err, r_err = kitti_odometry_errors(kitti_00["gt"], kitti_00[case["est"]])
        rel = tolerance[case["variant"]]
        assert t_err == pytest.approx(case["t_err_percent"], rel=rel), case
        assert r_err == pytest.approx(case["r_err_deg_per_100m"], rel=rel), case
