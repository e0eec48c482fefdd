"""The nuScenes loader against a tiny fixture written in the official layout.

The fixture's geometry is built from rotation matrices (yaws, a camera pitch, a tilted LiDAR) and stored as
quaternions, so the expected pixels and cells below, computed from the matrices, also check the quaternion
parsing. Ego poses are not the identity, and each camera has its own ego pose (the car moved between the LiDAR
sweep and the exposure), so the full BEVDepth transform chain matters.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bev_uncertainty.data.grid import BEVGrid
from bev_uncertainty.data.nuscenes import (
    BEV_CLASSES,
    CAMERAS,
    OFFICIAL_SPLITS,
    TABLES,
    NuScenesBEV,
    NuScenesTables,
    bev_class,
    quaternion_to_matrix,
    rasterise,
    transform,
)
from shared_utils.datasets import DatasetFormatError

# ----------------------------------------------------------------------------------------------------------------
# Fixture geometry

ORIG_W, ORIG_H = 160, 90
K_ORIG = np.array([[110.0, 0.0, 80.0], [0.0, 110.0, 45.0], [0.0, 0.0, 1.0]])
IMAGE_SIZE = (32, 64)  # (H, W): width 160 -> 64 is a scale of 0.4, height 90 -> 36, the top 4 rows are cropped
CAMERA_YAW_DEG = {"CAM_FRONT_LEFT": 55, "CAM_FRONT": 0, "CAM_FRONT_RIGHT": -55, "CAM_BACK_LEFT": 110,
                  "CAM_BACK": 180, "CAM_BACK_RIGHT": -110}
CAMERA_BASE = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # camera x right, y down, z ahead
CAMERA_COLOURS_BGR = {"CAM_FRONT_LEFT": (200, 40, 40), "CAM_FRONT": (40, 40, 200), "CAM_FRONT_RIGHT": (40, 200, 40),
                      "CAM_BACK_LEFT": (200, 200, 40), "CAM_BACK": (40, 200, 200), "CAM_BACK_RIGHT": (200, 40, 200)}
SPLITS = {"train": ["scene-0001"], "val": ["scene-0002"], "test": ["scene-0002"]}
# Boxes in the ego frame of the LiDAR keyframe: name, category, centre (x, y), yaw (deg), size [w, l, h], visibility
BOXES = (
    ("car", "vehicle.car", (12.05, 5.1), 0.0, (2.0, 4.0, 1.5), "4"),  # ahead-left, axis-aligned
    ("truck", "vehicle.truck", (-20.1, -19.9), 30.0, (3.0, 6.0, 3.0), "3"),  # behind-right, rotated
    ("hidden_car", "vehicle.car", (30.3, -30.3), 0.0, (2.0, 4.0, 1.5), "1"),  # barely visible
    ("pedestrian", "human.pedestrian.adult", (-8.35, -6.15), 0.0, (0.6, 0.6, 1.8), "1"),
    ("cylinder", "ood.cylinder", (20.3, -10.2), 0.0, (1.0, 1.0, 2.0), "4"),
    ("animal", "animal", (-15.3, 12.2), 0.0, (0.8, 1.2, 0.8), "2"),
    ("barrier", "movable_object.barrier", (5.3, -3.3), 0.0, (2.5, 0.5, 1.0), "4"),  # no BEV class
)


def rot_x(a: float) -> np.ndarray:
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def rot_y(a: float) -> np.ndarray:
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rot_z(a: float) -> np.ndarray:
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def rigid(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def quaternion(R: np.ndarray) -> list[float]:
    """[w, x, y, z] of a rotation matrix: top eigenvector of Bar-Itzhack's symmetric 4x4 (as pyquaternion)."""
    m = R
    K = np.array([[m[0, 0] - m[1, 1] - m[2, 2], m[0, 1] + m[1, 0], m[0, 2] + m[2, 0], m[2, 1] - m[1, 2]],
                  [m[0, 1] + m[1, 0], m[1, 1] - m[0, 0] - m[2, 2], m[1, 2] + m[2, 1], m[0, 2] - m[2, 0]],
                  [m[0, 2] + m[2, 0], m[1, 2] + m[2, 1], m[2, 2] - m[0, 0] - m[1, 1], m[1, 0] - m[0, 1]],
                  [m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], m[0, 0] + m[1, 1] + m[2, 2]]]) / 3
    x, y, z, w = np.linalg.eigh(K)[1][:, -1]
    return [float(w), float(x), float(y), float(z)]


LIDAR_TO_EGO = rigid(rot_z(-np.pi / 2) @ rot_x(0.01), (0.94, 0.0, 1.84))


