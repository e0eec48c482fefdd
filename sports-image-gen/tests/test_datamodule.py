"""The datamodule on a hand-made SoccerNet-calibration folder: letterboxing, grid keypoints and visibility in the
returned image, frames without a camera, a separate camera folder, and the optional label files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sports_image_gen.data.camera import Camera, grid_points
from sports_image_gen.data.datamodule import SoccerNetCalibration, read_split
from sports_image_gen.data.soccernet_calibration import write_camera_json

CAMERA = {"pan_degrees": 0.0, "tilt_degrees": 70.0, "roll_degrees": 0.0, "position_meters": [0.0, 60.0, -15.0],
          "x_focal_length": 700.0, "y_focal_length": 700.0, "principal_point": [480.0, 270.0],
          "radial_distortion": [0.02, 0, 0, 0, 0, 0], "tangential_distortion": [0, 0], "thin_prism_distortion": [0] * 4}


def _frame(folder: Path, name: str, size: tuple[int, int], camera_dir: Path | None = None, camera: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:, :, 1] = 120
    cv2.imwrite(str(folder / f"{name}.jpg"), image)
    if camera:
        write_camera_json((camera_dir or folder) / f"camera_{name}.json", Camera.from_json_parameters(CAMERA))


def test_camera_sees_the_pitch():
    uv, visible = Camera.from_json_parameters(CAMERA).project_grid()
    assert visible.sum() >= 20


def test_letterboxed_grid_keypoints(tmp_path):
    """A 4:3 jpg (400 x 300) of a 960 x 540 camera frame, letterboxed into 64 x 36: scale 0.12, 48 px wide at x 8."""
    _frame(tmp_path / "train", "a", (400, 300))
    [item] = read_split(tmp_path / "train", 36, 64)
    uv, visible = Camera.from_json_parameters(CAMERA).project_grid(400, 300)
    expected = torch.from_numpy(uv * 0.12 + np.array([8.0, 0.0])).float()
    assert torch.allclose(item["grid_keypoints"][visible], expected[visible], atol=1e-4)
    assert torch.equal(item["grid_visible"], torch.from_numpy(visible))
    inside = item["grid_keypoints"][item["grid_visible"]]
    assert (inside[:, 0] >= 8).all() and (inside[:, 0] < 56).all()  # padding is outside
    assert item["image"].shape == (3, 36, 64) and item["image"][:, :, :8].max() == 0
    # the 960 x 540 metric frame: back to the camera's own pixels
    to_960 = (item["grid_keypoints"] - item["offset"]) * item["to_960"]
    uv960, _ = Camera.from_json_parameters(CAMERA).project_grid()
    assert torch.allclose(to_960[visible], torch.from_numpy(uv960).float()[visible], atol=1e-2)
    # the camera map has a dot at each visible point
    cmap = item["camera_map"][0]
    for x, y in item["grid_keypoints"][visible][:5]:
        assert cmap[int(round(float(y))), int(round(float(x)))] > 0.5
    # the pitch map: the grid's inner points lie on the pitch, and the map reads their pitch coordinates there
    pitch, inner = item["pitch_map"], visible.reshape(7, 13).copy()
    inner[[0, -1]], inner[:, [0, -1]] = False, False
    coords = grid_points()[:, :2] / np.array([52.5, 34.0])
    for k in np.flatnonzero(inner.ravel()):
        x, y = np.round(item["grid_keypoints"][k].numpy()).astype(int)
        assert pitch[0, y, x] >= 0.5
        np.testing.assert_allclose(pitch[1:, y, x].numpy(), coords[k], atol=0.1)
    assert pitch[:, :, :8].abs().max() == 0  # padding sees no pitch
    # markings at 1: the halfway line runs through the centre mark (k = 13 * 3 + 6) and the grid's point (0, 34)
    for k in (45, 84):
        x, y = np.round(item["grid_keypoints"][k].numpy()).astype(int)
        assert visible[k] and pitch[0, y, x] == 1
    assert set(np.unique(pitch[0].numpy())) == {0.0, 0.5, 1.0}


def test_frames_without_camera_are_skipped_and_camera_dir(tmp_path):
    cams = tmp_path / "cams" / "train"
    cams.mkdir(parents=True)
    _frame(tmp_path / "data" / "train", "a", (320, 180), camera_dir=cams)
    _frame(tmp_path / "data" / "train", "b", (320, 180), camera=False)
    with pytest.warns(UserWarning, match="without a camera"):
        items = read_split(tmp_path / "data" / "train", 36, 64, camera_dir=cams)
    assert [it["name"] for it in items] == ["a"]


def test_optional_labels(tmp_path):
    folder = tmp_path / "train"
    _frame(folder, "a", (320, 180))
    keypoints = np.zeros((17, 3))
    keypoints[:, 0], keypoints[:, 1], keypoints[:, 2] = np.linspace(100, 120, 17), np.linspace(50, 90, 17), 2
    (folder / "person_keypoints.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg", "width": 320, "height": 180}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "keypoints": keypoints.ravel().tolist()}]}))
    (folder / "prompts.json").write_text(json.dumps({"a": "a night match"}))
    [item] = read_split(folder, 36, 64)
    assert item["prompt"] == "a night match" and item["skeleton_map"].sum() > 0
    (folder / "person_keypoints.json").write_text(json.dumps({"images": [], "annotations": [{"keypoints": [1]}]}))
    with pytest.raises(ValueError, match="person_keypoints.json"):
        read_split(folder, 36, 64)


def test_missing_root_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="camera_<name>.json"):
        SoccerNetCalibration(root=str(tmp_path / "nowhere")).setup()
