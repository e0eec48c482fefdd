"""Format readers and writers (data/io.py) and the sample builder (data/sample.py): hand-encoded files decode to
hand-known values, writers round-trip, malformed files raise DatasetFormatError naming the file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ego_motion_flow.data import io
from ego_motion_flow.data.sample import make_sample, rigid_flow_np
from shared_utils.datasets import DatasetFormatError

# KITTI 2015 000000's rectified projections (calib_cam_to_cam/000000.txt)
P_RECT_02 = np.array([[721.5377, 0, 609.5593, 44.85728], [0, 721.5377, 172.854, 0.2163791], [0, 0, 1, 0.002745884]])
P_RECT_03 = np.array([[721.5377, 0, 609.5593, -339.5242], [0, 721.5377, 172.854, 2.199936], [0, 0, 1, 0.002729905]])


def _flow_field(height: int = 5, width: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flow = rng.uniform(-4, 4, size=(height, width, 2)).astype(np.float32)
    valid = rng.random((height, width)) > 0.3
    return flow, valid


# ------------------------------------------------------------------------------------------------- KITTI flow


def test_kitti_flow_png_decodes_hand_written_uint16_values(tmp_path):
    bgr = np.zeros((2, 3, 3), np.uint16)
    bgr[0, 0] = (1, 2**15 - 128, 2**15 + 64)  # valid, v = -2 px, u = +1 px
    bgr[0, 1] = (1, 2**15, 2**15 - 32)  # u = -0.5 px
    bgr[1, 2] = (0, 2**15 + 640, 2**15 + 640)  # invalid: reported as zero flow
    cv2.imwrite(str(tmp_path / "f.png"), bgr)
    flow, valid = io.read_kitti_flow(tmp_path / "f.png")
    assert flow.dtype == np.float32 and flow.shape == (2, 3, 2) and valid.dtype == bool
    np.testing.assert_array_equal(flow[0, 0], [1.0, -2.0])
    np.testing.assert_array_equal(flow[0, 1], [-0.5, 0.0])
    np.testing.assert_array_equal(flow[1, 2], [0.0, 0.0])
    np.testing.assert_array_equal(valid, [[True, True, False], [False, False, False]])


def test_kitti_flow_round_trip(tmp_path):
    flow, valid = _flow_field()
    io.write_kitti_flow(tmp_path / "f.png", flow, valid)
    decoded, decoded_valid = io.read_kitti_flow(tmp_path / "f.png")
    np.testing.assert_array_equal(decoded_valid, valid)
    np.testing.assert_allclose(decoded[valid], flow[valid], atol=0.5 / 64)
    assert (decoded[~valid] == 0).all()


@pytest.mark.parametrize("image, found", [(np.zeros((2, 3, 3), np.uint8), "3-channel uint8"),
                                          (np.zeros((2, 3), np.uint16), "1-channel uint16")])
def test_kitti_flow_rejects_wrong_depth_or_channels(tmp_path, image, found):
    cv2.imwrite(str(tmp_path / "f.png"), image)
    with pytest.raises(DatasetFormatError, match=f"f.png.*3-channel uint16.*{found}"):
        io.read_kitti_flow(tmp_path / "f.png")


def test_missing_file_names_it_and_lists_folder(tmp_path):
    (tmp_path / "other.png").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=r"missing.png not found.*other.png"):
        io.read_kitti_flow(tmp_path / "missing.png")


def test_undecodable_file_names_it(tmp_path):
    (tmp_path / "f.png").write_text("not an image")
    with pytest.raises(DatasetFormatError, match="f.png.*cannot decode"):
        io.read_kitti_flow(tmp_path / "f.png")


# -------------------------------------------------------------------------------------------- KITTI disparity


def test_kitti_disparity_decodes_hand_written_values_and_round_trips(tmp_path):
    cv2.imwrite(str(tmp_path / "d.png"), np.array([[2560, 0], [1, 65535]], np.uint16))
    disparity, valid = io.read_kitti_disparity(tmp_path / "d.png")
    np.testing.assert_array_equal(disparity, np.array([[10.0, 0.0], [1 / 256, 65535 / 256]], np.float32))
    np.testing.assert_array_equal(valid, [[True, False], [True, True]])
    io.write_kitti_disparity(tmp_path / "e.png", disparity, valid)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "e.png"), cv2.IMREAD_UNCHANGED),
                                  [[2560, 0], [1, 65535]])


def test_kitti_disparity_rejects_8_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "d.png"), np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetFormatError, match="d.png.*1-channel uint16.*1-channel uint8"):
        io.read_kitti_disparity(tmp_path / "d.png")


def test_depth_from_disparity_uses_f_and_stereo_baseline():
    from ego_motion_flow.data.kitti15 import depth_from_disparity

    depth = depth_from_disparity(np.array([[38.5, 0.0]], np.float32), np.array([[True, False]]), P_RECT_02, P_RECT_03)
    baseline = (44.85728 + 339.5242) / 721.5377  # 0.533 m
    np.testing.assert_allclose(depth, [[721.5377 * baseline / 38.5, 0.0]], rtol=1e-6)
    assert 9.9 < depth[0, 0] < 10.0


# ------------------------------------------------------------------------------------------- indexed PNG maps


def _palette_png(path: Path, indices: np.ndarray, palette: np.ndarray) -> None:
    """An indexed PNG assembled by hand with 'Sub' row filters (filter 1), as libpng encoders write them."""
    rows = []
    for row in indices.astype(np.int32):
        rows.append(bytes([1]) + (np.diff(row, prepend=0) % 256).astype(np.uint8).tobytes())

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    height, width = indices.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"PLTE", palette.astype(np.uint8).tobytes())
                     + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def test_indexed_png_indices_do_not_depend_on_palette_colours(tmp_path):
    indices = np.array([[0, 1, 2, 3], [3, 3, 0, 1]])
    _palette_png(tmp_path / "i.png", indices, np.zeros((4, 3)))  # every palette entry black
    np.testing.assert_array_equal(io.read_png_indices(tmp_path / "i.png"), indices)


def test_vkitti2_instances_and_object_map_round_trip(tmp_path):
    instances = np.array([[0, 1, 1, 0], [0, 5, 255, 0]])
    io.write_vkitti2_instances(tmp_path / "instancegt_00000.png", instances)
    read = io.read_vkitti2_instances(tmp_path / "instancegt_00000.png")
    assert read.dtype == np.int32
    np.testing.assert_array_equal(read, instances)
    mask = instances > 1
    io.write_kitti_object_map(tmp_path / "obj.png", mask)
    np.testing.assert_array_equal(io.read_kitti_object_map(tmp_path / "obj.png"), mask)


def test_grey_object_map_is_read_too(tmp_path):
    cv2.imwrite(str(tmp_path / "obj.png"), np.array([[0, 3], [1, 0]], np.uint8))
    np.testing.assert_array_equal(io.read_kitti_object_map(tmp_path / "obj.png"), [[False, True], [True, False]])


def test_indexed_png_rejects_16_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "i.png"), np.zeros((2, 2), np.uint16))
    with pytest.raises(DatasetFormatError, match="i.png.*colour type 0 with bit depth 16"):
        io.read_vkitti2_instances(tmp_path / "i.png")


# ------------------------------------------------------------------------------------------ KITTI calibration

CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
S_02: 1.392000e+03 5.120000e+02
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
P_rect_03: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02 2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03
"""  # noqa: E501


