"""Dataset classes on tiny fixtures written in each dataset's exact layout: keys, shapes, dtypes, the geometry
(depth, K, T_21, rigid flow, moving masks) against values computed independently, and the layout errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from ego_motion_flow.data import io
from ego_motion_flow.data.kitti15 import Kitti2015
from ego_motion_flow.data.kitti_odometry import KittiOdometry
from ego_motion_flow.data.sample import rigid_flow_np
from ego_motion_flow.data.sintel import Sintel
from ego_motion_flow.data.vkitti2 import VirtualKitti2
from shared_utils.datasets import DatasetFormatError

KEYS = {"image1", "image2", "flow", "flow_valid", "depth", "K", "T_21", "has_pose", "moving", "moving_valid",
        "rigid_flow", "rigid_valid", "sequence", "frame", "name"}


def _check_sample(sample: dict, height: int, width: int) -> None:
    assert set(sample) == KEYS
    for key in ("image1", "image2"):
        assert sample[key].shape == (3, height, width) and sample[key].dtype == torch.float32
    for key in ("flow", "rigid_flow"):
        assert sample[key].shape == (2, height, width) and sample[key].dtype == torch.float32
    for key in ("flow_valid", "moving", "moving_valid", "rigid_valid"):
        assert sample[key].shape == (height, width) and sample[key].dtype == torch.bool
    assert sample["depth"].shape == (height, width) and sample["depth"].dtype == torch.float32
    assert sample["K"].shape == (3, 3) and sample["T_21"].shape == (4, 4)
    assert sample["has_pose"].dtype == torch.bool and sample["has_pose"].ndim == 0
    assert isinstance(sample["sequence"], str) and isinstance(sample["frame"], int)
    assert isinstance(sample["name"], str)


def _pose(yaw: float, translation) -> np.ndarray:
    """4 x 4 rigid transform: rotation about the camera y axis (a car turning), then translation."""
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[:3, 3] = translation
    return T


def _flow_through_world(depth: np.ndarray, K: np.ndarray, world_to_camera_1: np.ndarray,
                        world_to_camera_2: np.ndarray) -> np.ndarray:
    """Flow of a static scene computed through world points (independent of any T_21 composition)."""
    height, width = depth.shape
    u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)
    X_camera = pixels @ np.linalg.inv(K).T * depth[..., None]
    X_world = (np.concatenate([X_camera, np.ones_like(u)[..., None]], -1) @ np.linalg.inv(world_to_camera_1).T)
    X_2 = (X_world @ world_to_camera_2.T)[..., :3] @ K.T
    return X_2[..., :2] / X_2[..., 2:] - pixels[..., :2]


def _image(rng, height, width) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------- KITTI 2015

KITTI_H, KITTI_W = 24, 32
KITTI_K = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])
KITTI_MOTIONS = {"000000": _pose(0.02, [0.05, 0.0, -0.8]), "000001": _pose(-0.01, [0.0, 0.02, -1.0])}
KITTI_OBJECT = (slice(4, 10), slice(5, 14))


def _kitti_depth() -> np.ndarray:
    u, v = np.meshgrid(np.arange(KITTI_W), np.arange(KITTI_H))
    return 6.0 + 0.3 * u + 4.0 * np.sin(v / 3.0) ** 2


def _write_kitti15(root: Path) -> Path:
    rng = np.random.default_rng(0)
    t = root / "training"
    P_rect_02 = np.hstack([KITTI_K, KITTI_K @ [[0.06], [0], [0]]])
    P_rect_03 = np.hstack([KITTI_K, KITTI_K @ [[0.06 - 0.54], [0], [0]]])  # 0.54 m to the right of camera 2
    depth = _kitti_depth()
    for pair_id, T_21 in KITTI_MOTIONS.items():
        for frame in ("10", "11"):
            (t / "image_2").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(t / "image_2" / f"{pair_id}_{frame}.png"), _image(rng, KITTI_H, KITTI_W))
        flow, valid = rigid_flow_np(depth, KITTI_K, T_21)
        flow[KITTI_OBJECT] += [3.0, -1.0]  # a car with its own motion
        valid[0, :3] = False
        objects = np.zeros((KITTI_H, KITTI_W), bool)
        objects[KITTI_OBJECT] = True
        io.write_kitti_flow(t / "flow_occ" / f"{pair_id}_10.png", flow, valid)
        io.write_kitti_disparity(t / "disp_occ_0" / f"{pair_id}_10.png", 30.0 * 0.54 / depth, depth > 0)
        io.write_kitti_object_map(t / "obj_map" / f"{pair_id}_10.png", objects)
        io.write_kitti_cam_to_cam(t / "calib_cam_to_cam" / f"{pair_id}.txt", P_rect_02, P_rect_03)
    return root


def test_kitti15_loads_pairs_with_pose_fitted_to_static_ground_truth(tmp_path):
    dataset = Kitti2015(_write_kitti15(tmp_path))
    assert len(dataset) == 2
    for index, (pair_id, T_21) in enumerate(KITTI_MOTIONS.items()):
        sample = dataset[index]
        _check_sample(sample, KITTI_H, KITTI_W)
        assert (sample["sequence"], sample["frame"], sample["name"]) == (pair_id, 10, f"kitti15/{pair_id}")
        np.testing.assert_allclose(sample["K"].numpy(), KITTI_K, rtol=1e-6)
        np.testing.assert_allclose(sample["depth"].numpy(), _kitti_depth(), rtol=5e-3)
        assert sample["has_pose"]
        np.testing.assert_allclose(sample["T_21"].numpy(), T_21, atol=5e-3)
        objects = np.zeros((KITTI_H, KITTI_W), bool)
        objects[KITTI_OBJECT] = True
        np.testing.assert_array_equal(sample["moving"].numpy(), objects)
        assert torch.equal(sample["moving_valid"], sample["flow_valid"]) and not sample["flow_valid"][0, :3].any()
        static = (sample["flow_valid"] & sample["rigid_valid"] & ~sample["moving"]).numpy()
        error = (sample["flow"] - sample["rigid_flow"]).norm(dim=0).numpy()
        assert static.sum() > 500 and error[static].max() < 0.1
    default_collate([dataset[0], dataset[1]])


def test_kitti15_split_file_selects_ids(tmp_path):
    root = _write_kitti15(tmp_path)
    (tmp_path / "val.txt").write_text("000001\n\n")
    dataset = Kitti2015(root, split_file=tmp_path / "val.txt")
    assert dataset.ids == ["000001"] and dataset[0]["name"] == "kitti15/000001"


def test_kitti15_without_static_points_has_no_pose(tmp_path):
    root = _write_kitti15(tmp_path)
    io.write_kitti_object_map(root / "training" / "obj_map" / "000000_10.png", np.ones((KITTI_H, KITTI_W), bool))
    sample = Kitti2015(root)[0]
    assert not sample["has_pose"] and not sample["rigid_valid"].any()
    assert torch.equal(sample["T_21"], torch.eye(4))


def test_kitti15_layout_errors(tmp_path):
    root = _write_kitti15(tmp_path)
    (root / "training" / "image_2" / "000001_11.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"000001_11.png not found: expected the second frame of pair 000001"):
        Kitti2015(root)
    (tmp_path / "test.txt").write_text("000009\n")
    with pytest.raises(DatasetFormatError, match="000009_10.png not found.*listed by split file"):
        Kitti2015(root, split_file=tmp_path / "test.txt")
    (root / "training" / "calib_cam_to_cam" / "000000.txt").write_text("P_rect_03: " + " ".join(["1"] * 12) + "\n")
    (tmp_path / "first.txt").write_text("000000\n")
    with pytest.raises(DatasetFormatError, match="000000.txt: no P_rect_02 line"):
        Kitti2015(root, split_file=tmp_path / "first.txt")[0]
    with pytest.raises(DatasetFormatError, match=r"no \*_10.png pairs in .*image_2.*does not exist"):
        Kitti2015(tmp_path / "elsewhere")


# ---------------------------------------------------------------------------------------------- KITTI odometry

ODOMETRY_K = np.array([[50.0, 0, 9.5], [0, 50.0, 5.5], [0, 0, 1]])
CAMERA2_T = np.array([0.06, 0.0, 0.0])  # X_cam2 = X_cam0 + t: camera 2 sits 6 cm left of camera 0


def _write_odometry(root: Path, sequence: str, poses: np.ndarray | None) -> None:
    rng = np.random.default_rng(1)
    folder = root / "sequences" / sequence
    (folder / "image_2").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / "image_2" / f"{i:06d}.png"), _image(rng, 12, 20))
    io.write_kitti_odometry_calib(folder / "calib.txt", np.hstack([ODOMETRY_K, (ODOMETRY_K @ CAMERA2_T)[:, None]]))
    if poses is not None:
        io.write_kitti_poses(root / "poses" / f"{sequence}.txt", poses)


def test_kitti_odometry_converts_camera_0_poses_to_camera_2(tmp_path):
    poses = np.stack([np.eye(4), _pose(0.1, [0, 0, 0]), _pose(0.15, [0.1, 0, 1.0])])  # camera 0 turns in place
    _write_odometry(tmp_path, "00", poses)
    _write_odometry(tmp_path, "11", None)
    dataset = KittiOdometry(tmp_path, ["00", "11"])
    assert len(dataset) == 4
    for index in (0, 1):
        sample = dataset[index]
        _check_sample(sample, 12, 20)
        assert sample["has_pose"] and (sample["sequence"], sample["frame"]) == ("00", index)
        assert not (sample["flow_valid"].any() or sample["moving_valid"].any() or sample["rigid_valid"].any())
        np.testing.assert_allclose(sample["K"].numpy(), ODOMETRY_K)
        # a world point in camera-2 coordinates of both frames, through camera 0's poses and the offset t
        T_21 = sample["T_21"].double().numpy()
        for X in ([1.0, -0.5, 7.0, 1.0], [-3.0, 0.2, 12.0, 1.0]):
            X_cam2_1 = (np.linalg.inv(poses[index]) @ X)[:3] + CAMERA2_T
            X_cam2_2 = (np.linalg.inv(poses[index + 1]) @ X)[:3] + CAMERA2_T
            np.testing.assert_allclose((T_21 @ np.append(X_cam2_1, 1.0))[:3], X_cam2_2, atol=1e-5)
    # turning in place moves camera 2 (the lever arm): a translation that camera 0's motion does not have
    assert np.linalg.norm(dataset[0]["T_21"][:3, 3]) > 1e-3
    assert not dataset[2]["has_pose"] and dataset[3]["name"] == "kitti_odometry/11/000001"


def test_kitti_odometry_errors(tmp_path):
    _write_odometry(tmp_path, "00", np.stack([np.eye(4)] * 2))
    with pytest.raises(DatasetFormatError, match="00.txt: expected one pose per frame.*found 2"):
        KittiOdometry(tmp_path, ["00"])
    (tmp_path / "sequences" / "00" / "calib.txt").write_text("P0: " + " ".join(["1"] * 12) + "\n")
    (tmp_path / "poses" / "00.txt").unlink()
    with pytest.raises(DatasetFormatError, match="calib.txt: no P2 line"):
        KittiOdometry(tmp_path, ["00"])
    with pytest.raises(DatasetFormatError, match="07/image_2: expected at least two frames.*found in .*sequences: 00/"):
        KittiOdometry(tmp_path, ["07"])


# ----------------------------------------------------------------------------------------------------- VKITTI2

VK_H, VK_W = 12, 20
VK_K = np.array([[15.0, 0, 9.5], [0, 15.0, 5.5], [0, 0, 1]])
VK_FRAMES = 3
VK_CAR_0, VK_CAR_1 = (slice(2, 5), slice(3, 8)), (slice(6, 9), slice(12, 17))


def _vk_camera_to_world(frame: int) -> np.ndarray:
    return _pose(0.03 * frame, [0.2 * frame, 0.0, 0.7 * frame])


def _vk_depth(frame: int) -> np.ndarray:
    u, v = np.meshgrid(np.arange(VK_W), np.arange(VK_H))
    return 8.0 + 0.25 * u + 0.5 * v + frame


def _write_vkitti2(root: Path, scene: str = "Scene01", variation: str = "clone") -> Path:
    rng = np.random.default_rng(2)
    folder = root / scene / variation
    frames = folder / "frames"
    world_to_camera = {(f, c): np.linalg.inv(_vk_camera_to_world(f)) for f in range(VK_FRAMES) for c in (0, 1)}
    for f in range(VK_FRAMES):
        (frames / "rgb" / "Camera_0").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(frames / "rgb" / "Camera_0" / f"rgb_{f:05d}.jpg"), _image(rng, VK_H, VK_W))
        io.write_vkitti2_depth(frames / "depth" / "Camera_0" / f"depth_{f:05d}.png", _vk_depth(f))
        instances = np.zeros((VK_H, VK_W), int)
        instances[VK_CAR_0], instances[VK_CAR_1] = 1, 2  # trackID 0 and 1
        io.write_vkitti2_instances(frames / "instanceSegmentation" / "Camera_0" / f"instancegt_{f:05d}.png", instances)
        if f + 1 < VK_FRAMES:
            flow = _flow_through_world(_vk_depth(f), VK_K, world_to_camera[(f, 0)], world_to_camera[(f + 1, 0)])
            io.write_vkitti2_flow(frames / "forwardFlow" / "Camera_0" / f"flow_{f:05d}.png", flow,
                                  np.ones((VK_H, VK_W), bool))
    io.write_vkitti2_intrinsics(folder / "intrinsic.txt", {(f, c): VK_K for f in range(VK_FRAMES) for c in (0, 1)})
    io.write_vkitti2_extrinsics(folder / "extrinsic.txt", world_to_camera)
    io.write_vkitti2_moving(folder / "bbox.txt", {(0, 0): {0}, (0, 1): {0, 1}, (1, 0): set()})
    return root


def test_vkitti2_extrinsics_are_world_to_camera_a_known_point_reprojects(tmp_path):
    """A point seen at pixel (4, 3) of frame 0 with depth d is X_w = c2w_0 K^-1 d [4, 3, 1]; frame 1 sees it at
    K E_1 X_w. The loader's rigid flow (from T_21 = E_1 E_0^-1, world-to-camera rows) must land it there,
    as must the decoded ground-truth flow; reading the rows as camera-to-world would miss by pixels."""
    sample = VirtualKitti2(_write_vkitti2(tmp_path), ["Scene01"], ["clone"])[0]
    u, v = 4, 3
    depth = float(sample["depth"][v, u])
    assert depth == pytest.approx(_vk_depth(0)[v, u], abs=0.005)
    X_world = _vk_camera_to_world(0) @ np.append(depth * np.linalg.inv(VK_K) @ [u, v, 1.0], 1.0)
    x2 = VK_K @ (np.linalg.inv(_vk_camera_to_world(1)) @ X_world)[:3]
    expected = x2[:2] / x2[2] - [u, v]
    np.testing.assert_allclose(sample["rigid_flow"][:, v, u].numpy(), expected, atol=1e-3)
    np.testing.assert_allclose(sample["flow"][:, v, u].numpy(), expected, atol=0.01)
    E0, E1 = (np.linalg.inv(_vk_camera_to_world(f)) for f in (0, 1))
    wrong, _ = rigid_flow_np(sample["depth"].numpy(), VK_K, np.linalg.inv(E1) @ E0)  # rows read as camera-to-world
    assert np.linalg.norm(wrong[v, u] - expected) > 1.0


def test_vkitti2_loads_every_forward_flow_pair(tmp_path):
    dataset = VirtualKitti2(_write_vkitti2(tmp_path), ["Scene01"], ["clone"])
    assert len(dataset) == VK_FRAMES - 1
    for frame in range(VK_FRAMES - 1):
        sample = dataset[frame]
        _check_sample(sample, VK_H, VK_W)
        assert (sample["sequence"], sample["frame"]) == ("Scene01/clone", frame)
        assert sample["name"] == f"vkitti2/Scene01/clone/Camera_0/{frame:05d}"
        assert sample["has_pose"] and sample["flow_valid"].all() and sample["rigid_valid"].all()
        np.testing.assert_allclose(sample["K"].numpy(), VK_K)
        T_21 = np.linalg.inv(_vk_camera_to_world(frame + 1)) @ _vk_camera_to_world(frame)
        np.testing.assert_allclose(sample["T_21"].numpy(), T_21, atol=1e-6)
        assert (sample["flow"] - sample["rigid_flow"]).abs().max() < 0.02
        assert sample["moving_valid"].all()
    moving = np.zeros((VK_H, VK_W), bool)
    moving[VK_CAR_0] = True  # frame 0: track 0 moves, track 1 is parked
    np.testing.assert_array_equal(dataset[0]["moving"].numpy(), moving)
    assert not dataset[1]["moving"].any()  # frame 1: no moving track
    batch = default_collate([dataset[0], dataset[1]])
    assert batch["flow"].shape == (2, 2, VK_H, VK_W) and batch["has_pose"].tolist() == [True, True]


def test_vkitti2_optional_parts_leave_masks_invalid(tmp_path):
    root = _write_vkitti2(tmp_path)
    folder = root / "Scene01" / "clone"
    for part in ("depth", "instanceSegmentation"):
        shutil.rmtree(folder / "frames" / part)
    (folder / "extrinsic.txt").unlink()
    (folder / "bbox.txt").unlink()
    sample = VirtualKitti2(root, ["Scene01"], ["clone"])[1]
    _check_sample(sample, VK_H, VK_W)
    assert sample["flow_valid"].all() and not sample["has_pose"]
    assert not (sample["depth"].any() or sample["rigid_valid"].any() or sample["moving_valid"].any())
    (folder / "intrinsic.txt").unlink()
    with pytest.raises(DatasetFormatError, match="intrinsic.txt not found and the images are 12 x 20"):
        VirtualKitti2(root, ["Scene01"], ["clone"])[0]


def test_vkitti2_layout_errors(tmp_path):
    root = _write_vkitti2(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"no flow_\*.png in .*Scene02.*found in .*: Scene01/"):
        VirtualKitti2(root, ["Scene02"], ["clone"])
    with pytest.raises(ValueError, match="at least one scene"):
        VirtualKitti2(root, [], ["clone"])
    (root / "Scene01" / "clone" / "frames" / "rgb" / "Camera_0" / "rgb_00002.jpg").unlink()
    with pytest.raises(DatasetFormatError, match="rgb_00002.jpg not found: expected the second frame of the pair "
                                                 ".*flow_00001.png"):
        VirtualKitti2(root, ["Scene01"], ["clone"])


# ------------------------------------------------------------------------------------------------------ Sintel

SINTEL_H, SINTEL_W = 8, 12
SINTEL_M = np.array([[10.0, 0, 5.5], [0, 10.0, 3.5], [0, 0, 1]])
SINTEL_PATCH = (slice(2, 5), slice(6, 10))


def _sintel_world_to_camera(frame: int) -> np.ndarray:
    return np.linalg.inv(_pose(-0.02 * frame, [0.1 * frame, 0.0, 0.3 * frame]))


def _write_sintel(root: Path, scene: str = "alley_1") -> Path:
    rng = np.random.default_rng(3)
    t = root / "training"
    depth = 4.0 + np.arange(SINTEL_W)[None, :] * 0.2 + np.zeros((SINTEL_H, 1))
    for frame in (1, 2, 3):
        stem = f"frame_{frame:04d}"
        (t / "final" / scene).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(t / "final" / scene / f"{stem}.png"), _image(rng, SINTEL_H, SINTEL_W))
        io.write_cam(t / "camdata_left" / scene / f"{stem}.cam", SINTEL_M, _sintel_world_to_camera(frame)[:3])
        io.write_dpt(t / "depth" / scene / f"{stem}.dpt", depth)
        if frame < 3:
            flow = _flow_through_world(depth, SINTEL_M, _sintel_world_to_camera(frame),
                                       _sintel_world_to_camera(frame + 1))
            flow[SINTEL_PATCH] += [2.0, 0.0]  # a character moving right
            io.write_flo(t / "flow" / scene / f"{stem}.flo", flow)
    invalid = np.zeros((SINTEL_H, SINTEL_W), np.uint8)
    invalid[0, 0] = 255
    (t / "invalid" / scene).mkdir(parents=True)
    cv2.imwrite(str(t / "invalid" / scene / "frame_0001.png"), invalid)
    return root


def test_sintel_loads_pairs_and_derives_moving_from_rigid_flow(tmp_path):
    dataset = Sintel(_write_sintel(tmp_path))
    assert len(dataset) == 2
    patch = np.zeros((SINTEL_H, SINTEL_W), bool)
    patch[SINTEL_PATCH] = True
    for index, frame in enumerate((1, 2)):
        sample = dataset[index]
        _check_sample(sample, SINTEL_H, SINTEL_W)
        assert (sample["sequence"], sample["frame"]) == ("alley_1", frame)
        assert sample["name"] == f"sintel/final/alley_1/frame_{frame:04d}"
        np.testing.assert_allclose(sample["K"].numpy(), SINTEL_M)
        T_21 = _sintel_world_to_camera(frame + 1) @ np.linalg.inv(_sintel_world_to_camera(frame))
        np.testing.assert_allclose(sample["T_21"].numpy(), T_21, atol=1e-6)
        np.testing.assert_array_equal(sample["moving"].numpy(), patch & sample["moving_valid"].numpy())
    first = dataset[0]
    assert not first["flow_valid"][0, 0] and first["flow_valid"].sum() == SINTEL_H * SINTEL_W - 1
    assert dataset[1]["flow_valid"].all() and dataset[1]["moving_valid"].all()


def test_sintel_layout_errors(tmp_path):
    root = _write_sintel(tmp_path)
    (root / "training" / "camdata_left" / "alley_1" / "frame_0003.cam").unlink()
    with pytest.raises(DatasetFormatError, match="frame_0003.cam not found: expected the camera of frame 2"):
        Sintel(root)
    with pytest.raises(DatasetFormatError, match="no scene folders in .*clean.*found in .*training: .*final/"):
        Sintel(root, pass_name="clean")