def camera_to_ego(channel: str) -> np.ndarray:
    yaw = np.radians(CAMERA_YAW_DEG[channel])
    return rigid(rot_z(yaw) @ rot_y(np.radians(3.0)) @ CAMERA_BASE, (np.cos(yaw) + 0.7, 0.9 * np.sin(yaw), 1.5))


def lidar_pose(scene: int, k: int) -> np.ndarray:
    """ego -> global of the LiDAR keyframe ``k`` of scene number ``scene``."""
    return rigid(rot_z(0.6 + scene + 0.05 * k), (400.0 + 60 * scene + 5 * k, 1100.0 - 3 * k, 0.3))


def camera_motion(channel: str) -> np.ndarray:
    """Ego at the camera's timestamp in the ego frame at the LiDAR's: moved 0.25-0.35 m on, turned a little."""
    c = CAMERAS.index(channel)
    return rigid(rot_z(0.01 * (c + 1)), (0.25 + 0.02 * c, 0.01, 0.0))


def ego_to_camera(channel: str) -> np.ndarray:
    """LiDAR-keyframe ego frame -> camera frame (both poses move together, so this is the same in every sample)."""
    return np.linalg.inv(camera_to_ego(channel)) @ np.linalg.inv(camera_motion(channel))


P_FRONT = np.array([10.0, 1.0, 1.0])  # 10 m ahead, 1 m left, 1 m up: CAM_FRONT only
P_BACK = np.array([-10.0, 0.0, 1.0])  # behind: CAM_BACK only (and behind CAM_FRONT, so z > 0 must drop it)


def lidar_points_ego() -> np.ndarray:
    """The points of every sweep, in the LiDAR-keyframe ego frame."""
    from_camera = np.linalg.inv(ego_to_camera("CAM_FRONT"))
    farther = transform(from_camera, 2 * transform(ego_to_camera("CAM_FRONT"), P_FRONT[None]))[0]  # same ray
    too_close = transform(from_camera, np.array([[0.0, 0.0, 0.05]]))[0]  # 5 cm ahead of CAM_FRONT, image centre
    return np.stack([P_FRONT, farther, P_BACK, too_close])


# ----------------------------------------------------------------------------------------------------------------
# Fixture writer


