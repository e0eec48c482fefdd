"""A procedural soccer broadcast view, rendered with numpy + OpenCV and written in the real datasets' layouts.

The synthetic proxy of the project: the same conditioning signals as SoccerNet (a calibrated camera, the pitch
markings' visible points, player boxes and pitch positions, COCO-17 skeletons, a text prompt) with an image that
looks enough like a broadcast frame for a small diffusion model to learn the mapping on a laptop CPU.

The scene (sn-calibration world frame, see ``camera.py`` / ``pitch.py``: metres, z down):

- the main camera's distribution: on the y > 0 side, 45-60 m from the centre line, 10-20 m high, aiming at the
  pitch with a 25-55 degree horizontal field of view and a little radial distortion (``sample_camera``);
- grass up to ``GRASS_X`` x ``GRASS_Y`` with mowing stripes every 5.25 m (20 across the pitch), markings 12 cm
  wide (every class of ``pitch_polylines`` plus the centre and penalty marks), goal frames and translucent nets;
- stands: tiers rising at 30 degrees from the edge of the grass to ``STAND_HEIGHT`` (seats filled by a crowd of the
  scene's density, advertising boards along the bottom), a roof fascia above them, then the sky (a gradient by
  ray elevation);
- 22 players in two kits, a referee and a ball; each person is an articulated COCO-17 body (``body_joints``) drawn
  as projected capsules in painter's order; on sunny days the far stand shades part of the pitch and people cast
  shadows.

Rendering: every background pixel's ray is intersected analytically with the ground and the stands (the pixel is
undistorted first: the ray is what the distorted camera sees), the markings and bodies are projected with
``Camera.project`` so they bend with the distortion, all at ``supersample`` x the resolution and area-averaged
down (anti-aliasing), then a little vignetting and sensor noise. ``write_split`` writes frames in the
SoccerNet-calibration, SoccerNet-GSR and COCO-keypoints layouts, so the real loaders read them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from sports_image_gen.data.camera import Camera, rotation_to_pan_tilt_roll
from sports_image_gen.data.gamestate import Player, write_gamestate
from sports_image_gen.data.pitch import GOAL_HEIGHT, GOAL_LENGTH, PITCH_LENGTH, PITCH_WIDTH, key_points, pitch_polylines
from sports_image_gen.data.skeleton import COCO_KEYPOINTS, COCO_SKELETON, NUM_KEYPOINTS
from sports_image_gen.data.soccernet_calibration import write_camera_json, write_lines_json

# The frame the camera JSON describes (SoccerNet-calibration's images are 960 x 540).
FRAME_WIDTH, FRAME_HEIGHT = 960, 540
HALF_LENGTH, HALF_WIDTH = PITCH_LENGTH / 2, PITCH_WIDTH / 2
GRASS_X, GRASS_Y = HALF_LENGTH + 6.0, HALF_WIDTH + 5.0  # grass beyond the lines, up to the advertising boards
STAND_HEIGHT, BOARD_HEIGHT, FASCIA_HEIGHT = 15.0, 0.9, 2.5
STAND_RUN = 1 / math.tan(math.radians(30.0))  # metres of depth per metre of rise of the tiers
SEAT_WIDTH, ROW_RISE = 0.55, 0.45
STRIPE_WIDTH = PITCH_LENGTH / 20
LINE_HALF_WIDTH = 0.06  # Laws of the Game: markings at most 12 cm wide; posts and crossbar 12 cm too
GOAL_DEPTH = 2.0
BALL_RADIUS = 0.11
# Beyond this undistorted radius (56 degrees off the axis) the distortion polynomial is no longer calibrated and can
# fold far-away points back into the image: such points are treated as not projectable.
MAX_RAY_RADIUS = 1.5
UP = np.array([0.0, 0.0, -1.0])

# Kit colours (RGB) and their prompt names: distinct hues, none grass-green so that no kit hides in the pitch.
KIT_COLOURS = {
    "red": (200, 30, 35), "white": (235, 235, 235), "blue": (30, 70, 190), "sky blue": (120, 180, 235),
    "yellow": (245, 215, 40), "black": (25, 25, 30), "orange": (240, 120, 30), "purple": (115, 45, 150),
    "maroon": (115, 20, 45), "pink": (240, 120, 180),
}
REFEREE_COLOURS = ("black", "yellow")
# Euclidean RGB distance under which two kits read as the same team (red / maroon, yellow / orange are closer).
MIN_KIT_DISTANCE = 120.0
SKIN_TONES = ((235, 200, 170), (215, 170, 135), (175, 125, 90), (120, 80, 55), (85, 58, 42))
HAIR_COLOURS = ((30, 22, 18), (60, 40, 25), (110, 80, 45), (20, 20, 20))
BOOT_COLOURS = ((20, 20, 20), (235, 235, 235), (230, 70, 40))
PAINT = np.array([238.0, 240.0, 236.0], dtype=np.float32)


@dataclass(frozen=True)
class Look:
    """The lighting of a weather / time of day: sky colours, the gain on lit and shaded surfaces (RGB), the
    stands' gain (dim under a roof, dark at night) and the phrase of the prompt."""

    zenith: tuple[float, float, float]
    horizon: tuple[float, float, float]
    light: tuple[float, float, float]
    shade: tuple[float, float, float]
    stands: float
    phrase: str


WEATHERS = {
    "sunny": Look((70, 130, 215), (175, 210, 240), (1.08, 1.06, 1.0), (0.55, 0.6, 0.7), 0.8, "sunny day"),
    "overcast": Look((150, 155, 165), (200, 203, 208), (0.88, 0.9, 0.92), (0.88, 0.9, 0.92), 0.75, "overcast day"),
    "night": Look((6, 9, 22), (28, 36, 62), (1.0, 1.0, 0.97), (1.0, 1.0, 0.97), 0.5, "night game under floodlights"),
}
CROWDS = {"crowded stands": 0.92, "half-empty stands": 0.5, "empty stands": 0.06}

# A 4-4-2 of the team attacking +x: (depth from the block's back line, 0..1; across the pitch, -1..1).
FORMATION = np.array([[0.0, -0.75], [0.0, -0.25], [0.0, 0.25], [0.0, 0.75], [0.5, -0.8], [0.5, -0.25],
                      [0.5, 0.25], [0.5, 0.8], [1.0, -0.2], [1.0, 0.2]])


@dataclass
class Scene:
    """What stands on the pitch, and the conditions it is seen in.

    People are rows 0..N-1: ``team`` 0 left (defends x < 0), 1 right, 2 referee; ``pitch_xy`` their feet on the
    pitch; ``joints`` the COCO-17 keypoints in world metres (z down); ``colours`` / ``shorts`` / ``skin`` RGB;
    ``goalkeeper`` flags; ``jersey`` numbers (0 for the referee). ``ball`` is the ball's centre. ``weather`` is a
    key of ``WEATHERS``, ``crowd`` the fraction of occupied seats, ``shadow_y`` the edge of the far stand's
    shadow on a sunny day (the pitch is shaded where y < shadow_y; -inf without), ``sun`` the light's direction,
    ``seed`` seeds the crowd, the other colours and the sensor noise so that rendering is a function of the scene.
    """

    pitch_xy: np.ndarray
    team: np.ndarray
    colours: np.ndarray
    shorts: np.ndarray
    skin: np.ndarray
    goalkeeper: np.ndarray
    jersey: np.ndarray
    joints: np.ndarray
    ball: np.ndarray
    weather: str
    crowd: float
    shadow_y: float
    sun: np.ndarray
    seed: int
    prompt: str


@dataclass
class Frame:
    """A rendered view: ``image`` H x W x 3 uint8 RGB; ``boxes`` N x 4 x1 y1 x2 y2 per person in the image's pixels
    (from the projected body plus a margin, not clipped to the image; NaN when the person is behind the camera);
    ``keypoints`` N x 17 x 3 (x, y in pixels, visibility 2 visible, 1 occluded or outside the image, 0 behind the
    camera); ``lines`` line class -> K x 2 points normalised to [0, 1] (the visible samples of each marking, what
    SoccerNet's ``<name>.json`` holds)."""

    image: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray
    lines: dict[str, np.ndarray]


# ----------------------------------------------------------------------------------------------------------- camera


