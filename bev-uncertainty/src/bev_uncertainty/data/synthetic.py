"""A procedural driving world written in the nuScenes layout, so the nuScenes loader reads it.

Each scene is a straight road (asphalt, dashed lane lines, solid edges, grass, buildings) with
vehicles (coloured boxes on the lanes, parked at the kerb) and pedestrians (thin boxes on the
pavement). The ego car drives along the road; at every keyframe the six cameras of the nuScenes
ring (the real channel names, yaws and a 1/8 scale of the real intrinsics) and a 32-beam
LiDAR are rendered by ray casting against the same objects, so occlusion is exact. Each box
gets a nuScenes visibility level from the fraction of its camera footprint that is unoccluded.

Test scenes add out-of-distribution objects on the road (category ``ood.cylinder`` and
``ood.blob``: shapes and colours never seen in training), which a BEV model should not call
vehicles and should be uncertain about. Validation scenes hold OOD objects too, of other shapes
and colours than the test split's (``ood.crate``, ``ood.barrier``), so that a method's choices
about OOD (which score to use) are made on validation data and tested on objects they never saw.
Those validation objects come from their own random stream: the train and test scenes are the
same, draw for draw, as without them.

Everything is seeded: the same arguments give the same files.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bev_uncertainty.data.nuscenes import CAMERAS
from shared_utils.cache import generate_once

VERSION = "v1.0-synthetic"
_GENERATOR_VERSION = 2  # bump when the rendering changes, so a stale cache is not reused (2: OOD objects in val)

# nuScenes ring: camera yaw about ego z (degrees, left positive) and focal length in pixels at
# 1600 x 900; the rear camera has a wider lens. Images here are 1/8 of that (200 x 112).
_RING = {"CAM_FRONT": (0.0, 1266.0), "CAM_FRONT_LEFT": (55.0, 1260.0), "CAM_FRONT_RIGHT": (-55.0, 1260.0),
         "CAM_BACK": (180.0, 800.0), "CAM_BACK_LEFT": (110.0, 1260.0), "CAM_BACK_RIGHT": (-110.0, 1260.0)}
IMAGE_W, IMAGE_H, SCALE = 200, 112, 1 / 8
CAMERA_HEIGHT, LIDAR_HEIGHT = 1.5, 1.84
SUN = np.array([0.4, 0.3, 0.87]) / np.linalg.norm([0.4, 0.3, 0.87])

# Appearance: vehicles take car colours, OOD objects colours no vehicle has (RGB in [0, 1]).
_CAR_COLOURS = np.array([[0.75, 0.1, 0.1], [0.1, 0.2, 0.6], [0.85, 0.85, 0.85], [0.1, 0.1, 0.1],
                         [0.55, 0.57, 0.6], [0.1, 0.35, 0.15], [0.45, 0.3, 0.2]])
_PEDESTRIAN_COLOURS = np.array([[0.2, 0.2, 0.35], [0.6, 0.45, 0.35], [0.3, 0.3, 0.3]])
_OOD_COLOURS = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.55, 0.0], [1.0, 1.0, 0.0]])  # test split
_VAL_OOD_COLOURS = np.array([[0.5, 1.0, 0.0], [0.55, 0.0, 0.85], [1.0, 0.4, 0.7], [0.4, 0.6, 1.0]])  # val split
_VAL_OOD_CATEGORIES = ("ood.crate", "ood.barrier")
_BUILDING_COLOURS = np.array([[0.6, 0.5, 0.4], [0.5, 0.45, 0.45], [0.7, 0.65, 0.55]])
LANE_WIDTH, ROAD_HALF_WIDTH = 3.5, 7.0
EGO_LANE, EGO_START, EGO_STEP = -LANE_WIDTH / 2, 40.0, 4.0  # the ego drives the right-hand inner lane


# ----------------------------------------------------------------------------- scene objects


@dataclass
class Thing:
    """One object in the world frame: kind is box, cylinder or ellipsoid; size is (l, w, h)."""

    kind: str
    centre: np.ndarray  # (3,) world, z = centre height
    size: np.ndarray  # (3,) box: length (along heading), width, height; cylinder: 2r, 2r, h; ellipsoid: 2 radii
    yaw: float
    colour: np.ndarray
    category: str | None  # nuScenes category name, None for unannotated scenery


def _rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _quaternion(yaw: float) -> list[float]:
    """(w, x, y, z) of a rotation about z."""
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def _quaternion_from_matrix(r: np.ndarray) -> list[float]:
    w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return [w, x, y, z]


def _intersect(thing: Thing, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance along each ray to the first hit of ``thing`` (inf if none) and the world normal there."""
    r = _rot_z(thing.yaw)
    o = (origins - thing.centre) @ r  # into the object frame (x along its heading)
    d = dirs @ r
    half = thing.size / 2
    n = len(o)
    t = np.full(n, np.inf)
    normal = np.zeros((n, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        if thing.kind == "box":  # slab test
            inv = 1.0 / d
            t0, t1 = (-half - o) * inv, (half - o) * inv
            tmin, tmax = np.minimum(t0, t1), np.maximum(t0, t1)
            axis = np.argmax(tmin, axis=1)
            near, far = tmin.max(axis=1), tmax.min(axis=1)
            hit = (near <= far) & (near > 1e-3)
            t[hit] = near[hit]
            normal[hit, axis[hit]] = -np.sign(d[hit, axis[hit]])
        elif thing.kind == "cylinder":  # vertical cylinder: side, then the top cap
            a = d[:, 0] ** 2 + d[:, 1] ** 2
            b = 2 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1])
            c = o[:, 0] ** 2 + o[:, 1] ** 2 - half[0] ** 2
            disc = b * b - 4 * a * c
            ts = (-b - np.sqrt(disc)) / (2 * a)
            z = o[:, 2] + ts * d[:, 2]
            side = (disc >= 0) & (ts > 1e-3) & (np.abs(z) <= half[2])
            t[side] = ts[side]
            normal[side, :2] = (o[side, :2] + ts[side, None] * d[side, :2]) / half[0]
            tc = (half[2] - o[:, 2]) / d[:, 2]
            pc = o[:, :2] + tc[:, None] * d[:, :2]
            cap = (tc > 1e-3) & ((pc ** 2).sum(1) <= half[0] ** 2) & (tc < t)
            t[cap] = tc[cap]
            normal[cap] = [0.0, 0.0, 1.0]
        else:  # ellipsoid: a unit sphere after scaling by the radii
            os_, ds = o / half, d / half
            a = (ds ** 2).sum(1)
            b = 2 * (os_ * ds).sum(1)
            c = (os_ ** 2).sum(1) - 1
            disc = b * b - 4 * a * c
            ts = (-b - np.sqrt(disc)) / (2 * a)
            hit = (disc >= 0) & (ts > 1e-3)
            t[hit] = ts[hit]
            normal[hit] = (os_[hit] + ts[hit, None] * ds[hit]) / half
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    return t, normal @ r.T


