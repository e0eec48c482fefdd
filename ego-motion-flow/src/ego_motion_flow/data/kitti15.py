"""KITTI 2015 scene flow (Menze & Geiger, "Object Scene Flow for Autonomous Vehicles", CVPR 2015).

The 200 training pairs carry ground-truth flow (``flow_occ``), disparity of frame 1 (``disp_occ_0``) and the
object map of the independently moving cars (``obj_map``), which is exactly the moving-object ground truth
this project needs. Depth is z = f B / d from the rectified stereo calibration.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from ego_motion_flow.data.io import (
    PathLike,
    read_kitti_cam_to_cam,
    read_kitti_disparity,
    read_kitti_flow,
    read_kitti_object_map,
    read_rgb,
)
from ego_motion_flow.data.sample import make_sample
from shared_utils.datasets import DatasetFormatError, folder_listing

LAYOUT = ("KITTI 2015 layout <root>/training/{image_2/NNNNNN_10.png and NNNNNN_11.png, flow_occ/NNNNNN_10.png, "
          "disp_occ_0/NNNNNN_10.png, obj_map/NNNNNN_10.png, calib_cam_to_cam/NNNNNN.txt}")
MIN_POSE_POINTS = 6  # fewer static correspondences than this: no pose (has_pose False)
MAX_POSE_POINTS = 5000  # evenly subsampled: plenty for six unknowns, and the RANSAC stays fast
PNP_REPROJECTION_PX = 1.0  # ground-truth flow is sub-pixel accurate: a static point reprojects within 1 px


def depth_from_disparity(disparity: np.ndarray, valid: np.ndarray, P_rect_02: np.ndarray,
                         P_rect_03: np.ndarray) -> np.ndarray:
    """z = f B / d in metres (0 where invalid): f = P_rect_02[0, 0], baseline B = (P_rect_02[0, 3] -
    P_rect_03[0, 3]) / f (about 0.54 m; P_rect_0i[0, 3] = -f times camera i's x position)."""
    focal = P_rect_02[0, 0]
    baseline = (P_rect_02[0, 3] - P_rect_03[0, 3]) / focal
    ok = valid & (disparity > 0)
    return np.where(ok, focal * baseline / np.where(ok, disparity, 1.0), 0.0).astype(np.float32)


def fit_pose_to_flow(flow: np.ndarray, valid: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray | None:
    """T_21 (4 x 4) that best explains ``flow`` on the ``valid`` pixels as a static scene, or None.

    Each valid pixel p with depth gives a 3D point X1 = depth K^-1 [p, 1] in camera 1 and its image p + flow
    in frame 2; ``cv2.solvePnPRansac`` (inliers within 1 px) then Levenberg-Marquardt on the inliers find the
    camera-2 pose of those points, which is T_21. None when fewer than 6 points or inliers.
    """
    v, u = np.nonzero(valid & (depth > 0))
    if len(u) < MIN_POSE_POINTS:
        return None
    step = math.ceil(len(u) / MAX_POSE_POINTS)
    u, v = u[::step], v[::step]
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1).astype(np.float64)
    object_points = pixels @ np.linalg.inv(K).T * depth[v, u, None]
    image_points = pixels[:, :2] + flow[v, u]
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(object_points, image_points, K, None, iterationsCount=200,
                                                 reprojectionError=PNP_REPROJECTION_PX, confidence=0.999)
    if not ok or inliers is None or len(inliers) < MIN_POSE_POINTS:
        return None
    inliers = inliers.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(object_points[inliers], image_points[inliers], K, None, rvec, tvec)
    T_21 = np.eye(4)
    T_21[:3, :3], T_21[:3, 3] = cv2.Rodrigues(rvec)[0], tvec.ravel()
    return T_21


class Kitti2015(Dataset):
    """KITTI 2015 scene-flow training pairs ``image_2/NNNNNN_10.png -> NNNNNN_11.png``.

    ``root`` holds ``training/``; the ids are every ``training/image_2/*_10.png`` or the lines of
    ``split_file`` (one id such as ``000004`` per line). Per pair: flow and its validity from ``flow_occ``;
    depth of frame 1 from ``disp_occ_0`` and ``calib_cam_to_cam`` (z = f B / d); K = P_rect_02[:, :3];
    ``moving`` = ``obj_map`` > 0 (the cars fitted with their own rigid motion), known where the flow is valid.

    T_21 is FITTED TO THE GROUND TRUTH, not measured: KITTI 2015 ships no camera poses, so the pose is the
    PnP-RANSAC fit (:func:`fit_pose_to_flow`) of the static pixels (obj_map == 0 with valid flow and
    disparity). ``has_pose`` is False where fewer than 6 such points (or inliers) exist.
    """

    def __init__(self, root: PathLike, split_file: PathLike | None = None) -> None:
        self.training = Path(root) / "training"
        image_dir = self.training / "image_2"
        if split_file is None:
            self.ids = sorted(p.name.removesuffix("_10.png") for p in image_dir.glob("*_10.png"))
            where = f"the *_10.png files of {image_dir}"
            if not self.ids:
                raise DatasetFormatError(f"no *_10.png pairs in {image_dir}: expected the {LAYOUT}; "
                                         f"{folder_listing(image_dir if image_dir.is_dir() else Path(root))}")
        else:
            split_file = Path(split_file)
            if not split_file.is_file():
                raise DatasetFormatError(f"split file {split_file} not found: expected one KITTI 2015 id "
                                         f"(e.g. 000004) per line; {folder_listing(split_file.parent)}")
            self.ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
            where = f"split file {split_file}"
            if not self.ids:
                raise DatasetFormatError(f"{split_file}: expected one KITTI 2015 id (e.g. 000004) per line, "
                                         f"found no id")
        for pair_id in self.ids:
            for role, path in self._paths(pair_id).items():
                if not path.is_file():
                    raise DatasetFormatError(f"{path} not found: expected the {role} of pair {pair_id} (listed "
                                             f"by {where}) in the {LAYOUT}; {folder_listing(path.parent)}")

    def _paths(self, pair_id: str) -> dict[str, Path]:
        t = self.training
        return {"first frame": t / "image_2" / f"{pair_id}_10.png",
                "second frame": t / "image_2" / f"{pair_id}_11.png",
                "flow": t / "flow_occ" / f"{pair_id}_10.png",
                "disparity": t / "disp_occ_0" / f"{pair_id}_10.png",
                "object map": t / "obj_map" / f"{pair_id}_10.png",
                "calibration": t / "calib_cam_to_cam" / f"{pair_id}.txt"}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        pair_id = self.ids[index]
        paths = self._paths(pair_id)
        flow, flow_valid = read_kitti_flow(paths["flow"])
        disparity, disparity_valid = read_kitti_disparity(paths["disparity"])
        objects = read_kitti_object_map(paths["object map"])
        calib = read_kitti_cam_to_cam(paths["calibration"])
        K = calib["P_rect_02"][:, :3]
        depth = depth_from_disparity(disparity, disparity_valid, calib["P_rect_02"], calib["P_rect_03"])
        T_21 = fit_pose_to_flow(flow, flow_valid & ~objects, depth, K)
        return make_sample(read_rgb(paths["first frame"]), read_rgb(paths["second frame"]), K,
                           sequence=pair_id, frame=10, name=f"kitti15/{pair_id}", flow=flow,
                           flow_valid=flow_valid, depth=depth, T_21=T_21, moving=objects, moving_valid=flow_valid)
