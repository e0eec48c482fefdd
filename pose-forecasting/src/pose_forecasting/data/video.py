"""Real videos and image folders -> 2D keypoint sequences of the 22 used Human3.6M joints (optional extra).

The detector is MediaPipe Pose (BlazePose, Bazarevsky et al., CVPR-W 2020) through the legacy
``mediapipe.solutions.pose`` API of ``mediapipe==0.10.14`` with ``model_complexity=1``: that model,
``pose_landmark_full.tflite``, ships inside the wheel (complexity 0 and 2 would be downloaded at run time).
Install with ``pip install -e "pose-forecasting[video]"``; nothing else in the package needs mediapipe.

BlazePose's 33 landmarks become the 22 joints of :data:`skeleton.JOINTS_USED` (in that order) through
:data:`H36M_FROM_BLAZEPOSE`, a weighted mean of landmarks per joint. The torso and head follow
MotionBERT's ``coco2h36m`` (Zhu et al., ICCV 2023, the DSTformer code): thorax ("Neck" here) = mid-shoulders,
spine ("Spine1") = mid(mid-hips, mid-shoulders), nose ("Head") = nose, head ("HeadSite") = mid-eyes.
BlazePose has feet and hands that COCO lacks: the toe tip is the foot-index landmark, the toe base lies
on the ankle -> toe tip segment where Human3.6M puts it (163 of 238 mm, :data:`skeleton.OFFSETS_MM`);
the thumb tip is the thumb landmark and the hand end the mid-knuckles (index, pinky), i.e. along the hand
axis as Human3.6M's ``WristEnd``. Left/right are the person's, in both skeletons.

A joint's confidence is the same weighted mean of the landmarks' ``visibility`` (MotionBERT averages the
confidence of the joints it builds from midpoints); a frame where no person is found gets zero pixels and
zero confidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from pose_forecasting.data.skeleton import JOINT_NAMES, JOINTS_USED

# BlazePose's 33 landmarks, in the model's output order (mediapipe.solutions.pose.PoseLandmark).
BLAZEPOSE_LANDMARKS = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

_TOE_BASE = 162.77 / (162.77 + 75.0)  # ankle -> toe base / ankle -> toe tip in OFFSETS_MM
_MID_TORSO = {"left_hip": 0.25, "right_hip": 0.25, "left_shoulder": 0.25, "right_shoulder": 0.25}

# Human3.6M joint name (skeleton.JOINT_NAMES) -> {BlazePose landmark: weight}, weights summing to 1.
H36M_FROM_BLAZEPOSE: dict[str, dict[str, float]] = {
    "RightLeg": {"right_knee": 1.0},
    "RightFoot": {"right_ankle": 1.0},
    "RightToeBase": {"right_ankle": 1 - _TOE_BASE, "right_foot_index": _TOE_BASE},
    "RightToeSite": {"right_foot_index": 1.0},
    "LeftLeg": {"left_knee": 1.0},
    "LeftFoot": {"left_ankle": 1.0},
    "LeftToeBase": {"left_ankle": 1 - _TOE_BASE, "left_foot_index": _TOE_BASE},
    "LeftToeSite": {"left_foot_index": 1.0},
    "Spine1": _MID_TORSO,
    "Neck": {"left_shoulder": 0.5, "right_shoulder": 0.5},
    "Head": {"nose": 1.0},
    "HeadSite": {"left_eye": 0.5, "right_eye": 0.5},
    "LeftArm": {"left_shoulder": 1.0},
    "LeftForeArm": {"left_elbow": 1.0},
    "LeftHand": {"left_wrist": 1.0},
    "LeftHandThumbSite": {"left_thumb": 1.0},
    "LeftWristEnd": {"left_index": 0.5, "left_pinky": 0.5},
    "RightArm": {"right_shoulder": 1.0},
    "RightForeArm": {"right_elbow": 1.0},
    "RightHand": {"right_wrist": 1.0},
    "RightHandThumbSite": {"right_thumb": 1.0},
    "RightWristEnd": {"right_index": 0.5, "right_pinky": 0.5},
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
INSTALL_HINT = 'pip install -e "pose-forecasting[video]"'


def mapping_matrix() -> np.ndarray:
    """``(22, 33)`` weights: row ``k`` builds joint ``JOINTS_USED[k]`` from the BlazePose landmarks."""
    weights = np.zeros((len(JOINTS_USED), len(BLAZEPOSE_LANDMARKS)))
    for k, joint in enumerate(JOINTS_USED):
        for landmark, w in H36M_FROM_BLAZEPOSE[JOINT_NAMES[joint]].items():
            weights[k, BLAZEPOSE_LANDMARKS.index(landmark)] = w
    return weights


def _pose_solution():
    """``mediapipe.solutions.pose``, imported only when a video is processed (an optional dependency)."""
    try:
        import mediapipe
    except ImportError as e:
        raise ImportError(f"2D keypoints from videos/images need mediapipe==0.10.14: {INSTALL_HINT}") from e
    return mediapipe.solutions.pose


def keypoints_from_frames(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """RGB ``uint8`` frames ``(H, W, 3)`` of one video -> ``pixels`` ``(T, 22, 2)`` float32 (x right, y down),
    ``confidence`` ``(T, 22)`` float32 in [0, 1] and ``(width, height)``.

    The frames are a sequence: MediaPipe tracks the person from frame to frame (``static_image_mode=False``)
    and smooths the landmarks, re-detecting when the track is lost.
    """
    pose = _pose_solution()
    weights = mapping_matrix()
    pixels, confidence = [], []
    size = None
    with pose.Pose(static_image_mode=False, model_complexity=1) as detector:
        for t, frame in enumerate(frames):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frame {t}: expected an RGB uint8 image (H, W, 3), got {frame.dtype} {frame.shape}")
            height, width = frame.shape[:2]
            if size is None:
                size = (width, height)
            elif size != (width, height):
                raise ValueError(f"frame {t}: size {(width, height)} differs from the first frame's {size}")
            result = detector.process(np.ascontiguousarray(frame))
            if result.pose_landmarks is None:
                pixels.append(np.zeros((len(JOINTS_USED), 2)))
                confidence.append(np.zeros(len(JOINTS_USED)))
                continue
            # Landmarks are normalised by the image width and height.
            landmarks = np.array([[p.x * width, p.y * height, p.visibility] for p in result.pose_landmarks.landmark])
            joints = weights @ landmarks
            pixels.append(joints[:, :2])
            confidence.append(joints[:, 2])
    if size is None:
        raise ValueError("no frames")
    return np.stack(pixels).astype(np.float32), np.stack(confidence).astype(np.float32), size


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """RGB frames of a video file (``cv2.VideoCapture``) or of a folder's images sorted by file name
    (files with a suffix in ``IMAGE_SUFFIXES``)."""
    path = Path(path)
    if path.is_dir():
        images = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)
        if not images:
            raise FileNotFoundError(f"{path}: no image in folder (expected files ending in {IMAGE_SUFFIXES})")
        for image in images:
            bgr = cv2.imread(str(image))
            if bgr is None:
                raise ValueError(f"{image}: not a readable image")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    elif path.is_file():
        capture = cv2.VideoCapture(str(path))
        try:
            count = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                count += 1
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()
        if count == 0:
            raise ValueError(f"{path}: no frame could be decoded (expected a video file OpenCV can read)")
    else:
        raise FileNotFoundError(f"{path}: not found (expected a video file or a folder of images)")


def keypoints_from_video(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """:func:`keypoints_from_frames` of a video file or of an image folder (sorted by name)."""
    return keypoints_from_frames(read_frames(path))