@dataclass
class Hits:
    t: np.ndarray  # distance to the first hit (inf: sky)
    index: np.ndarray  # index of the thing hit, -1 ground, -2 nothing
    normal: np.ndarray
    footprint: np.ndarray  # per thing: number of rays that would hit it without occlusion
    visible: np.ndarray  # per thing: number of rays that do hit it first


def cast(things: list[Thing], origin: np.ndarray, dirs: np.ndarray) -> Hits:
    """First hit of every ray from ``origin`` against the ground z = 0 and the things (z-buffering by distance)."""
    n = len(dirs)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(dirs[:, 2] < -1e-6, -origin[2] / dirs[:, 2], np.inf)
    index = np.where(np.isfinite(t), -1, -2)
    t_ground = t.copy()  # occlusion by other things must not shrink a thing's footprint
    normal = np.tile([0.0, 0.0, 1.0], (n, 1))
    footprint = np.zeros(len(things), dtype=np.int64)
    for k, thing in enumerate(things):
        # Only the rays that pass within the thing's bounding sphere are tested (most miss it).
        to_centre = thing.centre - origin
        along = dirs @ to_centre
        radius = np.linalg.norm(thing.size) / 2
        near = (to_centre @ to_centre - along ** 2 < radius ** 2) & (along > -radius) & (along - radius < t_ground)
        rays = np.flatnonzero(near)
        tk, nk = _intersect(thing, np.broadcast_to(origin, (len(rays), 3)), dirs[rays])
        footprint[k] = np.isfinite(tk).sum()
        closer = tk < t[rays]
        hit = rays[closer]
        t[hit], index[hit], normal[hit] = tk[closer], k, nk[closer]
    visible = np.bincount(index[index >= 0], minlength=len(things))
    return Hits(t, index, normal, footprint, visible)


