"""Trajectory metrics of visual odometry: ATE and RPE as evo computes them, and the KITTI odometry errors.

All poses are `camera_to_world` 4 x 4 matrices in float64 numpy, one per frame, ground truth and estimate of the
same frames (KITTI pose files have no timestamps, so nothing is associated: pose i is compared with pose i).

- `ate`, `rpe`: the absolute and relative pose errors of evo (M. Grupp, github.com/MichaelGrupp/evo, the tool most
  papers use), `evo_ape` / `evo_rpe` with `--pose_relation trans_part` (and `angle_deg` for the RPE rotation),
  after the same optional Umeyama alignment (`-a`, `-s`). They reproduce evo 1.38.1 on its KITTI 00 test
  trajectories to 1e-6 relative (`tests/test_trajectory.py`, fixture `../shared/fixtures/ego-motion-flow`).
- `kitti_odometry_errors`: the translational (%) and rotational (deg/100m) errors of the KITTI odometry benchmark
  (Geiger et al., CVPR 2012; devkit `evaluate_odometry.cpp`), the numbers of the KITTI leaderboard and of the
  odometry tables of e.g. ORB-SLAM2 and SC-SfMLearner.
- `chain_relative`: frame-to-frame motions `T_21` -> trajectory, to evaluate a model that predicts motions.
"""

from collections.abc import Sequence

import numpy as np

KITTI_SEGMENT_LENGTHS = (100, 200, 300, 400, 500, 600, 700, 800)  # metres, evaluate_odometry.cpp `lengths`
KITTI_STEP_SIZE = 10  # frames between segment starts, evaluate_odometry.cpp `step_size` ("every second" at 10 Hz)


def _check_poses(gt_poses: np.ndarray, est_poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, est = np.asarray(gt_poses, dtype=np.float64), np.asarray(est_poses, dtype=np.float64)
    for name, poses in (("gt_poses", gt), ("est_poses", est)):
        if poses.ndim != 3 or poses.shape[1:] != (4, 4):
            raise ValueError(f"{name} must be N x 4 x 4 camera_to_world matrices, got shape {poses.shape}")
    if len(gt) != len(est):
        raise ValueError(f"gt_poses and est_poses must hold the same frames, got {len(gt)} and {len(est)} poses")
    return gt, est


def _inverse_se3(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms (... x 4 x 4) as [R^T, -R^T t]: evo's `lie.se3_inverse`, which the RPE uses."""
    inv = np.zeros_like(T)
    R_t = np.swapaxes(T[..., :3, :3], -1, -2)
    inv[..., :3, :3] = R_t
    inv[..., :3, 3] = -(R_t @ T[..., :3, 3:4])[..., 0]
    inv[..., 3, 3] = 1.0
    return inv


def _statistics(errors: np.ndarray) -> dict[str, float]:
    """evo's `PE.get_all_statistics`: rmse, mean, median, std (population, numpy's default), min, max, sse."""
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mean": float(np.mean(errors)),
        "median": float(np.median(errors)),
        "std": float(np.std(errors)),
        "min": float(np.min(errors)),
        "max": float(np.max(errors)),
        "sse": float(np.sum(errors**2)),
    }


def umeyama_alignment(x: np.ndarray, y: np.ndarray, with_scale: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity transform between point sets: argmin over (R, t, s) of sum ||y_i - (s R x_i + t)||^2.

    Umeyama, "Least-squares estimation of transformation parameters between two point patterns", IEEE TPAMI 1991:
    means (eq. 34-35), variance of x (eq. 36), covariance (eq. 38), its SVD U D V^T, S = diag(1, 1, -1) where
    det(U) det(V) < 0 so that R is a rotation (eq. 43), R = U S V^T (eq. 40), s = tr(D S) / sigma_x^2 (eq. 42),
    t = mu_y - s R mu_x (eq. 41). Transcribed from evo's `geometry.umeyama_alignment` (same equations, same
    degeneracy check), with the covariance summed by one matrix product instead of a loop.

    Args:
        x: m x n source points (m = dimension, e.g. the estimated positions, 3 x N).
        y: m x n target points (e.g. the ground-truth positions).
        with_scale: estimate s (Sim(m), for monocular methods whose scale is unknown); else s = 1 (SE(m)).

    Returns:
        (R m x m, t m, s).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"x and y must be m x n matrices of the same shape, got {x.shape} and {y.shape}")
    m, n = x.shape
    mean_x, mean_y = x.mean(axis=1), y.mean(axis=1)
    x_c, y_c = x - mean_x[:, None], y - mean_y[:, None]
    sigma_x = np.sum(x_c**2) / n
    cov_xy = y_c @ x_c.T / n
    u, d, v = np.linalg.svd(cov_xy)
    if np.count_nonzero(d > np.finfo(d.dtype).eps) < m - 1:
        raise ValueError("degenerate covariance rank (points on a line or a single point): Umeyama is not possible")
    s_mat = np.eye(m)
    if np.linalg.det(u) * np.linalg.det(v) < 0.0:
        s_mat[m - 1, m - 1] = -1.0
    r = u @ s_mat @ v
    c = float(np.trace(np.diag(d) @ s_mat) / sigma_x) if with_scale else 1.0
    t = mean_y - c * r @ mean_x
    return r, t, c