def write_nuscenes(root: Path, scenes: tuple[tuple[str, int], ...] = (("scene-0001", 2), ("scene-0002", 2)),
                   version: str = "v1.0-mini", splits: dict | None = SPLITS) -> Path:
    """A nuScenes dataroot: ``scenes`` of (name, number of samples), all 13 tables, images and LiDAR files."""
    t: dict[str, list[dict]] = {name: [] for name in TABLES}
    t["log"].append({"token": "log-0", "logfile": "fixture", "vehicle": "n015", "date_captured": "2018-07-24",
                     "location": "singapore-onenorth"})
    t["map"].append({"token": "map-0", "log_tokens": ["log-0"], "category": "semantic_prior",
                     "filename": "maps/fixture.png"})
    t["visibility"] = [{"token": str(i), "level": level, "description": f"visibility of whole object is {level}"}
                       for i, level in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"), start=1)]
    t["attribute"].append({"token": "attr-0", "name": "vehicle.parked", "description": ""})
    t["category"] = [{"token": f"cat-{c}", "name": c, "description": ""} for c in sorted({b[1] for b in BOXES})]
    for channel in (*CAMERAS, "LIDAR_TOP"):
        camera = channel != "LIDAR_TOP"
        T = camera_to_ego(channel) if camera else LIDAR_TO_EGO
        t["sensor"].append({"token": f"sensor-{channel}", "channel": channel,
                            "modality": "camera" if camera else "lidar"})
        t["calibrated_sensor"].append({"token": f"cs-{channel}", "sensor_token": f"sensor-{channel}",
                                       "translation": T[:3, 3].tolist(), "rotation": quaternion(T[:3, :3]),
                                       "camera_intrinsic": K_ORIG.tolist() if camera else []})
    points = transform(np.linalg.inv(LIDAR_TO_EGO), lidar_points_ego())
    pcd = np.concatenate([points, np.full((len(points), 1), 10.0), np.zeros((len(points), 1))], 1)
    for s, (scene_name, n) in enumerate(scenes):
        tokens = [f"{scene_name}-sample-{k}" for k in range(n)]
        t["scene"].append({"token": f"{scene_name}-token", "name": scene_name, "description": "fixture",
                           "log_token": "log-0", "nbr_samples": n, "first_sample_token": tokens[0],
                           "last_sample_token": tokens[-1]})
        for name, category, *_ in BOXES:
            t["instance"].append({"token": f"inst-{scene_name}-{name}", "category_token": f"cat-{category}",
                                  "nbr_annotations": n, "first_annotation_token": f"ann-{tokens[0]}-{name}",
                                  "last_annotation_token": f"ann-{tokens[-1]}-{name}"})
        for k, token in enumerate(tokens):
            timestamp = 1532402927647951 + 10**8 * s + 500000 * k
            t["sample"].append({"token": token, "timestamp": timestamp, "scene_token": f"{scene_name}-token",
                                "prev": tokens[k - 1] if k else "", "next": tokens[k + 1] if k + 1 < n else ""})
            pose = lidar_pose(s, k)
            _write_sample_data(root, t, token, timestamp, pose, pcd)
            _write_annotations(t, scene_name, token, pose)
    t["sample"].reverse()  # the table order is not the time order: the loader must follow prev/next
    (root / "maps").mkdir(parents=True)
    cv2.imwrite(str(root / "maps" / "fixture.png"), np.zeros((8, 8), np.uint8))  # the map table's semantic prior
    (root / version).mkdir()
    for name, records in t.items():
        (root / version / f"{name}.json").write_text(json.dumps(records, indent=1))
    if splits is not None:
        (root / version / "splits.json").write_text(json.dumps(splits))
    return root


def _write_sample_data(root: Path, t: dict, sample: str, timestamp: int, pose: np.ndarray, pcd: np.ndarray) -> None:
    """One keyframe per channel, each with its own ego pose and file, plus a LiDAR sweep (not a keyframe)."""
    for c, channel in enumerate((*CAMERAS, "LIDAR_TOP", "sweep")):
        camera = channel in CAMERAS
        sensor = "LIDAR_TOP" if channel == "sweep" else channel
        ego = pose @ camera_motion(channel) if camera else pose
        ext = "jpg" if camera else "pcd.bin"
        filename = f"{'sweeps' if channel == 'sweep' else 'samples'}/{sensor}/{sample}__{channel}.{ext}"
        token = f"sd-{sample}-{channel}"
        t["ego_pose"].append({"token": f"ep-{token}", "timestamp": timestamp + 1000 * c,
                              "translation": ego[:3, 3].tolist(), "rotation": quaternion(ego[:3, :3])})
        t["sample_data"].append({"token": token, "sample_token": sample, "ego_pose_token": f"ep-{token}",
                                 "calibrated_sensor_token": f"cs-{sensor}", "timestamp": timestamp + 1000 * c,
                                 "fileformat": "jpg" if camera else "pcd", "is_key_frame": channel != "sweep",
                                 "height": ORIG_H if camera else 0, "width": ORIG_W if camera else 0,
                                 "filename": filename, "prev": "", "next": ""})
        if channel == "sweep":
            continue  # no file: reading it would fail the test
        (root / filename).parent.mkdir(parents=True, exist_ok=True)
        if camera:
            image = np.full((ORIG_H, ORIG_W, 3), CAMERA_COLOURS_BGR[channel], np.uint8)
            cv2.imwrite(str(root / filename), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
        else:
            pcd.astype(np.float32).tofile(root / filename)


def _write_annotations(t: dict, scene_name: str, sample: str, pose: np.ndarray) -> None:
    for name, _, (x, y), yaw_deg, size, visibility in BOXES:
        R = pose[:3, :3] @ rot_z(np.radians(yaw_deg))
        t["sample_annotation"].append({
            "token": f"ann-{sample}-{name}", "sample_token": sample, "instance_token": f"inst-{scene_name}-{name}",
            "attribute_tokens": [], "visibility_token": visibility,
            "translation": transform(pose, np.array([[x, y, 0.8]]))[0].tolist(), "size": list(size),
            "rotation": quaternion(R), "num_lidar_pts": 5, "num_radar_pts": 0, "prev": "", "next": ""})


def edit_table(root: Path, table: str, edit, version: str = "v1.0-mini") -> None:
    path = root / version / f"{table}.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))


def record(records: list[dict], token: str) -> dict:
    return next(r for r in records if r["token"] == token)


def cells(rows: range, cols: range) -> set[tuple[int, int]]:
    return {(i, j) for i in rows for j in cols}


def nonzero(mask) -> set[tuple[int, int]]:
    return {tuple(ij) for ij in np.argwhere(np.asarray(mask)).tolist()}


@pytest.fixture
def dataroot(tmp_path: Path) -> Path:
    return write_nuscenes(tmp_path / "nuscenes")


# ----------------------------------------------------------------------------------------------------------------
# Geometry helpers


def test_quaternion_to_matrix_known_rotation_and_round_trip():
    np.testing.assert_allclose(quaternion_to_matrix([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]),
                               [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)  # 90 deg about z
    R = rot_z(2.5) @ rot_y(-0.4) @ rot_x(1.1)
    np.testing.assert_allclose(quaternion_to_matrix(quaternion(R)), R, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(np.stack([quaternion(R)] * 2)), np.stack([R] * 2), atol=1e-12)
    T = rigid(R, (1.0, 2.0, 3.0))
    np.testing.assert_allclose(transform(T, np.array([[1.0, 0.0, 0.0]])), [R[:, 0] + (1, 2, 3)], atol=1e-12)
    np.testing.assert_allclose(transform(R, np.array([[1.0, 0.0, 0.0]])), [R[:, 0]], atol=1e-12)


def test_bev_class_prefixes():
    ood = ("ood", "animal")
    assert [bev_class(c, ood) for c in ("vehicle.car", "vehicle.bicycle", "human.pedestrian.adult", "ood",
                                        "ood.cylinder", "animal", "oodle", "movable_object.barrier")] == \
        [0, 0, 1, 2, 2, 2, None, None]
    assert bev_class("vehicle.emergency.police", ("vehicle.emergency",)) == BEV_CLASSES.index("ood")


# ----------------------------------------------------------------------------------------------------------------
# Samples


def test_sample_structure_images_and_poses(dataroot: Path):
    ds = NuScenesBEV(dataroot, split="train", image_size=IMAGE_SIZE)
    assert len(ds) == 2
    sample = ds[1]
    H, W = IMAGE_SIZE
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in sample.items() if k != "token"}
    assert shapes == {"images": ((6, 3, H, W), torch.float32), "intrinsics": ((6, 3, 3), torch.float32),
                      "cam_to_ego": ((6, 4, 4), torch.float32), "depth": ((6, H, W), torch.float32),
                      "bev": ((3, 200, 200), torch.float32), "visibility": ((200, 200), torch.uint8),
                      "valid": ((200, 200), torch.bool), "ego_pose": ((4, 4), torch.float32)}
    assert sample["token"] == "scene-0001-sample-1"
    for c, channel in enumerate(CAMERAS):  # RGB in CAMERAS order
        rgb = np.array(CAMERA_COLOURS_BGR[channel][::-1]) / 255
        np.testing.assert_allclose(sample["images"][c].mean((1, 2)).numpy(), rgb, atol=0.02)
        np.testing.assert_allclose(sample["cam_to_ego"][c].numpy(), camera_to_ego(channel), atol=1e-6)
    np.testing.assert_allclose(sample["ego_pose"].numpy(), lidar_pose(0, 1), rtol=1e-6, atol=1e-4)


def test_lidar_point_lands_in_the_right_camera_pixel(dataroot: Path):
    sample = NuScenesBEV(dataroot, split="train", image_size=IMAGE_SIZE)[0]
    # By hand: LiDAR ego frame -> global -> ego at the camera's timestamp -> CAM_FRONT -> original pixel ->
    # x 0.4 (160 -> 64 wide, 90 -> 36 high) -> minus the 4 cropped rows; the pixel containing (u, v).
    p = transform(np.linalg.inv(camera_to_ego("CAM_FRONT")),
                  transform(np.linalg.inv(lidar_pose(0, 0) @ camera_motion("CAM_FRONT")),
                            transform(lidar_pose(0, 0), P_FRONT[None])))[0]
    u, v = K_ORIG[0, 0] * p[0] / p[2] + K_ORIG[0, 2], K_ORIG[1, 1] * p[1] / p[2] + K_ORIG[1, 2]
    row, col = int(np.floor(v * 0.4 - 4)), int(np.floor(u * 0.4))
    assert 0 < p[2] < 9 and (row, col) == (14, 27)  # the point is ~8 m ahead of the camera, left of centre
    depth = sample["depth"].numpy()
    front, back = CAMERAS.index("CAM_FRONT"), CAMERAS.index("CAM_BACK")
    # The farther point on the same ray is hidden by the nearer; the one 5 cm ahead is under the 0.1 m limit.
    assert nonzero(depth[front]) == {(row, col)}
    assert depth[front, row, col] == pytest.approx(p[2], abs=1e-5)
    assert len(nonzero(depth[back])) == 1
    assert all(not depth[c].any() for c in range(6) if c not in (front, back))


def test_boxes_land_in_the_expected_bev_cells(dataroot: Path):
    sample = NuScenesBEV(dataroot, split="train")[0]
    bev = sample["bev"].numpy()
    vehicle, pedestrian, ood = (BEV_CLASSES.index(c) for c in ("vehicle", "pedestrian", "ood"))
    # Cell (i, j) covers x in [50 - 0.5 (i+1), 50 - 0.5 i), y likewise: the car spans x 10.05..14.05, y 4.1..6.1,
    # so rows (50-14.05)/0.5 = 71.9 -> 71 to (50-10.05)/0.5 = 79.9 -> 79, columns 87.8 -> 87 to 91.8 -> 91.
    car = cells(range(71, 80), range(87, 92))
    assert nonzero(bev[vehicle, :100, :100]) == car  # ahead-left = top-left quadrant, nothing else there
    # pedestrian x -8.65..-8.05 -> rows 116..117, y -6.45..-5.85 -> cols 111..112
    assert nonzero(bev[pedestrian]) == cells(range(116, 118), range(111, 113))
    # cylinder x 19.8..20.8 -> rows 58..60, y -10.7..-9.7 -> cols 119..121; animal x -15.9..-14.7 -> rows
    # 129..131, y 11.8..12.6 -> cols 74..76
    assert nonzero(bev[ood]) == cells(range(58, 61), range(119, 122)) | cells(range(129, 132), range(74, 77))
    assert not bev[:, 105:108, 104:108].any()  # the barrier (x 4.05..6.55, y -3.55..-3.05) has no class
    assert set(np.unique(bev)) == {0.0, 1.0}


def test_rotated_box_centre_area_and_heading(dataroot: Path):
    vehicles = NuScenesBEV(dataroot, split="train")[0]["bev"][0].numpy()
    truck = vehicles[120:160, 120:160]  # the truck is alone in this window (behind-right)
    assert truck[140 - 120, 139 - 120] == 1  # centre x -20.1 -> row 140.2, y -19.9 -> col 139.8
    area = 6.0 * 3.0 / 0.5**2  # 72 cells; filling boundary cells adds about half the perimeter in cells
    assert area <= truck.sum() <= area + (6.0 + 3.0) * 2 / 0.5 / 2 + 4
    # Heading 30 deg to the left: the front end (centre + 3 m along the heading) is drawn, its mirror is not.
    front = (-20.1 + 3 * np.cos(np.pi / 6), -19.9 + 3 * np.sin(np.pi / 6))  # x -17.5, y -18.4
    mirror = (-20.1 + 3 * np.cos(np.pi / 6), -19.9 - 3 * np.sin(np.pi / 6))  # y -21.4
    index = BEVGrid().to_index
    for (x, y), drawn in ((front, 1), (mirror, 0)):
        i, j = (int(np.floor(c)) for c in index(np.array(x), np.array(y)))
        assert vehicles[i, j] == drawn


def test_low_visibility_vehicles_are_invalid(dataroot: Path):
    sample = NuScenesBEV(dataroot, split="train", min_visibility=2)[0]
    visibility, valid = sample["visibility"].numpy(), sample["valid"].numpy()
    hidden = cells(range(35, 44), range(158, 163))  # x 28.3..32.3, y -31.3..-29.3
    assert nonzero(~valid) == hidden  # the barely visible pedestrian does not count
    assert set(visibility[tuple(np.array(sorted(hidden)).T)]) == {1}
    assert set(visibility[71:80, 87:92].ravel()) == {4}  # the car
    assert set(np.unique(visibility)) == {0, 1, 3, 4}  # the truck is 3
    assert sample["bev"][0].numpy()[tuple(np.array(sorted(hidden)).T)].all()  # still drawn as a vehicle
    assert NuScenesBEV(dataroot, split="train", min_visibility=1)[0]["valid"].all()


def test_overlapping_vehicles_take_the_highest_visibility():
    grid = BEVGrid(-2.0, 2.0, -2.0, 2.0, 1.0)  # 4 x 4 cells of 1 m
    # a visible box over rows 0-1 and a barely visible one over rows 1-3 (both over columns 1-2)
    footprints = np.array([[[1.9, 0.9], [0.1, 0.9], [0.1, -0.9], [1.9, -0.9]],
                           [[0.9, 0.9], [-1.9, 0.9], [-1.9, -0.9], [0.9, -0.9]]])
    for order in ([0, 1], [1, 0]):  # the result must not depend on the annotation order
        levels = np.array([3, 1], np.uint8)[order]
        bev, visibility, valid = rasterise(footprints[order], np.array([0, 0]), levels, grid, 2)
        assert nonzero(bev[0]) == cells(range(0, 4), range(1, 3)) and not bev[1:].any()
        np.testing.assert_array_equal(visibility[:, 1], [3, 3, 1, 1])  # row 1 is under both: the visible one counts
        assert nonzero(~valid) == cells(range(2, 4), range(1, 3))


# (32, 64): x 0.4 -> 64 x 36, the top 4 rows cropped. (40, 64): 90 x 0.4 = 36 < 40 rows, so x 40/90 -> 71 x 40
# and 3 columns cropped on the left: fx = 110 x 71/160, cx = 80 x 71/160 - 3, fy = 110 x 40/90, cy = 45 x 40/90.
@pytest.mark.parametrize(("image_size", "fx_cx_fy_cy"), [((32, 64), (44.0, 32.0, 44.0, 14.0)),
                                                        ((40, 64), (48.8125, 32.5, 440 / 9, 20.0))],
                         ids=["crop-bottom", "scale-by-height"])
def test_resize_crop_keeps_image_content_at_the_projected_pixel(dataroot: Path, image_size: tuple[int, int],
                                                                fx_cx_fy_cy: tuple[float, ...]):
    channel = "CAM_FRONT_LEFT"
    point_ego = np.array([[6.0, 6.5, 1.2]])  # ahead-left, in the ego frame of the camera's timestamp
    p = transform(np.linalg.inv(camera_to_ego(channel)), point_ego)[0]
    u, v = (K_ORIG @ p)[:2] / p[2]
    assert 10 < u < ORIG_W - 10 and 10 < v < ORIG_H - 10
    image = np.full((ORIG_H, ORIG_W, 3), 30, np.uint8)
    top, left = round(v - 2.5), round(u - 2.5)  # a 5 x 5 dot whose centre [left + 2.5, top + 2.5) is ~(u, v)
    image[top:top + 5, left:left + 5] = 255
    path = dataroot / "samples" / channel / f"scene-0001-sample-0__{channel}.jpg"
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 100])

    sample = NuScenesBEV(dataroot, split="train", image_size=image_size)[0]
    c = CAMERAS.index(channel)
    K = sample["intrinsics"][c].numpy()
    np.testing.assert_allclose([K[0, 0], K[0, 2], K[1, 1], K[1, 2]], fx_cx_fy_cy, rtol=1e-6)
    cam = np.linalg.inv(sample["cam_to_ego"][c].double().numpy())
    expected = (sample["intrinsics"][c].double().numpy() @ transform(cam, point_ego)[0])
    expected = expected[:2] / expected[2]
    brightness = np.clip(sample["images"][c].mean(0).numpy() - 0.5, 0, None)
    rows, cols = np.indices(brightness.shape) + 0.5  # pixel centres: pixel (i, j) covers [j, j+1) x [i, i+1)
    found = np.array([(cols * brightness).sum(), (rows * brightness).sum()]) / brightness.sum()
    np.testing.assert_allclose(found, expected, atol=1.0)