def test_kitti_cam_to_cam_parses_the_official_lines(tmp_path):
    (tmp_path / "000000.txt").write_text(CAM_TO_CAM)
    calib = io.read_kitti_cam_to_cam(tmp_path / "000000.txt")
    np.testing.assert_allclose(calib["P_rect_02"], P_RECT_02)
    np.testing.assert_allclose(calib["P_rect_03"], P_RECT_03)
    np.testing.assert_allclose(calib["S_02"], [1392, 512])
    assert "calib_time" not in calib
    io.write_kitti_cam_to_cam(tmp_path / "w.txt", P_RECT_02, P_RECT_03)
    written = io.read_kitti_cam_to_cam(tmp_path / "w.txt")
    np.testing.assert_allclose(written["P_rect_02"], P_RECT_02)
    np.testing.assert_allclose(written["P_rect_03"], P_RECT_03)


def test_kitti_cam_to_cam_errors(tmp_path):
    path = tmp_path / "000000.txt"
    path.write_text("\n".join(line for line in CAM_TO_CAM.splitlines() if not line.startswith("P_rect_02")))
    with pytest.raises(DatasetFormatError, match="000000.txt: no P_rect_02 line"):
        io.read_kitti_cam_to_cam(path)
    path.write_text(CAM_TO_CAM.replace("2.745884e-03", ""))
    with pytest.raises(DatasetFormatError, match=r"000000.txt line 4 \(P_rect_02\): expected 12 numbers.*found 11"):
        io.read_kitti_cam_to_cam(path)
    path.write_text(CAM_TO_CAM.replace("S_02: 1.392000e+03", "S_02: big"))
    with pytest.raises(DatasetFormatError, match=r"line 3 \(S_02\): expected numbers"):
        io.read_kitti_cam_to_cam(path)
    path.write_text(CAM_TO_CAM + "no colon here\n")
    with pytest.raises(DatasetFormatError, match="line 6: expected 'key: values'"):
        io.read_kitti_cam_to_cam(path)