def _align(gt: np.ndarray, est: np.ndarray, align: bool, correct_scale: bool) -> np.ndarray:
    """The estimate after evo's `PosePath3D.align` on positions: Sim(3) (-a -s), SE(3) (-a) or scale only (-s).

    evo scales the estimate's translations by s, then left-multiplies every pose by [R | t]: the aligned pose is
    [R R_i | s R t_i + t]. With `correct_scale` alone evo still solves the Sim(3) problem but applies only s.
    """
    if not (align or correct_scale):
        return est
    r, t, s = umeyama_alignment(est[:, :3, 3].T, gt[:, :3, 3].T, with_scale=correct_scale)
    aligned = est.copy()
    aligned[:, :3, 3] *= s
    if align:
        transform = np.eye(4)
        transform[:3, :3], transform[:3, 3] = r, t
        aligned = transform @ aligned
    return aligned


def ate(
    gt_poses: np.ndarray, est_poses: np.ndarray, align: bool = True, correct_scale: bool = True
) -> dict[str, float]:
    """Absolute trajectory error: evo's APE with `pose_relation=translation_part` (`evo_ape kitti gt est -a -s`).

    Sturm et al., "A benchmark for the evaluation of RGB-D SLAM systems", IROS 2012 (ATE) as implemented by evo:
    the estimate is aligned to the ground truth by Umeyama on the positions (see `_align`), then the error of
    frame i is ||p_est_i - p_gt_i|| in metres. The defaults (Sim(3) alignment) suit monocular methods, whose
    scale is unknown; stereo / metric methods are usually reported with `correct_scale=False` (`-a`).

    Returns:
        evo's statistics of the per-frame errors: rmse, mean, median, std, min, max, sse (metres, metres^2).
    """
    gt, est = _check_poses(gt_poses, est_poses)
    aligned = _align(gt, est, align, correct_scale)
    return _statistics(np.linalg.norm(aligned[:, :3, 3] - gt[:, :3, 3], axis=1))


