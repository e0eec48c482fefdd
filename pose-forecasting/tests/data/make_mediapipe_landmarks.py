"""Regenerates ``mediapipe_landmarks.json``: what the real MediaPipe pose model (``mediapipe==0.10.14``,
``model_complexity=1``, the model inside its wheel) returns for the frame sequences of ``tests/test_video.py``
(scikit-image's astronaut photo, a black frame, the photo three times as a video), and its landmark names.

mediapipe cannot live in this project's environment (README, "Videos and photos"), so the tests replay this
file through ``keypoints_from_frames`` everywhere; in the ``[video]`` environment they run the model itself
(``pytest -m video``). Run it there, from ``pose-forecasting/``::

    /tmp/mpvenv/bin/python tests/data/make_mediapipe_landmarks.py
"""

import json
from pathlib import Path

import mediapipe
import numpy as np
import skimage.data

SEQUENCES = {"astronaut_then_black": ["astronaut", "black"], "astronaut_x3": ["astronaut"] * 3}


def main() -> None:
    astronaut = skimage.data.astronaut()
    frames = {"astronaut": astronaut, "black": np.zeros_like(astronaut)}
    pose = mediapipe.solutions.pose
    recorded = {}
    for name, sequence in SEQUENCES.items():
        results = []
        with pose.Pose(static_image_mode=False, model_complexity=1) as detector:
            for frame in sequence:
                out = detector.process(np.ascontiguousarray(frames[frame])).pose_landmarks
                results.append(None if out is None else [[p.x, p.y, p.z, p.visibility] for p in out.landmark])
        recorded[name] = {"frames": sequence, "landmarks": results}
    out = Path(__file__).with_name("mediapipe_landmarks.json")
    out.write_text(json.dumps({"mediapipe": mediapipe.__version__, "model_complexity": 1,
                               "landmark_names": [p.name.lower() for p in pose.PoseLandmark],
                               "sequences": recorded}) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
