"""nuScenes in its official on-disk layout, as camera BEV segmentation samples (LSS / BEVDepth style).

Layout (Caesar et al., CVPR 2020)::

    dataroot/samples/<CAM_*>/*.jpg              the six keyframe images
    dataroot/samples/LIDAR_TOP/*.pcd.bin        float32 x, y, z, intensity, ring index per point, LiDAR frame
    dataroot/<version>/<table>.json             the 13 tables of :data:`TABLES` (token-linked records)
    dataroot/<version>/splits.json              optional {"train": [scene names], "val": [...], "test": [...]}

The tables are parsed here directly (no nuscenes-devkit): the few transforms needed are written out below.
Frames: a sensor's ``calibrated_sensor`` maps sensor -> ego, a ``sample_data``'s ``ego_pose`` maps ego ->
global at that sensor's timestamp; quaternions are ``[w, x, y, z]``. Only keyframes are used.

One sample (see :meth:`NuScenesBEV.__getitem__`) is what Lift-Splat-Shoot (Philion & Fidler, ECCV 2020) trains
on: six images resized and cropped to ``image_size`` with matching intrinsics, camera -> ego extrinsics and a
BEV map of vehicle / pedestrian / out-of-distribution footprints; plus BEVDepth's (Li et al., AAAI 2023)
LiDAR depth supervision in each image, and Cross-View Transformers' (Zhou & Krähenbühl, CVPR 2022)
visibility mask that ignores barely visible vehicles.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from bev_uncertainty.data.grid import BEVGrid
from shared_utils.datasets import DatasetFormatError, folder_listing

CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")  # LSS
LIDAR = "LIDAR_TOP"
BEV_CLASSES = ("vehicle", "pedestrian", "ood")
TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
          "sample_annotation", "sample_data", "scene", "sensor", "visibility")
# The fields this loader reads, per table (the official schema has more; they are not needed here).
REQUIRED_FIELDS = {
    "attribute": ("token", "name"),
    "calibrated_sensor": ("token", "sensor_token", "translation", "rotation", "camera_intrinsic"),
    "category": ("token", "name"),
    "ego_pose": ("token", "translation", "rotation"),
    "instance": ("token", "category_token"),
    "log": ("token",),
    "map": ("token",),
    "sample": ("token", "scene_token", "timestamp", "prev", "next"),
    "sample_annotation": ("token", "sample_token", "instance_token", "translation", "size", "rotation",
                          "visibility_token"),
    "sample_data": ("token", "sample_token", "ego_pose_token", "calibrated_sensor_token", "filename",
                    "is_key_frame", "timestamp"),
    "scene": ("token", "name", "first_sample_token", "log_token"),
    "sensor": ("token", "channel", "modality"),
    "visibility": ("token", "level"),
}
# (table, field, table the field's token must exist in)
REFERENCES = (
    ("calibrated_sensor", "sensor_token", "sensor"),
    ("instance", "category_token", "category"),
    ("sample", "scene_token", "scene"),
    ("sample_annotation", "sample_token", "sample"),
    ("sample_annotation", "instance_token", "instance"),
    ("sample_annotation", "visibility_token", "visibility"),
    ("sample_data", "sample_token", "sample"),
    ("sample_data", "ego_pose_token", "ego_pose"),
    ("sample_data", "calibrated_sensor_token", "calibrated_sensor"),
    ("scene", "first_sample_token", "sample"),
    ("scene", "log_token", "log"),
)
VISIBILITY_LEVELS = {"1": 1, "2": 2, "3": 3, "4": 4}  # visible fraction 0-40, 40-60, 60-80, 80-100 %
MIN_DEPTH = 0.1  # metres in front of the camera, as BEVDepth
OFFICIAL_SPLITS = Path(__file__).with_name("nuscenes_splits.json")


# ---------------------------------------------------------------------------------------------------------------
# Geometry: the little of pyquaternion / nuscenes-devkit that is needed.


def quaternion_to_matrix(q_wxyz: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of quaternions ``(..., 4)`` in nuScenes' ``[w, x, y, z]`` order.

    The quaternion is normalised first, as pyquaternion does before building its rotation matrix.
    """
    q = np.asarray(q_wxyz, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f"expected a quaternion [w, x, y, z], got shape {q.shape}")
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def pose_matrix(rotation_wxyz: Sequence[float], translation: Sequence[float]) -> np.ndarray:
    """The ``4x4`` homogeneous transform of a nuScenes ``rotation`` / ``translation`` pair (child -> parent)."""
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(rotation_wxyz)
    T[:3, 3] = translation
    return T


def transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a ``3x3`` rotation or a ``4x4`` rigid transform to points ``(N, 3)``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    out = points @ matrix[:3, :3].T
    return out + matrix[:3, 3] if matrix.shape == (4, 4) else out


def box_footprints(centres: np.ndarray, yaws: np.ndarray, sizes_wlh: np.ndarray) -> np.ndarray:
    """Ground rectangles ``(N, 4, 2)`` (x, y) of boxes: length ``l`` along the heading (box x axis), width ``w``."""
    half_l, half_w = sizes_wlh[:, 1] / 2, sizes_wlh[:, 0] / 2
    local = np.stack([np.stack([half_l, half_w], -1), np.stack([-half_l, half_w], -1),
                      np.stack([-half_l, -half_w], -1), np.stack([half_l, -half_w], -1)], 1)  # (N, 4, 2)
    cos, sin = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    x = centres[:, None, 0] + cos * local[..., 0] - sin * local[..., 1]
    y = centres[:, None, 1] + sin * local[..., 0] + cos * local[..., 1]
    return np.stack([x, y], -1)


# ---------------------------------------------------------------------------------------------------------------
# Tables


def _load_json(path: Path) -> object:
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path}: malformed JSON ({e})") from e


def _load_table(path: Path, name: str) -> dict[str, dict]:
    """One table indexed by token; every record must carry the fields of :data:`REQUIRED_FIELDS`."""
    if not path.is_file():
        raise DatasetFormatError(f"nuScenes table '{name}' not found: expected {path} "
                                 f"({folder_listing(path.parent)})")
    records = _load_json(path)
    if not isinstance(records, list):
        raise DatasetFormatError(f"{path}: expected a JSON list of records, found {type(records).__name__}")
    required = set(REQUIRED_FIELDS[name])
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{path}: record {index} is {type(record).__name__}, expected an object")
        missing = required - record.keys()
        if missing:
            raise DatasetFormatError(f"{path}: record {index} (token {record.get('token')!r}) lacks field(s) "
                                     f"{sorted(missing)}; expected {list(REQUIRED_FIELDS[name])}")
    return {record["token"]: record for record in records}