def test_kitti_odometry_calib_and_poses(tmp_path):
    P2 = np.array([[718.856, 0, 607.1928, 45.38225], [0, 718.856, 185.2157, -0.1130887], [0, 0, 1, 0.003779761]])
    lines = [f"P{i}: " + " ".join(f"{v:e}" for v in (P2 if i == 2 else np.eye(3, 4)).ravel()) for i in range(4)]
    (tmp_path / "calib.txt").write_text("\n".join([*lines, "Tr: " + " ".join(["0"] * 12)]) + "\n")
    calib = io.read_kitti_odometry_calib(tmp_path / "calib.txt")
    assert set(calib) == {"P0", "P1", "P2", "P3", "Tr"} and calib["Tr"].shape == (3, 4)
    np.testing.assert_allclose(calib["P2"], P2)
    io.write_kitti_odometry_calib(tmp_path / "w.txt", P2)
    np.testing.assert_allclose(io.read_kitti_odometry_calib(tmp_path / "w.txt")["P2"], P2)
    (tmp_path / "nop2.txt").write_text("\n".join(line for i, line in enumerate(lines) if i != 2) + "\n")
    with pytest.raises(DatasetFormatError, match="nop2.txt: no P2 line"):
        io.read_kitti_odometry_calib(tmp_path / "nop2.txt")

    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[:, :3, 3] = [[0, 0, 0], [0.1, 0, 0.8], [0.2, 0.01, 1.6]]
    io.write_kitti_poses(tmp_path / "00.txt", poses)
    np.testing.assert_allclose(io.read_kitti_poses(tmp_path / "00.txt"), poses)
    (tmp_path / "bad.txt").write_text("1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 0 0 1 0 0 0 0 1\n")
    with pytest.raises(DatasetFormatError, match=r"bad.txt line 2 \(pose\): expected 12 numbers.*found 11"):
        io.read_kitti_poses(tmp_path / "bad.txt")


# ---------------------------------------------------------------------------------------------------- VKITTI2


def test_vkitti2_flow_png_decodes_hand_written_values(tmp_path):
    height, width = 3, 5
    bgr = np.zeros((height, width, 3), np.uint16)
    bgr[0, 0] = (1, 65535, 0)  # u = -1 * (W - 1) = -4, v = +1 * (H - 1) = +2
    bgr[0, 1] = (1, 0, 65535)  # u = +4, v = -2
    bgr[1, 1] = (0, 65535, 65535)  # invalid (B == 0)
    cv2.imwrite(str(tmp_path / "flow_00000.png"), bgr)
    flow, valid = io.read_vkitti2_flow(tmp_path / "flow_00000.png")
    np.testing.assert_allclose(flow[0, 0], [-4.0, 2.0], atol=1e-5)
    np.testing.assert_allclose(flow[0, 1], [4.0, -2.0], atol=1e-5)
    np.testing.assert_array_equal(flow[1, 1], [0.0, 0.0])
    assert valid[0, 0] and valid[0, 1] and not valid[1, 1]


def test_vkitti2_flow_round_trip_and_8_bit_rejected(tmp_path):
    flow, valid = _flow_field(height=6, width=9)
    io.write_vkitti2_flow(tmp_path / "flow_00000.png", flow, valid)
    decoded, decoded_valid = io.read_vkitti2_flow(tmp_path / "flow_00000.png")
    np.testing.assert_array_equal(decoded_valid, valid)
    np.testing.assert_allclose(decoded[valid], flow[valid], atol=8 / 65535 + 1e-5)
    cv2.imwrite(str(tmp_path / "flow_00001.png"), np.zeros((6, 9, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match="flow_00001.png.*3-channel uint16.*3-channel uint8"):
        io.read_vkitti2_flow(tmp_path / "flow_00001.png")


def test_vkitti2_depth_is_centimetres_with_far_plane_unknown(tmp_path):
    cv2.imwrite(str(tmp_path / "depth_00000.png"), np.array([[1234, 65535], [1, 100]], np.uint16))
    depth = io.read_vkitti2_depth(tmp_path / "depth_00000.png")
    np.testing.assert_allclose(depth, [[12.34, 0.0], [0.01, 1.0]], rtol=1e-6)
    io.write_vkitti2_depth(tmp_path / "w.png", np.array([[12.34, 0.0], [700.0, 1.0]]))
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "w.png"), cv2.IMREAD_UNCHANGED),
                                  [[1234, 65535], [65535, 100]])


