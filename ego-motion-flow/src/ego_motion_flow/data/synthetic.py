"""Procedural road sequences seen from a car, ray-cast in numpy, with exact flow, depth, poses and motion masks.

The scene (world frame as OpenCV's camera: x right, y down, z forward along the road at the start):

- a road of constant curvature (a circular arc; radius 50 m to 10 km, turning either way) on the plane
  y = 1.65 (the camera height of KITTI's rig), 1-2 lanes per direction, optional parking strips, dashed and solid
  lane markings; raised pavements (15 cm kerb, a real vertical face) and grass beyond them;
- buildings: large boxes in rows along both sides, with window grids; poles, some carrying a sign plate;
- parked cars (static) in the parking strips and 2-4 cars that move rigidly along the road (ahead in the ego lane,
  in a neighbouring lane, or oncoming), each with a small heading offset, some braking to a stop;
- a sky: infinitely far (and every surface farther than ``FAR`` m is rendered as sky). Its flow is invalid and its
  depth is 655.35 m, the far value of Virtual KITTI 2's uint16 centimetre depth.

The camera (KITTI-like: horizontal field of view 81 degrees, principal point near the centre) drives along its
lane at 0.5-1.5 m per frame (5-15 m/s at 10 Hz), follows the curve (up to ~2 degrees of yaw per frame) with a
small heading and lateral weave, and small smooth pitch / roll / height jitter.

What is exact: every pixel's ray is cast analytically against planes, the kerb's vertical cylinder and oriented
boxes (cars are a body, a cabin and four wheels), so the hit point, its z-depth and its object are exact at the
pixel centre. Flow is computed, not estimated: the hit point, fixed in its object's frame, is moved with the
object's rigid motion to frame t+1 and projected into camera t+1; rigid (ego) flow projects the same point left
where it is (so rigid flow = full flow on everything but moving cars). Occlusion is decided by casting a second
ray, from camera t+1 through the projected sub-pixel position: the point is visible (``flow_noc``) when nothing
lies in front of it along that ray and the position is inside the image (pixel centres span [0, W-1] x [0, H-1]).

What is approximated: images have one ray per pixel (object edges alias by up to a pixel); surface textures are
procedural functions of object-local coordinates (multi-octave value noise, windows, tiles, markings) whose
octaves finer than about two pixel footprints are faded out, a cheap stand-in for a camera's area integration
(so textures stay consistent from frame to frame, as brightness constancy assumes); shading is Lambertian with
one sun and an ambient term, with no cast shadows; the sky is a gradient. Flows the Virtual KITTI 2 png cannot
store (|u| > W-1 or |v| > H-1; also KITTI's 512 px limit) are marked invalid.

Typical statistics at 64 x 192, 20 frames (48 sequences; 10th-90th percentiles of the sequence means): moving-car
pixels 7.6 % (3.6-12 %), sky 21 % (10-41 %), mean |flow| 8.7 px (4.7-13), 74 % of the valid flow non-occluded.
Rendering takes ~0.6 s of one core per such sequence (writing both layouts included: 17 s for 24 sequences).

``write_synthetic`` writes sequences in two official layouts with ``data/io.py``'s writers, so that one loader
serves the synthetic and the real data: Virtual KITTI 2.0.3 (``vkitti2/SceneNN/clone``) and KITTI 2015 scene flow
(``kitti15/training``; one pair per sequence). Virtual KITTI 2's rgb is jpg at quality 95 as in the dataset:
measured on these images it adds 0.008 mean absolute error (of [0, 1]) and raises the photometric residual along
the true flow from 0.013 to 0.017 (90th percentile unchanged at ~0.03), so jpg is kept; KITTI's images are png.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ego_motion_flow.data import io

SKY_DEPTH = 655.35  # Virtual KITTI 2's far value (uint16 centimetres saturate at 65535)
FAR = 400.0  # z-depth beyond which everything is sky
NEAR = 0.1  # nothing nearer than this to the camera is hit
GROUND_Y = 1.65  # road plane: KITTI's camera height below the camera's start
KERB = 0.15  # pavement height above the road
HFOV_DEG = 81.0  # KITTI's horizontal field of view (1242 px at f = 721 px)
KITTI_BASELINE = 0.54  # metres between KITTI's colour cameras 2 and 3
KITTI_FRAME = 10  # the frame of a sequence written as KITTI 2015's pair _10 / _11 (as the dataset's naming)
JPEG_QUALITY = 95

# Virtual KITTI 2's classes and their classSegmentation colours (RGB), in the order of its colors.txt.
CLASSES = ("Terrain", "Sky", "Tree", "Vegetation", "Building", "Road", "GuardRail", "TrafficSign", "TrafficLight",
           "Pole", "Misc", "Truck", "Car", "Van", "Undefined")
CLASS_COLOURS = np.array([[210, 0, 200], [90, 200, 255], [0, 199, 0], [90, 240, 0], [140, 140, 140], [100, 60, 100],
                          [250, 100, 255], [255, 255, 0], [200, 200, 0], [255, 130, 0], [80, 80, 80], [160, 60, 60],
                          [255, 127, 80], [0, 139, 139], [0, 0, 0]], dtype=np.uint8)
TERRAIN, SKY, BUILDING, ROAD, SIGN, POLE, MISC, CAR = (CLASSES.index(c) for c in (
    "Terrain", "Sky", "Building", "Road", "TrafficSign", "Pole", "Misc", "Car"))  # pavement and kerb are Misc

SUN = np.array([-0.45, -0.75, 0.5]) / np.linalg.norm([-0.45, -0.75, 0.5])  # towards the sun (y is down)
_CAR_PAINTS = {"Red": (0.62, 0.08, 0.07), "Blue": (0.1, 0.2, 0.5), "White": (0.85, 0.85, 0.83),
               "Black": (0.07, 0.07, 0.08), "Silver": (0.6, 0.61, 0.63), "Green": (0.1, 0.3, 0.15),
               "Brown": (0.4, 0.27, 0.17), "Yellow": (0.8, 0.65, 0.12)}
_FACADES = np.array([[0.72, 0.65, 0.55], [0.55, 0.33, 0.25], [0.8, 0.8, 0.76], [0.6, 0.6, 0.62], [0.75, 0.7, 0.5],
                     [0.45, 0.42, 0.4]])

# Hit codes: object index >= 0 (a body), or one of these.
_SKY, _GROUND = -1, -2
_ROAD, _TOP, _KERB_RIGHT, _KERB_LEFT = 0, 1, 2, 3  # faces of the ground


# ----------------------------------------------------------------------------- geometry


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation, translation
    return m


def intrinsics(height: int, width: int, cx_offset: float = 0.0, cy_offset: float = 0.0) -> np.ndarray:
    """KITTI-like K: f = (W/2) / tan(40.5 deg) (81 degrees horizontal field of view, square pixels); principal
    point at the image centre ((W-1)/2, (H-1)/2 with pixel centres at integers) plus the given offsets."""
    f = (width / 2) / math.tan(math.radians(HFOV_DEG / 2))
    return np.array([[f, 0.0, (width - 1) / 2 + cx_offset], [0.0, f, (height - 1) / 2 + cy_offset], [0.0, 0.0, 1.0]])


@dataclass
class Road:
    """A road of constant signed curvature ``kappa`` (> 0 turns right, towards +x) whose centre line starts at
    the world origin heading +z. Road coordinates: ``s`` along the centre line, ``across`` it (> 0 to the right).

    Exact geometry: the lateral coordinate is the distance to the circle of the centre line, so lanes, kerbs and
    the objects placed along the road follow the curve; a straight road is the limit of a huge radius."""

    kappa: float
    lane_width: float
    lanes: int  # per direction
    parking: float  # width of the parking strip at each side (0: none)
    pavement: float  # width of the pavement beyond the kerb; grass beyond it

    @property
    def half_width(self) -> float:
        return self.lanes * self.lane_width + self.parking

    @property
    def _sign(self) -> float:
        return 1.0 if self.kappa > 0 else -1.0

    @property
    def _centre_x(self) -> float:
        return 1.0 / self.kappa  # the circle's centre is (1/kappa, ., 0)

    def to_world(self, s: np.ndarray | float, across: np.ndarray | float) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
        """(x, z, yaw) of road coordinates; yaw is the heading of +s (rotation about y, 0 = +z)."""
        radius = abs(1.0 / self.kappa)
        theta = np.asarray(s, dtype=float) / radius
        d = radius - self._sign * np.asarray(across, dtype=float)
        return self._centre_x - self._sign * d * np.cos(theta), d * np.sin(theta), self._sign * theta

    def lateral(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The ``across`` road coordinate of world points."""
        return self._sign * (abs(1.0 / self.kappa) - np.hypot(x - self._centre_x, z))

    def to_road(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates (s, across) of world points."""
        theta = np.arctan2(z, -self._sign * (x - self._centre_x))
        return abs(1.0 / self.kappa) * theta, self.lateral(x, z)

    def cast(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First hit (ray parameter, inf if none) and face code of the road plane, the pavement top and the two
        kerb faces (vertical cylinders across = +-half_width between the two heights)."""
        n, hw = len(dirs), self.half_width
        t, face = np.full(n, np.inf), np.full(n, -1, dtype=np.int64)
        down = dirs[:, 1] > 1e-9
        dy = np.where(down, dirs[:, 1], 1.0)
        for y, code in ((GROUND_Y, _ROAD), (GROUND_Y - KERB, _TOP)):
            tp = np.where(down, (y - origin[1]) / dy, np.inf)
            tq = np.where(down, tp, 0.0)
            lat = np.abs(self.lateral(origin[0] + tq * dirs[:, 0], origin[2] + tq * dirs[:, 2]))
            ok = down & (tp > NEAR) & (tp < t) & ((lat <= hw) if code == _ROAD else (lat > hw))
            t[ok], face[ok] = tp[ok], code
        ox, oz = origin[0] - self._centre_x, origin[2]
        a = dirs[:, 0] ** 2 + dirs[:, 2] ** 2
        b = ox * dirs[:, 0] + oz * dirs[:, 2]
        dist = math.hypot(ox, oz)
        for side, code in ((1.0, _KERB_RIGHT), (-1.0, _KERB_LEFT)):
            rho = abs(1.0 / self.kappa) - self._sign * side * hw
            c = (dist - rho) * (dist + rho)
            disc = b * b - a * c
            with np.errstate(divide="ignore", invalid="ignore"):
                q = -(b + np.copysign(np.sqrt(np.maximum(disc, 0.0)), b))
                for root in (q / a, c / q):  # the two roots, in the numerically stable form
                    y = origin[1] + root * dirs[:, 1]
                    ok = (disc >= 0) & (root > NEAR) & (root < t) & (y >= GROUND_Y - KERB) & (y <= GROUND_Y)
                    t[ok], face[ok] = root[ok], code
        return t, face


@dataclass
class Body:
    """A rigid object: axis-aligned boxes (``parts``, min and max corners) in its own frame (x right, y down,
    z forward, origin on the ground), its pose at every frame and, per part, a class and a texture kind."""

    parts: np.ndarray  # (P, 2, 3)
    kinds: tuple[str, ...]  # per part: facade, roof, pole, sign, paint, glass, tyre
    classes: tuple[int, ...]
    poses: np.ndarray  # (frames + 1, 4, 4) body_to_world
    colour: np.ndarray  # (3,) RGB albedo
    seed: int
    track: int = -1  # VKITTI2 track id (cars), -1 for scenery


def _screen_box(corners: np.ndarray, K: np.ndarray) -> tuple[float, float, float, float] | None:
    """Pixel bounding box (u0, u1, v0, v1) of a box given by its 8 corners in the camera frame (index bits =
    which of min / max per axis), clipped at z = NEAR; None when it lies wholly behind."""
    front = corners[:, 2] >= NEAR
    if not front.any():
        return None
    points = [corners[front]]
    if not front.all():
        for i in range(8):
            for bit in (1, 2, 4):
                j = i | bit
                if j != i and front[i] != front[j]:
                    w = (NEAR - corners[i, 2]) / (corners[j, 2] - corners[i, 2])
                    points.append((corners[i] + w * (corners[j] - corners[i]))[None])
    p = np.concatenate(points) @ K.T
    u, v = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    return u.min() - 0.5, u.max() + 0.5, v.min() - 0.5, v.max() + 0.5


def _slab(parts: np.ndarray, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of rays (one origin, directions 3 x N, local frame) with a union of boxes: ray parameter
    (inf: none) and face code part * 6 + axis * 2 + (1 if the outward normal is +axis else 0)."""
    dirs = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
    inv = 1.0 / dirs
    best, face = np.full(dirs.shape[1], np.inf), np.full(dirs.shape[1], -1, dtype=np.int64)
    for p, (lo, hi) in enumerate(parts):
        enter, leave = [], []
        for axis in range(3):  # per axis: the ray parameters where it enters and leaves the slab
            t0, t1 = (lo[axis] - origin[axis]) * inv[axis], (hi[axis] - origin[axis]) * inv[axis]
            enter.append(np.minimum(t0, t1))
            leave.append(np.maximum(t0, t1))
        near = np.maximum(np.maximum(enter[0], enter[1]), enter[2])
        far = np.minimum(np.minimum(leave[0], leave[1]), leave[2])
        hit = np.flatnonzero((near <= far) & (near > NEAR) & (near < best))
        if hit.size:
            axis = np.where(near[hit] == enter[0][hit], 0, np.where(near[hit] == enter[1][hit], 1, 2))
            best[hit] = near[hit]
            face[hit] = p * 6 + axis * 2 + (dirs[axis, hit] < 0)
    return best, face


_CORNER_BITS = np.array([[(i >> b) & 1 for b in range(3)] for i in range(8)])  # corner i takes max on axis b if bit b


def cast(road: Road, bodies: list[Body], frame: int, camera_to_world: np.ndarray, K: np.ndarray,
         u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cast the rays through pixel positions (u, v) of a camera: returns z-depth (inf: sky), hit code (body
    index, ``_GROUND`` or ``_SKY``), face code and the world ray directions (scaled to unit camera z, so the ray
    parameter is the z-depth). Bodies are only tested on the rays inside their projected bounding box."""
    rotation, centre = camera_to_world[:3, :3], camera_to_world[:3, 3]
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=1)
    dirs = d_cam @ rotation.T
    t, face = road.cast(centre, dirs)
    hit = np.where(face >= 0, _GROUND, _SKY)
    world_to_camera = np.linalg.inv(camera_to_world)
    for index, body in enumerate(bodies):
        pose = body.poses[frame]
        bounds = np.stack([body.parts[:, 0].min(axis=0), body.parts[:, 1].max(axis=0)])
        corners = bounds[_CORNER_BITS, [0, 1, 2]]
        to_camera = world_to_camera @ pose
        box = _screen_box(corners @ to_camera[:3, :3].T + to_camera[:3, 3], K)
        if box is None:
            continue
        rays = np.flatnonzero((u >= box[0]) & (u <= box[1]) & (v >= box[2]) & (v <= box[3]))
        if rays.size == 0:
            continue
        local_origin = pose[:3, :3].T @ (centre - pose[:3, 3])
        tb, fb = _slab(body.parts, local_origin, pose[:3, :3].T @ dirs[rays].T)
        closer = tb < t[rays]
        rays = rays[closer]
        t[rays], hit[rays], face[rays] = tb[closer], index, fb[closer]
    far = t > FAR
    t[far], hit[far], face[far] = np.inf, _SKY, -1
    return t, hit, face, dirs


# ----------------------------------------------------------------------------- textures


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A deterministic pseudo-random value in [0, 1) per integer lattice point (integer hashing)."""
    h = (ix * 374761393 + iy * 668265263 + seed * 2246822519) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFFFF) / float(1 << 24)


def _value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise with unit lattice spacing, in [0, 1]."""
    fx, fy = np.floor(x), np.floor(y)
    sx, sy = x - fx, y - fy
    sx, sy = sx * sx * (3 - 2 * sx), sy * sy * (3 - 2 * sy)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    a, b = _hash01(ix, iy, seed), _hash01(ix + 1, iy, seed)
    c, d = _hash01(ix, iy + 1, seed), _hash01(ix + 1, iy + 1, seed)
    return a + (b - a) * sx + (c - a) * sy + (a - b - c + d) * sx * sy


def _fade(wavelength: float | np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Weight of a pattern of this wavelength at this pixel footprint: 1 when it spans >= 4 footprints, 0 at <= 2
    (finer detail would alias: a camera averages it out)."""
    return np.clip(wavelength / (2 * footprint) - 1, 0.0, 1.0)


def _fbm(x: np.ndarray, y: np.ndarray, seed: int, octaves: tuple[tuple[float, float], ...],
         footprint: np.ndarray) -> np.ndarray:
    """Zero-mean sum of value-noise octaves ((wavelength in metres, amplitude), ...), each faded by footprint."""
    out = np.zeros_like(x)
    for i, (wavelength, amplitude) in enumerate(octaves):
        weight = amplitude * _fade(wavelength, footprint)
        if np.any(weight > 0):
            out += weight * (_value_noise(x / wavelength, y / wavelength, seed + 7919 * i) - 0.5)
    return out


def _stripe(x: np.ndarray, lo: float, hi: float, footprint: np.ndarray) -> np.ndarray:
    """Fraction of a pixel footprint (centred at x) covered by the interval [lo, hi] (box-filtered edge)."""
    return np.clip((np.minimum(x + footprint / 2, hi) - np.maximum(x - footprint / 2, lo)) / footprint, 0.0, 1.0)


def _periodic_stripe(x: np.ndarray, period: float, lo: float, hi: float, footprint: np.ndarray) -> np.ndarray:
    """Coverage of [lo, hi] + k * period, faded to its mean where the period is under ~4 footprints."""
    xm = np.mod(x, period)
    cover = _stripe(xm, lo, hi, footprint) + _stripe(xm - period, lo, hi, footprint)
    cover += _stripe(xm + period, lo, hi, footprint)
    w = _fade(period, footprint)
    return w * np.minimum(cover, 1.0) + (1 - w) * (hi - lo) / period


def _shade_ground(road: Road, kind: np.ndarray, points: np.ndarray, footprint: np.ndarray, lateral_fp: np.ndarray,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and class of ground hits: asphalt with lane markings, paving slabs, kerb stone, grass."""
    along, across = road.to_road(points[:, 0], points[:, 2])
    albedo = np.empty((len(along), 3))
    cls = np.full(len(along), MISC)
    # Asphalt: fine grain and larger patches, then the markings (coverage-blended, so their edges do not alias):
    # a solid centre line (dashed on a two-lane road), dashed lane dividers (3 m on, 6 m off), solid edge lines.
    asphalt = kind == _ROAD
    if asphalt.any():
        a, c, fp, fc = along[asphalt], np.abs(across[asphalt]), footprint[asphalt], lateral_fp[asphalt]
        grey = 0.36 + _fbm(a, c, seed, ((0.06, 0.25), (0.15, 0.25), (0.4, 0.15), (3.0, 0.15), (9.0, 0.1)), fp)
        dashes = _periodic_stripe(a, 9.0, 0.0, 3.0, fp)
        paint = _stripe(c, 0.0, 0.06, fc) * (dashes if road.lanes == 1 else 1.0)
        edge = road.lanes * road.lane_width
        paint = np.maximum(paint, _stripe(c, edge - 0.15, edge, fc))
        for k in range(1, road.lanes):
            paint = np.maximum(paint, _stripe(c, k * road.lane_width - 0.06, k * road.lane_width + 0.06, fc) * dashes)
        albedo[asphalt] = (grey * (1 - paint) + 0.85 * paint)[:, None] * np.array([1.0, 1.0, 1.04])
        cls[asphalt] = ROAD
    top = kind == _TOP
    pave = top & (np.abs(across) <= road.half_width + road.pavement)
    if pave.any():  # 60 cm paving slabs of slightly different greys, with dark joints
        a, c, fp = along[pave], across[pave], footprint[pave]
        slab = 0.08 * _fade(0.6, fp) * (_hash01(np.floor(a / 0.6).astype(np.int64),
                                                np.floor(c / 0.6).astype(np.int64), seed + 1) - 0.5)
        joints = np.maximum(_periodic_stripe(a, 0.6, 0.0, 0.03, fp), _periodic_stripe(c, 0.6, 0.0, 0.03, fp))
        grey = (0.58 + slab + _fbm(a, c, seed + 2, ((0.05, 0.15), (0.2, 0.1), (2.0, 0.1)), fp)) * (1 - 0.35 * joints)
        albedo[pave] = grey[:, None] * np.array([1.0, 0.97, 0.92])
    grass = top & ~pave
    if grass.any():
        noise = _fbm(along[grass], across[grass], seed + 3, ((0.1, 0.5), (0.3, 0.4), (1.0, 0.3), (4.0, 0.3)),
                     footprint[grass])
        albedo[grass] = np.array([0.3, 0.42, 0.18]) * (1 + noise)[:, None]
        cls[grass] = TERRAIN
    kerb = kind >= _KERB_RIGHT
    if kerb.any():
        grey = 0.62 + _fbm(along[kerb], points[kerb, 1], seed + 4, ((0.05, 0.2), (0.3, 0.2)), footprint[kerb])
        albedo[kerb] = grey[:, None]
    return albedo, cls


def _shade_body(body: Body, local: np.ndarray, face: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Albedo and class of hits on a body, from the hit point in the body's frame and the face code."""
    part, axis = face // 6, (face // 2) % 3
    # Face coordinates: the along-face horizontal (z on x faces, x on z faces, x on y faces) and the other one.
    a = np.where(axis == 0, local[:, 2], local[:, 0])
    b = np.where(axis == 1, local[:, 2], local[:, 1])
    albedo = np.tile(body.colour, (len(face), 1))
    cls = np.array(body.classes)[part]
    kinds = np.array(body.kinds)[part]
    seed = body.seed
    for kind in np.unique(kinds):
        m = kinds == kind
        am, bm, fm = a[m], b[m], footprint[m]
        if kind == "facade":  # plaster noise and a grid of windows: 3 m floors, ground floor without windows
            period = 2.5 + (seed % 7) * 0.25
            noise = _fbm(am, bm, seed, ((0.1, 0.12), (0.4, 0.12), (2.0, 0.1)), fm)
            window = _periodic_stripe(am, period, 0.0, 0.5 * period, fm) * _periodic_stripe(-bm, 3.0, 0.9, 2.3, fm)
            window *= _stripe(-bm, 3.0, 1e3, fm)
            glass = 0.16 + _fbm(am, bm, seed + 1, ((0.5, 0.15), (1.5, 0.1)), fm)
            albedo[m] = (body.colour * (1 + noise)[:, None]) * (1 - window)[:, None] + (
                glass[:, None] * np.array([0.9, 1.0, 1.15])) * window[:, None]
        elif kind == "roof":
            albedo[m] = 0.3 * (1 + _fbm(am, bm, seed + 2, ((0.3, 0.3), (1.5, 0.2)), fm))[:, None]
        elif kind == "paint":  # car body: slight mottling, dark rocker panel, lights on the front and back faces
            lo = body.parts[0, 1, 1]  # bottom of the body (largest y)
            half = body.parts[0, 1, 0]
            noise = _fbm(am, bm, seed, ((0.08, 0.15), (0.25, 0.12), (0.8, 0.1)), fm)
            dark = (axis[m] != 1) * _stripe(bm, lo - 0.15, lo, fm)  # on the sides, front and back
            lights = (axis[m] == 2) * _stripe(np.abs(am), half - 0.4, half - 0.08, fm) * _stripe(
                bm, lo - 0.6, lo - 0.4, fm)
            back = (face[m] % 2 == 0)[:, None]  # outward normal -z: the rear
            lamp = np.where(back, [0.7, 0.05, 0.05], [0.9, 0.88, 0.75])
            colour = body.colour * (1 + noise)[:, None] * (1 - 0.75 * dark)[:, None]
            albedo[m] = colour * (1 - lights)[:, None] + lamp * lights[:, None]
        elif kind == "glass":  # cabin: windows on the sides, front and back; painted roof
            roof = axis[m] == 1
            glass = 0.13 + _fbm(am, bm, seed + 3, ((0.1, 0.1), (0.4, 0.2)), fm)
            albedo[m] = np.where(roof[:, None], body.colour, glass[:, None] * np.array([0.9, 1.0, 1.1]))
        elif kind == "tyre":
            albedo[m] = 0.06
        elif kind in ("pole", "sign"):
            albedo[m] = body.colour * (1 + _fbm(am, bm, seed, ((0.05, 0.2), (0.3, 0.2)), fm))[:, None]
    return albedo, cls


def _sky(dirs: np.ndarray) -> np.ndarray:
    """Sky colour from the ray's elevation: white haze at the horizon to blue overhead."""
    up = np.clip(-dirs[:, 1] / np.linalg.norm(dirs, axis=1), 0.0, 1.0)[:, None] ** 0.6
    return (1 - up) * np.array([0.86, 0.89, 0.93]) + up * np.array([0.42, 0.6, 0.86])


# ----------------------------------------------------------------------------- scene


def _car_parts(rng: np.random.Generator) -> np.ndarray:
    """Body, cabin and four wheels of a car of random size (body frame: origin on the ground, y down)."""
    length, width = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.9)
    body_top, roof = rng.uniform(0.95, 1.1), rng.uniform(1.4, 1.6)
    hl, hw = length / 2, width / 2
    cabin_back, cabin_front = -hl + rng.uniform(0.5, 1.0), hl - rng.uniform(1.1, 1.6)
    parts = [[[-hw, -body_top, -hl], [hw, -0.3, hl]],
             [[-hw + 0.1, -roof, cabin_back], [hw - 0.1, -body_top, cabin_front]]]
    for zc in (-hl + 0.8, hl - 0.8):
        for side in (-1, 1):
            x0 = side * (hw - 0.02)
            parts.append([[min(x0, x0 - side * 0.25), -0.64, zc - 0.32], [max(x0, x0 - side * 0.25), 0.0, zc + 0.32]])
    return np.array(parts)


def _car(rng: np.random.Generator, poses: np.ndarray, track: int) -> tuple[Body, str]:
    """A car body with a random paint; returns it and the paint's name."""
    parts = _car_parts(rng)
    name = list(_CAR_PAINTS)[rng.integers(len(_CAR_PAINTS))]
    kinds = ("paint", "glass") + ("tyre",) * 4
    return Body(parts, kinds, (CAR,) * 6, poses, np.array(_CAR_PAINTS[name]), int(rng.integers(1 << 30)), track), name


def _static(pose: np.ndarray, frames: int) -> np.ndarray:
    """The poses of a body that never moves."""
    return np.repeat(pose[None], frames + 1, axis=0)


def _road_pose(road: Road, s: float | np.ndarray, across: float | np.ndarray, y: float | np.ndarray,
               yaw_offset: float | np.ndarray = 0.0) -> np.ndarray:
    """body_to_world poses at road coordinates (s, across), height y, heading the road's plus ``yaw_offset``."""
    x, z, yaw = road.to_world(np.atleast_1d(s), np.atleast_1d(across))
    yaw = yaw + yaw_offset
    y = np.broadcast_to(y, x.shape)
    return np.stack([_pose(_rot_y(a), np.array([xi, yi, zi])) for a, xi, yi, zi in zip(yaw, x, y, z)])


@dataclass
class Scene:
    """Everything a sequence renders from: the road, the bodies (poses for frames + 1 frames, so the last frame
    knows which cars move), the camera_to_world of each frame and K."""

    road: Road
    bodies: list[Body]
    camera_to_world: np.ndarray  # (frames, 4, 4)
    K: np.ndarray
    track_names: list[tuple[str, str]]  # per track id: (model, colour) for VKITTI2's info.txt
    seed: int


def make_scene(rng: np.random.Generator, height: int, width: int, frames: int) -> Scene:
    """Draw a road, its scenery, the traffic and the ego camera's trajectory (see the module docstring)."""
    kappa = rng.choice([-1.0, 1.0]) * max(0.02 * rng.uniform() ** 2, 1e-4)
    road = Road(kappa=float(kappa), lane_width=rng.uniform(3.0, 3.6), lanes=int(rng.choice([1, 1, 2])),
                parking=float(rng.choice([0.0, 2.2], p=[0.4, 0.6])), pavement=rng.uniform(2.0, 4.5))
    hw = road.half_width

    # Ego: speed in m/frame with a little acceleration, its lane, weave and jitter (smooth sinusoids).
    k = np.arange(frames)
    speed = np.clip(rng.uniform(0.5, 1.5) + rng.uniform(-0.02, 0.02) * (k - frames / 2), 0.4, 1.6)
    s_cam = np.concatenate([[0.0], np.cumsum(speed[:-1])])
    lane_index = int(rng.integers(road.lanes))
    lane = (lane_index + 0.5) * road.lane_width

    def wobble(amplitude: float) -> np.ndarray:
        f, phase = rng.uniform(0.03, 0.15, 2), rng.uniform(0, 2 * np.pi, 2)
        return amplitude * (0.6 * np.sin(2 * np.pi * f[0] * k + phase[0]) + 0.4 * np.sin(2 * np.pi * f[1] * k
                                                                                         + phase[1]))

    l_cam = lane + wobble(0.2)
    yaw_cam = wobble(math.radians(0.6))
    pitch, roll = wobble(math.radians(0.4)) + math.radians(rng.uniform(-1.0, 1.0)), wobble(math.radians(0.3))
    camera_height = GROUND_Y + wobble(0.02)
    x, z, yaw = road.to_world(s_cam, l_cam)
    camera_to_world = np.stack([
        _pose(_rot_y(yaw[i] + yaw_cam[i]) @ _rot_x(pitch[i]) @ _rot_z(roll[i]),
              np.array([x[i], GROUND_Y - camera_height[i], z[i]])) for i in range(frames)])
    K = intrinsics(height, width, rng.uniform(-0.03, 0.03) * width, rng.uniform(-0.06, 0.0) * height)

    bodies: list[Body] = []
    s_lo, s_hi = -30.0, s_cam[-1] + 150.0
    # Buildings: rows of boxes behind the pavement, facades facing the road; some sides are open fields.
    storeys = rng.uniform(1.0, 3.5)
    for side in (-1.0, 1.0):
        if rng.uniform() < 0.25:
            continue
        setback = rng.uniform(0.0, 4.0)
        s = s_lo + rng.uniform(0, 10)
        while s < s_hi:
            length, depth = rng.uniform(8, 24), rng.uniform(8, 14)
            tall = 3.0 * max(1.0, storeys * rng.uniform(0.6, 1.4)) + rng.uniform(0, 1.5)
            parts = np.array([[[-depth / 2, -tall, -length / 2], [depth / 2, 0.0, length / 2]]])
            across = side * (hw + road.pavement + setback + rng.uniform(0, 1.0) + depth / 2)
            pose = _road_pose(road, s + length / 2, across, GROUND_Y - KERB)[0]
            colour = _FACADES[rng.integers(len(_FACADES))] * rng.uniform(0.85, 1.1)
            # The roof part is a thin slab on top so it can take its own texture.
            roof = np.array([[[-depth / 2, -tall - 0.3, -length / 2], [depth / 2, -tall, length / 2]]])
            bodies.append(Body(np.concatenate([parts, roof]), ("facade", "roof"), (BUILDING, BUILDING),
                               _static(pose, frames), colour, int(rng.integers(1 << 30))))
            s += length + (rng.uniform(3, 15) if rng.uniform() < 0.4 else rng.uniform(0, 1))
    # Poles (street lights, sign posts) at the kerb.
    for side in (-1.0, 1.0):
        s = s_lo + rng.uniform(0, 20)
        while s < s_hi:
            tall = rng.uniform(3.5, 7.0)
            parts, kinds, classes = [[[-0.08, -tall, -0.08], [0.08, 0.0, 0.08]]], ["pole"], [POLE]
            if rng.uniform() < 0.4:
                h0 = rng.uniform(2.0, min(3.0, tall - 0.7))
                parts.append([[-0.35, -h0 - 0.7, -0.12], [0.35, -h0, -0.08]])
                kinds.append("sign")
                classes.append(SIGN)
            pose = _road_pose(road, s, side * (hw + 0.5), GROUND_Y - KERB)[0]
            colour = np.array([0.45, 0.47, 0.5]) if len(parts) == 1 else np.array([0.15, 0.3, 0.7])
            bodies.append(Body(np.array(parts), tuple(kinds), tuple(classes), _static(pose, frames), colour,
                               int(rng.integers(1 << 30))))
            s += rng.uniform(12, 40)

    # Cars: track ids in order of creation (moving ones first), as VKITTI2 numbers every car of a scene.
    track_names: list[tuple[str, str]] = []

    def add_car(poses: np.ndarray) -> None:
        body, colour = _car(rng, poses, len(track_names))
        length = body.parts[0, 1, 2] * 2
        model = "Hatchback" if length < 4.2 else ("Sedan4Door" if length < 4.6 else "Sedan2Door")
        track_names.append((model, colour))
        bodies.append(body)

    steps = np.arange(frames + 1)
    occupied: list[tuple[float, np.ndarray]] = [(lane, s_cam)]  # (lane centre, s per frame) to keep cars apart
    for _ in range(int(rng.integers(2, 5))):
        for _attempt in range(50):
            kind = rng.choice(["lead", "adjacent", "oncoming"], p=[0.35, 0.25, 0.4])
            if kind == "oncoming":
                direction, l0 = -1.0, -(rng.integers(road.lanes) + 0.5) * road.lane_width
                s0, v = s_cam[0] + rng.uniform(12, 45), rng.uniform(0.6, 1.5)
            else:
                direction = 1.0
                l0 = lane if kind == "lead" or road.lanes == 1 else (1 - lane_index + 0.5) * road.lane_width
                s0 = s_cam[0] + rng.uniform(5, 16) if l0 == lane else s_cam[0] + rng.uniform(-4, 18)
                v = speed.mean() * rng.uniform(0.7, 1.3) if l0 == lane else rng.uniform(0.4, 1.8)
            v_k = np.full(frames + 1, v)
            if rng.uniform() < 0.2:  # brakes to a stop over 3 frames
                stop = rng.integers(2, max(3, frames - 2))
                v_k = v * np.clip((stop - steps) / 3, 0.0, 1.0)
            drift = 0.4 / max(v * frames, 1e-6)  # heading offset: at most 0.4 m of lateral drift per sequence
            delta = float(np.clip(math.radians(rng.normal(0, 1.5)), -drift, drift))
            s_k = s0 + direction * np.concatenate([[0.0], np.cumsum(v_k[:-1] * math.cos(delta))])
            l_k = l0 + direction * np.concatenate([[0.0], np.cumsum(v_k[:-1] * math.sin(delta))])
            clear = all(abs(lo - l0) > road.lane_width / 2 or np.min(np.abs(sk[:frames] - s_k[:frames])) > 7.0
                        for lo, sk in occupied)
            if clear:
                occupied.append((l0, s_k))
                add_car(_road_pose(road, s_k, l_k, GROUND_Y, delta + (0.0 if direction > 0 else math.pi)))
                break
    # Parked cars in the parking strips, either heading.
    if road.parking > 0:
        for side in (-1.0, 1.0):
            for s in np.arange(s_lo + rng.uniform(0, 6), s_hi, 6.0):
                if rng.uniform() < 0.45:
                    yaw = (0.0 if rng.uniform() < 0.5 else math.pi) + math.radians(rng.normal(0, 1.5))
                    add_car(_static(_road_pose(road, s, side * (hw - road.parking / 2), GROUND_Y, yaw)[0], frames))
    return Scene(road, bodies, camera_to_world, K, track_names, int(rng.integers(1 << 30)))


# ----------------------------------------------------------------------------- rendering


def _normals(scene: Scene, frame: int, hit: np.ndarray, face: np.ndarray, points: np.ndarray) -> np.ndarray:
    """World surface normals of hits (ground faces, kerb cylinders, box faces)."""
    normal = np.zeros_like(points)
    normal[:, 1] = -1.0  # road and pavement tops face up (-y)
    road = scene.road
    kerb = (hit == _GROUND) & (face >= _KERB_RIGHT)
    if kerb.any():  # the kerb faces the road: radial, towards the centre line
        side = np.where(face[kerb] == _KERB_RIGHT, 1.0, -1.0)
        radial = points[kerb][:, [0, 2]] - np.array([road._centre_x, 0.0])
        radial /= np.linalg.norm(radial, axis=1, keepdims=True)
        normal[kerb] = 0.0
        normal[np.flatnonzero(kerb)[:, None], [0, 2]] = (side * road._sign)[:, None] * radial
    for index in np.unique(hit[hit >= 0]):
        m = hit == index
        rotation = scene.bodies[index].poses[frame][:3, :3]
        axis, positive = (face[m] // 2) % 3, face[m] % 2 == 1
        normal[m] = rotation[:, axis].T * np.where(positive, 1.0, -1.0)[:, None]
    return normal


def _render(scene: Scene, frame: int, u: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Cast and shade the rays through (u, v) of camera ``frame``: colour, z-depth, class, instance, and the
    hit code and world point of every ray (for the flow)."""
    camera_to_world, K = scene.camera_to_world[frame], scene.K
    t, hit, face, dirs = cast(scene.road, scene.bodies, frame, camera_to_world, K, u, v)
    solid = hit != _SKY
    points = camera_to_world[:3, 3] + np.where(solid, t, 0.0)[:, None] * dirs
    normal = _normals(scene, frame, hit, face, points)
    length = np.linalg.norm(dirs, axis=1)
    distance = np.where(solid, t, 1.0) * length
    cosine = np.abs((normal * dirs).sum(axis=1)) / length
    lateral_fp = distance / K[0, 0]  # the pixel's footprint across the ray, and along the surface (stretched):
    footprint = lateral_fp / np.sqrt(np.maximum(cosine, 0.05))  # their geometric mean, a compromise for anisotropy
    albedo = np.zeros((len(u), 3))
    cls = np.full(len(u), SKY)
    instance = np.zeros(len(u), dtype=np.int32)
    ground = hit == _GROUND
    if ground.any():
        albedo[ground], cls[ground] = _shade_ground(scene.road, face[ground], points[ground], footprint[ground],
                                                    lateral_fp[ground], scene.seed)
    for index in np.unique(hit[hit >= 0]):
        m = hit == index
        body = scene.bodies[index]
        pose = body.poses[frame]
        local = (points[m] - pose[:3, 3]) @ pose[:3, :3]
        albedo[m], cls[m] = _shade_body(body, local, face[m], footprint[m])
        instance[m] = body.track + 1
    light = 0.45 + 0.6 * np.maximum((normal * SUN).sum(axis=1), 0.0)
    colour = np.where(solid[:, None], albedo * light[:, None], _sky(dirs))
    return {"image": np.clip(colour, 0.0, 1.0), "t": t, "hit": hit, "points": points, "class_id": cls,
            "instance": instance}


def _project(points: np.ndarray, world_to_camera: np.ndarray, K: np.ndarray, u: np.ndarray, v: np.ndarray,
             min_z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flow from pixels (u, v) to the projections of their world points in a camera: (flow N x 2, z-depth
    there, valid = z > min_z)."""
    x = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    valid = x[:, 2] > min_z
    z = np.where(valid, x[:, 2], 1.0)
    flow = np.stack([K[0, 0] * x[:, 0] / z + K[0, 2] - u, K[1, 1] * x[:, 1] / z + K[1, 2] - v], axis=1)
    return flow, x[:, 2], valid


def _is_moving(motion: np.ndarray) -> np.ndarray:
    """Whether rigid motions (..., 4, 4) move at all (more than 1 mm or 1e-5 rad)."""
    angle = np.arccos(np.clip((np.trace(motion[..., :3, :3], axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0))
    return (np.linalg.norm(motion[..., :3, 3], axis=-1) > 1e-3) | (angle > 1e-5)


def generate_sequence(rng: np.random.Generator, height: int = 64, width: int = 192,
                      frames: int = 20) -> dict[str, np.ndarray]:
    """Draw a road scene (``make_scene``) and render it: ``render_sequence``'s arrays."""
    return render_sequence(make_scene(rng, height, width, frames), height, width)


def render_sequence(scene: Scene, height: int, width: int) -> dict[str, np.ndarray]:
    """Render every frame of a scene with its exact ground truth (see the module docstring).

    Returns arrays (T = frames, pairs t -> t+1 for t < T-1; pixel (u, v) = (column, row)):
    ``image`` T x H x W x 3 float32 RGB in [0, 1]; ``depth`` T x H x W float32 z-depth in metres (sky:
    ``SKY_DEPTH``); ``class_id`` T x H x W uint8 (index into ``CLASSES``); ``instance`` T x H x W int32 (track id
    + 1, 0 = no car, as VKITTI2's instancegt); ``moving`` T x H x W bool (pixels of cars that move between t and
    t+1); ``flow`` (T-1) x H x W x 2 float32 (u, v), ``flow_valid`` (every point with a known position at t+1
    in front of the camera: KITTI's flow_occ), ``flow_noc`` (also visible and inside image t+1);
    ``rigid_flow`` / ``rigid_valid`` (the same points held static); ``depth_next`` (T-1) x H x W float32 (z-depth
    at t+1 of the point seen at t, 0 where the flow is invalid: KITTI's disp_occ_1); ``K`` 3 x 3;
    ``camera_to_world`` T x 4 x 4; per car track: ``track_to_world`` T x N x 4 x 4 (pose of the car frame:
    origin on the ground under its centre, x right, y down, z forward), ``track_size`` N x 3 (width, height,
    length), ``track_moving`` T x N bool, ``track_model`` / ``track_colour`` N str.
    """
    K, cam = scene.K, scene.camera_to_world
    frames = len(cam)
    rows, cols = np.mgrid[0:height, 0:width]
    u, v = cols.ravel().astype(float), rows.ravel().astype(float)
    car_index = [i for i, b in enumerate(scene.bodies) if b.track >= 0]  # in track order
    cars = [scene.bodies[i] for i in car_index]
    track_to_world = np.stack([b.poses for b in cars], axis=1) if cars else np.zeros((frames + 1, 0, 4, 4))
    motion = track_to_world[1:] @ np.linalg.inv(track_to_world[:-1])  # (T, N, 4, 4): car motion from t to t+1
    track_moving = _is_moving(motion)
    shape = (frames, height, width)
    out = {"image": np.zeros(shape + (3,), np.float32), "depth": np.zeros(shape, np.float32),
           "class_id": np.zeros(shape, np.uint8), "instance": np.zeros(shape, np.int32),
           "moving": np.zeros(shape, bool)}
    pair = (frames - 1, height, width)
    out |= {"flow": np.zeros(pair + (2,), np.float32), "flow_valid": np.zeros(pair, bool),
            "flow_noc": np.zeros(pair, bool), "rigid_flow": np.zeros(pair + (2,), np.float32),
            "rigid_valid": np.zeros(pair, bool), "depth_next": np.zeros(pair, np.float32)}
    limit = min(width - 1, 511.0), min(height - 1, 511.0)  # what VKITTI2's and KITTI's flow pngs can store
    for k in range(frames):
        r = _render(scene, k, u, v)
        solid = r["hit"] != _SKY
        out["image"][k] = r["image"].reshape(height, width, 3)
        out["depth"][k] = np.where(solid, r["t"], SKY_DEPTH).reshape(height, width)
        out["class_id"][k] = r["class_id"].reshape(height, width)
        out["instance"][k] = r["instance"].reshape(height, width)
        moving_track = np.concatenate([[False], track_moving[k]])  # indexed by instance = track + 1
        out["moving"][k] = moving_track[r["instance"]].reshape(height, width)
        if k == frames - 1:
            break
        # Move each hit point with its object from t to t+1 (static scenery and parked cars stay).
        points, moved = r["points"], r["points"].copy()
        for track, index in enumerate(car_index):
            m = r["hit"] == index
            if track_moving[k, track] and m.any():
                moved[m] = points[m] @ motion[k, track, :3, :3].T + motion[k, track, :3, 3]
        world_to_next = np.linalg.inv(cam[k + 1])
        flow, z_next, valid = _project(moved, world_to_next, K, u, v, NEAR)
        valid &= solid & (np.abs(flow[:, 0]) < limit[0]) & (np.abs(flow[:, 1]) < limit[1])
        rigid, _, rigid_valid = _project(points, world_to_next, K, u, v, 1e-3)  # as data/sample.py's rigid_flow_np
        rigid_valid &= solid
        out["flow"][k] = np.where(valid[:, None], flow, 0.0).reshape(height, width, 2)
        out["rigid_flow"][k] = np.where(rigid_valid[:, None], rigid, 0.0).reshape(height, width, 2)
        out["flow_valid"][k], out["rigid_valid"][k] = valid.reshape(height, width), rigid_valid.reshape(height, width)
        target = flow + np.stack([u, v], axis=1)
        # Visible at t+1: inside the image and nothing in front of it on the ray of camera t+1 through it.
        inside = valid & (target[:, 0] >= 0) & (target[:, 0] <= width - 1) & (target[:, 1] >= 0) & (
            target[:, 1] <= height - 1) & (z_next <= FAR)
        rays = np.flatnonzero(inside)
        t_next, *_ = cast(scene.road, scene.bodies, k + 1, cam[k + 1], K, target[rays, 0], target[rays, 1])
        visible = np.zeros(len(u), bool)
        visible[rays] = t_next >= z_next[rays] * (1 - 1e-6) - 1e-6
        out["flow_noc"][k] = visible.reshape(height, width)
        out["depth_next"][k] = np.where(valid, z_next, 0.0).reshape(height, width)
    # Box size (width, height, length): the body's width and length, the cabin's roof height.
    size = np.array([[b.parts[0, 1, 0] - b.parts[0, 0, 0], -b.parts[1, 0, 1], b.parts[0, 1, 2] - b.parts[0, 0, 2]]
                     for b in cars]).reshape(-1, 3)
    return out | {"K": K, "camera_to_world": cam, "track_to_world": track_to_world[:frames], "track_size": size,
                  "track_moving": track_moving, "track_model": np.array([n[0] for n in scene.track_names]),
                  "track_colour": np.array([n[1] for n in scene.track_names])}


# ----------------------------------------------------------------------------- writing


def _write_rgb(path: Path, image: np.ndarray) -> None:
    """Float RGB in [0, 1] as an 8-bit file (jpg at ``JPEG_QUALITY`` or png, by the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = np.rint(image[..., ::-1] * 255).astype(np.uint8)
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix == ".jpg" else []):
        raise OSError(f"OpenCV could not write {path}")


def _write_vkitti2_poses(path: Path, data: dict[str, np.ndarray]) -> None:
    """``pose.txt`` of Virtual KITTI 2.0.3 (one row per frame and car, camera 0): box size, bottom-centre position
    and rotation in the world and in the camera. Angles: the car's rotation decomposed as R_y(a) R_x(b) R_z(c),
    written as (rotation_y, rotation_x, rotation_z) = (a - pi/2, b, c): KITTI's rotation_y is 0 for a car facing
    the camera's +x and -pi/2 for one driving away along +z. alpha = rotation_y - atan2(x, z) in the camera."""

    def angles(rotation: np.ndarray) -> tuple[float, float, float]:
        yaw = math.atan2(rotation[0, 2], rotation[2, 2]) - math.pi / 2
        return (math.remainder(yaw, 2 * math.pi), math.asin(-np.clip(rotation[1, 2], -1, 1)),
                math.atan2(rotation[1, 0], rotation[1, 1]))

    header = ("frame cameraID trackID alpha width height length world_space_X world_space_Y world_space_Z "
              "rotation_world_space_y rotation_world_space_x rotation_world_space_z camera_space_X camera_space_Y "
              "camera_space_Z rotation_camera_space_y rotation_camera_space_x rotation_camera_space_z")
    lines = [header]
    for frame, (cam, cars) in enumerate(zip(data["camera_to_world"], data["track_to_world"])):
        world_to_camera = np.linalg.inv(cam)
        for track, (pose, size) in enumerate(zip(cars, data["track_size"])):
            in_camera = world_to_camera @ pose
            x, y, z = in_camera[:3, 3]
            ry_cam = angles(in_camera[:3, :3])
            alpha = math.remainder(ry_cam[0] - math.atan2(x, z), 2 * math.pi)
            values = [alpha, *size, *pose[:3, 3], *angles(pose[:3, :3]), x, y, z, *ry_cam]
            lines.append(f"{frame} 0 {track} " + " ".join(f"{value:.6f}" for value in values))
    path.write_text("\n".join(lines) + "\n")


def _write_vkitti2(folder: Path, data: dict[str, np.ndarray]) -> None:
    """One sequence in the Virtual KITTI 2.0.3 layout (camera 0 only)."""
    frames_dir = folder / "frames"
    camera = "Camera_0"
    frames = len(data["image"])
    for k in range(frames):
        _write_rgb(frames_dir / "rgb" / camera / f"rgb_{k:05d}.jpg", data["image"][k])
        io.write_vkitti2_depth(frames_dir / "depth" / camera / f"depth_{k:05d}.png", data["depth"][k])
        io.write_vkitti2_instances(frames_dir / "instanceSegmentation" / camera / f"instancegt_{k:05d}.png",
                                   data["instance"][k])
        classes = frames_dir / "classSegmentation" / camera / f"classgt_{k:05d}.png"
        classes.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(classes), CLASS_COLOURS[data["class_id"][k]][..., ::-1])
        if k < frames - 1:
            io.write_vkitti2_flow(frames_dir / "forwardFlow" / camera / f"flow_{k:05d}.png", data["flow"][k],
                                  data["flow_valid"][k])
    io.write_vkitti2_intrinsics(folder / "intrinsic.txt", {(k, 0): data["K"] for k in range(frames)})
    io.write_vkitti2_extrinsics(folder / "extrinsic.txt",
                                {(k, 0): np.linalg.inv(data["camera_to_world"][k]) for k in range(frames)})
    io.write_vkitti2_moving(folder / "bbox.txt", {(k, 0): np.flatnonzero(data["track_moving"][k]).tolist()
                                                  for k in range(frames)})
    _write_vkitti2_poses(folder / "pose.txt", data)
    (folder / "info.txt").write_text("trackID label model color\n" + "".join(
        f"{track} Car {model} {colour}\n" for track, (model, colour) in enumerate(zip(data["track_model"],
                                                                                       data["track_colour"]))))


def _write_kitti15(training: Path, pair_id: str, data: dict[str, np.ndarray], k: int) -> None:
    """The pair (k, k+1) of a sequence as KITTI 2015 scene-flow training pair ``pair_id`` (_10 = frame k)."""
    K = data["K"]
    focal_baseline = K[0, 0] * KITTI_BASELINE
    for frame, suffix in ((k, "10"), (k + 1, "11")):
        _write_rgb(training / "image_2" / f"{pair_id}_{suffix}.png", data["image"][frame])
    name = f"{pair_id}_10.png"
    io.write_kitti_flow(training / "flow_occ" / name, data["flow"][k], data["flow_valid"][k])
    io.write_kitti_flow(training / "flow_noc" / name, data["flow"][k], data["flow_noc"][k])
    solid = data["depth"][k] < SKY_DEPTH
    io.write_kitti_disparity(training / "disp_occ_0" / name, focal_baseline / np.where(solid, data["depth"][k], 1.0),
                             solid)
    valid = data["flow_valid"][k]
    io.write_kitti_disparity(training / "disp_occ_1" / name,
                             focal_baseline / np.where(valid, data["depth_next"][k], 1.0), valid)
    io.write_kitti_object_map(training / "obj_map" / name, data["moving"][k])
    P_rect_03 = np.hstack([K, [[-focal_baseline], [0.0], [0.0]]])  # camera 3 sits 0.54 m to the right
    io.write_kitti_cam_to_cam(training / "calib_cam_to_cam" / f"{pair_id}.txt", np.hstack([K, np.zeros((3, 1))]),
                              P_rect_03)


def write_synthetic(root: str | Path, sequences: int, height: int = 64, width: int = 192, frames: int = 20,
                    seed: int = 0) -> Path:
    """Render ``sequences`` road sequences and write each in both layouts under ``root``:

    - ``root/vkitti2/SceneNN/clone/``: Virtual KITTI 2.0.3 (camera 0): ``frames/{rgb,depth,forwardFlow,
      instanceSegmentation,classSegmentation}/Camera_0/...``, ``intrinsic.txt``, ``extrinsic.txt`` (world to
      camera), ``bbox.txt`` (where 2.0.3 keeps ``isMoving``; box columns 0), ``pose.txt``, ``info.txt``;
    - ``root/kitti15/training/``: KITTI 2015 scene flow, pair ``NNNNNN`` (= sequence index) made of frames
      ``KITTI_FRAME`` and ``KITTI_FRAME + 1`` (or the last pair of shorter sequences): ``image_2``, ``flow_occ``,
      ``flow_noc``, ``disp_occ_0``, ``disp_occ_1``, ``obj_map`` (moving cars), ``calib_cam_to_cam`` (0.54 m
      stereo baseline; the sky has no disparity).

    Sequence i is drawn from ``np.random.SeedSequence(seed).spawn(sequences)[i]``: the same arguments give the
    same files. Returns ``root``.
    """
    if frames < 2:
        raise ValueError(f"a sequence needs at least 2 frames (one flow pair), got frames={frames}")
    root = Path(root)
    digits = max(2, len(str(sequences)))
    pair_frame = min(KITTI_FRAME, frames - 2)
    for index, stream in enumerate(np.random.SeedSequence(seed).spawn(sequences)):
        data = generate_sequence(np.random.default_rng(stream), height, width, frames)
        _write_vkitti2(root / "vkitti2" / f"Scene{index + 1:0{digits}d}" / "clone", data)
        _write_kitti15(root / "kitti15" / "training", f"{index:06d}", data, pair_frame)
    return root
