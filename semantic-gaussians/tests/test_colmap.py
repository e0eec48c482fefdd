"""COLMAP sparse models (data/colmap.py): hand-packed bytes and a hand-written text model decode to hand-known
values, both formats round-trip, ColmapScene serves images, K and poses that reproject COLMAP's own keypoints, and
malformed scenes raise DatasetFormatError naming the path."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from semantic_gaussians.data import colmap
from semantic_gaussians.data.colmap import Camera, ColmapScene, Image, Point3D
from shared_utils.datasets import DatasetFormatError

WIDTH, HEIGHT = 80, 60
SQRT_HALF = math.sqrt(0.5)


def _image(image_id: int, name: str, camera_id: int = 1, qvec=(1.0, 0, 0, 0), tvec=(0.0, 0, 0), xys=(),
           point3D_ids=()) -> Image:
    return Image(image_id, np.array(qvec, float), np.array(tvec, float), camera_id, name,
                 np.array(xys, float).reshape(-1, 2), np.array(point3D_ids, np.int64))


def _point(point_id: int, xyz, rgb=(10, 20, 30), track=()) -> Point3D:
    track = np.array(track, np.int32).reshape(-1, 2)
    return Point3D(point_id, np.array(xyz, float), np.array(rgb, np.uint8), 0.25, track[:, 0].copy(),
                   track[:, 1].copy())


def _write_pngs(root: Path, names, seed: int = 0, width: int = WIDTH, height: int = HEIGHT) -> dict[str, np.ndarray]:
    """Random-colour BGR PNGs (as OpenCV writes them) under root/images; returns them by name."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names:
        written[name] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / name), written[name])
    return written


def _scene(root: Path, cameras: list[Camera], images: list[Image], ext: str = ".bin") -> dict[str, np.ndarray]:
    colmap.write_model({c.id: c for c in cameras}, {i.id: i for i in images}, {1: _point(1, (0, 0, 1))},
                       root / "sparse" / "0", ext)
    return _write_pngs(root, [image.name for image in images])


def _pinhole(camera_id: int = 1) -> Camera:
    return Camera(camera_id, "PINHOLE", WIDTH, HEIGHT, np.array([100.0, 100.0, 40.5, 30.5]))


def _assert_same_model(a, b) -> None:
    for records_a, records_b in zip(a, b):
        assert list(records_a) == list(records_b)
        for key, record in records_a.items():
            other = records_b[key]
            for field, value in vars(record).items():
                if isinstance(value, np.ndarray):
                    assert value.dtype == getattr(other, field).dtype, field
                    np.testing.assert_array_equal(value, getattr(other, field), err_msg=field)
                else:
                    assert value == getattr(other, field), field


# ------------------------------------------------------------------------------------------------------ files


def _model():
    cameras = {1: _pinhole(1), 4: Camera(4, "OPENCV", 640, 480, np.array([500, 501, 320.5, 240.25, 0.1, -0.01,
                                                                          1e-3, -2e-4])),
               9: Camera(9, "THIN_PRISM_FISHEYE", 8, 6, np.linspace(-1, 1, 12)),
               2: Camera(2, "SIMPLE_RADIAL", 5, 7, np.array([1 / 3, 2.5, 3.5, 0.1]))}
    images = {7: _image(7, "b.png", 4, colmap.rotmat_to_qvec(cv2.Rodrigues(np.array([0.1, -0.2, 0.3]))[0]),
                        (1 / 3, -2.0, 1e-17), [[1.5, 2.25], [3.0, 4.0]], [5, -1]),
              3: _image(3, "sub dir/c d.png", 1)}  # no keypoints: the text file's second line is empty
    points = {5: _point(5, (0.1, 0.2, 1 / 7), (0, 128, 255), [[7, 0], [3, 12]]), 2**40: _point(2**40, (1, 2, 3))}
    return cameras, images, points


@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_model_round_trips_exactly(tmp_path, ext):
    model = _model()
    colmap.write_model(*model, tmp_path / "sparse", ext)
    assert sorted(p.name for p in (tmp_path / "sparse").iterdir()) == [f"{n}{ext}" for n in colmap.MODEL_FILES]
    _assert_same_model(colmap.read_model(tmp_path / "sparse"), model)