def test_vkitti2_tables_round_trip_with_trailing_whitespace(tmp_path):
    K = np.array([[725.0087, 0, 620.5], [0, 725.0087, 187.0], [0, 0, 1]])
    E = np.eye(4)
    E[:3, 3] = [0.5, -1.6, 3.25]
    io.write_vkitti2_intrinsics(tmp_path / "intrinsic.txt", {(0, 0): K, (0, 1): K, (1, 0): 2 * K})
    io.write_vkitti2_extrinsics(tmp_path / "extrinsic.txt", {(0, 0): E, (1, 0): np.eye(4)})
    io.write_vkitti2_moving(tmp_path / "bbox.txt", {(0, 0): {3, 1}, (1, 0): set()})
    for name in ("intrinsic.txt", "extrinsic.txt", "bbox.txt"):  # the dataset's files end lines with spaces
        path = tmp_path / name
        path.write_text("".join(line + "  \n" for line in path.read_text().splitlines()) + "\n")
    intrinsics = io.read_vkitti2_intrinsics(tmp_path / "intrinsic.txt")
    assert set(intrinsics) == {(0, 0), (0, 1), (1, 0)}
    np.testing.assert_allclose(intrinsics[(1, 0)][:2], 2 * K[:2])
    np.testing.assert_allclose(io.read_vkitti2_extrinsics(tmp_path / "extrinsic.txt")[(0, 0)], E)
    assert io.read_vkitti2_moving(tmp_path / "bbox.txt") == {(0, 0): {1, 3}}  # frames without rows: no entry


def test_vkitti2_moving_reads_the_official_bbox_rows(tmp_path):
    (tmp_path / "bbox.txt").write_text(
        "frame cameraID trackID left right top bottom number_pixels truncation_ratio occupancy_ratio isMoving\n"
        "0 0 0 988 1241 159 374 41767 0.4230517 0.7678463 False\n"
        "0 0 1 927 1102 171 275 7168 0 0.3938462 True\n"
        "0 1 1 927 1102 171 275 7168 0 0.3938462 False\n")
    assert io.read_vkitti2_moving(tmp_path / "bbox.txt") == {(0, 0): {1}, (0, 1): set()}


def test_vkitti2_table_errors(tmp_path):
    path = tmp_path / "extrinsic.txt"
    header = " ".join(io.VKITTI2_EXTRINSIC_HEADER)
    path.write_text(header + "\n0 0 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0\n")
    with pytest.raises(DatasetFormatError, match="extrinsic.txt line 2: expected 18 fields.*found 17"):
        io.read_vkitti2_extrinsics(path)
    path.write_text("frame cameraID K[0,0]\n")
    with pytest.raises(DatasetFormatError, match="extrinsic.txt line 1: expected the header"):
        io.read_vkitti2_extrinsics(path)
    path.write_text(header + "\nx 0 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\n")
    with pytest.raises(DatasetFormatError, match=r"line 2 \(frame, cameraID\): expected integers"):
        io.read_vkitti2_extrinsics(path)
    bbox = tmp_path / "bbox.txt"
    bbox.write_text(" ".join(io.VKITTI2_BBOX_HEADER) + "\n0 0 1 0 0 0 0 0 0 0 maybe\n")
    with pytest.raises(DatasetFormatError, match=r"bbox.txt line 2 \(isMoving\)"):
        io.read_vkitti2_moving(bbox)


# ----------------------------------------------------------------------------------------------------- Sintel


def test_sintel_files_decode_hand_written_bytes_and_round_trip(tmp_path):
    data = np.array([1.0, -2.0, 0.5, 3.0, 0, 0, 7, 8, 9, 10, 11, 12], "<f4")  # 2 rows x 3 columns x (u, v)
    (tmp_path / "a.flo").write_bytes(struct.pack("<f", 202021.25) + struct.pack("<ii", 3, 2) + data.tobytes())
    flow = io.read_flo(tmp_path / "a.flo")
    assert flow.shape == (2, 3, 2) and flow.dtype == np.float32
    np.testing.assert_array_equal(flow[0, 1], [0.5, 3.0])
    np.testing.assert_array_equal(flow[1, 0], [7, 8])
    io.write_flo(tmp_path / "b.flo", flow)
    assert (tmp_path / "b.flo").read_bytes() == (tmp_path / "a.flo").read_bytes()

    depth = np.arange(6, dtype=np.float32).reshape(2, 3)
    io.write_dpt(tmp_path / "a.dpt", depth)
    np.testing.assert_array_equal(io.read_dpt(tmp_path / "a.dpt"), depth)

    M = np.array([[1120.0, 0, 511.5], [0, 1120.0, 217.5], [0, 0, 1]])
    N = np.arange(12, dtype=np.float64).reshape(3, 4)
    io.write_cam(tmp_path / "a.cam", M, N)
    assert (tmp_path / "a.cam").stat().st_size == 4 + 21 * 8
    read_M, read_N = io.read_cam(tmp_path / "a.cam")
    np.testing.assert_array_equal(read_M, M)
    np.testing.assert_array_equal(read_N, N)