# ----------------------------------------------------------------------------------------------------------------
# Splits


def test_splits_json_scene_order_and_time_order(dataroot: Path, tmp_path: Path):
    tokens = {split: [kf.token for kf in NuScenesBEV(dataroot, split=split).keyframes] for split in SPLITS}
    assert tokens == {"train": ["scene-0001-sample-0", "scene-0001-sample-1"],
                      "val": ["scene-0002-sample-0", "scene-0002-sample-1"],
                      "test": ["scene-0002-sample-0", "scene-0002-sample-1"]}
    split_file = tmp_path / "my_splits.json"  # an explicit split_file wins over splits.json
    split_file.write_text(json.dumps({"all": ["scene-0002", "scene-0001"]}))
    assert [kf.token for kf in NuScenesBEV(dataroot, split="all", split_file=str(split_file)).keyframes] == \
        ["scene-0002-sample-0", "scene-0002-sample-1", "scene-0001-sample-0", "scene-0001-sample-1"]


def test_official_mini_split_without_splits_json(tmp_path: Path):
    official = json.loads(OFFICIAL_SPLITS.read_text())["v1.0-mini"]
    names = official["train"] + official["val"]
    root = write_nuscenes(tmp_path / "mini", scenes=tuple((name, 1) for name in reversed(names)), splits=None)
    tokens = {split: [kf.token for kf in NuScenesBEV(root, split=split).keyframes]
              for split in ("train", "val", "test")}
    assert tokens["train"] == [f"{name}-sample-0" for name in ("scene-0061", "scene-0553", "scene-0655", "scene-0757",
                                                                "scene-0796", "scene-1077", "scene-1094", "scene-1100")]
    assert tokens["val"] == tokens["test"] == ["scene-0103-sample-0", "scene-0916-sample-0"]


