"""The COCO-17 person keypoints: names, limbs and the limb colours skeleton maps are drawn with.

Order and limb pairs are COCO's ``person_keypoints`` category (Lin et al., "Microsoft COCO", ECCV 2014), which
SoccerNet game-state tools and every 2D pose estimator read; ``COCO_SKELETON`` is that category's ``skeleton`` with
0-based indices (COCO writes it 1-based).
"""

from __future__ import annotations

import colorsys

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(COCO_KEYPOINTS)

# COCO's 19 limbs, 0-based: legs, hips, torso sides, shoulders, arms, then the face.
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

# One fully saturated hue per limb, evenly around the colour wheel (as OpenPose's maps colour each limb its own hue),
# so a conditioned model can tell a left limb from a right one and an arm from a leg.
LIMB_COLOURS = tuple(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(i / len(COCO_SKELETON), 1.0, 1.0))
                     for i in range(len(COCO_SKELETON)))