def test_binary_files_follow_the_documented_byte_layout(tmp_path):
    cameras = struct.pack("<Q", 1) + struct.pack("<iiQQ", 3, 1, 80, 60) + struct.pack("<4d", 100, 101, 40.5, 30.5)
    images = (struct.pack("<Q", 1) + struct.pack("<i", 12) + struct.pack("<4d", 1, 0, 0, 0)
              + struct.pack("<3d", 0.5, -1, 2) + struct.pack("<i", 3) + b"a.png\x00" + struct.pack("<Q", 2)
              + struct.pack("<ddq", 45.5, 20.5, 9) + struct.pack("<ddq", 1.0, 2.0, -1))
    points = (struct.pack("<Q", 1) + struct.pack("<Q", 9) + struct.pack("<3d", 0.1, -0.2, 2) + bytes([1, 2, 3])
              + struct.pack("<d", 0.75) + struct.pack("<Q", 1) + struct.pack("<ii", 12, 0))
    for name, data in zip(colmap.MODEL_FILES, (cameras, images, points)):
        (tmp_path / f"{name}.bin").write_bytes(data)
    read = colmap.read_model(tmp_path)
    camera, image, point = read[0][3], read[1][12], read[2][9]
    assert (camera.model, camera.width, camera.height) == ("PINHOLE", 80, 60)
    np.testing.assert_array_equal(camera.params, [100, 101, 40.5, 30.5])
    assert (image.camera_id, image.name) == (3, "a.png")
    np.testing.assert_array_equal(image.tvec, [0.5, -1, 2])
    np.testing.assert_array_equal(image.xys, [[45.5, 20.5], [1, 2]])
    np.testing.assert_array_equal(image.point3D_ids, [9, -1])
    np.testing.assert_array_equal(point.rgb, [1, 2, 3])
    assert point.error == 0.75 and point.image_ids.tolist() == [12] and point.point2D_idxs.tolist() == [0]
    colmap.write_model(*read, tmp_path / "written")
    for name, data in zip(colmap.MODEL_FILES, (cameras, images, points)):
        assert (tmp_path / "written" / f"{name}.bin").read_bytes() == data, name


def test_truncated_binary_file_names_file_and_field(tmp_path):
    colmap.write_model(*_model(), tmp_path)
    data = (tmp_path / "images.bin").read_bytes()
    (tmp_path / "images.bin").write_bytes(data[:-4])  # half of the last image's point count
    with pytest.raises(DatasetFormatError, match=r"images.bin: truncated at byte \d+ reading the point count of "
                                                 r"image 3: expected 8 more bytes, found 4"):
        colmap.read_model(tmp_path)


def test_unknown_camera_model_id_names_the_file(tmp_path):
    colmap.write_model(*_model(), tmp_path)
    (tmp_path / "cameras.bin").write_bytes(struct.pack("<QiiQQ", 1, 1, 42, 8, 6) + bytes(32))
    with pytest.raises(DatasetFormatError, match=r"cameras.bin: camera 1 has model id 42"):
        colmap.read_model(tmp_path)


def test_read_model_without_model_files_lists_the_folder(tmp_path):
    (tmp_path / "cameras.bin").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=f"{re.escape(str(tmp_path))}: expected a COLMAP sparse model.*"
                                                 "found in .*cameras.bin"):
        colmap.read_model(tmp_path)


def test_text_errors_name_file_and_line(tmp_path):
    colmap.write_model(*_model(), tmp_path, ".txt")
    text = (tmp_path / "cameras.txt").read_text()
    (tmp_path / "cameras.txt").write_text(text.replace("PINHOLE", "PINHOL"))
    with pytest.raises(DatasetFormatError, match=r"cameras.txt line \d+: camera 1 has model 'PINHOL'"):
        colmap.read_model(tmp_path)
    (tmp_path / "cameras.txt").write_text(text.replace(" 40.5 30.5", " 40.5"))
    with pytest.raises(DatasetFormatError, match=r"cameras.txt line \d+: expected 8 fields \(PINHOLE has 4"):
        colmap.read_model(tmp_path)


# -------------------------------------------------------------------------------------------------- rotations