class NuScenesTables:
    """The 13 tables of one nuScenes version, indexed by token, with every reference used here checked.

    A broken link is reported when the tables are loaded, not halfway through an epoch.
    """

    def __init__(self, dataroot: str | Path, version: str):
        self.dataroot = Path(dataroot)
        self.version = version
        if not self.dataroot.is_dir():
            raise DatasetFormatError(f"nuScenes root {self.dataroot} does not exist (expected samples/ and "
                                     f"{version}/ in it; {folder_listing(self.dataroot.parent)})")
        self.table_dir = self.dataroot / version
        if not self.table_dir.is_dir():
            raise DatasetFormatError(f"nuScenes version folder {self.table_dir} not found (expected the {len(TABLES)} "
                                     f"table .json files there; {folder_listing(self.dataroot)})")
        self.tables = {name: _load_table(self.table_dir / f"{name}.json", name) for name in TABLES}
        for table, field, target in REFERENCES:
            for record in self.tables[table].values():
                self.get(target, record[field], referrer=(table, field, record["token"]))
        self.keyframes = self._index_keyframes()
        self.annotations: dict[str, list[dict]] = {}
        for ann in self.tables["sample_annotation"].values():
            self.annotations.setdefault(ann["sample_token"], []).append(ann)

    def path(self, table: str) -> Path:
        return self.table_dir / f"{table}.json"

    def get(self, table: str, token: str, referrer: tuple[str, str, str] | None = None) -> dict:
        """The record of ``token``; ``referrer`` = (table, field, token) of the record pointing to it."""
        try:
            return self.tables[table][token]
        except (KeyError, TypeError):
            where = f" (field '{referrer[1]}' of {referrer[0]} record {referrer[2]!r} in " \
                    f"{self.path(referrer[0])})" if referrer else ""
            raise DatasetFormatError(f"token {token!r} not found in table {table} ({self.path(table)}){where}") \
                from None

    def _index_keyframes(self) -> dict[str, dict[str, dict]]:
        """sample token -> sensor channel -> keyframe sample_data record."""
        index: dict[str, dict[str, dict]] = {}
        for sd in self.tables["sample_data"].values():
            if sd["is_key_frame"]:
                calibration = self.get("calibrated_sensor", sd["calibrated_sensor_token"])
                sensor = self.get("sensor", calibration["sensor_token"])
                index.setdefault(sd["sample_token"], {})[sensor["channel"]] = sd
        return index

    def scene_by_name(self) -> dict[str, dict]:
        return {scene["name"]: scene for scene in self.tables["scene"].values()}

    def scene_samples(self, scene: dict) -> list[dict]:
        """The scene's samples in time order, following ``first_sample_token`` and ``next``."""
        samples, token, seen = [], scene["first_sample_token"], set()
        while token:
            referrer = ("sample", "next", samples[-1]["token"]) if samples else \
                ("scene", "first_sample_token", scene["token"])
            sample = self.get("sample", token, referrer)
            if sample["scene_token"] != scene["token"] or token in seen:
                found = "again" if token in seen else f"of scene {sample['scene_token']!r}"
                raise DatasetFormatError(f"{self.path('sample')}: following 'next' from scene {scene['name']!r} "
                                         f"reaches sample {token!r} {found}; expected each sample of the scene once")
            seen.add(token)
            samples.append(sample)
            token = sample["next"]
        return samples


# ---------------------------------------------------------------------------------------------------------------
# Splits


def _split_names(splits: object, split: str, source: str) -> list[str]:
    if not isinstance(splits, dict) or split not in splits:
        found = sorted(splits) if isinstance(splits, dict) else type(splits).__name__
        raise DatasetFormatError(f"{source}: no split {split!r}; expected {{\"{split}\": [scene names], ...}}, "
                                 f"found {found}")
    names = splits[split]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DatasetFormatError(f"{source}: split {split!r} must be a list of scene names")
    return names


def split_scene_names(dataroot: str | Path, version: str, split: str, split_file: str | Path | None = None
                      ) -> tuple[list[str], str]:
    """Scene names of ``split`` and the file they came from.

    Order: an explicit ``split_file``; else ``dataroot/<version>/splits.json`` (the synthetic generator writes
    one); else the official split of the version, copied from nuscenes-devkit's ``utils/splits.py`` into
    ``nuscenes_splits.json``. The official test split ships without annotations, so ``test`` is val, the split
    LSS and CVT report on.
    """
    path = Path(dataroot) / version / "splits.json" if split_file is None else Path(split_file)
    if split_file is not None and not path.is_file():
        raise DatasetFormatError(f"split_file {path} not found (expected a JSON {{\"{split}\": [scene names], ...}})")
    if path.is_file():
        return _split_names(_load_json(path), split, str(path)), str(path)
    official = _load_json(OFFICIAL_SPLITS)
    if version not in official:
        raise DatasetFormatError(f"no {path} and no official scene split for nuScenes version {version!r} "
                                 f"(known: {[k for k in official if k.startswith('v')]}); pass split_file= a JSON "
                                 f"{{\"train\": [scene names], \"val\": [...], \"test\": [...]}}")
    source = f"{OFFICIAL_SPLITS} [{version}]"
    return _split_names(official[version], "val" if split == "test" else split, source), source


# ---------------------------------------------------------------------------------------------------------------
# Keyframes: what one sample needs from the tables, resolved once at construction


@dataclass(frozen=True)
class CameraView:
    """One keyframe image: ``intrinsic`` of the original image, ``cam_to_ego``, and ``ego_to_global`` at the
    camera's own timestamp (the car moves between the LiDAR sweep and each camera's exposure)."""

    path: Path
    intrinsic: np.ndarray
    cam_to_ego: np.ndarray
    ego_to_global: np.ndarray


