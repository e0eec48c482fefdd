"""A procedural street, ray-cast in numpy, written as a COLMAP model with per-pixel class / instance / part labels.

The scene (world frame: x along the street, y to the left, z up; metres):

- a road (|y| < 3.5, asphalt with a dashed centre line: parts "asphalt", "lane marking") on the plane z = 0,
  raised pavements (15 cm kerbs, 3.5 < |y| < 6) and ground beyond them (class pavement);
- buildings: boxes in rows along both sides (6 to 9.5 m from the axis, 5-12 m high) with window grids on every
  face (parts "wall", "window");
- cars: a body box, a cabin box (part "car window") and four wheels (capped cylinders, part "wheel"); parked on
  both sides of the road, some in the middle lanes;
- poles (street lamps: a thin cylinder) and trees (a trunk cylinder and a spherical crown: parts "trunk",
  "foliage") on the pavements;
- a sky (class sky) at infinity: a vertical gradient.

Cameras (OpenCV convention, 70 degrees horizontal field of view, principal point off-centre by a few pixels as a real
calibration has it): ``drive_frames`` frames along a driving path (1.6 m high, weaving across the lane, small yaw
changes) and ``side_views`` views from the pavements towards the road and the facades. The "dynamic" variant moves
``moving_cars`` cars along the street over time t = frame / (frames - 1), and writes their poses per image (tracked
boxes, as Street Gaussians takes from a tracker).

What is exact: every pixel's centre ray is cast analytically against planes, boxes, capped cylinders and spheres,
so its depth (camera z), class, instance and part are exact at the pixel centre. Colours average 2 x 2 rays per
pixel (a camera integrates over its pixel; one ray per pixel aliases every edge). Textures are functions of the 3D
position (value noise, window grids, markings), so they are consistent from view to view; shading is Lambertian
with one sun and an ambient term, no shadows.

``write_street`` writes the official COLMAP layout (``images/``, ``sparse/0/*.bin``) so that ``ColmapScene`` reads
it, plus ``labels/<image stem>.npz`` (semantic, instance, part: uint16; depth: float32, inf on sky) and
``scene.json`` (the class and part names, each instance's class, the per-image times and, for the dynamic variant,
each moving object's box in its own frame and per-image object-to-world pose). The sparse points mimic structure
from motion: surface points seen by the training cameras (moving cars excluded, as SfM would lose them), with 1 cm
of noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from semantic_gaussians.data import colmap

CLASSES = ("sky", "road", "pavement", "building", "car", "pole", "tree")
# Part names as a text query would say them; a class without parts has one part of its own name.
PARTS = ("sky", "asphalt", "lane marking", "pavement", "wall", "window", "car body", "car window", "wheel", "pole",
         "trunk", "foliage")
SKY, ROAD, PAVEMENT, BUILDING, CAR, POLE, TREE = range(len(CLASSES))
P = {name: i for i, name in enumerate(PARTS)}

ROAD_HALF, KERB_OUT, KERB_H = 3.5, 6.0, 0.15
HFOV_DEG = 70.0
SUN = np.array([0.4, -0.5, 0.77]) / np.linalg.norm([0.4, -0.5, 0.77])
EPS = 1e-6


@dataclass
class Primitive:
    """One analytic shape: 'box' (lo, hi corners), 'cyl_z' / 'cyl_y' (centre of the axis line in the other two
    coordinates, radius, extent along the axis) or 'sphere' (centre, radius); what it is, and its colour."""

    kind: str
    a: np.ndarray
    b: np.ndarray
    cls: int
    instance: int
    part: int
    albedo: tuple[float, float, float]
    window_grid: bool = False  # building faces: windows (part "window") on a grid
    moving: int = -1  # index of the moving object it belongs to (dynamic variant), -1: static


@dataclass
class Street:
    primitives: list[Primitive]
    instances: dict[int, str]  # instance id -> class name
    moving: list[dict] = field(default_factory=list)  # {"instance", "size", "start" (x, y), "speed"}


def _box(lo, hi, **kw) -> Primitive:
    return Primitive("box", np.asarray(lo, float), np.asarray(hi, float), **kw)


def _car(rng: np.random.Generator, x: float, y: float, heading: float, instance: int,
         moving: int = -1) -> list[Primitive]:
    """A car centred at (x, y) in its own frame (x forward): body, cabin and four capped wheels. ``heading`` is 0 or
    pi (cars along the street, either direction); shapes are axis-aligned, so heading only swaps front and back."""
    paint = tuple(rng.choice([[0.62, 0.08, 0.07], [0.1, 0.2, 0.5], [0.85, 0.85, 0.83], [0.1, 0.1, 0.12],
                              [0.6, 0.61, 0.63], [0.1, 0.3, 0.15], [0.8, 0.65, 0.12]]))
    length, width = rng.uniform(3.9, 4.6), rng.uniform(1.7, 1.9)
    s = 1.0 if heading == 0 else -1.0
    kw = dict(cls=CAR, instance=instance, moving=moving)
    parts = [_box((x - length / 2, y - width / 2, 0.3), (x + length / 2, y + width / 2, 1.0), part=P["car body"],
                  albedo=paint, **kw),
             _box((x - s * 0.2 - 1.1, y - width / 2 + 0.08, 1.0), (x - s * 0.2 + 1.1, y + width / 2 - 0.08, 1.45),
                  part=P["car window"], albedo=(0.12, 0.16, 0.2), **kw)]
    for dx in (-0.32 * length, 0.32 * length):
        for side in (-1, 1):
            y0 = y + side * width / 2 - (0.22 if side > 0 else 0.0)
            parts.append(Primitive("cyl_y", np.array([x + dx, 0.33]), np.array([0.33, y0, y0 + 0.22]), part=P["wheel"],
                                   albedo=(0.05, 0.05, 0.05), **kw))
    return parts


def make_street(seed: int = 0, length: float = 32.0, moving_cars: int = 0) -> Street:
    """A random street ``length`` m long (seeded); ``moving_cars`` of its cars drive along it (dynamic variant)."""
    rng = np.random.default_rng(seed)
    prims: list[Primitive] = []
    instances: dict[int, str] = {}

    def new(cls: int) -> int:
        instances[len(instances) + 1] = CLASSES[cls]
        return len(instances)

    new(ROAD)
    pave = new(PAVEMENT)
    for side in (-1, 1):  # kerbed pavements (the ground beyond is pavement too)
        y0, y1 = sorted((side * ROAD_HALF, side * KERB_OUT))
        prims.append(_box((-30, y0, -1.0), (length + 30, y1, KERB_H), cls=PAVEMENT, instance=pave,
                          part=P["pavement"], albedo=(0.55, 0.54, 0.5)))
        x = -12.0
        while x < length + 12:  # a row of buildings with gaps
            w = rng.uniform(5, 10)
            depth, height = rng.uniform(5, 9), rng.uniform(5, 12)
            y_in = KERB_OUT + rng.uniform(0.0, 3.5)
            lo = (x, min(side * y_in, side * (y_in + depth)), 0.0)
            hi = (x + w, max(side * y_in, side * (y_in + depth)), height)
            wall = tuple(rng.choice([[0.72, 0.65, 0.55], [0.55, 0.33, 0.25], [0.8, 0.8, 0.76], [0.6, 0.6, 0.62],
                                     [0.75, 0.7, 0.5], [0.45, 0.42, 0.4]]))
            prims.append(_box(lo, hi, cls=BUILDING, instance=new(BUILDING), part=P["wall"], albedo=wall,
                              window_grid=True))
            x += w + rng.uniform(0.5, 4.0)
        x = rng.uniform(0, 6)
        while x < length:  # poles and trees alternate along the pavement
            y = side * rng.uniform(4.2, 5.4)
            if rng.random() < 0.5:
                prims.append(Primitive("cyl_z", np.array([x, y]), np.array([0.08, 0.0, 5.0]), cls=POLE,
                                       instance=new(POLE), part=P["pole"], albedo=(0.35, 0.36, 0.38)))
            else:
                tree = new(TREE)
                prims.append(Primitive("cyl_z", np.array([x, y]), np.array([0.15, 0.0, 2.6]), cls=TREE,
                                       instance=tree, part=P["trunk"], albedo=(0.35, 0.25, 0.15)))
                prims.append(Primitive("sphere", np.array([x, y, 3.4]), np.array([rng.uniform(1.0, 1.4)]), cls=TREE,
                                       instance=tree, part=P["foliage"], albedo=(0.2, 0.42, 0.15)))
            x += rng.uniform(6, 11)
    moving = []
    # Lanes: the camera drives at y in [-1.5, -0.7]; parked cars (|y| 1.8-3.65) and the cars in the left lane
    # (y 0-1.85) keep clear of it.
    slots = [(x, side * 2.75) for side in (-1, 1) for x in np.arange(rng.uniform(0, 4), length, 7.5)]
    for i in rng.permutation(len(slots))[: int(len(slots) * 0.6)]:  # parked cars along both kerbs
        x, y = slots[i]
        prims += _car(rng, x + rng.uniform(-1, 1), y, 0.0 if y < 0 else math.pi, new(CAR))
    for k in range(moving_cars):  # driving along the left lane, either way
        instance, forward = new(CAR), k % 2 == 0
        start = (rng.uniform(0, length * 0.4) if forward else rng.uniform(length * 0.6, length), 0.92)
        prims += _car(rng, 0.0, 0.0, 0.0 if forward else math.pi, instance, moving=k)
        moving.append({"instance": instance, "start": start, "speed": rng.uniform(8, 16) * (1 if forward else -1)})
    if not moving_cars:
        for x in (rng.uniform(4, length / 2), rng.uniform(length / 2, length - 4)):  # two cars stopped in the left lane
            prims += _car(rng, x, 0.92, math.pi, new(CAR))
    return Street(prims, instances, moving)


def object_box(street: Street, k: int) -> tuple[list[float], list[float]]:
    """Axis-aligned bounds (lo, hi) of moving object ``k`` in its own frame (a tracker's 3D box)."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for prim in street.primitives:
        if prim.moving != k:
            continue
        if prim.kind == "box":
            a, b = prim.a, prim.b
        else:  # wheel: a y-axis cylinder at (x, z) = prim.a
            r, y0, y1 = prim.b
            a = np.array([prim.a[0] - r, y0, prim.a[1] - r])
            b = np.array([prim.a[0] + r, y1, prim.a[1] + r])
        lo, hi = np.minimum(lo, a), np.maximum(hi, b)
    return lo.tolist(), hi.tolist()


def object_to_world(street: Street, k: int, t: float) -> np.ndarray:
    """Pose (4 x 4, object-to-world) of moving car ``k`` at time ``t`` in [0, 1]: a translation along x."""
    m = street.moving[k]
    pose = np.eye(4)
    pose[:2, 3] = (m["start"][0] + m["speed"] * t, m["start"][1])
    return pose


def _intersect(prim: Primitive, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameter of the first hit (inf where none) and the surface normal, for rays o + t d (R x 3)."""
    t = np.full(len(o), np.inf)
    n = np.zeros_like(o)
    with np.errstate(divide="ignore", invalid="ignore"):
        if prim.kind == "box":
            t1, t2 = (prim.a - o) / d, (prim.b - o) / d
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            t_near, axis = near.max(1), near.argmax(1)
            hit = (t_near <= far.min(1)) & (t_near > EPS)
            t[hit] = t_near[hit]
            n[np.arange(len(o)), axis] = -np.sign(d[np.arange(len(o)), axis])
        elif prim.kind == "sphere":
            oc = o - prim.a
            a, b, c = (d * d).sum(1), (oc * d).sum(1), (oc * oc).sum(1) - prim.b[0] ** 2
            disc = b * b - a * c
            root = (-b - np.sqrt(np.maximum(disc, 0))) / a
            hit = (disc >= 0) & (root > EPS)
            t[hit] = root[hit]
            n = o + t[:, None] * d - prim.a
        else:  # capped cylinder along z (poles, trunks) or y (wheels)
            ax, (u, v) = (2, (0, 1)) if prim.kind == "cyl_z" else (1, (0, 2))
            radius, lo, hi = prim.b
            ou, ov = o[:, u] - prim.a[0], o[:, v] - prim.a[1]
            du, dv = d[:, u], d[:, v]
            A, B, C = du * du + dv * dv, ou * du + ov * dv, ou * ou + ov * ov - radius**2
            disc = B * B - A * C
            root = (-B - np.sqrt(np.maximum(disc, 0))) / A
            z = o[:, ax] + root * d[:, ax]
            side = (disc >= 0) & (root > EPS) & (z >= lo) & (z <= hi)
            t[side] = root[side]
            n[:, u], n[:, v] = ou + root * du, ov + root * dv
            for cap, sign in ((lo, -1.0), (hi, 1.0)):
                tc = (cap - o[:, ax]) / d[:, ax]
                pu, pv = ou + tc * du, ov + tc * dv
                ok = (tc > EPS) & (pu * pu + pv * pv <= radius**2) & (tc < t)
                t[ok] = tc[ok]
                n[ok] = 0.0
                n[ok, ax] = sign
        n = np.nan_to_num(n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), EPS))
    return t, n


def _noise(p: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Trilinear value noise in [-1, 1] at 3D points (frequency 1 / scale metres)."""
    q = p / scale
    i, f = np.floor(q).astype(np.int64), q - np.floor(q)
    f = f * f * (3 - 2 * f)
    out = np.zeros(len(p))
    for corner in range(8):
        c = np.array([(corner >> k) & 1 for k in range(3)])
        h = (i + c) * np.array([73856093, 19349663, 83492791]) + seed * 2654435761
        h = ((h[:, 0] ^ h[:, 1] ^ h[:, 2]) % 1000003) / 1000003.0
        w = np.prod(np.where(c == 1, f, 1 - f), axis=1)
        out += w * h
    return out * 2 - 1


def cast(street: Street, o: np.ndarray, d: np.ndarray, poses: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Cast rays (R x 3 each, world frame); ``poses``: object-to-world of each moving object now.
    Returns per ray t (inf: sky), colour (R x 3), class, instance, part."""
    R = len(o)
    best = np.full(R, np.inf)
    normal = np.zeros((R, 3))
    owner = np.full(R, -1)
    with np.errstate(divide="ignore", invalid="ignore"):  # the ground plane z = 0 (road and ground beyond)
        tg = np.where(d[:, 2] < -EPS, -o[:, 2] / d[:, 2], np.inf)
    best[:] = tg
    normal[np.isfinite(tg), 2] = 1.0
    for idx, prim in enumerate(street.primitives):
        if prim.moving >= 0:  # cast in the object's frame (its shapes are built around the origin)
            pose = poses[prim.moving]
            Rm, tm = pose[:3, :3], pose[:3, 3]
            t, n = _intersect(prim, (o - tm) @ Rm, d @ Rm)
            n = n @ Rm.T
        else:
            t, n = _intersect(prim, o, d)
        closer = t < best
        best[closer], normal[closer], owner[closer] = t[closer], n[closer], idx
    hit = o + np.where(np.isfinite(best), best, 0)[:, None] * d
    cls = np.full(R, SKY)
    inst = np.zeros(R, dtype=np.int64)
    part = np.full(R, P["sky"])
    albedo = np.zeros((R, 3))
    ground = np.isfinite(best) & (owner < 0)
    on_road = ground & (np.abs(hit[:, 1]) < ROAD_HALF)
    cls[ground], inst[ground], part[ground] = PAVEMENT, 2, P["pavement"]
    albedo[ground] = (0.5, 0.49, 0.46)
    cls[on_road], inst[on_road], part[on_road] = ROAD, 1, P["asphalt"]
    albedo[on_road] = (0.27, 0.27, 0.29)
    marking = on_road & (np.abs(hit[:, 1]) < 0.1) & (np.mod(hit[:, 0], 4.0) < 2.0)
    part[marking] = P["lane marking"]
    albedo[marking] = (0.9, 0.9, 0.85)
    for idx in np.unique(owner[owner >= 0]):
        prim, sel = street.primitives[idx], owner == idx
        cls[sel], inst[sel], part[sel] = prim.cls, prim.instance, prim.part
        albedo[sel] = prim.albedo
        if prim.window_grid:  # windows on every vertical face: a grid in (along-face, height)
            h = hit[sel]
            along = np.where(np.abs(normal[sel, 1]) > 0.5, h[:, 0], h[:, 1])
            win = ((np.mod(along, 2.5) > 0.7) & (np.mod(along, 2.5) < 1.8) & (np.mod(h[:, 2], 3.0) > 1.0)
                   & (np.mod(h[:, 2], 3.0) < 2.3) & (np.abs(normal[sel, 2]) < 0.5))
            rows = np.flatnonzero(sel)[win]
            part[rows] = P["window"]
            albedo[rows] = (0.16, 0.22, 0.3)
    solid = np.isfinite(best)
    texture = 1 + 0.12 * _noise(hit[solid], 0.7, 1) + 0.06 * _noise(hit[solid], 0.2, 2)
    shade = 0.45 + 0.55 * np.clip(normal[solid] @ SUN, 0, 1)
    colour = np.empty((R, 3))
    colour[solid] = albedo[solid] * (texture * shade)[:, None]
    up = np.clip(d[~solid, 2], 0, 1)[:, None]
    colour[~solid] = (1 - up) * np.array([0.78, 0.84, 0.9]) + up * np.array([0.33, 0.52, 0.82])
    return {"t": best, "colour": np.clip(colour, 0, 1), "class": cls, "instance": inst, "part": part}


@dataclass
class View:
    name: str
    position: np.ndarray
    yaw: float
    pitch: float
    time: float


def camera_to_world(view: View) -> np.ndarray:
    """OpenCV camera (x right, y down, z forward) to world (z up) rotation of a camera at ``yaw`` / ``pitch``."""
    f = np.array([math.cos(view.yaw) * math.cos(view.pitch), math.sin(view.yaw) * math.cos(view.pitch),
                  math.sin(view.pitch)])
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    return np.stack([r, np.cross(f, r), f], axis=1)


def make_views(rng: np.random.Generator, length: float, drive_frames: int, side_views: int) -> list[View]:
    views = []
    for i in range(drive_frames):  # the driving path: weave across the lane, look around a little
        s = i / max(drive_frames - 1, 1)
        x = 1.0 + s * (length - 6.0)
        y = -1.1 + 0.35 * math.sin(6.0 * s) + rng.normal(0, 0.03)
        views.append(View(f"drive_{i:03d}", np.array([x, y, 1.6 + rng.normal(0, 0.03)]),
                          0.25 * math.sin(5.0 * s + 1.0) + rng.normal(0, 0.03), -0.03 + rng.normal(0, 0.02), s))
    for i in range(side_views):  # from the pavements, towards the road and the opposite facades
        side = 1 if i % 2 == 0 else -1
        x = 3.0 + (length - 6.0) * (i + 0.5) / side_views
        views.append(View(f"side_{i:03d}", np.array([x, side * 5.75, 1.7]),
                          -side * math.pi / 2 + rng.uniform(-0.5, 0.5), rng.uniform(-0.05, 0.15),
                          (i + 0.5) / side_views))
    return views


def intrinsics(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    f = 0.5 * width / math.tan(math.radians(HFOV_DEG) / 2)
    cx, cy = width / 2 + rng.uniform(-2, 2), height / 2 + rng.uniform(-2, 2)
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])


def render_view(street: Street, view: View, K: np.ndarray, width: int, height: int, supersample: int = 2) -> dict:
    """Image (H x W x 3 float), depth (camera z; inf on sky) and labels (centre rays) of one view."""
    c2w = camera_to_world(view)
    poses = [object_to_world(street, k, view.time) for k in range(len(street.moving))]
    ss = supersample
    sub = (np.arange(ss) + 0.5) / ss
    us = (np.arange(width)[:, None] + sub[None]).reshape(-1)
    vs = (np.arange(height)[:, None] + sub[None]).reshape(-1)
    vv, uu = np.meshgrid(vs, us, indexing="ij")
    rays = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], -1).reshape(-1, 3)
    d = rays @ c2w.T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    out = cast(street, np.broadcast_to(view.position, d.shape), d, poses)
    image = out["colour"].reshape(height, ss, width, ss, 3).mean((1, 3))
    vc, uc = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    centre = np.stack([(uc - K[0, 2]) / K[0, 0], (vc - K[1, 2]) / K[1, 1], np.ones_like(uc)], -1).reshape(-1, 3)
    dc = centre @ c2w.T  # not normalised: camera z grows by 1 per unit of t, so t is the depth
    lab = cast(street, np.broadcast_to(view.position, dc.shape), dc, poses)
    return {"image": image, "depth": lab["t"].reshape(height, width),
            "class": lab["class"].reshape(height, width), "instance": lab["instance"].reshape(height, width),
            "part": lab["part"].reshape(height, width), "points": view.position + lab["t"][:, None] * dc,
            "point_colours": lab["colour"], "moving": np.isin(lab["instance"], [m["instance"] for m in street.moving])}


def write_street(root: str | Path, seed: int = 0, width: int = 128, height: int = 96, drive_frames: int = 40,
                 side_views: int = 8, moving_cars: int = 0, points_per_view: int = 200) -> Path:
    """Render the street and write it in the COLMAP layout (module docstring). Returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed + 1)
    street = make_street(seed, moving_cars=moving_cars)
    views = make_views(rng, 32.0, drive_frames, side_views)
    K = intrinsics(width, height, rng)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    camera = colmap.Camera(id=1, model="PINHOLE", width=width, height=height,
                           params=np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))
    images, points, meta_poses = {}, {}, {}
    for i, view in enumerate(views):
        r = render_view(street, view, K, width, height)
        cv2.imwrite(str(root / "images" / f"{view.name}.png"),
                    cv2.cvtColor((r["image"] * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
        np.savez_compressed(root / "labels" / f"{view.name}.npz", semantic=r["class"].astype(np.uint16),
                            instance=r["instance"].astype(np.uint16), part=r["part"].astype(np.uint16),
                            depth=r["depth"].astype(np.float32))
        R_wc = camera_to_world(view).T
        images[i + 1] = colmap.Image(id=i + 1, qvec=colmap.rotmat_to_qvec(R_wc), tvec=-R_wc @ view.position,
                                     camera_id=1, name=f"{view.name}.png", xys=np.zeros((0, 2)),
                                     point3D_ids=np.zeros(0, dtype=np.int64))
        ok = np.flatnonzero(np.isfinite(r["depth"].reshape(-1)) & ~r["moving"].reshape(-1))
        for j in rng.choice(ok, size=min(points_per_view, len(ok)), replace=False):
            pid = len(points) + 1
            xyz = r["points"][j] + rng.normal(0, 0.01, 3)  # SfM-like noise
            points[pid] = colmap.Point3D(id=pid, xyz=xyz, rgb=(r["point_colours"][j] * 255 + 0.5).astype(np.uint8),
                                         error=0.5, image_ids=np.array([i + 1], dtype=np.int32),
                                         point2D_idxs=np.array([0], dtype=np.int32))
        meta_poses[f"{view.name}.png"] = [object_to_world(street, k, view.time).tolist()
                                          for k in range(len(street.moving))]
    colmap.write_model({1: camera}, images, points, root / "sparse" / "0", ext=".bin")
    scene = {"classes": list(CLASSES), "parts": list(PARTS),
             "instances": {str(k): v for k, v in street.instances.items()},
             "times": {f"{v.name}.png": v.time for v in views},
             "moving_objects": [{"instance": m["instance"], "box": object_box(street, k),
                                 "poses": {n: p[k] for n, p in meta_poses.items()}}
                                for k, m in enumerate(street.moving)]}
    (root / "scene.json").write_text(json.dumps(scene, indent=1))
    return root