def test_quaternion_conversions():
    np.testing.assert_allclose(colmap.qvec_to_rotmat([SQRT_HALF, 0, SQRT_HALF, 0]),
                               [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-15)  # +90 degrees about y
    rng = np.random.default_rng(0)
    for qvec in rng.normal(size=(20, 4)):
        qvec = qvec / np.linalg.norm(qvec) * np.sign(qvec[0])
        R = colmap.qvec_to_rotmat(qvec)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(colmap.rotmat_to_qvec(R), qvec, atol=1e-12)
    for qvec in ([0.0, 1, 0, 0], [0.0, 0, 0, 1], [1e-9, 0, 1, 0]):  # 180 degrees and almost: q and -q both have w = 0
        found = colmap.rotmat_to_qvec(colmap.qvec_to_rotmat(qvec))
        assert found[0] >= 0 and abs(found @ qvec) == pytest.approx(1.0, abs=1e-12)


def test_camera_intrinsics_map_colmap_params_to_k_and_opencv_distortion():
    cases = [("SIMPLE_PINHOLE", [100, 40.5, 30.5], [100, 100, 40.5, 30.5], None),
             ("PINHOLE", [100, 90, 40.5, 30.5], [100, 90, 40.5, 30.5], None),
             ("SIMPLE_RADIAL", [100, 40.5, 30.5, 0.1], [100, 100, 40.5, 30.5], [0.1, 0, 0, 0]),
             ("RADIAL", [100, 40.5, 30.5, 0.1, -0.2], [100, 100, 40.5, 30.5], [0.1, -0.2, 0, 0]),
             ("OPENCV", [100, 90, 40.5, 30.5, 0.1, -0.2, 0.003, -0.004], [100, 90, 40.5, 30.5],
              [0.1, -0.2, 0.003, -0.004])]
    for model, params, (fx, fy, cx, cy), distortion in cases:
        K, found = colmap.camera_intrinsics(Camera(1, model, WIDTH, HEIGHT, np.array(params, float)), "cameras.bin")
        np.testing.assert_array_equal(K, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], err_msg=model)
        assert (found is None) == (distortion is None), model
        if distortion is not None:
            np.testing.assert_array_equal(found, distortion, err_msg=model)
    with pytest.raises(DatasetFormatError, match="my/cameras.bin: camera 3 has model FOV"):
        colmap.camera_intrinsics(Camera(3, "FOV", WIDTH, HEIGHT, np.ones(5)), "my/cameras.bin")


# ------------------------------------------------------------------------------------------------------ scene

CAMERAS_TXT = """# Camera list with one line of data per camera:
#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]
1 PINHOLE 80 60 100 100 40.5 30.5
"""
# image 1: identity pose; image 2: +90 degrees about y (q = (cos 45, 0, sin 45, 0)), t = (-2, 0, 2.1): the point
# (0.1, -0.2, 2) goes to R X + t = (0, -0.2, 2)
IMAGES_TXT = f"""# Image list with two lines of data per image:
#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME
#   POINTS2D[] as (X, Y, POINT3D_ID)
1 1 0 0 0 0 0 0 1 a.png
45.5 20.5 1 10 10 -1
2 {SQRT_HALF} 0 {SQRT_HALF} 0 -2 0 2.1 1 b.png
40.5 20.5 1
"""
POINTS3D_TXT = """# 3D point list with one line of data per point:
#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)
1 0.1 -0.2 2.0 255 0 128 0.5 1 0 2 0
"""


def _text_scene(root: Path) -> dict[str, np.ndarray]:
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    for name, text in (("cameras", CAMERAS_TXT), ("images", IMAGES_TXT), ("points3D", POINTS3D_TXT)):
        (sparse / f"{name}.txt").write_text(text)
    return _write_pngs(root, ["a.png", "b.png"])


def test_hand_written_text_model_projects_to_hand_known_pixels(tmp_path):
    written = _text_scene(tmp_path)
    scene = ColmapScene(tmp_path, split="all")
    assert len(scene) == 2
    X = torch.tensor([0.1, -0.2, 2.0, 1.0])
    for i, expected in enumerate([(45.5, 20.5), (40.5, 20.5)]):
        sample = scene[i]
        assert sample["image_name"] == "ab"[i] + ".png" and sample["index"] == i
        assert sample["K"].dtype == torch.float32 and sample["world_to_camera"].dtype == torch.float32
        x = sample["K"] @ (sample["world_to_camera"] @ X)[:3]
        np.testing.assert_allclose((x[:2] / x[2]).numpy(), expected, atol=1e-5)
        # and COLMAP's own keypoint of that point (point2D_idx 0) is where it projects
        np.testing.assert_allclose(scene.all_images[i].xys[0], expected)
        assert sample["image"].shape == (3, HEIGHT, WIDTH) and sample["image"].dtype == torch.float32
        bgr = written[sample["image_name"]]
        np.testing.assert_allclose(sample["image"].permute(1, 2, 0).numpy(), bgr[..., ::-1] / 255.0, atol=1e-6)
    xyz, rgb = scene.points()
    np.testing.assert_allclose(xyz.numpy(), [[0.1, -0.2, 2.0]], atol=1e-7)
    np.testing.assert_allclose(rgb.numpy(), [[1.0, 0.0, 128 / 255]], atol=1e-7)
    # centres (0, 0, 0) and -R^T t = (2.1, 0, 2): mean (1.05, 0, 1), farthest distance |(1.05, 0, 1)|
    assert scene.cameras_extent == pytest.approx(1.1 * math.hypot(1.05, 1.0))