# ----------------------------------------------------------------------------- shading


def _ground_colour(xy_road: np.ndarray, rng_texture: np.ndarray) -> np.ndarray:
    """Asphalt, dashed lane lines and solid edges, pavement then grass, in road coordinates (along, across)."""
    along, across = xy_road[:, 0], xy_road[:, 1]
    colour = np.tile([0.32, 0.32, 0.34], (len(along), 1))
    pavement = (np.abs(across) > ROAD_HALF_WIDTH) & (np.abs(across) < ROAD_HALF_WIDTH + 3)
    colour[pavement] = [0.62, 0.6, 0.56]
    colour[np.abs(across) >= ROAD_HALF_WIDTH + 3] = [0.3, 0.45, 0.2]
    edge = np.abs(np.abs(across) - (ROAD_HALF_WIDTH - 0.3)) < 0.12
    dashed = (np.abs(np.abs(across) - LANE_WIDTH) < 0.1) & (np.mod(along, 9.0) < 3.0)
    centre = (np.abs(across) < 0.1) & (np.mod(along, 6.0) < 3.0)
    colour[edge | dashed | centre] = [0.9, 0.9, 0.85]
    # Fixed-pattern texture so that depth has something to match against (1 m cells).
    cells = (np.floor(along).astype(np.int64) * 7919 + np.floor(across).astype(np.int64) * 104729) % len(rng_texture)
    return colour * rng_texture[cells, None]


def shade(things: list[Thing], hits: Hits, origin: np.ndarray, dirs: np.ndarray, road_pose: tuple[np.ndarray, float],
          texture: np.ndarray) -> np.ndarray:
    """Lambert shading with a sun and an ambient term; sky above the horizon; haze with distance."""
    n = len(dirs)
    albedo = np.zeros((n, 3))
    sky = hits.index == -2
    elevation = np.clip(dirs[:, 2], 0, 1)[:, None]
    albedo[sky] = (np.array([0.75, 0.85, 0.95]) * (1 - elevation) + np.array([0.35, 0.55, 0.85]) * elevation)[sky]
    ground = hits.index == -1
    points = origin + np.where(np.isfinite(hits.t), hits.t, 0)[:, None] * dirs
    origin, yaw = road_pose
    road_xy = (points[ground, :2] - origin[:2]) @ _rot_z(yaw)[:2, :2]
    albedo[ground] = _ground_colour(road_xy, texture)
    obj = hits.index >= 0
    colours = np.array([t.colour for t in things]) if things else np.zeros((0, 3))
    albedo[obj] = colours[hits.index[obj]]
    light = 0.45 + 0.55 * np.clip(hits.normal @ SUN, 0, 1)
    rgb = albedo * np.where(sky, 1.0, light)[:, None]
    haze = np.where(sky, 0.0, 1 - np.exp(-np.where(np.isfinite(hits.t), hits.t, 0) / 150.0))[:, None]
    return rgb * (1 - haze) + np.array([0.75, 0.8, 0.85]) * haze


# ----------------------------------------------------------------------------- the world


