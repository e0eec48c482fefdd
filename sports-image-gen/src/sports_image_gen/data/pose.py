"""COCO-17 skeletons of real frames from MediaPipe Pose (the optional ``[pose]`` extra, mediapipe 0.10.14), written as
``person_keypoints.json`` beside the frames, the file the datamodule reads for skeleton conditioning.

    python -m sports_image_gen.data.pose <split folder>     # needs Labels-GameState.json there (the people's boxes)

MediaPipe Pose (BlazePose, Bazarevsky et al. 2020) finds one person per image, so each GSR person box (enlarged by
``MARGIN``) is cropped and posed on its own. Only ``model_complexity=1`` is used: its model
(``pose_landmark_full.tflite``) ships in the wheel, while the lite and heavy models would be downloaded at first use.
Its 33 landmarks map to COCO-17 by name (``MEDIAPIPE_TO_COCO``); a landmark with visibility below
``min_visibility`` is written as COCO's "not labelled" (0, 0, 0).

mediapipe 0.10.14 requires opencv-contrib-python, which clashes with the collection's opencv-python-headless in
one environment: install the extra in a separate environment to extract skeletons.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

from sports_image_gen.data.gamestate import GameState, read_gamestate
from sports_image_gen.data.skeleton import COCO_KEYPOINTS, COCO_SKELETON

# MediaPipe Pose landmark index of each COCO keypoint (nose, eyes, ears, shoulders, elbows, wrists, hips, knees,
# ankles): MediaPipe's 0 nose, 2 / 5 eyes, 7 / 8 ears, 11-16 arms, 23-28 legs.
MEDIAPIPE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
MARGIN = 0.2
PEOPLE = ("player", "goalkeeper", "referee")


def landmarks_to_coco(landmarks: np.ndarray, crop: tuple[float, float, float, float],
                      min_visibility: float = 0.5) -> np.ndarray:
    """(17, 3) COCO keypoints (x, y in frame pixels, v 2 / 0) from MediaPipe's (33, 4) landmarks (x, y normalised to
    the crop, z, visibility) and the crop's frame box (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = crop
    picked = np.asarray(landmarks, np.float64)[list(MEDIAPIPE_TO_COCO)]
    out = np.zeros((17, 3))
    seen = picked[:, 3] >= min_visibility
    out[seen, 0] = x1 + picked[seen, 0] * (x2 - x1)
    out[seen, 1] = y1 + picked[seen, 1] * (y2 - y1)
    out[seen, 2] = 2
    return out


def coco_keypoints_file(images: list[dict], people: dict[str, list[np.ndarray]]) -> dict:
    """The COCO person-keypoints dict: ``images`` ({id, file_name, width, height}) and each image's (17, 3) skeletons
    keyed by file name."""
    annotations = []
    for image in images:
        for skeleton in people.get(image["file_name"], []):
            seen = skeleton[:, 2] > 0
            xs, ys = skeleton[seen, 0], skeleton[seen, 1]
            box = [float(xs.min()), float(ys.min()), float(np.ptp(xs)), float(np.ptp(ys))] if seen.any() else [0] * 4
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": 1,
                                "keypoints": skeleton.ravel().round(2).tolist(), "num_keypoints": int(seen.sum()),
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINTS),
                            "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}]}


def frame_path(state: GameState, file_name: str) -> Path:
    """Where a frame of the labels is: GSR clips keep their frames in ``info.im_dir`` (``img1/``), the calibration
    layout (and the proxy) beside ``Labels-GameState.json``."""
    candidates = (state.image_dir / file_name, state.path.parent / file_name)
    return next((path for path in candidates if path.is_file()), candidates[0])


def extract_skeletons(folder: str | Path, min_visibility: float = 0.5) -> Path:
    """Pose every person box of ``<folder>/Labels-GameState.json`` (frames in its ``info.im_dir``, or beside it);
    write ``<folder>/person_keypoints.json``."""
    try:
        import mediapipe as mp
    except ImportError as err:
        raise ImportError('skeleton extraction needs MediaPipe: pip install -e "sports-image-gen[pose]" '
                          "(in an environment without opencv-python-headless)") from err
    folder = Path(folder)
    state = read_gamestate(folder / "Labels-GameState.json")
    images, people = [], {}
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
        for index, record in enumerate(state.images):
            path = frame_path(state, record["file_name"])
            frame = cv2.imread(str(path))
            if frame is None:
                raise FileNotFoundError(f"{path}: unreadable or missing frame of {folder / 'Labels-GameState.json'}")
            h, w = frame.shape[:2]
            images.append({"id": index + 1, "file_name": record["file_name"], "width": w, "height": h})
            for player in state.players(record["image_id"]):
                if player.role not in PEOPLE:
                    continue
                bx1, by1, bx2, by2 = player.box
                mx, my = MARGIN * (bx2 - bx1), MARGIN * (by2 - by1)
                crop = (max(bx1 - mx, 0), max(by1 - my, 0), min(bx2 + mx, w), min(by2 + my, h))
                x1, y1, x2, y2 = (int(round(v)) for v in crop)
                if x2 - x1 < 2 or y2 - y1 < 2:
                    continue
                result = pose.process(cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2RGB))
                if result.pose_landmarks is None:
                    continue
                marks = np.array([[p.x, p.y, p.z, p.visibility] for p in result.pose_landmarks.landmark])
                people.setdefault(record["file_name"], []).append(
                    landmarks_to_coco(marks, (x1, y1, x2, y2), min_visibility))
    out = folder / "person_keypoints.json"
    out.write_text(json.dumps(coco_keypoints_file(images, people)))
    return out


if __name__ == "__main__":
    print(extract_skeletons(sys.argv[1]))