def test_sintel_files_reject_wrong_tag_and_truncation(tmp_path):
    (tmp_path / "a.flo").write_bytes(b"XXXX" + struct.pack("<ii", 1, 1) + bytes(8))
    with pytest.raises(DatasetFormatError, match="a.flo.*tag"):
        io.read_flo(tmp_path / "a.flo")
    (tmp_path / "b.flo").write_bytes(b"PIEH" + struct.pack("<ii", 3, 2) + bytes(40))
    with pytest.raises(DatasetFormatError, match="b.flo.*3 x 2 needs 60 bytes, found 52"):
        io.read_flo(tmp_path / "b.flo")
    (tmp_path / "c.cam").write_bytes(b"PIEH" + bytes(100))
    with pytest.raises(DatasetFormatError, match="c.cam.*172 bytes.*found 104"):
        io.read_cam(tmp_path / "c.cam")


# ----------------------------------------------------------------------------------------------------- sample


def test_rigid_flow_of_a_sideways_step_is_minus_f_over_depth():
    """A point 10 m ahead, camera moved 1 m along +x (camera_to_world_2 = translate(1, 0, 0)): the point moves
    -f * 1 / 10 px horizontally in the image, whatever the pixel."""
    f = 100.0
    K = np.array([[f, 0, 4.0], [0, f, 3.0], [0, 0, 1]])
    camera_to_world_2 = np.eye(4)
    camera_to_world_2[0, 3] = 1.0
    T_21 = np.linalg.inv(camera_to_world_2) @ np.eye(4)
    depth = np.full((6, 8), 10.0)
    depth[0, 0] = 0.0
    flow, valid = rigid_flow_np(depth, K, T_21)
    assert flow.dtype == np.float32 and flow.shape == (6, 8, 2)
    assert not valid[0, 0] and valid.sum() == 47
    np.testing.assert_allclose(flow[valid], np.tile([-f / 10, 0.0], (47, 1)), atol=1e-5)
    np.testing.assert_array_equal(flow[0, 0], [0.0, 0.0])


def test_rigid_flow_is_invalid_behind_the_second_camera():
    K = np.array([[50.0, 0, 2.0], [0, 50.0, 2.0], [0, 0, 1]])
    T_21 = np.eye(4)
    T_21[2, 3] = -5.0  # camera moves 5 m forward: points nearer than 5 m end up behind it
    depth = np.array([[4.0, 5.0, 6.0, 20.0]]).repeat(5, 0)
    flow, valid = rigid_flow_np(depth, K, T_21)
    np.testing.assert_array_equal(valid[0], [False, False, True, True])
    # at the principal point nothing moves; 1 px right of it, a point at 20 m (15 m after the step) moves
    # outwards to 20 / 15 px
    np.testing.assert_allclose(flow[2, 2], [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(flow[2, 3], [20 / 15 - 1, 0.0], atol=1e-5)


def test_make_sample_fills_absent_keys_with_invalid_masks():
    image = np.full((4, 6, 3), 255, np.uint8)
    sample = make_sample(image, image, np.eye(3), sequence="00", frame=3, name="x/00/3")
    assert sample["image1"].shape == (3, 4, 6) and sample["image1"].dtype == torch.float32
    assert float(sample["image1"].max()) == 1.0
    assert sample["flow"].shape == (2, 4, 6) and not sample["flow_valid"].any()
    assert sample["depth"].shape == (4, 6) and not sample["depth"].any()
    assert torch.equal(sample["T_21"], torch.eye(4)) and not sample["has_pose"]
    assert not sample["moving_valid"].any() and not sample["rigid_valid"].any()
    assert (sample["sequence"], sample["frame"], sample["name"]) == ("00", 3, "x/00/3")
    with pytest.raises(DatasetFormatError, match="sample x: depth is 2 x 2, image1 is 4 x 6"):
        make_sample(image, image, np.eye(3), sequence="00", frame=0, name="x", depth=np.ones((2, 2)))