def look_at(centre: np.ndarray, target: np.ndarray, roll_degrees: float = 0.0) -> np.ndarray:
    """World-to-camera rotation of a camera at ``centre`` aiming at ``target``: its rows are the camera axes (x right,
    y down in the image, z forward) in world coordinates. Image down is world down (+z) made orthogonal to the
    view, which levels the horizon as an operator does; ``roll_degrees`` then turns the image about the view."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    down = np.array([0.0, 0.0, 1.0]) - forward[2] * forward
    down /= np.linalg.norm(down)
    rotation = np.stack([np.cross(down, forward), down, forward])
    c, s = np.cos(np.deg2rad(roll_degrees)), np.sin(np.deg2rad(roll_degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ rotation


def sample_camera(rng: np.random.Generator, target: np.ndarray | None = None) -> Camera:
    """A main broadcast camera as SoccerNet's frames have it: high on the y > 0 side near the centre line, aimed at
    the pitch (at ``target`` (x, y) on the ground when given, as a director follows the play), zoomed between a
    wide and a medium shot, level up to a small roll, with a little radial distortion. Pixels are those of the
    960 x 540 frame of the challenge's camera JSON (square pixels, centred principal point)."""
    centre = np.array([rng.uniform(-10, 10), rng.uniform(45, 60), -rng.uniform(10, 20)])
    aim = rng.uniform([-40, -15], [40, 20]) if target is None else np.asarray(target, dtype=np.float64)
    focal = FRAME_WIDTH / 2 / np.tan(np.deg2rad(rng.uniform(25, 55)) / 2)
    pan, tilt, roll = rotation_to_pan_tilt_roll(look_at(centre, np.append(aim, 0.0), rng.normal(0.0, 0.5)))
    radial = np.zeros(6)
    radial[0] = rng.uniform(-0.05, 0.05)
    return Camera(pan, tilt, roll, centre, focal, focal, np.array([FRAME_WIDTH / 2, FRAME_HEIGHT / 2]), radial)


def _horizontal_fov(camera: Camera) -> float:
    """The horizontal field of view in degrees (of the undistorted frame)."""
    return float(np.rad2deg(2 * np.arctan(camera.image_size[0] / 2 / camera.x_focal_length)))


def view_target(camera: Camera) -> np.ndarray:
    """Where the optical axis meets the ground (the point the operator follows), as (x, y)."""
    forward = camera.rotation[2]
    centre = camera.centre
    return centre[:2] - centre[2] / max(forward[2], 1e-3) * forward[:2]