def _layout(rng: np.random.Generator, road_origin: np.ndarray, road_yaw: float, length: float,
            ego_path: tuple[float, float], ood: str | None = None, ood_rng: np.random.Generator | None = None
            ) -> list[Thing]:
    """Objects along a road segment of ``length`` metres from ``road_origin``, off the ego's ``ego_path``.

    ``ood``: add the out-of-distribution objects of the ``"test"`` split (cylinders, blobs; drawn from ``rng``)
    or of the ``"val"`` split (crates, barriers; drawn from ``ood_rng``), last in the list."""
    r = _rot_z(road_yaw)
    things: list[Thing] = []

    def place(along: float, across: float, z: float) -> np.ndarray:
        return road_origin + r @ np.array([along, across, z])

    def free(centre: np.ndarray, radius: float) -> bool:
        along, across = (r.T @ (centre - road_origin))[:2]
        if abs(across - EGO_LANE) < radius + 1.5 and ego_path[0] - radius - 3 < along < ego_path[1] + radius + 3:
            return False  # the ego car drives there
        return all(np.linalg.norm(centre[:2] - t.centre[:2]) > radius + max(t.size[:2]) / 2 for t in things)

    lanes = [-1.5 * LANE_WIDTH + LANE_WIDTH / 2 + i * LANE_WIDTH for i in range(4)]
    for _ in range(int(length / 5)):  # vehicles: moving on lanes or parked at the kerb
        length_, w, h = rng.uniform(3.8, 5.2), rng.uniform(1.7, 2.1), rng.uniform(1.4, 2.0)
        if rng.random() < 0.3:  # trucks and buses
            length_, w, h = rng.uniform(7, 11), rng.uniform(2.4, 2.6), rng.uniform(2.8, 3.5)
        lane = lanes[rng.integers(4)] + rng.normal(0, 0.3)
        centre = place(rng.uniform(0, length), lane, h / 2)
        if free(centre, length_ / 2 + 1.0):
            yaw = road_yaw + (0.0 if lane < 0 else math.pi) + rng.normal(0, 0.08)
            things.append(Thing("box", centre, np.array([length_, w, h]), yaw,
                                _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))],
                                "vehicle.truck" if length_ > 6 else "vehicle.car"))
    for _ in range(int(length / 6)):  # pedestrians on the pavements
        side = rng.choice([-1, 1])
        centre = place(rng.uniform(0, length), side * (ROAD_HALF_WIDTH + rng.uniform(0.5, 2.5)), 0.87)
        if free(centre, 0.5):
            things.append(Thing("box", centre, np.array([0.5, 0.6, 1.75]), rng.uniform(0, 2 * math.pi),
                                _PEDESTRIAN_COLOURS[rng.integers(3)], "human.pedestrian.adult"))
    for along in np.arange(rng.uniform(0, 10), length, 14.0):  # buildings behind the pavements
        for side in (-1, 1):
            if rng.random() < 0.7:
                size = np.array([rng.uniform(8, 13), rng.uniform(6, 12), rng.uniform(6, 15)])
                centre = place(along, side * (ROAD_HALF_WIDTH + 6 + size[1] / 2), size[2] / 2)
                things.append(Thing("box", centre, size, road_yaw,
                                    _BUILDING_COLOURS[rng.integers(3)], None))
    if ood == "test":  # on the road, where a vehicle could be
        for _ in range(int(length / 12)):
            colour = _OOD_COLOURS[rng.integers(len(_OOD_COLOURS))]
            lane = lanes[rng.integers(4)] + rng.normal(0, 0.4)
            if rng.random() < 0.5:
                radius, h = rng.uniform(0.5, 1.2), rng.uniform(0.8, 2.2)
                centre = place(rng.uniform(0, length), lane, h / 2)
                thing = Thing("cylinder", centre, np.array([2 * radius, 2 * radius, h]), 0.0, colour, "ood.cylinder")
            else:  # an animal-like blob: a long, low ellipsoid
                radii = np.array([rng.uniform(0.8, 1.6), rng.uniform(0.4, 0.7), rng.uniform(0.4, 0.8)])
                centre = place(rng.uniform(0, length), lane, radii[2] + 0.1)
                thing = Thing("ellipsoid", centre, 2 * radii, road_yaw + rng.uniform(0, math.pi), colour, "ood.blob")
            if free(centre, max(thing.size[:2]) / 2 + 0.5):
                things.append(thing)
    if ood == "val":  # on the road too, but shapes and colours that neither training nor test scenes have
        for _ in range(int(length / 12)):
            colour = _VAL_OOD_COLOURS[ood_rng.integers(len(_VAL_OOD_COLOURS))]
            lane = lanes[ood_rng.integers(4)] + ood_rng.normal(0, 0.4)
            if ood_rng.random() < 0.5:  # a crate: a cube, turned on the road
                side = ood_rng.uniform(0.6, 1.3)
                centre = place(ood_rng.uniform(0, length), lane, side / 2)
                thing = Thing("box", centre, np.array([side, side, side]), road_yaw + ood_rng.uniform(0, math.pi / 2),
                              colour, "ood.crate")
            else:  # a road barrier: long, thin, knee-high, across the lane
                size = np.array([ood_rng.uniform(2.0, 3.5), ood_rng.uniform(0.3, 0.5), ood_rng.uniform(0.8, 1.2)])
                centre = place(ood_rng.uniform(0, length), lane, size[2] / 2)
                thing = Thing("box", centre, size, road_yaw + math.pi / 2 + ood_rng.normal(0, 0.3), colour,
                              "ood.barrier")
            if free(centre, max(thing.size[:2]) / 2 + 0.5):
                things.append(thing)
    return things