def test_official_trainval_split_lists_and_missing_scenes(tmp_path: Path):
    official = json.loads(OFFICIAL_SPLITS.read_text())["v1.0-trainval"]
    train, val = official["train"], official["val"]
    assert (len(train), len(val), len(set(train) | set(val))) == (700, 150, 850)
    assert {"scene-0061", "scene-1100"} <= set(train) and {"scene-0103", "scene-0916"} <= set(val)
    root = write_nuscenes(tmp_path / "trainval", scenes=(("scene-0001", 1), ("scene-0003", 1)),
                          version="v1.0-trainval", splits=None)
    with pytest.raises(DatasetFormatError, match=r"699 scene\(s\) of split 'train' are not in .*scene\.json: "
                                                  r"scene-0002, scene-0004"):
        NuScenesBEV(root, version="v1.0-trainval", split="train")


def test_unknown_version_asks_for_a_split_file(tmp_path: Path):
    root = write_nuscenes(tmp_path / "test", version="v1.0-test", splits=None)
    with pytest.raises(DatasetFormatError, match=r"no official scene split .*'v1\.0-test'.*split_file="):
        NuScenesBEV(root, version="v1.0-test", split="test")


# ----------------------------------------------------------------------------------------------------------------
# Errors: each names the file, the field or token, and what was expected


