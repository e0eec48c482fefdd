"""The video/image path: the BlazePose -> Human3.6M table, frame reading, and keypoints of the real MediaPipe
model on a real photo (scikit-image's astronaut). mediapipe cannot be installed beside this project's
OpenCV and TensorBoard (README, "Videos and photos"), so where it is absent the model's outputs are replayed
from ``tests/data/mediapipe_landmarks.json`` (recorded from ``mediapipe==0.10.14`` by
``tests/data/make_mediapipe_landmarks.py``); in the ``[video]`` extra's environment the same tests run the
model itself. Either way every assertion runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from pose_forecasting.data import video
from pose_forecasting.data.skeleton import JOINT_NAMES, JOINTS_USED
from pose_forecasting.data.video import (
    BLAZEPOSE_LANDMARKS,
    H36M_FROM_BLAZEPOSE,
    keypoints_from_frames,
    keypoints_from_video,
    mapping_matrix,
    read_frames,
)


def joint(name: str) -> int:
    return [JOINT_NAMES[j] for j in JOINTS_USED].index(name)


def test_mapping_covers_the_22_used_joints_once():
    assert sorted(H36M_FROM_BLAZEPOSE) == sorted(JOINT_NAMES[j] for j in JOINTS_USED)
    assert len(BLAZEPOSE_LANDMARKS) == 33 and len(set(BLAZEPOSE_LANDMARKS)) == 33
    for weights in H36M_FROM_BLAZEPOSE.values():
        assert set(weights) <= set(BLAZEPOSE_LANDMARKS)
        assert sum(weights.values()) == pytest.approx(1.0)
    W = mapping_matrix()
    assert W.shape == (22, 33)
    np.testing.assert_allclose(W.sum(1), 1.0)
    assert W[joint("LeftArm"), BLAZEPOSE_LANDMARKS.index("left_shoulder")] == 1.0
    assert W[joint("Neck"), BLAZEPOSE_LANDMARKS.index("right_shoulder")] == 0.5


def test_missing_mediapipe_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe -> ImportError
    with pytest.raises(ImportError, match=r'pip install -e "pose-forecasting\[video\]"'):
        keypoints_from_frames([np.zeros((8, 8, 3), np.uint8)])


def test_read_frames_video_and_sorted_folder(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
    for _ in range(4):
        writer.write(np.full((24, 32, 3), (255, 0, 0), np.uint8))  # BGR blue
    writer.release()
    frames = list(read_frames(tmp_path / "clip.avi"))
    assert len(frames) == 4 and frames[0].shape == (24, 32, 3)
    assert frames[0][..., 2].mean() > 240 and frames[0][..., 0].mean() < 15  # returned as RGB

    folder = tmp_path / "images"
    folder.mkdir()
    for name, value in (("b.png", 2), ("a.png", 1), ("c.jpg", 3)):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), value * 50, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    assert [int(f.mean().round(-1)) for f in read_frames(folder)] == [50, 100, 150]

    with pytest.raises(FileNotFoundError, match=r"missing\.mp4: not found \(expected a video file or a folder"):
        list(read_frames(tmp_path / "missing.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no image in folder"):
        list(read_frames(tmp_path / "empty"))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match=r"broken\.mp4: no frame could be decoded"):
        list(read_frames(tmp_path / "broken.mp4"))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()  # 512 x 512 RGB, a person facing the camera, cut at the hips


RECORDED = json.loads((Path(__file__).parent / "data" / "mediapipe_landmarks.json").read_text())
try:
    import mediapipe  # noqa: F401  (the [video] environment: the real model runs)

    REAL_MODEL = True
except ImportError:
    REAL_MODEL = False


class ReplayedPose:
    """``mediapipe.solutions.pose.Pose`` for one recorded sequence: returns what the real model returned for
    each frame, after checking that the frame is the recorded one (the astronaut photo or a black frame)."""

    def __init__(self, sequence: str, astronaut: np.ndarray) -> None:
        self.recorded = RECORDED["sequences"][sequence]
        self.frames = {"astronaut": astronaut, "black": np.zeros_like(astronaut)}
        self.t = 0

    def __call__(self, static_image_mode: bool, model_complexity: int) -> ReplayedPose:
        assert (static_image_mode, model_complexity) == (False, RECORDED["model_complexity"])
        return self

    def __enter__(self) -> ReplayedPose:
        return self

    def __exit__(self, *exc) -> None:
        assert self.t == len(self.recorded["frames"]), "fewer frames than recorded"

    def process(self, frame: np.ndarray) -> SimpleNamespace:
        np.testing.assert_array_equal(frame, self.frames[self.recorded["frames"][self.t]])
        landmarks = self.recorded["landmarks"][self.t]
        self.t += 1
        if landmarks is None:
            return SimpleNamespace(pose_landmarks=None)
        points = [SimpleNamespace(x=x, y=y, z=z, visibility=v) for x, y, z, v in landmarks]
        return SimpleNamespace(pose_landmarks=SimpleNamespace(landmark=points))


@pytest.fixture
def pose_model(monkeypatch, astronaut):
    """``use(sequence)``: the real model where mediapipe is installed, else its recorded outputs."""
    def use(sequence: str) -> None:
        if not REAL_MODEL:
            replayed = SimpleNamespace(Pose=ReplayedPose(sequence, astronaut))
            monkeypatch.setattr(video, "_pose_solution", lambda: replayed)
    return use


def test_landmark_order_is_mediapipe_s():
    assert tuple(RECORDED["landmark_names"]) == BLAZEPOSE_LANDMARKS
    if REAL_MODEL:
        import mediapipe

        assert tuple(p.name.lower() for p in mediapipe.solutions.pose.PoseLandmark) == BLAZEPOSE_LANDMARKS


def test_astronaut_keypoints(astronaut, pose_model):
    pose_model("astronaut_then_black")
    pixels, confidence, size = keypoints_from_frames([astronaut, np.zeros_like(astronaut)])
    assert pixels.shape == (2, 22, 2) and confidence.shape == (2, 22) and size == (512, 512)
    assert pixels.dtype == confidence.dtype == np.float32
    p, c = pixels[0], confidence[0]
    upper = [joint(n) for n in ("Neck", "Head", "HeadSite", "LeftArm", "RightArm")]
    assert (c[upper] > 0.9).all()
    seen = c > 0.5  # the legs are out of the picture: low confidence, extrapolated positions
    assert seen.sum() >= 6 and ((p[seen] >= 0) & (p[seen] < 512)).all()
    y = {n: p[joint(n), 1] for n in ("HeadSite", "Head", "Neck", "Spine1")}
    assert y["HeadSite"] < y["Head"] < y["Neck"] < y["Spine1"]  # image y points down
    # Facing the camera: her left shoulder is on the image's right (about 190 px apart).
    assert p[joint("LeftArm"), 0] - p[joint("RightArm"), 0] > 100
    # No person in the second frame.
    assert (confidence[1] == 0).all() and (pixels[1] == 0).all()


def test_image_folder_gives_one_frame_per_image(astronaut, pose_model, tmp_path):
    pose_model("astronaut_x3")
    for t in range(3):
        cv2.imwrite(str(tmp_path / f"frame_{t:03d}.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    pixels, confidence, size = keypoints_from_video(tmp_path)
    assert pixels.shape == (3, 22, 2) and confidence.shape == (3, 22) and size == (512, 512)
    neck = joint("Neck")
    assert (confidence[:, neck] > 0.9).all()
    np.testing.assert_allclose(pixels[:, neck], np.broadcast_to(pixels[0, neck], (3, 2)), atol=3)
