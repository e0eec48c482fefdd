"""The SoccerNet-calibration loader on a tiny split in the official layout."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared_utils.datasets import DatasetFormatError
from sports_image_gen.data.camera import Camera
from sports_image_gen.data.soccernet_calibration import (
    read_calibration_split,
    write_camera_json,
    write_lines_json,
)

# The camera of sn-calibration's README, as the baseline writes camera_<name>.json.
CAMERA = {
    "pan_degrees": 14.862476218376278,
    "tilt_degrees": 78.83988009048775,
    "roll_degrees": -2.2210919345134497,
    "position_meters": [32.6100008989567, 67.9363036953344, -14.898134157887508],
    "x_focal_length": 3921.6013418112757,
    "y_focal_length": 3921.601341812138,
    "principal_point": [480.0, 270.0],
    "radial_distortion": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    "tangential_distortion": [0.0, 0.0],
    "thin_prism_distortion": [0.0, 0.0, 0.0, 0.0],
}
LINES_00000 = {
    "Side line top": [{"x": 0.1, "y": 0.2}, {"x": 0.9, "y": 0.25}],
    "Goal left post left ": [{"x": 0.05, "y": 0.4}, {"x": 0.05, "y": 0.55}],
    "Circle central": [{"x": 0.4, "y": 0.6}, {"x": 0.5, "y": 0.65}, {"x": 0.6, "y": 0.6}],
}
LINES_00001 = {"Middle line": [{"x": 0.5, "y": 0.0}, {"x": 0.52, "y": 1.0}]}


def write_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=4), encoding="utf-8")


@pytest.fixture
def split(tmp_path) -> tuple[Path, Path]:
    """<root>/valid/{00000,00001}.jpg + .json and match_info.json; the cameras in <predictions>/valid/, where only
    frame 00000 has one."""
    folder = tmp_path / "calibration" / "valid"
    folder.mkdir(parents=True)
    for name, lines in (("00000", LINES_00000), ("00001", LINES_00001)):
        cv2.imwrite(str(folder / f"{name}.jpg"), np.full((54, 96, 3), 90, np.uint8))
        write_json(folder / f"{name}.json", lines)
    write_json(folder / "match_info.json", {"00000.jpg": {"match": "2015-02-21 - 18-00 Chelsea 1 - 1 Burnley"}})
    camera_dir = tmp_path / "predictions" / "valid"
    write_json(camera_dir / "camera_00000.json", CAMERA)
    return folder, camera_dir


def test_reads_frames_cameras_and_lines(split):
    folder, camera_dir = split
    frames = read_calibration_split(folder, camera_dir=camera_dir)
    assert [frame.name for frame in frames] == ["00000", "00001"]  # match_info.json is not a frame
    first, second = frames
    assert first.image_path == folder / "00000.jpg"
    assert first.camera.pan_degrees == CAMERA["pan_degrees"]
    np.testing.assert_array_equal(first.camera.position_meters, CAMERA["position_meters"])
    assert second.camera is None
    assert set(first.lines) == set(LINES_00000)
    np.testing.assert_array_equal(first.lines["Side line top"], [[0.1, 0.2], [0.9, 0.25]])
    np.testing.assert_array_equal(first.lines["Circle central"], [[0.4, 0.6], [0.5, 0.65], [0.6, 0.6]])
    np.testing.assert_array_equal(second.lines["Middle line"], [[0.5, 0.0], [0.52, 1.0]])


def test_camera_in_the_frames_folder_by_default(split):
    folder, camera_dir = split
    (camera_dir / "camera_00000.json").rename(folder / "camera_00000.json")
    frames = read_calibration_split(folder, read_lines=False)
    assert frames[0].camera is not None and frames[0].lines is None


def test_require_camera_names_the_missing_file(split):
    folder, camera_dir = split
    with pytest.raises(FileNotFoundError, match="camera_00001.json"):
        read_calibration_split(folder, camera_dir=camera_dir, require_camera=True)


def test_missing_annotation_names_the_file(split):
    folder, camera_dir = split
    (folder / "00001.json").unlink()
    with pytest.raises(FileNotFoundError, match="00001.json"):
        read_calibration_split(folder, camera_dir=camera_dir)
    assert len(read_calibration_split(folder, camera_dir=camera_dir, read_lines=False)) == 2


def test_folder_without_frames_names_the_layout(tmp_path):
    (tmp_path / "valid").mkdir()
    write_json(tmp_path / "valid" / "match_info.json", {})
    with pytest.raises(DatasetFormatError, match=r"valid holds no \.jpg frame.*<split>/<name>\.jpg.*match_info"):
        read_calibration_split(tmp_path / "valid")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_calibration_split(tmp_path / "test")


@pytest.mark.parametrize("lines, message", [
    ({"Side line top": [{"x": 0.1, "y": 0.2}, {"x": 0.9}]}, r"class 'Side line top', point 1: .*'x': 0.9"),
    ({"Middle line": [{"x": "0.5", "y": 0.1}]}, r"class 'Middle line', point 0"),
    ({"Middle line": [{"x": True, "y": 0.1}]}, r"class 'Middle line', point 0"),
    ({"Middle line": {"x": 0.5, "y": 0.1}}, r"class 'Middle line' should be a list"),
    ({"Goal left post left": [{"x": 0.5, "y": 0.1}]}, r"unknown line class 'Goal left post left'"),
])
def test_malformed_annotation_names_file_class_and_point(split, lines, message):
    folder, camera_dir = split
    write_json(folder / "00001.json", lines)
    with pytest.raises(DatasetFormatError, match=r"00001\.json: " + message):
        read_calibration_split(folder, camera_dir=camera_dir)


def test_malformed_camera_names_file_and_field(split):
    folder, camera_dir = split
    write_json(camera_dir / "camera_00000.json", {**CAMERA, "principal_point": [480.0]})
    with pytest.raises(DatasetFormatError, match=r"camera_00000\.json: field 'principal_point'"):
        read_calibration_split(folder, camera_dir=camera_dir)
    (camera_dir / "camera_00000.json").write_text("{\"pan_degrees\": ", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"camera_00000\.json: not valid JSON"):
        read_calibration_split(folder, camera_dir=camera_dir)


def test_writers_round_trip(tmp_path):
    folder = tmp_path / "synthetic" / "train"
    camera = Camera.from_json_parameters(CAMERA)
    lines = {"Side line bottom": np.array([[0.0, 0.9], [1.0, 0.8]]), "Circle right": np.array([[0.7, 0.5]] * 3)}
    write_lines_json(folder / "00007.json", lines)
    write_camera_json(folder / "camera_00007.json", camera)
    cv2.imwrite(str(folder / "00007.jpg"), np.zeros((8, 8, 3), np.uint8))  # the writers made the folder
    (frame,) = read_calibration_split(folder, require_camera=True)
    assert frame.camera.to_json_parameters() == CAMERA
    assert set(frame.lines) == set(lines)
    for name, points in lines.items():
        np.testing.assert_array_equal(frame.lines[name], points)
    with pytest.raises(ValueError, match="'Side line middle'"):
        write_lines_json(folder / "00008.json", {"Side line middle": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"'Middle line' should be K x 2.*\(2, 3\)"):
        write_lines_json(folder / "00008.json", {"Middle line": np.zeros((2, 3))})