def _remove_field(records: list[dict]) -> None:
    del records[0]["ego_pose_token"]


def _dangle(records: list[dict]) -> None:
    record(records, "ann-scene-0001-sample-1-car")["instance_token"] = "nowhere"


def _no_keyframe(records: list[dict]) -> None:
    record(records, "sd-scene-0002-sample-0-CAM_BACK_LEFT")["is_key_frame"] = False


def _short_quaternion(records: list[dict]) -> None:
    record(records, "cs-CAM_BACK")["rotation"] = [1.0, 0.0, 0.0]


def _cycle(records: list[dict]) -> None:
    record(records, "scene-0001-sample-1")["next"] = "scene-0001-sample-0"


def _splits(root: Path, splits: dict) -> None:
    (root / "v1.0-mini" / "splits.json").write_text(json.dumps(splits))


ERRORS = {  # id: (break the fixture, constructor kwargs, exception, message pattern)
    "missing dataroot": (lambda root: None, {"dataroot": "absent"}, DatasetFormatError,
                         r"absent does not exist .*found in .*: nuscenes"),
    "missing version": (lambda root: None, {"version": "v1.0-trainval"}, DatasetFormatError,
                        r"v1\.0-trainval not found .*found in .*: maps/, samples/, v1\.0-mini/"),
    "missing table": (lambda root: (root / "v1.0-mini" / "instance.json").unlink(), {}, DatasetFormatError,
                      r"table 'instance' not found: expected .*v1\.0-mini/instance\.json"),
    "malformed json": (lambda root: (root / "v1.0-mini" / "sample.json").write_text("[{"), {}, DatasetFormatError,
                       r"sample\.json: malformed JSON"),
    "missing field": (lambda root: edit_table(root, "sample_data", _remove_field), {}, DatasetFormatError,
                      r"sample_data\.json: record 0 .* lacks field\(s\) \['ego_pose_token'\]"),
    "dangling token": (lambda root: edit_table(root, "sample_annotation", _dangle), {}, DatasetFormatError,
                       r"token 'nowhere' not found in table instance .*field 'instance_token' of sample_annotation "
                       r"record 'ann-scene-0001-sample-1-car'"),
    "missing image": (lambda root: (root / "samples/CAM_BACK/scene-0001-sample-1__CAM_BACK.jpg").unlink(), {},
                      DatasetFormatError,
                      r"CAM_BACK/scene-0001-sample-1__CAM_BACK\.jpg not found .*sample 'scene-0001-sample-1'"),
    "missing lidar": (lambda root: (root / "samples/LIDAR_TOP/scene-0001-sample-0__LIDAR_TOP.pcd.bin").unlink(), {},
                      DatasetFormatError, r"__LIDAR_TOP\.pcd\.bin not found .*sample 'scene-0001-sample-0'"),
    "no keyframe": (lambda root: edit_table(root, "sample_data", _no_keyframe), {"split": "val"}, DatasetFormatError,
                    r"sample 'scene-0002-sample-0' has no keyframe .* \['CAM_BACK_LEFT'\]"),
    "bad quaternion": (lambda root: edit_table(root, "calibrated_sensor", _short_quaternion), {}, DatasetFormatError,
                       r"calibrated_sensor\.json: record 'cs-CAM_BACK' field 'rotation' .* expected 4 numbers"),
    "next cycle": (lambda root: edit_table(root, "sample", _cycle), {}, DatasetFormatError,
                   r"sample\.json: following 'next' from scene 'scene-0001' reaches sample 'scene-0001-sample-0' "
                   r"again"),
    "unknown split": (lambda root: None, {"split": "bogus"}, DatasetFormatError,
                      r"splits\.json: no split 'bogus'.*found \['test', 'train', 'val'\]"),
    "unknown scene": (lambda root: _splits(root, {"train": ["scene-0001", "scene-9999"]}), {}, DatasetFormatError,
                      r"splits\.json: 1 scene\(s\) of split 'train' are not in .*scene\.json: scene-9999"),
    "empty split": (lambda root: _splits(root, {"train": []}), {}, DatasetFormatError,
                    r"splits\.json: split 'train' is empty"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_name_the_file_field_and_token(tmp_path: Path, name: str):
    breaks, kwargs, error, pattern = ERRORS[name]
    root = write_nuscenes(tmp_path / "nuscenes")
    breaks(root)
    kwargs = {"dataroot": root, **kwargs}
    if kwargs["dataroot"] == "absent":
        kwargs["dataroot"] = tmp_path / "absent"
    with pytest.raises(error, match=pattern):
        NuScenesBEV(**kwargs)


def test_unreadable_files_name_the_file_and_sample(dataroot: Path):
    ds = NuScenesBEV(dataroot, split="train", image_size=IMAGE_SIZE)
    keyframe = ds.keyframes[0]
    keyframe.cameras[2].path.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetFormatError, match=re.escape(f"{keyframe.cameras[2].path}: not a readable image "
                                                            f"(sample '{keyframe.token}')")):
        ds[0]
    np.zeros(7, np.float32).tofile(keyframe.lidar_path)
    with pytest.raises(DatasetFormatError, match=re.escape(f"{keyframe.lidar_path}: 7 float32 values, expected 5 "
                                                            f"per point (x, y, z, intensity, ring) (sample "
                                                            f"'{keyframe.token}')")):
        ds[0]


def test_tables_index_keyframes_only(dataroot: Path):
    tables = NuScenesTables(dataroot, "v1.0-mini")
    assert set(tables.keyframes["scene-0001-sample-0"]) == {*CAMERAS, "LIDAR_TOP"}
    assert tables.keyframes["scene-0001-sample-0"]["LIDAR_TOP"]["token"] == "sd-scene-0001-sample-0-LIDAR_TOP"


# ----------------------------------------------------------------------------------------------------------------
# Cross-check with the official devkit: its box corners for this dataroot, stored in tests/data/devkit_boxes.json
# by tests/data/make_devkit_boxes.py (the devkit pins numpy<2, so it is not a dependency).


@pytest.mark.parametrize("split", ["train", "val"])
def test_box_ego_coordinates_match_nuscenes_devkit(dataroot: Path, split: str):
    devkit = json.loads((Path(__file__).parent / "data" / "devkit_boxes.json").read_text())["ego_bottom_corners_xy"]
    keyframes = NuScenesBEV(dataroot, split=split).keyframes
    assert keyframes
    for keyframe in keyframes:
        expected = np.array(devkit[keyframe.token])
        assert len(expected) == len(keyframe.footprints) > 0
        for ours, theirs in zip(keyframe.footprints, expected):
            distances = np.linalg.norm(ours[:, None] - theirs[None], axis=-1)
            assert distances.min(1).max() < 1e-6 and distances.min(0).max() < 1e-6


def test_observed_cells_follow_the_rays_below_vehicle_height():
    from bev_uncertainty.data.nuscenes import observed_cells

    grid = BEVGrid(-10.0, 10.0, -10.0, 10.0, 1.0)
    origin = np.array([0.2, 0.5, 1.8])  # in cell (row 9, column 9)
    # A ray ahead to the ground at x = 6.5: the cells from the sensor's to the point's, rows 9 down to 3.
    observed = observed_cells(np.array([[6.5, 0.5, 0.0]]), origin, grid)
    assert sorted(map(tuple, np.argwhere(observed))) == [(row, 9) for row in range(3, 10)]
    # A ray rising to 4 m behind the car is below 2 m for its first 0.8 m only: rows 9 and 10.
    high = observed_cells(np.array([[-8.5, 0.5, 4.0]]), origin, grid)
    assert sorted(map(tuple, np.argwhere(high))) == [(9, 9), (10, 9)]
