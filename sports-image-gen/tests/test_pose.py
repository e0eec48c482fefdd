"""MediaPipe landmarks -> COCO-17 and the keypoints file the datamodule reads (MediaPipe itself is an optional
extra that cannot share this environment; these tests need no model)."""

from __future__ import annotations

import json

import numpy as np

from sports_image_gen.data.datamodule import _coco_keypoints
from sports_image_gen.data.gamestate import read_gamestate, write_gamestate
from sports_image_gen.data.pose import MEDIAPIPE_TO_COCO, coco_keypoints_file, frame_path, landmarks_to_coco


def test_mapping_picks_the_named_landmarks():
    # MediaPipe Pose: 0 nose, 11 / 12 shoulders, 23 / 24 hips, 27 / 28 ankles
    assert MEDIAPIPE_TO_COCO[0] == 0 and MEDIAPIPE_TO_COCO[5:7] == (11, 12)
    assert MEDIAPIPE_TO_COCO[11:13] == (23, 24) and MEDIAPIPE_TO_COCO[15:] == (27, 28)


def test_landmarks_go_to_frame_pixels():
    marks = np.zeros((33, 4))
    marks[:, 3] = 1.0
    marks[0] = [0.5, 0.1, 0.0, 0.9]   # nose: middle, top tenth of the crop
    marks[27] = [0.25, 1.0, 0.0, 0.2]  # left ankle, barely visible: dropped
    coco = landmarks_to_coco(marks, (100, 50, 120, 90))
    assert np.allclose(coco[0], [110, 54, 2])
    assert np.allclose(coco[15], [0, 0, 0])


def test_written_file_reads_back(tmp_path):
    skeleton = np.zeros((17, 3))
    skeleton[:5] = [[10, 20, 2], [11, 19, 2], [9, 19, 2], [12, 20, 2], [8, 20, 2]]
    data = coco_keypoints_file([{"id": 1, "file_name": "a.jpg", "width": 64, "height": 36}], {"a.jpg": [skeleton]})
    assert data["annotations"][0]["num_keypoints"] == 5 and data["categories"][0]["skeleton"][0] == [16, 14]
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps(data))
    assert np.allclose(_coco_keypoints(path)["a"][0], skeleton)


def test_frames_are_found_in_im_dir_or_beside_the_labels(tmp_path):
    # GSR clips: frames in info.im_dir (img1/); the calibration layout and the proxy: beside Labels-GameState.json
    images = [{"image_id": "1", "file_name": "000001.jpg", "width": 4, "height": 4}]
    write_gamestate(tmp_path / "Labels-GameState.json", images, {})
    state = read_gamestate(tmp_path / "Labels-GameState.json")
    (tmp_path / "000001.jpg").write_bytes(b"")
    assert frame_path(state, "000001.jpg") == tmp_path / "000001.jpg"
    (tmp_path / "img1").mkdir()
    (tmp_path / "img1" / "000001.jpg").write_bytes(b"")
    assert frame_path(state, "000001.jpg") == tmp_path / "img1" / "000001.jpg"