def test_cameras_extent_is_the_nerfpp_radius_of_the_camera_centres(tmp_path):
    y90 = (SQRT_HALF, 0, SQRT_HALF, 0)  # C = -R^T t with R^T = [[0, 0, -1], [0, 1, 0], [1, 0, 0]]
    _scene(tmp_path, [_pinhole()], [_image(1, "a.png", tvec=(0, 0, 1)),
                                    _image(2, "b.png", qvec=y90, tvec=(-2, 0, 2.1)),
                                    _image(3, "c.png", qvec=y90, tvec=(0, 0, -1))])
    centres = np.array([[0, 0, -1], [2.1, 0, 2], [-1, 0, 0]])
    expected = 1.1 * np.linalg.norm(centres - centres.mean(axis=0), axis=1).max()
    for split in ("train", "test"):  # over all images of the model, whatever the split
        assert ColmapScene(tmp_path, split=split, test_every=2).cameras_extent == pytest.approx(expected)


def test_images_are_ordered_by_name_not_id(tmp_path):
    _scene(tmp_path, [_pinhole()], [_image(7, "b.png", tvec=(0, 0, 7)), _image(3, "c.png", tvec=(0, 0, 3)),
                                    _image(12, "a.png", tvec=(0, 0, 12))])
    scene = ColmapScene(tmp_path, split="all")
    assert [scene[i]["image_name"] for i in range(3)] == ["a.png", "b.png", "c.png"]
    assert [float(scene[i]["world_to_camera"][2, 3]) for i in range(3)] == [12.0, 7.0, 3.0]


def test_every_eighth_image_in_name_order_is_a_test_view(tmp_path):
    ids = [41, 2, 17, 5, 99, 8, 23, 1, 60, 33]  # not in name order
    _scene(tmp_path, [_pinhole()], [_image(i, f"frame_{n:02d}.png") for n, i in enumerate(ids)], ".txt")
    test, train = ColmapScene(tmp_path, split="test"), ColmapScene(tmp_path, split="train")
    assert [test[i]["image_name"] for i in range(len(test))] == ["frame_00.png", "frame_08.png"]
    assert [train[i]["image_name"] for i in range(len(train))] == [f"frame_{n:02d}.png" for n in (1, 2, 3, 4, 5, 6,
                                                                                                  7, 9)]
    assert [train[i]["index"] for i in range(len(train))] == list(range(8))
    assert test.cameras_extent == train.cameras_extent