def _rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle of ... x 3 x 3 rotations in degrees, as evo's `lie.so3_log_angle` computes it.

    evo takes |rotvec| of `scipy.spatial.transform.Rotation.from_matrix`, which first replaces a matrix that is not
    orthogonal (poses written with 9 digits are not, to ~1e-9) by its nearest rotation U V^T (orthogonal
    Procrustes). We do the same, then take atan2(|sin|, cos) from the skew and symmetric parts, accurate for
    small angles (arccos((tr R - 1) / 2) loses half the digits there: frame-to-frame errors are ~1e-3 rad).
    """
    u, _, vt = np.linalg.svd(R)
    R = u @ vt
    sin = 0.5 * np.linalg.norm(
        np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1), axis=-1
    )
    cos = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0)
    return np.degrees(np.arctan2(sin, cos))


def rpe(
    gt_poses: np.ndarray,
    est_poses: np.ndarray,
    delta: int = 1,
    all_pairs: bool = True,
    align: bool = False,
    correct_scale: bool = False,
) -> dict[str, float]:
    """Relative pose error: evo's RPE with delta in frames, translation_part (metres) and rotation_angle_deg.

    Sturm et al., IROS 2012 (RPE) as implemented by evo (`evo_rpe kitti gt est -d delta -u f [--all_pairs]`):
    for every pair (i, j = i + delta), E_ij = (Q_i^-1 Q_j)^-1 (P_i^-1 P_j) with Q the ground truth and P the
    estimate; the errors are ||translation(E_ij)|| and the rotation angle of E_ij in degrees.

    Pairs: `all_pairs=True` (our default) uses every i with i + delta < N, i.e. overlapping pairs as in the TUM
    RGB-D benchmark's tool; evo's CLI default (`all_pairs=False`) uses consecutive pairs (0, delta),
    (delta, 2 delta), ... only. Both give the same pairs for delta = 1.

    Alignment as in evo (`-a`, `-s`, applied to the estimate before the pairs are formed): an SE(3) alignment
    does not change the RPE, a scale correction scales every estimated translation and so changes the
    translation part (needed for monocular estimates); the rotation part is unaffected by either.

    Returns:
        evo's statistics of both errors: trans_rmse, trans_mean, trans_median, trans_std, trans_min, trans_max
        (metres) and rot_rmse_deg, rot_mean_deg, rot_median_deg, rot_std_deg, rot_min_deg, rot_max_deg.
    """
    gt, est = _check_poses(gt_poses, est_poses)
    if delta < 1 or int(delta) != delta:
        raise ValueError(f"delta must be a positive whole number of frames, got {delta}")
    if delta >= len(gt):
        raise ValueError(f"delta = {delta} frames leaves no pair in a trajectory of {len(gt)} poses")
    est = _align(gt, est, align, correct_scale)
    step = 1 if all_pairs else delta
    i = np.arange(0, len(gt) - delta, step)
    j = i + delta
    gt_rel = _inverse_se3(gt[i]) @ gt[j]
    est_rel = _inverse_se3(est[i]) @ est[j]
    error = _inverse_se3(gt_rel) @ est_rel
    trans = _statistics(np.linalg.norm(error[:, :3, 3], axis=1))
    rot = _statistics(_rotation_angle_deg(error[:, :3, :3]))
    keys = ("rmse", "mean", "median", "std", "min", "max")
    return {**{f"trans_{k}": trans[k] for k in keys}, **{f"rot_{k}_deg": rot[k] for k in keys}}


def kitti_odometry_errors(gt_poses: np.ndarray, est_poses: np.ndarray) -> tuple[float, float]:
    """KITTI odometry benchmark errors: (t_err in %, r_err in deg/100m), averaged over all segments.

    The devkit's `evaluate_odometry.cpp` (Geiger et al., "Are we ready for autonomous driving? The KITTI vision
    benchmark suite", CVPR 2012): from every 10th frame (`step_size`), for each length L in 100, 200, ..., 800 m
    of ground-truth path (`trajectoryDistances`), the segment ends at the first frame whose travelled distance
    exceeds the start's by more than L (`lastFrameFromSegmentLength`; segments running past the end are skipped).
    The segment's error pose is E = (P_first^-1 P_last)^-1 (Q_first^-1 Q_last) (P estimate, Q ground truth);
    its translation error is ||t(E)|| / L and its rotation error arccos((tr R(E) - 1) / 2) / L
    (`translationError`, `rotationError`). The devkit's summary (`saveStats`) is the mean over all segments of
    all lengths, in m/m and rad/m; papers report t_err x 100 (%) and r_err x (180 / pi) x 100 (deg/100m), as
    we return them. No alignment: the estimate must be metric (scale-align a monocular one beforehand).

    The devkit stores distances and errors in 32-bit floats; we compute in float64. On evo's KITTI 00 test
    trajectories this moves t_err by ~1e-5 and r_err by ~1e-4 relative; with every `float` of the devkit turned
    into `double` we match it to 1e-8 (fixture `kitti_devkit_reference.json`).

    Returns:
        (t_err %, r_err deg/100m); both NaN when no segment fits, i.e. the ground truth is shorter than 100 m.
    """
    gt, est = _check_poses(gt_poses, est_poses)
    dist = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1))])
    first = np.arange(0, len(gt), KITTI_STEP_SIZE)
    lengths = np.asarray(KITTI_SEGMENT_LENGTHS, dtype=np.float64)
    first, length = (a.ravel() for a in np.meshgrid(first, lengths, indexing="ij"))
    # first index whose distance is > dist[first] + L (dist is non-decreasing); len(dist) where none is
    last = np.searchsorted(dist, dist[first] + length, side="right")
    keep = last < len(gt)
    if not keep.any():
        return float("nan"), float("nan")
    first, last, length = first[keep], last[keep], length[keep]
    gt_delta = np.linalg.inv(gt[first]) @ gt[last]
    est_delta = np.linalg.inv(est[first]) @ est[last]
    error = np.linalg.inv(est_delta) @ gt_delta
    r_err = np.arccos(np.clip(0.5 * (np.trace(error[:, :3, :3], axis1=1, axis2=2) - 1.0), -1.0, 1.0))
    t_err = np.linalg.norm(error[:, :3, 3], axis=1)
    return float(np.mean(t_err / length) * 100.0), float(np.degrees(np.mean(r_err / length)) * 100.0)


def chain_relative(T_21: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Trajectory from frame-to-frame motions: K motions T_21 (X_cam2 = T_21 X_cam1) -> K + 1 camera_to_world poses.

    The first camera is the world frame (identity); since T_21 = inv(camera_to_world_2) camera_to_world_1,
    camera_to_world_{k+1} = camera_to_world_k inv(T_21 of pair k).
    """
    T = np.asarray(T_21, dtype=np.float64).reshape(-1, 4, 4)
    poses = np.empty((len(T) + 1, 4, 4))
    poses[0] = np.eye(4)
    for k, motion in enumerate(T):
        poses[k + 1] = poses[k] @ np.linalg.inv(motion)
    return poses
