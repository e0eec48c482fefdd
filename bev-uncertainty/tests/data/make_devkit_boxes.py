"""Regenerates ``devkit_boxes.json``: the official nuScenes devkit's ground-plane box corners, in the ego
frame, of every keyframe of the test suite's generated nuScenes dataroot (``test_nuscenes.write_nuscenes``).

The devkit is not a dependency of this project (it pins numpy<2 and Shapely 2.0); run this once where it is
installed, from ``bev-uncertainty/``::

    pip install nuscenes-devkit==1.2.0 pyquaternion        # in a scratch environment
    python tests/data/make_devkit_boxes.py

``test_box_ego_coordinates_match_nuscenes_devkit`` compares our loader with the file, so every clone runs
the cross-check without the devkit. Regenerate it when ``write_nuscenes`` changes.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from nuscenes import NuScenes
from pyquaternion import Quaternion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bev_uncertainty.data.nuscenes import bev_class  # noqa: E402
from test_nuscenes import write_nuscenes  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dataroot = write_nuscenes(Path(tmp) / "nuscenes")
        nusc = NuScenes(version="v1.0-mini", dataroot=str(dataroot), verbose=False)
        corners = {}
        for sample in nusc.sample:
            lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
            calibration = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
            _, boxes, _ = nusc.get_sample_data(lidar["token"])  # in the LiDAR frame
            corners[sample["token"]] = []
            for box in boxes:
                if bev_class(box.name, ("ood", "animal")) is not None:
                    box.rotate(Quaternion(calibration["rotation"]))
                    box.translate(np.array(calibration["translation"]))
                    corners[sample["token"]].append(box.bottom_corners()[:2].T.tolist())
    out = Path(__file__).with_name("devkit_boxes.json")
    out.write_text(json.dumps({"devkit": "nuscenes-devkit 1.2.0", "ego_bottom_corners_xy": corners}) + "\n")
    print(f"wrote {out}: the boxes of {len(corners)} samples")


if __name__ == "__main__":
    main()