def _camera_calibration() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per camera: rotation camera -> ego, translation, intrinsic matrix (at 200 x 112)."""
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: camera x, y, z in ego
    out = {}
    for name, (yaw_deg, focal) in _RING.items():
        yaw = math.radians(yaw_deg)
        rot = _rot_z(yaw) @ base
        translation = np.array([1.0 * math.cos(yaw) + 0.5, 0.5 * math.sin(yaw), CAMERA_HEIGHT])
        f = focal * SCALE
        k = np.array([[f, 0.0, IMAGE_W / 2], [0.0, f, IMAGE_H / 2], [0.0, 0.0, 1.0]])
        out[name] = (rot, translation, k)
    return out


def _lidar_rays() -> np.ndarray:
    """32 beams from -30 to +10 degrees elevation, 1 degree in azimuth (the HDL-32E of nuScenes, thinned)."""
    elevation = np.radians(np.linspace(-30.0, 10.0, 32))
    azimuth = np.radians(np.arange(0.0, 360.0, 1.0))
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)


def _token(rng: np.random.Generator) -> str:
    return uuid.UUID(bytes=rng.bytes(16)).hex


def _visibility_level(fraction: float) -> str:
    """nuScenes visibility tokens: 1 = 0-40 %, 2 = 40-60 %, 3 = 60-80 %, 4 = 80-100 % visible."""
    return "1" if fraction < 0.4 else "2" if fraction < 0.6 else "3" if fraction < 0.8 else "4"


def generate(root: str | Path, scenes: dict[str, int] | None = None, samples_per_scene: int = 10,
             seed: int = 0) -> Path:
    """Write the dataset under ``root`` (``samples/``, ``v1.0-synthetic/*.json`` and its ``splits.json``).

    ``scenes`` maps a split to its number of scenes (default train 24, val 4, test 6); test and val
    scenes hold OOD objects, of different kinds. The ego moves 4 m between keyframes (nuScenes: 2 Hz at ~8 m/s).
    """
    root = Path(root)
    scenes = scenes or {"train": 24, "val": 4, "test": 6}
    rng = np.random.default_rng(seed)
    # Everything about the validation OOD objects (their layout and tokens) comes from this second stream, so
    # that adding them (generator version 2) left every draw of ``rng``, hence the train and test scenes, as it was.
    val_ood_rng = np.random.default_rng((seed, 1))
    texture = rng.uniform(0.85, 1.15, size=4096)
    tables: dict[str, list[dict]] = {name: [] for name in (
        "attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
        "sample_annotation", "sample_data", "scene", "sensor", "visibility")}
    tables["visibility"] = [{"token": str(i), "level": lvl, "description": f"visibility of whole object is "
                             f"between {lvl}"} for i, lvl in enumerate(["0-40", "40-60", "60-80", "80-100"], 1)]
    categories = ["vehicle.car", "vehicle.truck", "human.pedestrian.adult", "ood.cylinder", "ood.blob"]
    category_token = {name: _token(rng) for name in categories}
    category_token |= {name: _token(val_ood_rng) for name in _VAL_OOD_CATEGORIES}
    tables["category"] = [{"token": tok, "name": name, "description": ""} for name, tok in category_token.items()]
    tables["log"] = [{"token": (log := _token(rng)), "logfile": "synthetic", "vehicle": "ego", "date_captured":
                      "2026-11-26", "location": "synthetic-town"}]
    tables["map"] = [{"token": _token(rng), "log_tokens": [log], "category": "semantic_prior",
                      "filename": "maps/none.png"}]

    calibration = {}
    for name, (rot, trans, k) in _camera_calibration().items():
        sensor = _token(rng)
        tables["sensor"].append({"token": sensor, "channel": name, "modality": "camera"})
        calibration[name] = _token(rng)
        tables["calibrated_sensor"].append({"token": calibration[name], "sensor_token": sensor,
                                            "translation": trans.tolist(), "rotation": _quaternion_from_matrix(rot),
                                            "camera_intrinsic": k.tolist()})
    # The LiDAR is mounted as in nuScenes: its x axis points to the right of the car (yaw -90 degrees).
    lidar_rot, lidar_trans = _rot_z(-math.pi / 2), np.array([0.94, 0.0, LIDAR_HEIGHT])
    sensor = _token(rng)
    tables["sensor"].append({"token": sensor, "channel": "LIDAR_TOP", "modality": "lidar"})
    calibration["LIDAR_TOP"] = _token(rng)
    tables["calibrated_sensor"].append({"token": calibration["LIDAR_TOP"], "sensor_token": sensor,
                                        "translation": lidar_trans.tolist(), "rotation": _quaternion(-math.pi / 2),
                                        "camera_intrinsic": []})
    cameras = _camera_calibration()
    pixels = np.stack(np.meshgrid(np.arange(IMAGE_W) + 0.5, np.arange(IMAGE_H) + 0.5), -1).reshape(-1, 2)
    lidar_dirs = _lidar_rays()
    for channel in (*CAMERAS, "LIDAR_TOP"):
        (root / "samples" / channel).mkdir(parents=True, exist_ok=True)

    splits: dict[str, list[str]] = {}
    timestamp = 1_700_000_000_000_000
    for split, count in scenes.items():
        splits[split] = []
        for s in range(count):
            scene_name = f"scene-{split}-{s:03d}"
            splits[split].append(scene_name)
            road_yaw = rng.uniform(0, 2 * math.pi)
            road_origin = np.array([rng.uniform(-500, 500), rng.uniform(-500, 500), 0.0])
            length = EGO_STEP * samples_per_scene + 2 * EGO_START
            ego_path = (EGO_START, EGO_START + EGO_STEP * (samples_per_scene - 1))
            things = _layout(rng, road_origin, road_yaw, length, ego_path,
                             ood=split if split in ("val", "test") else None, ood_rng=val_ood_rng)
            # Per object, the stream its tokens come from (see val_ood_rng).
            token_rng = [val_ood_rng if t.category in _VAL_OOD_CATEGORIES else rng for t in things]
            instance_tokens = [_token(r) if t.category else None for t, r in zip(things, token_rng)]
            scene_token, sample_tokens = _token(rng), [_token(rng) for _ in range(samples_per_scene)]
            for i, sample_token in enumerate(sample_tokens):
                timestamp += 500_000
                ego_t = road_origin + _rot_z(road_yaw) @ np.array([EGO_START + EGO_STEP * i, EGO_LANE, 0.0])
                ego_yaw = road_yaw + rng.normal(0, 0.03)
                ego_r = _rot_z(ego_yaw)
                pose = _token(rng)
                tables["ego_pose"].append({"token": pose, "translation": ego_t.tolist(),
                                           "rotation": _quaternion(ego_yaw), "timestamp": timestamp})
                tables["sample"].append({"token": sample_token, "timestamp": timestamp, "scene_token": scene_token,
                                         "prev": sample_tokens[i - 1] if i else "",
                                         "next": sample_tokens[i + 1] if i + 1 < len(sample_tokens) else ""})
                footprint = np.zeros(len(things), dtype=np.int64)
                visible = np.zeros(len(things), dtype=np.int64)
                for name, (rot, trans, k) in cameras.items():
                    rays = np.concatenate([(pixels - k[:2, 2]) / k[0, 0], np.ones((len(pixels), 1))], 1)
                    dirs = rays / np.linalg.norm(rays, axis=1, keepdims=True) @ (ego_r @ rot).T
                    origin = ego_t + ego_r @ trans
                    hits = cast(things, origin, dirs)
                    footprint += hits.footprint
                    visible += hits.visible
                    rgb = shade(things, hits, origin, dirs, (road_origin, road_yaw), texture)
                    rgb = rgb + rng.normal(0, 0.01, rgb.shape)  # sensor noise
                    image = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8).reshape(IMAGE_H, IMAGE_W, 3)
                    filename = f"samples/{name}/{sample_token}__{name}.jpg"
                    cv2.imwrite(str(root / filename), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, 92])
                    tables["sample_data"].append(_sample_data(rng, sample_token, pose, calibration[name], filename,
                                                              "jpg", timestamp, IMAGE_W, IMAGE_H))
                # LiDAR: the same ray caster; points stored in the sensor frame (x, y, z, intensity, ring).
                origin = ego_t + ego_r @ lidar_trans
                dirs = lidar_dirs @ (ego_r @ lidar_rot).T
                hits = cast(things, origin, dirs)
                keep = hits.t < 60.0
                points_world = origin + hits.t[keep, None] * dirs[keep]
                points = (points_world - origin) @ (ego_r @ lidar_rot)
                ring = np.tile(np.arange(32), (len(lidar_dirs) // 32, 1)).T.reshape(-1)[keep]
                cloud = np.concatenate([points, np.full((len(points), 1), 20.0), ring[:, None]], 1)
                filename = f"samples/LIDAR_TOP/{sample_token}__LIDAR_TOP.pcd.bin"
                cloud.astype(np.float32).tofile(root / filename)
                tables["sample_data"].append(_sample_data(rng, sample_token, pose, calibration["LIDAR_TOP"],
                                                          filename, "pcd", timestamp, 0, 0))
                lidar_hits = np.bincount(hits.index[keep & (hits.index >= 0)], minlength=len(things))
                for k, thing in enumerate(things):
                    near = np.linalg.norm(thing.centre[:2] - ego_t[:2]) < 60.0
                    if thing.category is None or not near or footprint[k] == 0:
                        continue
                    tables["sample_annotation"].append({
                        "token": _token(token_rng[k]), "sample_token": sample_token,
                        "instance_token": instance_tokens[k], "attribute_tokens": [],
                        "visibility_token": _visibility_level(visible[k] / footprint[k]),
                        "translation": thing.centre.tolist(), "size": [thing.size[1], thing.size[0], thing.size[2]],
                        "rotation": _quaternion(thing.yaw), "num_lidar_pts": int(lidar_hits[k]),
                        "num_radar_pts": 0, "prev": "", "next": ""})
            for thing, token in zip(things, instance_tokens):
                if token:
                    tables["instance"].append({"token": token, "category_token": category_token[thing.category],
                                               "nbr_annotations": 0, "first_annotation_token": "",
                                               "last_annotation_token": ""})
            tables["scene"].append({"token": scene_token, "name": scene_name, "description": f"synthetic {split}",
                                    "log_token": log, "nbr_samples": samples_per_scene,
                                    "first_sample_token": sample_tokens[0], "last_sample_token": sample_tokens[-1]})
    version_dir = root / VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (version_dir / f"{name}.json").write_text(json.dumps(rows))
    (version_dir / "splits.json").write_text(json.dumps(splits, indent=1))
    return root


def _sample_data(rng: np.random.Generator, sample: str, pose: str, calibrated: str, filename: str, fmt: str,
                 timestamp: int, width: int, height: int) -> dict:
    return {"token": _token(rng), "sample_token": sample, "ego_pose_token": pose, "calibrated_sensor_token": calibrated,
            "filename": filename, "fileformat": fmt, "is_key_frame": True, "width": width, "height": height,
            "timestamp": timestamp, "prev": "", "next": ""}


def ensure_synthetic(cache_dir: str | Path, **kwargs) -> Path:
    """Generate once into ``cache_dir/<hash of the arguments>/`` and return that dataroot
    (``shared_utils.cache``: an interrupted run never leaves a half dataset that looks complete)."""
    record = {"generator": _GENERATOR_VERSION, **kwargs}
    return generate_once(cache_dir, record, lambda root: generate(root, **kwargs))