@dataclass(frozen=True)
class Keyframe:
    """A sample with its links followed, so that the (large) tables need not stay in memory or in workers."""

    token: str
    cameras: tuple[CameraView, ...]  # CAMERAS order
    lidar_path: Path
    lidar_to_ego: np.ndarray
    ego_to_global: np.ndarray  # of the LiDAR keyframe: the frame of the BEV map
    footprints: np.ndarray  # (N, 4, 2) ego x, y of the annotated boxes that have a BEV class
    classes: np.ndarray  # (N,) index into BEV_CLASSES
    visibility: np.ndarray  # (N,) nuScenes visibility level 1..4


def bev_class(category: str, ood_prefixes: Sequence[str]) -> int | None:
    """Index into :data:`BEV_CLASSES` of a nuScenes category name, ``None`` for categories not mapped.

    A prefix matches the name or a dotted sub-category ("ood" matches "ood" and "ood.cylinder"). OOD is tested
    first, so that a known category (say "vehicle.emergency") can be held out as out-of-distribution.
    """
    def matches(prefix: str) -> bool:
        return category == prefix or category.startswith(prefix + ".")

    if any(matches(p) for p in ood_prefixes):
        return BEV_CLASSES.index("ood")
    if matches("vehicle"):  # all vehicle.* as LSS, bicycles and motorcycles included
        return BEV_CLASSES.index("vehicle")
    if matches("human.pedestrian"):
        return BEV_CLASSES.index("pedestrian")
    return None


def _numbers(tables: NuScenesTables, table: str, record: dict, field: str, shape: tuple[int, ...]) -> np.ndarray:
    """``record[field]`` as a float array of ``shape``; anything else names the table, record and field."""
    try:
        value = np.asarray(record[field], dtype=np.float64)
    except (TypeError, ValueError):
        value = None
    if value is None or value.shape != shape:
        raise DatasetFormatError(f"{tables.path(table)}: record {record['token']!r} field {field!r} = "
                                 f"{record[field]!r}; expected {'x'.join(map(str, shape))} numbers")
    return value


def _pose(tables: NuScenesTables, table: str, record: dict) -> np.ndarray:
    return pose_matrix(_numbers(tables, table, record, "rotation", (4,)),
                       _numbers(tables, table, record, "translation", (3,)))


def _data_file(tables: NuScenesTables, sd: dict, sample_token: str) -> Path:
    path = tables.dataroot / sd["filename"]
    if not path.is_file():
        raise DatasetFormatError(f"{path} not found (filename of sample_data {sd['token']!r}, sample {sample_token!r})")
    return path


def _camera_view(tables: NuScenesTables, sd: dict, sample_token: str) -> CameraView:
    cs = tables.get("calibrated_sensor", sd["calibrated_sensor_token"])
    return CameraView(path=_data_file(tables, sd, sample_token),
                      intrinsic=_numbers(tables, "calibrated_sensor", cs, "camera_intrinsic", (3, 3)),
                      cam_to_ego=_pose(tables, "calibrated_sensor", cs),
                      ego_to_global=_pose(tables, "ego_pose", tables.get("ego_pose", sd["ego_pose_token"])))