def test_simple_pinhole_and_downscale(tmp_path):
    written = _scene(tmp_path, [Camera(1, "SIMPLE_PINHOLE", WIDTH, HEIGHT, np.array([100.0, 41.0, 29.0]))],
                     [_image(1, "a.png")])
    full = ColmapScene(tmp_path, split="all")[0]
    np.testing.assert_array_equal(full["K"].numpy(), [[100, 0, 41], [0, 100, 29], [0, 0, 1]])  # not the centre
    half = ColmapScene(tmp_path, split="all", downscale=2)[0]
    assert half["image"].shape == (3, HEIGHT // 2, WIDTH // 2)
    np.testing.assert_allclose(half["K"].numpy(), [[50, 0, 20.5], [0, 50, 14.5], [0, 0, 1]])
    block = written["a.png"][4:6, 6:8, ::-1].reshape(4, 3).astype(float).mean(axis=0)  # INTER_AREA = block mean
    np.testing.assert_allclose(half["image"][:, 2, 3].numpy() * 255, block, atol=0.51)


def test_simple_radial_is_undistorted_to_a_pinhole_with_the_same_k(tmp_path):
    f, cx, cy = 100.0, 40.5, 30.5
    cameras = [Camera(1, "SIMPLE_RADIAL", WIDTH, HEIGHT, np.array([f, cx, cy, 0.2])),
               Camera(2, "SIMPLE_RADIAL", WIDTH, HEIGHT, np.array([f, cx, cy, 0.0]))]
    _scene(tmp_path, cameras, [_image(1, "a.png", 1), _image(2, "b.png", 2)])
    ramp = np.repeat(3 * np.arange(WIDTH, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(HEIGHT, axis=0)
    for name in ("a.png", "b.png"):  # grey value = 3 x column: the sampled raw column can be read off the value
        cv2.imwrite(str(tmp_path / "images" / name), ramp)
    radial, zero_k = ColmapScene(tmp_path, split="all")  # a.png (k = 0.2), b.png (k = 0)
    np.testing.assert_array_equal(radial["K"].numpy(), [[f, 0, cx], [0, f, cy], [0, 0, 1]])
    np.testing.assert_array_equal(zero_k["K"].numpy(), radial["K"].numpy())
    np.testing.assert_allclose(zero_k["image"].numpy() * 255, ramp.transpose(2, 0, 1), atol=0.5)
    assert not np.allclose(radial["image"].numpy() * 255, ramp.transpose(2, 0, 1), atol=1)
    # pinhole pixel (u, v) (centre u + 0.5, v + 0.5) looks along x = (u + 0.5 - cx) / f, y likewise; the raw image
    # shows that ray at f x (1 + k r^2) + cx in COLMAP coordinates, i.e. raw column f x (1 + k r^2) + cx - 0.5
    v, u = np.mgrid[:HEIGHT, :WIDTH] + 0.5
    x, y = (u - cx) / f, (v - cy) / f
    raw_u, raw_v = (np.stack([x, y]) * (1 + 0.2 * (x * x + y * y)) * f + [[[cx]], [[cy]]]) - 0.5
    inside = (raw_u >= 0) & (raw_u <= WIDTH - 1) & (raw_v >= 0) & (raw_v <= HEIGHT - 1)
    assert inside.sum() > 0.8 * inside.size and inside[2, 2]
    np.testing.assert_allclose(radial["image"][0].numpy()[inside] * 255 / 3, raw_u[inside], atol=0.3)


def test_distorted_camera_without_undistort_is_refused(tmp_path):
    _scene(tmp_path, [Camera(5, "SIMPLE_RADIAL", WIDTH, HEIGHT, np.array([100.0, 40, 30, 0.1]))],
           [_image(1, "a.png", 5)])
    with pytest.raises(DatasetFormatError, match=r"cameras.bin: camera 5 has the distorted model SIMPLE_RADIAL"):
        ColmapScene(tmp_path, undistort=False)


def test_unsupported_camera_model_names_the_cameras_file(tmp_path):
    _scene(tmp_path, [Camera(1, "OPENCV_FISHEYE", WIDTH, HEIGHT, np.ones(8))], [_image(1, "a.png")], ".txt")
    with pytest.raises(DatasetFormatError, match=r"cameras.txt: camera 1 has model OPENCV_FISHEYE"):
        ColmapScene(tmp_path, split="all")


def test_missing_image_file_is_reported_up_front(tmp_path):
    _scene(tmp_path, [_pinhole()], [_image(1, "a.png"), _image(2, "b.png")])
    (tmp_path / "images" / "b.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"images/b.png not found: .*images.bin lists image 2"):
        ColmapScene(tmp_path, split="test")  # b.png is a train view: still checked


def test_missing_sparse_folder_is_named(tmp_path):
    _write_pngs(tmp_path, ["a.png"])
    with pytest.raises(DatasetFormatError, match=r"sparse/0: COLMAP sparse model folder not found"):
        ColmapScene(tmp_path)


def test_image_of_the_wrong_size_is_refused(tmp_path):
    _scene(tmp_path, [_pinhole()], [_image(1, "a.png")])
    _write_pngs(tmp_path, ["a.png"], width=WIDTH // 2, height=HEIGHT // 2)
    with pytest.raises(DatasetFormatError, match=r"a.png: expected 80 x 60 pixels .*found 40 x 30"):
        ColmapScene(tmp_path, split="all")[0]