def project(camera: Camera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Camera.project`` restricted to rays the distortion model describes: (N x 2 pixels, N valid flags).
    A point in front but beyond ``MAX_RAY_RADIUS`` off the axis could land inside the image after distortion
    although no lens would show it there, so it is invalid like a point behind the camera."""
    uv, front = camera.project(points)
    cam = camera.to_camera_frame(points)
    radius2 = (cam[:, 0] ** 2 + cam[:, 1] ** 2) / np.maximum(cam[:, 2], 1e-3) ** 2
    return uv, front & (radius2 < MAX_RAY_RADIUS ** 2)


# ------------------------------------------------------------------------------------------------------------ scene


def _kit_distance(a: str, b: str) -> float:
    """Euclidean RGB distance between two kits of ``KIT_COLOURS``."""
    return float(np.linalg.norm(np.subtract(KIT_COLOURS[a], KIT_COLOURS[b])))


def _sample_kits(rng: np.random.Generator) -> tuple[str, str, str, str, str]:
    """Names of (left, right, referee, left goalkeeper, right goalkeeper) kits, pairwise far apart where a viewer
    must tell them apart (as the Laws of the Game require of real kits)."""
    names = list(KIT_COLOURS)
    while True:
        left, right = (names[i] for i in rng.choice(len(names), 2, replace=False))
        referees = [name for name in REFEREE_COLOURS
                    if min(_kit_distance(name, left), _kit_distance(name, right)) >= MIN_KIT_DISTANCE]
        if _kit_distance(left, right) >= MIN_KIT_DISTANCE and referees:
            break
    referee = referees[rng.integers(len(referees))]
    keepers = []
    for team in (left, right):
        third = [name for name in names
                 if min(_kit_distance(name, other) for other in (left, right, referee)) >= MIN_KIT_DISTANCE]
        keepers.append(third[rng.integers(len(third))] if third and rng.random() < 0.7 else team)
    return left, right, referee, keepers[0], keepers[1]


def _formation(rng: np.random.Generator, camera: Camera, ball_xy: np.ndarray) -> np.ndarray:
    """Pitch positions (23 x 2: 11 left, 11 right, the referee) of two 4-4-2 blocks around the ball, goalkeepers
    near their goals. The blocks shrink with the view's footprint so that a zoomed camera still sees most
    outfield players, as a broadcast director frames the play."""
    footprint = np.linalg.norm(camera.centre - np.append(ball_xy, 0.0)) * camera.image_size[0] / camera.x_focal_length
    scale = np.clip(footprint / 60.0, 0.6, 1.0)
    depth, width = rng.uniform(25, 35) * scale, rng.uniform(40, 55) * scale
    positions = []
    for sign in (1.0, -1.0):  # left team attacks +x, the right team -x: mirror the block
        back = ball_xy[0] - sign * depth * rng.uniform(0.3, 0.8)
        outfield = np.stack([back + sign * FORMATION[:, 0] * depth,
                             FORMATION[:, 1] * width / 2 + 0.3 * ball_xy[1]], 1) + rng.normal(0, 2.5, (10, 2))
        own_goal = -sign * HALF_LENGTH
        keeper = [own_goal + sign * np.clip(0.2 * abs(ball_xy[0] - own_goal), 2, 18),
                  0.15 * ball_xy[1] + rng.normal(0, 1.5)]
        positions += [keeper, *outfield]
    positions.append(ball_xy + rng.uniform([-15, -10], [15, 10]))
    return np.clip(np.array(positions), [-HALF_LENGTH + 0.5, -HALF_WIDTH + 0.5], [HALF_LENGTH - 0.5,
                                                                                      HALF_WIDTH - 0.5])


def _layout_people(rng: np.random.Generator, layout, ball_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """(pitch positions, team, goalkeeper flags) from a tracking layout (``tracking.Layout``: team 0 left, 1 right,
    2 referee). Each team's goalkeeper is its player nearest its own goal when that player stands in the goal
    area's third of the pitch (broadcast tracking often misses the goalkeepers); a layout without a referee gets
    one near the ball."""
    xy = np.asarray(layout.xy, dtype=np.float64)
    team = np.asarray(layout.team).astype(int)
    if not (team == 2).any():
        xy = np.vstack([xy, ball_xy + rng.uniform([-15, -10], [15, 10])])
        team = np.append(team, 2)
    goalkeeper = np.zeros(len(team), bool)
    for side, sign in ((0, -1.0), (1, 1.0)):
        members = np.flatnonzero(team == side)
        deepest = members[np.argmax(sign * xy[members, 0])] if len(members) else None
        if deepest is not None and sign * xy[deepest, 0] > HALF_LENGTH / 3:
            goalkeeper[deepest] = True
    return xy, team, goalkeeper


def _sagittal(angle: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Unit vectors swung by ``angle`` (radians, N) from straight down towards ``forward`` (N x 3)."""
    return -UP * np.cos(angle)[:, None] + forward * np.sin(angle)[:, None]


def body_joints(xy: np.ndarray, height: np.ndarray, facing: np.ndarray, speed: np.ndarray, phase: np.ndarray,
                head_turn: np.ndarray) -> np.ndarray:
    """N x 17 x 3 COCO-17 joints (world, z down) of people standing or running.

    Segment lengths are fractions of the height from Drillis and Contini's anthropometric table (thigh 0.245,
    shank 0.246, upper arm 0.186, forearm 0.146, hip to shoulder 0.288, ankle 0.039). The gait is a sine of
    ``phase``: thighs swing by up to 0.55 rad at full ``speed`` (0 standing, 1 sprinting) in antiphase with the
    arms, the knee of the swinging leg folds, elbows bend and the trunk leans forward with speed. The lower ankle
    is put at its height above the ground (the stance foot) under the pelvis at ``xy``."""
    n = len(xy)
    H = height[:, None]
    forward = np.stack([np.cos(facing), np.sin(facing), np.zeros(n)], 1)
    left = np.cross(UP, forward)  # (forward, left, up) is right-handed
    spine = UP * np.cos(0.25 * speed)[:, None] + forward * np.sin(0.25 * speed)[:, None]
    hips = [0.05 * H * left, -0.05 * H * left]
    neck = 0.288 * H * spine
    shoulders = [neck + 0.105 * H * left, neck - 0.105 * H * left]
    knees, ankles, elbows, wrists = [], [], [], []
    for side, sign in ((0, 1.0), (1, -1.0)):  # left then right
        leg_phase = phase + side * np.pi
        thigh = 0.55 * speed * np.sin(leg_phase)
        knee_flex = 0.1 + speed * (0.3 + 0.9 * np.maximum(0.0, np.cos(leg_phase)))
        knees.append(hips[side] + 0.245 * H * _sagittal(thigh, forward))
        ankles.append(knees[side] + 0.246 * H * _sagittal(thigh - knee_flex, forward))
        # Arms swing against their leg; a little abduction keeps them off the trunk.
        arm = -0.7 * speed * np.sin(leg_phase) - 0.05
        outward = sign * left * np.sin(0.15)
        elbows.append(shoulders[side] + 0.186 * H * (_sagittal(arm, forward) * np.cos(0.15) + outward))
        fore = _sagittal(arm + 0.25 + 1.1 * speed, forward) * np.cos(0.15) + outward
        wrists.append(elbows[side] + 0.146 * H * fore)
    head = neck + 0.115 * H * spine
    gaze = forward * np.cos(head_turn)[:, None] + left * np.sin(head_turn)[:, None]
    gaze_left = np.cross(UP, gaze)
    nose = head + 0.058 * H * gaze - 0.01 * H * UP
    eyes = [head + 0.048 * H * gaze + 0.012 * H * UP + s * 0.018 * H * gaze_left for s in (1.0, -1.0)]
    ears = [head + s * 0.042 * H * gaze_left for s in (1.0, -1.0)]
    joints = np.stack([nose, *eyes, *ears, *shoulders, *elbows, *wrists, *hips, *knees, *ankles], 1)
    lowest = np.max(joints[:, 15:17, 2], 1)  # z down: the lower ankle has the larger z
    joints[:, :, 2] += (-0.039 * height - lowest)[:, None]
    joints[:, :, :2] += xy[:, None, :]
    return joints


def sample_scene(rng: np.random.Generator, camera: Camera, layout=None) -> Scene:
    """Two teams, a referee and the ball around the camera's target, or at a tracking ``layout``'s positions
    (``tracking.Layout``: ``xy`` N x 2 metres, ``team`` N with 0 left, 1 right, 2 referee, ``ball`` or None), in
    sampled kits, poses, weather and crowd, with the prompt that describes them."""
    ball_xy = view_target(camera) + rng.normal(0, 3, 2)
    ball_height = rng.uniform(0.3, 4.0) if rng.random() < 0.2 else 0.0  # a fifth of the time in the air
    if layout is None:
        xy = _formation(rng, camera, ball_xy)
        team = np.array([0] * 11 + [1] * 11 + [2])
        goalkeeper = np.zeros(23, bool)
        goalkeeper[[0, 11]] = True
    else:
        if layout.ball is not None:  # tracked: where it was (z down, 0 where the data has no height)
            ball_xy, ball_height = np.asarray(layout.ball[:2], dtype=np.float64), max(0.0, -float(layout.ball[2]))
        else:  # at the feet of the player nearest the camera's target
            nearest = np.argmin(np.linalg.norm(np.asarray(layout.xy) - ball_xy, axis=1))
            ball_xy, ball_height = np.asarray(layout.xy[nearest]) + rng.normal(0, 0.5, 2), 0.0
        xy, team, goalkeeper = _layout_people(rng, layout, ball_xy)
    n = len(xy)
    left, right, referee, keeper_left, keeper_right = _sample_kits(rng)
    jersey_names = np.where(team == 0, left, np.where(team == 1, right, referee)).astype(object)
    jersey_names[goalkeeper & (team == 0)] = keeper_left
    jersey_names[goalkeeper & (team == 1)] = keeper_right
    colours = np.array([KIT_COLOURS[name] for name in jersey_names], dtype=np.uint8)
    # Shorts per team: white, black or the jersey's colour; the referee's are black.
    team_shorts = [KIT_COLOURS[rng.choice(["white", "black", name])] for name in (left, right)]
    shorts = np.array([team_shorts[t] if t < 2 else KIT_COLOURS["black"] for t in team], dtype=np.uint8)
    skin = np.array(SKIN_TONES, dtype=np.uint8)[rng.integers(len(SKIN_TONES), size=n)]
    jersey = np.zeros(n, int)
    for side in (0, 1):
        members = np.flatnonzero((team == side) & ~goalkeeper)
        jersey[members] = rng.permutation(np.arange(2, 30))[:len(members)]
        jersey[(team == side) & goalkeeper] = 1
    running = rng.random(n) < 0.7
    speed = np.where(running, rng.uniform(0.4, 1.0, n), rng.uniform(0.0, 0.15, n))
    joints = body_joints(xy, rng.uniform(1.70, 1.95, n), rng.uniform(0, 2 * np.pi, n), speed,
                         rng.uniform(0, 2 * np.pi, n), rng.normal(0, 0.3, n))
    ball = np.array([*ball_xy, -BALL_RADIUS - ball_height])
    weather = str(rng.choice(list(WEATHERS), p=[0.45, 0.25, 0.3]))
    crowd_phrase = str(rng.choice(list(CROWDS), p=[0.5, 0.3, 0.2]))
    crowd = float(np.clip(CROWDS[crowd_phrase] + rng.normal(0, 0.04), 0.0, 1.0))
    # Sunlight from behind the far stand (it shades the far part of the pitch, shadows point at the camera).
    sunny = weather == "sunny"
    shadow_y = float(rng.uniform(-HALF_WIDTH - 5, 10)) if sunny and rng.random() < 0.6 else -np.inf
    azimuth, elevation = rng.uniform(np.pi / 6, 5 * np.pi / 6), rng.uniform(np.deg2rad(35), np.deg2rad(60))
    sun = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    shot = "wide shot" if _horizontal_fov(camera) >= 40.0 else "medium shot"
    # The crowd is part of the description only where the stands are in the picture.
    crowd_words = f", {crowd_phrase}" if _stands_in_view(camera) else ""
    prompt = (f"a broadcast view of a soccer match, {shot}, {left} team against {right} team, referee in "
              f"{referee}, {WEATHERS[weather].phrase}{crowd_words}")
    return Scene(pitch_xy=xy, team=team, colours=colours, shorts=shorts, skin=skin, goalkeeper=goalkeeper,
                 jersey=jersey, joints=joints, ball=ball, weather=weather, crowd=crowd, shadow_y=shadow_y, sun=sun,
                 seed=int(rng.integers(2 ** 31)), prompt=prompt)


# ------------------------------------------------------------------------------------------------------- background


@dataclass
class _Appearance:
    """A scene's random appearance, drawn from its seed: ``lut`` the packed colours (uint32 R | G << 8 | B << 16)
    of every background material, indexed as ``_background`` computes (see ``_palette``); each person's
    ``hair`` and ``boots`` colours (N x 3)."""

    lut: np.ndarray
    hair: np.ndarray
    boots: np.ndarray


# The background's colour table: seats (riser or not x SEAT_ROWS x SEAT_COLUMNS, wrapping along and up the stands:
# powers of two, so that coordinates wrap with a bitwise and), then SKY_LEVELS sky colours from the horizon up,
# then the grass (shaded or not x stripe x GRAIN_LEVELS). One gather of packed colours per pixel is far cheaper
# than compositing each material's colour planes.
SEAT_ROWS, SEAT_COLUMNS, SKY_LEVELS, GRAIN_LEVELS = 64, 256, 256, 64
SKY = 2 * SEAT_ROWS * SEAT_COLUMNS
GRASS = SKY + SKY_LEVELS
SEATS_PER_BOARD = 15  # 8.25 m advertising boards
WALKWAY_RISE = 7.5


def _pack(colours: np.ndarray) -> np.ndarray:
    """... x 3 colours (0..255) as packed uint32 R | G << 8 | B << 16 (bytes R, G, B, 0 in memory)."""
    rgb = np.clip(np.round(colours), 0, 255).astype(np.uint32)
    return rgb[..., 0] | rgb[..., 1] << 8 | rgb[..., 2] << 16


def _palette(rng: np.random.Generator, scene: Scene) -> _Appearance:
    """The scene's colours. Stands: empty seats in one plastic colour, occupied ones (``scene.crowd`` of them) in
    clothes, a third of the fans in their team's colours; a stairway every 28 seats; each row's riser in shadow;
    a concrete walkway between the two tiers; darker towards the back under the roof; LED boards at the bottom as
    bright by night as by day; the roof's fascia above. Sky: the look's gradient. Grass: stripes 14 % apart,
    grain, the look's light or shade."""
    look = WEATHERS[scene.weather]
    shape = (SEAT_ROWS, SEAT_COLUMNS)
    # Who sits where, as an index into: the seats' plastic, everyday clothes (muted: a grey level with a little
    # colour), the teams' kits. One draw per seat and per choice keeps this cheap.
    plastic = np.array([(40, 60, 140), (150, 30, 35), (95, 95, 100), (35, 35, 40)])[rng.integers(4)]
    clothes = _clothes()
    kits = scene.colours[scene.team < 2]
    colours = np.concatenate([plastic[None], clothes, kits]).astype(np.float32)
    wearer = np.where(rng.random(shape) < 0.35, 1 + len(clothes) + rng.integers(len(kits), size=shape),
                      1 + rng.integers(len(clothes), size=shape))
    seats = colours[np.where(rng.random(shape) < scene.crowd, wearer, 0)]
    seats *= rng.uniform(0.75, 1.05, shape).astype(np.float32)[..., None]
    seats[:, ::28] = (120, 118, 112)
    rise = (np.arange(SEAT_ROWS) + 0.5) * ROW_RISE
    seats[np.abs(rise - WALKWAY_RISE) < ROW_RISE] = (125, 122, 115)
    seats *= (look.stands * (1.0 - 0.35 * np.minimum(rise, STAND_HEIGHT) / STAND_HEIGHT))[:, None, None]
    stands = np.stack([seats, 0.55 * seats])  # index 0: the seat, 1: the riser in front of it
    boards = rng.uniform(20, 255, (SEAT_COLUMNS // SEATS_PER_BOARD + 1, 3))
    stands[:, rise < BOARD_HEIGHT] = boards[np.arange(SEAT_COLUMNS) // SEATS_PER_BOARD]
    stands[:, rise >= STAND_HEIGHT] = (55, 57, 62)
    mix = np.linspace(0, 1, SKY_LEVELS)[:, None]
    sky = np.array(look.horizon) + mix * (np.array(look.zenith) - np.array(look.horizon))
    lawn = np.array([55, 128, 45]) * rng.uniform(0.85, 1.1) + rng.normal(0, 6, 3)
    grain = np.linspace(-2.0, 2.0, GRAIN_LEVELS)
    brightness = 0.93 + 0.14 * np.arange(2)[:, None] + 0.05 * grain  # stripe x grain
    gain = np.array([look.light, look.shade])  # shaded or not
    grass = lawn * brightness[None, :, :, None] * gain[:, None, None, :]
    n = len(scene.team)
    return _Appearance(lut=_pack(np.concatenate([stands.reshape(-1, 3), sky, grass.reshape(-1, 3)])),
                       hair=np.array(HAIR_COLOURS)[rng.integers(len(HAIR_COLOURS), size=n)],
                       boots=np.array(BOOT_COLOURS)[rng.integers(len(BOOT_COLOURS), size=n)])


@cache
def _clothes(count: int = 64) -> np.ndarray:
    """``count`` x 3 colours of everyday clothes, fixed: muted, a grey level with a little colour."""
    rng = np.random.default_rng(0)
    return np.clip(rng.uniform(25, 190, (count, 1)) + rng.normal(0, 25, (count, 3)), 0, 255)


@cache
def _grain(size: int = 256) -> np.ndarray:
    """Grass grain levels (blurred noise quantised to GRAIN_LEVELS over +-2 deviations, flattened): the same lawn
    in every frame, sampled every 0.25 m, fine near the camera and averaged out far away as real turf is."""
    grain = cv2.GaussianBlur(np.random.default_rng(0).normal(0, 1, (size, size)).astype(np.float32), (0, 0), 0.8)
    levels = np.round((grain / grain.std() + 2.0) / 4.0 * (GRAIN_LEVELS - 1))
    return np.clip(levels, 0, GRAIN_LEVELS - 1).astype(np.int32).ravel()


def _lattice(camera: Camera, width: int, height: int, step: int) -> np.ndarray:
    """(H / step + 2) x (W / step + 2) x 3 world directions of the rays through a lattice of points every ``step``
    pixels, one cell beyond the image on each side (cell q is centred at pixel coordinate (q - 0.5) step).

    The distortion is undone by ``cv2.undistortPoints`` iterated to convergence (OpenCV's 12 coefficients k1 k2
    p1 p2 k3 k4 k5 k6 s1..s4 are sn-calibration's model). Solving it for every pixel would take most of a frame's
    time; the map is smooth, so ``_upsample`` interpolates it to far below a pixel's error."""
    nx, ny = -(-width // step) + 2, -(-height // step) + 2
    u, v = np.meshgrid((np.arange(nx) - 0.5) * step, (np.arange(ny) - 0.5) * step)
    k, p, s = camera.radial_distortion, camera.tangential_distortion, camera.thin_prism_distortion
    K = np.array([[camera.x_focal_length, 0, camera.principal_point[0]],
                  [0, camera.y_focal_length, camera.principal_point[1]], [0, 0, 1]])
    normalised = cv2.undistortPoints(np.stack([u, v], -1).reshape(-1, 1, 2), K, np.concatenate([k[:2], p, k[2:], s]),
                                     criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-10))
    rotation = camera.rotation
    rays = normalised.reshape(ny, nx, 2) @ rotation[:2] + rotation[2]  # camera (x, y, 1) to world: R^T
    return rays.astype(np.float32)


def _upsample(lattice: np.ndarray, width: int, height: int, step: int) -> np.ndarray:
    """One channel of a ``_lattice``-shaped map interpolated bilinearly at every pixel centre, flattened (H W):
    pixel x (centre x + 0.5) is at lattice coordinate (x + 0.5) / step + 0.5."""
    scale = np.array([[1 / step, 0, 0.5 / step + 0.5], [0, 1 / step, 0.5 / step + 0.5]])
    return cv2.warpAffine(np.ascontiguousarray(lattice), scale, (width, height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP).ravel()


def _lawn(gx: np.ndarray, gy: np.ndarray, in_shadow: np.ndarray) -> np.ndarray:
    """Colour-table indices of grass at ground points (gx, gy): stripes alternating every 5.25 m from the goal
    line (offset by two stripes to stay positive), grain, the far stand's shadow."""
    stripe = ((gx + (HALF_LENGTH + 2 * STRIPE_WIDTH)) / STRIPE_WIDTH).astype(np.int32) & 1
    grain = np.take(_grain(), ((gy * 4).astype(np.int32) & 255) * 256 + ((gx * 4).astype(np.int32) & 255))
    return (GRASS + grain) + (in_shadow.view(np.int8).astype(np.int32) * 2 + stripe) * GRAIN_LEVELS


def _stands_or_sky(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, gx: np.ndarray, gy: np.ndarray,
                   ground: np.ndarray, sky_level: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Colour-table indices of rays that miss the grass: the tiers they leave through (far stand, else the end
    stand they head to) up to the fascia, the sky above; ground beyond the near touch line is the near stand."""
    cx, cy, cz = centre
    rate_far = dy - STAND_RUN * dz
    t_far = np.where(rate_far < 0, (-GRASS_Y + STAND_RUN * cz - cy) / rate_far, np.inf)
    rate_end = np.abs(dx) + STAND_RUN * dz
    t_end = np.where(rate_end > 0, (GRASS_X - STAND_RUN * cz - np.sign(dx) * cx) / rate_end, np.inf)
    t = np.minimum(t_far, t_end)
    rise = np.where(ground, (gy - GRASS_Y) * 0.5 + BOARD_HEIGHT, -cz - t * dz)  # near stand: rows every 0.9 m
    along = np.where(ground, gx, np.where(t_far <= t_end, cx + t * dx, cy + t * dy))
    rows = rise / ROW_RISE
    row = np.floor(rows)
    riser = (rows - row < 0.25).view(np.int8).astype(np.int32)  # the first quarter of a row: its riser
    seat = ((riser * SEAT_ROWS + (row.astype(np.int32) & (SEAT_ROWS - 1))) * SEAT_COLUMNS
            + ((along / SEAT_WIDTH).astype(np.int32) & (SEAT_COLUMNS - 1)))
    return np.where(rise < STAND_HEIGHT + FASCIA_HEIGHT, seat, SKY + sky_level.astype(np.int32))


def _materials(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, sky_level: np.ndarray, centre: np.ndarray,
               shadow_y: float) -> tuple[np.ndarray, np.ndarray]:
    """(colour-table indices, flags of the grass in the far stand's shadow) of the rays (dx, dy, dz) from
    ``centre`` (see ``_background``); only the materials present are computed (most blocks are all grass)."""
    cx, cy, cz = centre
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = -cz / dz
        gx, gy = cx + t * dx, cy + t * dy
        ground = (dz > 1e-6) & (gy > -GRASS_Y) & (np.abs(gx) < GRASS_X)
        grass = ground & (gy < GRASS_Y)
        in_shadow = grass & (gy < shadow_y)
        if grass.all():
            return _lawn(gx, gy, in_shadow), in_shadow
        other = _stands_or_sky(dx, dy, dz, gx, gy, ground, sky_level, centre)
        if not grass.any():
            return other, in_shadow
        return np.where(grass, _lawn(gx, gy, in_shadow), other), in_shadow


def _stands_in_view(camera: Camera, step: int = 20) -> bool:
    """Whether any of a lattice of rays every ``step`` pixels of the camera's frame sees the stands."""
    width, height = (round(size) for size in camera.image_size)
    rays = _lattice(camera, width, height, step)[1:-1, 1:-1].reshape(-1, 3)  # the cells inside the frame
    index, _ = _materials(rays[:, 0], rays[:, 1], rays[:, 2], np.zeros(len(rays), np.float32),
                          camera.centre.astype(np.float32), -np.inf)
    return bool((index < SKY).any())


def _background(camera: Camera, scene: Scene, appearance: _Appearance, width: int, height: int, step: int = 8,
                block: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 colours of sky, stands and grass; H x W flags of the grass in the far stand's shadow).

    A descending ray whose ground point lies inside the stands' footprint sees the ground: the space the stands
    enclose is convex and holds the camera, so nothing is in the way. Any other ray leaves that space through the
    tiers of the far stand (y = -(GRASS_Y + h run)) or of the end stand it heads to (x = +-(GRASS_X + h run)), h
    the height above the ground, and sees the stand there up to its fascia, the sky above. Ground beyond the grass
    on the near side is the near stand seen from above. Each pixel computes its index into the scene's colour
    table (``_palette``), ``block`` pixels at a time: the chain of array operations then runs in the CPU's cache,
    which makes it several times faster than over whole frames."""
    lattice = _lattice(camera, width, height, step)
    dx, dy, dz = (_upsample(lattice[..., i], width, height, step) for i in range(3))
    elevation = -lattice[..., 2] / np.linalg.norm(lattice, axis=-1)  # z down: an upward ray has dz < 0
    sky_level = _upsample(np.clip(elevation / 0.35, 0.0, 1.0) * (SKY_LEVELS - 1), width, height, step)
    centre = camera.centre.astype(np.float32)
    index = np.empty(width * height, np.int32)
    shaded = np.empty(width * height, bool)
    for start in range(0, width * height, block):
        part = slice(start, start + block)
        index[part], shaded[part] = _materials(dx[part], dy[part], dz[part], sky_level[part], centre,
                                               scene.shadow_y)
    rgbx = np.take(appearance.lut, index).view(np.uint8).reshape(height, width, 4)
    return cv2.cvtColor(rgbx, cv2.COLOR_RGBA2RGB), shaded.reshape(height, width)


# ------------------------------------------------------------------------------------------------- pitch furniture


SHIFT = 4  # OpenCV drawing with 4 fractional bits: sub-pixel positions


def _fixed(uv: np.ndarray) -> np.ndarray:
    """Pixel positions (pixel centres at +0.5) as OpenCV's fixed-point drawing coordinates."""
    return np.round((np.nan_to_num(uv) - 0.5) * (1 << SHIFT)).astype(np.int32)


def _runs(valid: np.ndarray) -> list[slice]:
    """The maximal runs of True in ``valid`` that hold at least two elements."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
    return [slice(start, stop) for start, stop in zip(edges[::2], edges[1::2]) if stop - start >= 2]


@cache
def _markings() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every class of ``pitch_polylines`` (1 m samples) in one array, so that a frame projects them in one call:
    (M x 3 points, M x 3 unit tangents, M flags of points of paint on the ground rather than of a goal frame, the
    classes' start offsets)."""
    polylines = list(_polylines(1.0).values())
    tangents = np.concatenate([np.gradient(polyline, axis=0) for polyline in polylines])
    paint = np.concatenate([np.full(len(polyline), np.all(polyline[:, 2] == 0)) for polyline in polylines])
    starts = np.cumsum([0] + [len(polyline) for polyline in polylines])
    return np.concatenate(polylines), tangents / np.linalg.norm(tangents, axis=1, keepdims=True), paint, starts


def _strips(camera: Camera, half_width: float) -> list[np.ndarray]:
    """Outlines (pixels) of every marking widened by ``half_width`` metres on each side: on the ground for the
    paint (so that it foreshortens as paint does), facing the camera for the posts and crossbars (a cylinder
    looks equally wide from every side). One outline per run of projectable points of a class."""
    points, tangents, on_ground, starts = _markings()
    across = np.where(on_ground[:, None], UP, points - camera.centre)
    normal = np.cross(tangents, across)
    normal *= half_width / np.linalg.norm(normal, axis=1, keepdims=True)
    uv, valid = project(camera, np.concatenate([points + normal, points - normal]))
    m = len(points)
    left, right, valid = uv[:m], uv[m:], valid[:m] & valid[m:]
    outlines = []
    for start, stop in zip(starts[:-1], starts[1:]):
        for run in _runs(valid[start:stop]):
            outlines.append(np.concatenate([left[start:stop][run], right[start:stop][run][::-1]]))
    return outlines


@cache
def _marks() -> np.ndarray:
    """The centre and penalty marks as 16-gons on the ground (3 x 16 x 3; 0.11 m radius, 0.22 m wide as the Laws
    allow)."""
    points = key_points()
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    disc = 0.11 * np.stack([np.cos(angles), np.sin(angles), np.zeros(16)], 1)
    return np.stack([points[name] + disc for name in ("CENTER_MARK", "L_PENALTY_MARK", "R_PENALTY_MARK")])


@cache
def _net_faces() -> tuple[np.ndarray, ...]:
    """The four faces (4 x 3 corners each) of each goal's net: back, roof and two sides, 2 m deep."""
    faces = []
    half = GOAL_LENGTH / 2
    for sign in (-1.0, 1.0):
        front, back = sign * HALF_LENGTH, sign * (HALF_LENGTH + GOAL_DEPTH)
        top, back_top = -GOAL_HEIGHT, -0.8 * GOAL_HEIGHT
        faces.append(np.array([[back, -half, 0], [back, half, 0], [back, half, back_top], [back, -half, back_top]]))
        faces.append(np.array([[front, -half, top], [front, half, top], [back, half, back_top],
                               [back, -half, back_top]]))
        for y in (-half, half):
            faces.append(np.array([[front, y, 0], [front, y, top], [back, y, back_top], [back, y, 0]]))
    return tuple(faces)


def _marking_mask(camera: Camera, width: int, height: int) -> np.ndarray:
    """H x W uint8 coverage of the white paint and the goal frames: each class of ``pitch_polylines`` as a 12 cm
    strip, and the three marks, anti-aliased."""
    mask = np.zeros((height, width), np.uint8)
    for outline in _strips(camera, LINE_HALF_WIDTH):
        # One polygon per call: cv2.fillPoly fills several by the even-odd rule, which would punch holes where
        # strips cross.
        cv2.fillPoly(mask, [_fixed(outline)], 255, cv2.LINE_AA, SHIFT)
    marks = _marks()
    uv, valid = project(camera, marks.reshape(-1, 3))
    for disc, shown in zip(_fixed(uv).reshape(marks.shape[:2] + (2,)), valid.reshape(marks.shape[:2]).all(1)):
        if shown:
            cv2.fillConvexPoly(mask, disc, 255, cv2.LINE_AA, SHIFT)
    return mask


def _net_mask(camera: Camera, width: int, height: int) -> np.ndarray:
    """H x W uint8 coverage of the goal nets' faces, anti-aliased."""
    mask = np.zeros((height, width), np.uint8)
    faces = _net_faces()
    uv, valid = project(camera, np.concatenate(faces))
    for corners, shown in zip(_fixed(uv).reshape(len(faces), 4, 2), valid.reshape(len(faces), 4).all(1)):
        if shown:
            cv2.fillConvexPoly(mask, corners, 255, cv2.LINE_AA, SHIFT)
    return mask


def _nonzero(mask: np.ndarray) -> np.ndarray:
    """Flat indices of the non-zero pixels of a uint8 mask (``cv2.findNonZero``: several times faster than numpy's
    on the mostly empty masks of a frame)."""
    points = cv2.findNonZero(mask)
    if points is None:
        return np.zeros(0, np.int64)
    points = points.reshape(-1, 2).astype(np.int64)
    return points[:, 1] * mask.shape[1] + points[:, 0]


def _paint(image: np.ndarray, coverage: np.ndarray, opacity: float, look: Look, shaded: np.ndarray) -> None:
    """Blend white paint into ``image`` (uint8) where ``coverage`` (uint8) is non-zero, lit as the ground under it
    is. Only the covered pixels are touched: a few percent of the frame."""
    where = _nonzero(coverage)
    alpha = coverage.ravel()[where, None] * np.float32(opacity / 255)
    colour = np.where(shaded.ravel()[where, None], PAINT * np.array(look.shade, np.float32),
                      PAINT * np.array(look.light, np.float32))
    flat = image.reshape(-1, 3)
    under = flat[where].astype(np.float32)
    flat[where] = np.clip(under + alpha * (colour - under) + 0.5, 0, 255).astype(np.uint8)


@cache
def _polylines(step: float) -> dict[str, np.ndarray]:
    """``pitch_polylines`` once per step (the model does not change between frames)."""
    return pitch_polylines(step)


# ----------------------------------------------------------------------------------------------------------- people

# The points a body is drawn with (``_body_points``): its 17 joints, then the head's centre, the hair's, the neck,
# the middle of each thigh (where the shorts end), each toe, the trunk's four corners and the top of the head.
HEAD, HAIR, NECK, MID_THIGHS, TOES, TRUNK, HEAD_TOP = 17, 18, 19, (20, 21), (22, 23), (24, 25, 26, 27), 28
PARTS = ("jersey", "shorts", "socks", "skin", "hair", "boots")
# What a body is drawn with: (kind, points, radius in metres, part). Lines are capsules (OpenCV's thick lines have
# round caps), the trunk a polygon, the head two discs (skin, and hair over its top).
BODY_PRIMITIVES = (
    ("line", (11, MID_THIGHS[0]), 0.085, "shorts"), ("line", (MID_THIGHS[0], 13), 0.065, "skin"),
    ("line", (13, 15), 0.055, "socks"), ("line", (15, TOES[0]), 0.045, "boots"),
    ("line", (12, MID_THIGHS[1]), 0.085, "shorts"), ("line", (MID_THIGHS[1], 14), 0.065, "skin"),
    ("line", (14, 16), 0.055, "socks"), ("line", (16, TOES[1]), 0.045, "boots"),
    ("line", (11, 12), 0.09, "shorts"), ("poly", TRUNK, 0.0, "jersey"),
    ("line", (5, 7), 0.055, "jersey"), ("line", (7, 9), 0.042, "skin"),
    ("line", (6, 8), 0.055, "jersey"), ("line", (8, 10), 0.042, "skin"),
    ("line", (NECK, HEAD), 0.05, "skin"), ("circle", (HEAD,), 0.105, "skin"), ("circle", (HAIR,), 0.085, "hair"),
)
_PRIMITIVE_MEAN = np.zeros((len(BODY_PRIMITIVES), HEAD_TOP + 1))  # averages a primitive's points: its depth
for _i, (_kind, _points, _radius, _part) in enumerate(BODY_PRIMITIVES):
    _PRIMITIVE_MEAN[_i, list(_points)] = 1 / len(_points)
_PRIMITIVE_PART = np.array([PARTS.index(part) for _, _, _, part in BODY_PRIMITIVES])
_PRIMITIVE_RADIUS = np.array([radius for _, _, radius, _ in BODY_PRIMITIVES])
_IS_LINE = np.array([kind == "line" for kind, _, _, _ in BODY_PRIMITIVES])
_IS_HEAD = np.array([kind == "circle" for kind, _, _, _ in BODY_PRIMITIVES])


def _body_points(joints: np.ndarray) -> np.ndarray:
    """N x 29 x 3: the 17 joints and the points the body is drawn with (``HEAD`` ... ``HEAD_TOP``); the top of
    the head and the toes bound the person's box."""
    left = joints[:, 11] - joints[:, 12]
    left /= np.linalg.norm(left, axis=1, keepdims=True)
    forward = np.cross(left, UP)
    head = (joints[:, 3] + joints[:, 4]) / 2
    neck = (joints[:, 5] + joints[:, 6]) / 2
    thighs = [joints[:, hip] + 0.45 * (joints[:, knee] - joints[:, hip]) for hip, knee in ((11, 13), (12, 14))]
    toes = [joints[:, ankle] + 0.2 * forward + 0.035 * UP for ankle in (15, 16)]
    up = 0.03 * UP
    trunk = [joints[:, 5] + 0.045 * left + up, joints[:, 6] - 0.045 * left + up,
             joints[:, 12] - 0.04 * left, joints[:, 11] + 0.04 * left]
    extra = [head, head + 0.03 * UP, neck, *thighs, *toes, *trunk, head + 0.12 * UP]
    return np.concatenate([joints, np.stack(extra, 1)], 1)


def _person_gain(scene: Scene) -> np.ndarray:
    """N x 3 light gain of each person: in the far stand's shadow or in the light."""
    look = WEATHERS[scene.weather]
    shaded = scene.pitch_xy[:, 1] < scene.shadow_y
    return np.where(shaded[:, None], np.array(look.shade), np.array(look.light))


def _project_bodies(camera: Camera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N x P x 2 pixels, N x P valid flags, N x P camera depths) of N x P x 3 world points."""
    n, count = points.shape[:2]
    uv, valid = project(camera, points.reshape(-1, 3))
    depth = camera.to_camera_frame(points.reshape(-1, 3))[:, 2]
    return uv.reshape(n, count, 2), valid.reshape(n, count), depth.reshape(n, count)


def _in_view(uv: np.ndarray, valid: np.ndarray, width: int, height: int) -> np.ndarray:
    """N flags: all of a person's points project and their extent overlaps the image."""
    with np.errstate(invalid="ignore"):
        low, high = np.nanmin(uv, 1), np.nanmax(uv, 1)
    return valid.all(1) & (high[:, 0] >= 0) & (high[:, 1] >= 0) & (low[:, 0] <= width) & (low[:, 1] <= height)


def _shadow_mask(camera: Camera, scene: Scene, points: np.ndarray, width: int, height: int) -> np.ndarray:
    """H x W uint8 darkening (255: black) of the ground: a soft contact blob under each person and the ball, and on
    a sunny day, for each person in the sun, the body projected along the sun's rays onto the ground."""
    mask = np.zeros((height, width), np.uint8)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles), np.zeros(16)], 1)
    feet = np.concatenate([np.pad(scene.pitch_xy, ((0, 0), (0, 1))), scene.ball[None] * (1, 1, 0)])
    radius = np.append(np.full(len(scene.pitch_xy), 0.45), 0.15)
    uv, valid, _ = _project_bodies(camera, feet[:, None] + radius[:, None, None] * ring)
    for blob in _fixed(uv)[_in_view(uv, valid, width, height)]:
        cv2.fillConvexPoly(mask, blob, 77, cv2.LINE_AA, SHIFT)
    if scene.weather != "sunny":
        return mask
    lit = scene.pitch_xy[:, 1] >= scene.shadow_y
    cast = points[lit] - (points[lit, :, 2] / scene.sun[2])[..., None] * scene.sun  # along the rays to z = 0
    uv, valid, depth = _project_bodies(camera, cast)
    shown = _in_view(uv, valid, width, height)
    scale = camera.x_focal_length / depth[shown, HEAD]
    for pixels, s in zip(_fixed(uv[shown]), scale):
        thickness = max(1, round(0.14 * s))
        for a, b in COCO_SKELETON[:12]:  # limbs and trunk, not the face
            cv2.line(mask, pixels[a], pixels[b], 128, thickness, cv2.LINE_AA, SHIFT)
        cv2.fillConvexPoly(mask, pixels[list(TRUNK)], 128, cv2.LINE_AA, SHIFT)
        cv2.circle(mask, pixels[HEAD], max(1 << SHIFT, round(0.1 * s * (1 << SHIFT))), 128, -1, cv2.LINE_AA, SHIFT)
    return mask


def _draw_people(canvas: np.ndarray, ids: np.ndarray, camera: Camera, scene: Scene, appearance: _Appearance,
                 points: np.ndarray) -> None:
    """Draw the people and the ball on ``canvas`` (uint8 RGB) back to front by camera depth (painter's order), and
    each person's index + 1 on ``ids`` (255 for the ball), from which the keypoints' occlusion is read.

    Within a body its farther primitives go first, lines behind the trunk a little darker: the simple shading of
    a body lit from the camera's side."""
    height, width = ids.shape
    uv, valid, depth = _project_bodies(camera, points)
    shown = _in_view(uv, valid, width, height)
    fixed = _fixed(uv)
    primitive_depth = depth @ _PRIMITIVE_MEAN.T  # N x primitives
    far = _IS_LINE & (primitive_depth > depth[:, TRUNK].mean(1, keepdims=True) + 0.03)
    parts = np.stack([scene.colours, scene.shorts, scene.colours, scene.skin, appearance.hair,  # socks: the jersey's
                      appearance.boots], 1)
    colours = parts[:, _PRIMITIVE_PART] * _person_gain(scene)[:, None] * np.where(far, 0.8, 1.0)[..., None]
    colours = np.clip(colours, 0, 255).tolist()
    scale = camera.x_focal_length / primitive_depth
    thickness = np.maximum(1, np.round(2 * _PRIMITIVE_RADIUS * scale)).astype(int).tolist()
    radius = np.maximum(1 << SHIFT, np.round(_PRIMITIVE_RADIUS * scale * (1 << SHIFT))).astype(int).tolist()
    order = np.argsort(-np.where(_IS_HEAD, -np.inf, primitive_depth), 1, kind="stable").tolist()
    ball_depth = camera.to_camera_frame(scene.ball[None])[0, 2]
    for person in np.argsort(-np.append(depth[:, 11:13].mean(1), ball_depth), kind="stable").tolist():
        if person == len(points):
            _draw_ball(canvas, ids, camera, scene)
        elif shown[person]:
            at = fixed[person]
            for i in order[person]:
                kind, indices = BODY_PRIMITIVES[i][:2]
                for target, value, line_type in ((canvas, colours[person][i], cv2.LINE_AA),
                                                 (ids, person + 1, cv2.LINE_8)):
                    if kind == "line":
                        cv2.line(target, at[indices[0]], at[indices[1]], value, thickness[person][i], line_type,
                                 SHIFT)
                    elif kind == "poly":
                        cv2.fillConvexPoly(target, at[list(indices)], value, line_type, SHIFT)
                    else:
                        cv2.circle(target, at[indices[0]], radius[person][i], value, -1, line_type, SHIFT)


def _draw_ball(canvas: np.ndarray, ids: np.ndarray, camera: Camera, scene: Scene) -> None:
    """The ball: a white disc of its projected radius (at least a pixel), lit as the day is."""
    uv, valid = project(camera, scene.ball[None])
    if not valid[0]:
        return
    r = max(1 << SHIFT, round(BALL_RADIUS * camera.x_focal_length / camera.to_camera_frame(scene.ball[None])[0, 2]
                              * (1 << SHIFT)))
    colour = np.clip(np.array([235.0, 235.0, 230.0]) * WEATHERS[scene.weather].light, 0, 255).tolist()
    cv2.circle(canvas, _fixed(uv)[0], r, colour, -1, cv2.LINE_AA, SHIFT)
    cv2.circle(ids, _fixed(uv)[0], r, 255, -1, cv2.LINE_8, SHIFT)


def _keypoints(camera: Camera, points: np.ndarray, ids: np.ndarray, supersample: int) -> np.ndarray:
    """N x 17 x 3 keypoints in the output image's pixels with COCO-style visibility: 0 behind the camera, 1
    outside the image or hidden (someone else or the ball drawn over it, or a face point on the far side of the
    head), 2 visible."""
    n = len(points)
    uv, valid, _ = _project_bodies(camera, points[:, :NUM_KEYPOINTS])
    height, width = ids.shape
    inside = valid & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)
    # Not hidden: the person's own index somewhere in the 3 x 3 pixels around the keypoint.
    padded = np.pad(ids, 1)
    col = np.clip(np.nan_to_num(uv[..., 0]), 0, width - 1).astype(np.int64) + 1
    row = np.clip(np.nan_to_num(uv[..., 1]), 0, height - 1).astype(np.int64) + 1
    own = np.zeros((n, NUM_KEYPOINTS), bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            own |= padded[row + dr, col + dc] == np.arange(1, n + 1)[:, None]
    # Nose and eyes show from in front of the face; an ear up to a little behind its side of the head.
    offsets = points[:, :5] - points[:, HEAD, None]
    to_camera = camera.centre - points[:, HEAD]
    cosine = np.einsum("nkc,nc->nk", offsets, to_camera) / (
        np.linalg.norm(offsets, axis=2) * np.linalg.norm(to_camera, axis=1)[:, None])
    facing = cosine > np.array([0.0, 0.0, 0.0, -0.3, -0.3])
    seen = inside & own
    seen[:, :5] &= facing
    visibility = np.where(valid, np.where(seen, 2, 1), 0)
    return np.concatenate([uv / supersample, visibility[..., None]], 2)


def _boxes(camera: Camera, points: np.ndarray, supersample: int) -> np.ndarray:
    """N x 4 x1 y1 x2 y2 in the output image's pixels: the projected body points (joints, head top, toes) grown by
    0.15 m sideways and 0.05 m below at the person's depth (the limbs' thickness); NaN behind the camera."""
    uv, valid, depth = _project_bodies(camera, points)
    scale = camera.x_focal_length / depth[:, HEAD]
    margin = np.stack([-0.15 * scale, np.zeros(len(points)), 0.15 * scale, 0.05 * scale], 1)
    boxes = np.concatenate([uv.min(1), uv.max(1)], 1) + margin
    boxes[~valid.all(1)] = np.nan
    return boxes / supersample


@cache
def _vignette(width: int, height: int) -> np.ndarray:
    """H x W x 3 gain of a lens's vignetting: 4 % darker in the corners than in the centre."""
    y, x = np.ogrid[-1:1:height * 1j, -1:1:width * 1j]
    return np.repeat((1.0 - 0.02 * (x * x + y * y)).astype(np.float32)[..., None], 3, 2)


@cache
def _normal_table(size: int = 4096) -> np.ndarray:
    """``size`` draws of a unit normal, fixed: indexed by random bytes they make sensor noise several times faster
    than drawing normals per pixel."""
    return np.random.default_rng(0).standard_normal(size).astype(np.float32)


def _sensor(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The lens's vignetting and the sensor's noise (2 levels) on a uint8 image (rounded and saturated by OpenCV)."""
    height, width = image.shape[:2]
    table = _normal_table()
    draws = np.frombuffer(rng.bytes(2 * image.size), np.uint16) & (len(table) - 1)
    noise = (np.take(table, draws) * 2.0).reshape(image.shape)
    return cv2.add(cv2.multiply(image, _vignette(width, height), dtype=cv2.CV_32F), noise, dtype=cv2.CV_8U)


def visible_lines(camera: Camera, width: int, height: int) -> dict[str, np.ndarray]:
    """The SoccerNet-calibration annotation of a ``width`` x ``height`` image of ``camera``'s frame: for each class
    of ``pitch_polylines`` seen in it, the visible part's points normalised to [0, 1] (samples every metre, the
    ends clipped to the image's border where the marking leaves it, as an annotator clicks them)."""
    points, _, _, starts = _markings()
    uv, valid = project(camera.scale_to(width, height), points)
    # Segments between consecutive samples of one class, both projectable.
    keep = valid[:-1] & valid[1:]
    keep[starts[1:-1] - 1] = False
    start, delta = uv[:-1], uv[1:] - uv[:-1]
    # Liang-Barsky: clip each segment start + s delta, s in [0, 1], to the image rectangle.
    low, high = np.zeros(len(start)), np.ones(len(start))
    with np.errstate(divide="ignore", invalid="ignore"):
        for p, q in ((-delta[:, 0], start[:, 0]), (delta[:, 0], width - start[:, 0]),
                     (-delta[:, 1], start[:, 1]), (delta[:, 1], height - start[:, 1])):
            ratio = q / p
            low = np.where(p < 0, np.maximum(low, ratio), low)
            high = np.where(p > 0, np.minimum(high, ratio), high)
            high = np.where((p == 0) & (q < 0), -1.0, high)  # parallel to an edge and outside it
    keep &= low < high
    ends = np.stack([start + low[:, None] * delta, start + high[:, None] * delta], 1) / (width, height)
    lines = {}
    for name, first, last in zip(_polylines(1.0), starts[:-1], starts[1:] - 1):
        clipped = ends[first:last][keep[first:last]].reshape(-1, 2)
        if not len(clipped):
            continue
        # Consecutive segments share their end points: keep each point once.
        clipped = clipped[np.concatenate([[True], np.any(np.abs(np.diff(clipped, axis=0)) > 1e-12, 1)])]
        if len(clipped) >= 2:
            lines[name] = clipped
    return lines


def render(camera: Camera, scene: Scene, width: int = 320, height: int = 180, supersample: int = 2) -> Frame:
    """Render ``scene`` as ``camera`` sees it in a ``width`` x ``height`` image of its frame: drawn at
    ``supersample`` times the resolution and area-averaged down, which anti-aliases every edge."""
    big_width, big_height = width * supersample, height * supersample
    big = camera.scale_to(big_width, big_height)
    rng = np.random.default_rng(scene.seed)
    appearance = _palette(rng, scene)
    look = WEATHERS[scene.weather]
    canvas, shaded = _background(big, scene, appearance, big_width, big_height)
    _paint(canvas, _marking_mask(big, big_width, big_height), 1.0, look, shaded)
    _paint(canvas, _net_mask(big, big_width, big_height), 0.35, look, shaded)
    points = _body_points(scene.joints)
    shadow = _shadow_mask(big, scene, points, big_width, big_height)
    where = _nonzero(shadow)
    flat = canvas.reshape(-1, 3)
    flat[where] = (flat[where] * (1.0 - shadow.ravel()[where, None] / 255.0) + 0.5).astype(np.uint8)
    ids = np.zeros((big_height, big_width), np.uint8)
    _draw_people(canvas, ids, big, scene, appearance, points)
    small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return Frame(image=_sensor(small, rng), boxes=_boxes(big, points, supersample),
                 keypoints=_keypoints(big, points, ids, supersample), lines=visible_lines(camera, width, height))


# ------------------------------------------------------------------------------------------------------ the split


def _clipped(box: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """An x1 y1 x2 y2 box clipped to the image, None when nothing of it is inside (or it is NaN)."""
    if not np.isfinite(box).all():
        return None
    x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
    x2, y2 = min(box[2], float(width)), min(box[3], float(height))
    return np.array([x1, y1, x2, y2]) if x2 > x1 and y2 > y1 else None


def _ball_box(camera: Camera, scene: Scene, width: int, height: int) -> np.ndarray:
    """The ball's x1 y1 x2 y2 box in a ``width`` x ``height`` image (NaN when it cannot be projected)."""
    camera = camera.scale_to(width, height)
    uv, valid = project(camera, scene.ball[None])
    if not valid[0]:
        return np.full(4, np.nan)
    r = BALL_RADIUS * camera.x_focal_length / camera.to_camera_frame(scene.ball[None])[0, 2]
    return np.concatenate([uv[0] - r, uv[0] + r])


def _gamestate_objects(camera: Camera, scene: Scene, frame: Frame, width: int, height: int) -> list[Player]:
    """The frame's GSR objects: every person and the ball whose box shows in the image (box clipped to it), with
    their pitch positions; track ids are the scene's row + 1 (the ball's: one past the people)."""
    objects = []
    for i, box in enumerate(frame.boxes):
        box = _clipped(box, width, height)
        if box is None:
            continue
        if scene.team[i] == 2:
            role, team, jersey = "referee", None, None
        else:
            role = "goalkeeper" if scene.goalkeeper[i] else "player"
            team, jersey = ("left", "right")[scene.team[i]], str(scene.jersey[i])
        objects.append(Player(track_id=i + 1, role=role, team=team, jersey=jersey, box=box,
                              pitch_xy=scene.pitch_xy[i].copy()))
    box = _clipped(_ball_box(camera, scene, width, height), width, height)
    if box is not None:
        objects.append(Player(track_id=len(scene.team) + 1, role="ball", team=None, jersey=None, box=box,
                              pitch_xy=scene.ball[:2].copy()))
    return objects


def _coco_people(frame: Frame, image_id: int, first_id: int, width: int, height: int) -> list[dict]:
    """COCO person-keypoints annotations of the people whose box shows in the image. COCO's visibility: 2 visible,
    1 labelled but hidden, 0 not labelled with x = y = 0, which is what a point outside the image or behind the
    camera gets (COCO's annotators label only points inside the image)."""
    annotations = []
    for box, keypoints in zip(frame.boxes, frame.keypoints):
        box = _clipped(box, width, height)
        if box is None:
            continue
        x, y, v = keypoints.T
        inside = (v > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
        points = np.where(inside[:, None], np.stack([x, y, v], 1), 0.0)
        w, h = box[2] - box[0], box[3] - box[1]
        annotations.append({
            "id": first_id + len(annotations), "image_id": image_id, "category_id": 1,
            "keypoints": [round(float(value), 2) if k % 3 < 2 else int(value)
                          for k, value in enumerate(points.ravel())],
            "num_keypoints": int(inside.sum()), "bbox": [round(float(c), 2) for c in (box[0], box[1], w, h)],
            "area": round(float(w * h), 2), "iscrowd": 0,
        })
    return annotations


def write_split(root: str | Path, split: str, count: int, seed: int, width: int = 320, height: int = 180,
                layouts: list | None = None) -> Path:
    """Render ``count`` frames (``seed`` fixes every byte) into ``<root>/<split>/`` in the real datasets' layouts:

    - SoccerNet-calibration: ``<name>.jpg`` (``000000``, ``000001``, ...; JPEG quality 95), ``<name>.json`` (the
      visible markings' points) and ``camera_<name>.json`` (the camera of the 960 x 540 frame: the jpg is smaller,
      as the format allows, since its points are normalised and its camera scales);
    - SoccerNet-GSR: ``Labels-GameState.json``, one image per jpg, the people and the ball whose box shows, boxes
      in the jpg's pixels and pitch positions;
    - COCO person keypoints: ``person_keypoints.json`` with the people's COCO-17 skeletons;
    - ``prompts.json``: {name: prompt}.

    With ``layouts`` (``tracking.load_layouts``), each frame takes a random one and the camera follows its ball
    (its players' centroid when the ball is not tracked). The split is written to a temporary folder renamed at
    the end, so an interrupted run leaves no half-written split; an existing split is an error."""
    root = Path(root)
    final = root / split
    if final.exists():
        raise FileExistsError(f"{final} already exists: write_split writes a new split folder, it does not "
                              f"overwrite one")
    root.mkdir(parents=True, exist_ok=True)
    # Staged as <root>/.<split>-XXXX/<split>/: the files that name their folder (the GSR labels) name the split.
    scratch = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=root))
    staging = scratch / split
    staging.mkdir()
    try:
        rng = np.random.default_rng(seed)
        images, objects, prompts, coco_images, coco_people = [], {}, {}, [], []
        for index in range(count):
            name = f"{index:06d}"
            layout, target = None, None
            if layouts:
                layout = layouts[rng.integers(len(layouts))]
                target = layout.ball[:2] if layout.ball is not None else np.mean(layout.xy, 0)
            camera = sample_camera(rng, target)
            scene = sample_scene(rng, camera, layout)
            frame = render(camera, scene, width, height)
            cv2.imwrite(str(staging / f"{name}.jpg"), frame.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            write_lines_json(staging / f"{name}.json", frame.lines)
            write_camera_json(staging / f"camera_{name}.json", camera)
            image_id = index + 1
            images.append({"image_id": str(image_id), "file_name": f"{name}.jpg", "width": width, "height": height})
            objects[str(image_id)] = _gamestate_objects(camera, scene, frame, width, height)
            prompts[name] = scene.prompt
            coco_images.append({"id": image_id, "file_name": f"{name}.jpg", "width": width, "height": height})
            coco_people += _coco_people(frame, image_id, len(coco_people) + 1, width, height)
        write_gamestate(staging / "Labels-GameState.json", images, objects)
        (staging / "prompts.json").write_text(json.dumps(prompts, indent=1), encoding="utf-8")
        category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS),
                    "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}
        coco = {"images": coco_images, "annotations": coco_people, "categories": [category]}
        (staging / "person_keypoints.json").write_text(json.dumps(coco), encoding="utf-8")
        os.replace(staging, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final