def _boxes(tables: NuScenesTables, sample_token: str, ego_to_global: np.ndarray, ood_prefixes: Sequence[str]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Footprints in the ego frame, classes and visibility levels of the sample's annotations with a BEV class.

    Box centre: global -> ego by the inverse ego pose; heading: yaw of ``R_ego^T R_box`` (the ego frame's roll and
    pitch, a fraction of a degree on roads, are ignored as the BEV map is flat).
    """
    rows = []
    for ann in tables.annotations.get(sample_token, []):
        category = tables.get("category", tables.get("instance", ann["instance_token"])["category_token"])["name"]
        cls = bev_class(category, ood_prefixes)
        if cls is None:
            continue
        level = VISIBILITY_LEVELS.get(ann["visibility_token"])
        if level is None:
            raise DatasetFormatError(f"{tables.path('sample_annotation')}: record {ann['token']!r} field "
                                     f"'visibility_token' = {ann['visibility_token']!r}; expected one of "
                                     f"{list(VISIBILITY_LEVELS)}")
        numbers = [_numbers(tables, "sample_annotation", ann, field, (n,))
                   for field, n in (("translation", 3), ("size", 3), ("rotation", 4))]
        rows.append((*numbers, cls, level))
    if not rows:
        return np.zeros((0, 4, 2)), np.zeros(0, np.int64), np.zeros(0, np.uint8)
    centres, sizes, rotations, classes, levels = (np.array(column) for column in zip(*rows))
    centres_ego = transform(np.linalg.inv(ego_to_global), centres)
    R = ego_to_global[:3, :3].T @ quaternion_to_matrix(rotations)
    yaws = np.arctan2(R[:, 1, 0], R[:, 0, 0])
    return box_footprints(centres_ego, yaws, sizes), classes.astype(np.int64), levels.astype(np.uint8)


def keyframe(tables: NuScenesTables, sample: dict, ood_prefixes: Sequence[str]) -> Keyframe:
    """Resolve a sample's six camera keyframes, its LiDAR keyframe and its boxes."""
    token = sample["token"]
    channels = tables.keyframes.get(token, {})
    missing = [c for c in (*CAMERAS, LIDAR) if c not in channels]
    if missing:
        raise DatasetFormatError(f"{tables.path('sample_data')}: sample {token!r} has no keyframe (is_key_frame) "
                                 f"sample_data for {missing}; found {sorted(channels)}")
    lidar = channels[LIDAR]
    ego_to_global = _pose(tables, "ego_pose", tables.get("ego_pose", lidar["ego_pose_token"]))
    footprints, classes, visibility = _boxes(tables, token, ego_to_global, ood_prefixes)
    return Keyframe(token=token,
                    cameras=tuple(_camera_view(tables, channels[c], token) for c in CAMERAS),
                    lidar_path=_data_file(tables, lidar, token),
                    lidar_to_ego=_pose(tables, "calibrated_sensor",
                                       tables.get("calibrated_sensor", lidar["calibrated_sensor_token"])),
                    ego_to_global=ego_to_global, footprints=footprints, classes=classes, visibility=visibility)


# ---------------------------------------------------------------------------------------------------------------
# Images and LiDAR depth
#
# Pixel coordinates: pixel (row v, column u) covers [u, u+1) x [v, v+1). In this convention resizing by s maps a
# point u to s u, so scaling the intrinsics is exact (what LSS and BEVDepth do), and a projected point falls in
# pixel floor(u), floor(v) (BEVDepth's int cast).
# Depth chain (BEVDepth): LiDAR -> ego at the sweep -> global -> ego at the camera's exposure -> camera -> pixel.


def read_image(path: Path, sample_token: str) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetFormatError(f"{path}: not a readable image (sample {sample_token!r})")
    return np.ascontiguousarray(image[..., ::-1])


def read_points(path: Path, sample_token: str) -> np.ndarray:
    """``(N, 3)`` x, y, z of a ``.pcd.bin`` (float32 x, y, z, intensity, ring index per point)."""
    values = np.fromfile(path, dtype=np.float32)
    if values.size % 5:
        raise DatasetFormatError(f"{path}: {values.size} float32 values, expected 5 per point (x, y, z, "
                                 f"intensity, ring) (sample {sample_token!r})")
    return values.reshape(-1, 5)[:, :3].astype(np.float64)


def lss_resize_crop(image: np.ndarray, intrinsic: np.ndarray, image_size: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Resize and crop as LSS does at test time: scale by ``max(H / h0, W / w0)`` (the width fits unless the image
    would then be shorter than ``H``), keep the bottom ``H`` rows (the sky is cut) and the centred ``W`` columns.

    (LSS also trims 11 % of the bottom at test time; here the bottom is kept, so no road near the car is lost.)
    Returns the image and the intrinsics of the new pixels: fx, cx scaled by the actual width ratio, fy, cy by the
    height ratio, then shifted by the crop.
    """
    H, W = image_size
    h0, w0 = image.shape[:2]
    scale = max(H / h0, W / w0)
    new_w, new_h = round(w0 * scale), round(h0 * scale)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    top, left = new_h - H, (new_w - W) // 2
    K = intrinsic.copy()
    K[0] *= new_w / w0
    K[1] *= new_h / h0
    K[0, 2] -= left
    K[1, 2] -= top
    return resized[top:top + H, left:left + W], K


def depth_map(points_cam: np.ndarray, intrinsic: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """BEVDepth's depth supervision: ``(H, W)`` camera-frame depth of the LiDAR points, 0 where none projects.

    Points closer than :data:`MIN_DEPTH` (or behind the camera) are dropped; of several points in one pixel the
    nearest is kept, since the farther ones are occluded in the image.
    """
    H, W = image_size
    points = points_cam[points_cam[:, 2] > MIN_DEPTH]
    uvw = points @ intrinsic.T
    u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    depth = np.full((H, W), np.inf)
    np.minimum.at(depth, (np.floor(v[inside]).astype(np.int64), np.floor(u[inside]).astype(np.int64)),
                  points[inside, 2])
    depth[np.isinf(depth)] = 0
    return depth.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# BEV labels


def rasterise(footprints: np.ndarray, classes: np.ndarray, visibility: np.ndarray, grid: BEVGrid,
              min_visibility: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class maps ``(C, H, W)``, vehicle visibility ``(H, W)`` and the valid mask ``(H, W)`` of ego-frame boxes.

    Each corner goes to the cell containing it: ``floor`` of ``grid.to_index``, i.e. rounding after subtracting the
    half cell, so that a corner snaps to the nearest cell centre. (LSS rounds the continuous index itself, a
    half-cell shift towards +x, +y.) ``cv2.fillPoly`` then fills the polygon, boundary cells included.
    Visibility is the highest level of the vehicles covering a cell (vehicles are drawn by increasing level);
    cells whose vehicles are all less visible than ``min_visibility`` are invalid, as in CVT and Simple-BEV.
    """
    rows, cols = grid.to_index(footprints[..., 0], footprints[..., 1])
    polygons = np.floor(np.stack([cols, rows], -1)).astype(np.int32)  # cv2 points are (x=col, y=row)
    layers = np.zeros((len(BEV_CLASSES), *grid.shape), np.uint8)
    for polygon, cls in zip(polygons, classes):
        layer = layers[cls].copy()
        cv2.fillPoly(layer, [polygon], 1)
        layers[cls] = layer
    vis = np.zeros(grid.shape, np.uint8)
    vehicles = np.flatnonzero(classes == BEV_CLASSES.index("vehicle"))
    for k in vehicles[np.argsort(visibility[vehicles], kind="stable")]:
        cv2.fillPoly(vis, [polygons[k]], int(visibility[k]))
    valid = (vis == 0) | (vis >= min_visibility)
    return layers.astype(np.float32), vis, valid


def observed_cells(points_ego: np.ndarray, origin: np.ndarray, grid: BEVGrid, max_height: float = 2.0) -> np.ndarray:
    """``(H, W)`` bool: the BEV cells that at least one LiDAR ray crosses below ``max_height`` or ends in.

    What the roof sensors saw at the height of a vehicle: cells behind a vehicle or a building are crossed by no
    such ray (a ray passing over a car at 3 m says nothing about a car behind it). The cameras sit on the same
    roof, so this is a ground truth of camera occlusion, used to evaluate uncertainty in unseen cells (a
    diagnostic of this project, not a nuScenes label). Each ray is sampled every half cell.
    """
    offsets = points_ego - origin
    lengths = np.linalg.norm(offsets[:, :2], axis=1)
    reach = np.hypot(max(abs(grid.x_min), abs(grid.x_max)), max(abs(grid.y_min), abs(grid.y_max)))
    steps = np.arange(0.0, reach, grid.resolution / 2, dtype=np.float32)
    observed = np.zeros(grid.shape, bool)
    for chunk in np.array_split(np.arange(len(points_ego)), max(1, len(points_ego) // 4096)):
        t = np.minimum(steps[None, :], lengths[chunk, None]) / np.maximum(lengths[chunk, None], 1e-6)
        xyz = origin + t[..., None] * offsets[chunk, None, :]
        rows, cols = grid.to_index(xyz[..., 0], xyz[..., 1])
        rows, cols = np.floor(rows).astype(np.int64).ravel(), np.floor(cols).astype(np.int64).ravel()
        inside = ((rows >= 0) & (rows < grid.shape[0]) & (cols >= 0) & (cols < grid.shape[1])
                  & (xyz[..., 2].ravel() <= max_height))
        observed[rows[inside], cols[inside]] = True
    return observed


# ---------------------------------------------------------------------------------------------------------------
# Dataset


class NuScenesBEV(torch.utils.data.Dataset):
    """Keyframes of the scenes of one split, in split-list order then time order, as LSS-style BEV samples.

    ``min_visibility`` (1..4): vehicles below it are still drawn in the vehicle map but their cells are marked
    invalid, to be ignored by loss and metrics. ``ood_prefixes``: category prefixes of the out-of-distribution
    class (the synthetic generator's "ood.*" objects, nuScenes' "animal"). ``observed``: add the ``observed`` map
    of :func:`observed_cells` to each sample (an evaluation diagnostic; ~0.2 s per sample on the CPU).
    """

    def __init__(self, dataroot: str | Path, version: str = "v1.0-mini", split: str = "train",
                 grid: BEVGrid = BEVGrid(),  # noqa: B008 (frozen, so one shared default is safe)
                 image_size: tuple[int, int] = (128, 352), min_visibility: int = 2,
                 ood_prefixes: Sequence[str] = ("ood", "animal"), split_file: str | None = None,
                 observed: bool = False):
        self.observed = observed
        if min_visibility not in VISIBILITY_LEVELS.values():
            raise ValueError(f"min_visibility must be a nuScenes visibility level 1..4, got {min_visibility}")
        self.grid, self.image_size, self.min_visibility = grid, tuple(image_size), min_visibility
        tables = NuScenesTables(dataroot, version)
        names, source = split_scene_names(dataroot, version, split, split_file)
        scenes = tables.scene_by_name()
        unknown = [name for name in names if name not in scenes]
        if unknown:
            raise DatasetFormatError(f"{source}: {len(unknown)} scene(s) of split {split!r} are not in "
                                     f"{tables.path('scene')}: {', '.join(unknown[:8])}"
                                     f"{' ...' if len(unknown) > 8 else ''}")
        self.keyframes = [keyframe(tables, sample, ood_prefixes)
                          for name in names for sample in tables.scene_samples(scenes[name])]
        if not self.keyframes:
            raise DatasetFormatError(f"{source}: split {split!r} is empty (scenes {names}); expected at least "
                                     f"one scene with keyframes")

    def __len__(self) -> int:
        return len(self.keyframes)

    def __getitem__(self, i: int) -> dict:
        """Images ``(6, 3, H, W)``, intrinsics, cam_to_ego, LiDAR depth ``(6, H, W)``, BEV maps and masks."""
        kf = self.keyframes[i]
        points_ego = transform(kf.lidar_to_ego, read_points(kf.lidar_path, kf.token))
        points_global = transform(kf.ego_to_global, points_ego)
        images, intrinsics, depths = [], [], []
        for cam in kf.cameras:
            image, K = lss_resize_crop(read_image(cam.path, kf.token), cam.intrinsic, self.image_size)
            global_to_cam = np.linalg.inv(cam.ego_to_global @ cam.cam_to_ego)
            images.append(image.transpose(2, 0, 1))
            intrinsics.append(K)
            depths.append(depth_map(transform(global_to_cam, points_global), K, self.image_size))
        bev, visibility, valid = rasterise(kf.footprints, kf.classes, kf.visibility, self.grid, self.min_visibility)
        sample = {
            "images": torch.from_numpy(np.stack(images)).float() / 255,
            "intrinsics": torch.from_numpy(np.stack(intrinsics)).float(),
            "cam_to_ego": torch.from_numpy(np.stack([cam.cam_to_ego for cam in kf.cameras])).float(),
            "depth": torch.from_numpy(np.stack(depths)),
            "bev": torch.from_numpy(bev),
            "visibility": torch.from_numpy(visibility),
            "valid": torch.from_numpy(valid),
            "ego_pose": torch.from_numpy(kf.ego_to_global).float(),
            "token": kf.token,
        }
        if self.observed:
            sample["observed"] = torch.from_numpy(observed_cells(points_ego, kf.lidar_to_ego[:3, 3], self.grid))
        return sample
