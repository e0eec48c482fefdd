"""Shape world: the project's synthetic stand-in for the open-world object detection (OWOD) benchmark.

What it is a proxy of. ORE's OWOD benchmark (Joseph et al., "Towards Open World Object Detection", CVPR 2021)
trains on PASCAL VOC classes (task 1) and then adds COCO classes task by task; every image shows objects of
all classes, and those not yet known are unlabelled at training time and must be flagged "unknown" at test
time. Shape world keeps that structure with 12 shape classes learnt over three tasks, two classes that are
never known, and classes drawn uniformly from all 12 in every image, so later-task and never-known objects
appear (unlabelled, by the loader's rules) in earlier tasks' images. A second, aerial context (top-down
fields, uniform object scale, any in-plane rotation) is the context shift of a detector trained on road
scenes and tested on aerial ones (as for DOTA-style imagery).

What it is not: shapes on procedural textures, not real objects. Class is carried by outline alone: colour
and texture (solid, stripes, checker, noise) are drawn per instance from one palette shared by all classes and
by the background clutter, so neither colour nor texture says class or objectness. It checks that code
runs, learns and ranks unknowns sensibly, not how a method fares on VOC/COCO.

Classes and tasks::

    T1 (known from task 1): circle square triangle star cross
    T2 (known from task 2): hexagon diamond ring
    T3 (known from task 3): arrow trapezoid
    never known:            crescent heart

Several unknowns resemble a known class on purpose (ring/hexagon/crescent ~ circle, diamond ~ square,
trapezoid ~ triangle), like near-OOD unknowns on real data. The diamond is an elongated rhombus, so that a
square turned by 45 degrees (aerial views rotate objects) is not a diamond.

Contexts (128 x 128 RGB): "road" is a perspective street: sky above a horizon at 30-45% of the height,
textured ground, a road with lane markings, kerbs, poles, clouds and clutter blobs; objects stand upright
(turned by up to 15 degrees, mirrored or not) on the ground and their size (the longer side of the box) follows
the perspective (12 px at the horizon to 40 px at the bottom). "aerial" is a top-down view of fields, paths,
trees and clutter blobs, objects 14-30 px at any rotation. An image holds 2-6
objects (none with probability 3%); a placement whose box has an IoU above 0.3 with an earlier object's box is
drawn again. Farther road objects are painted first, so nearer ones may cover them a little.

Boxes are the tight axis-aligned box of each object's full shape mask, clipped to the image: x = min column,
w = max column - min column + 1 (the whole shape as drawn, also where a later object covers part of it).

Layout written by `generate` (see the project's interface notes)::

    <root>/JPEGImages/<id>.jpg  <root>/Annotations/<id>.xml  <root>/ImageSets/Main/<split>.txt
    <root>/annotations/instances_<split>.json   (COCO, category ids 1..12 in CLASSES order)
    <root>/classes.json                          {"classes", "tasks", "never_known", "contexts"}

Splits t1_train, t2_train, t3_train, val, test (road) and aerial_val, aerial_test (aerial) are rendered;
t2_ft and t3_ft are ORE's balanced exemplar sets for the fine-tuning step of task k: images of t1_train ..
tk_train taken in order, each kept when it holds an instance of a class known at task k that still has fewer
than `exemplars` instances, until every such class has `exemplars`. Image `i` of a split has the id
"<context>_<n>" with n = split number * 100000 + i, and is a function of (seed, split, i) only.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .formats import write_coco, write_voc

CLASSES = [
    "circle", "square", "triangle", "star", "cross", "hexagon",
    "diamond", "ring", "arrow", "trapezoid", "crescent", "heart",
]
TASKS = [["circle", "square", "triangle", "star", "cross"], ["hexagon", "diamond", "ring"], ["arrow", "trapezoid"]]
NEVER_KNOWN = ["crescent", "heart"]

VERSION = 1  # bump when the generated data changes (the cache key)
IMAGE_SIZE = 128
JPEG_QUALITY = 95
# Split -> (split number seeding its images, context); the number also makes ids unique over splits.
RENDERED_SPLITS = {
    "t1_train": (0, "road"),
    "t2_train": (1, "road"),
    "t3_train": (2, "road"),
    "val": (3, "road"),
    "test": (4, "road"),
    "aerial_val": (5, "aerial"),
    "aerial_test": (6, "aerial"),
}
FT_SPLITS = {"t2_ft": 2, "t3_ft": 3}  # exemplar split -> the task it fine-tunes
DEFAULT_SIZES = {"t1_train": 1000, "t2_train": 500, "t3_train": 500, "val": 200, "test": 300,
                 "aerial_val": 100, "aerial_test": 300}
_MAX_PER_SPLIT = 100_000  # ids are split number * this + index

_EMPTY_PROB = 0.03
_MAX_IOU = 0.3
_PLACEMENT_TRIES = 30
_ROAD_SIZE = (12.0, 40.0)  # object size at the horizon and at the bottom row
_AERIAL_SIZE = (14.0, 30.0)
_SHIFT = 4  # cv2 sub-pixel bits, so shapes land at fractional positions and sizes
_NOISE_SIGMA = 3.0

# One palette for objects and clutter alike (RGB): colour must not give away class or objectness.
_PALETTE = np.array(
    [(220, 40, 40), (240, 130, 30), (240, 210, 40), (60, 170, 60), (30, 150, 150), (40, 90, 210), (130, 60, 190),
     (220, 60, 170), (245, 245, 245), (160, 160, 160), (70, 70, 70), (20, 20, 20), (130, 80, 40), (250, 170, 180)],
    dtype=np.float32,
)
_SKY = np.array([(110, 160, 225), (185, 200, 215), (235, 175, 130), (150, 190, 235)], dtype=np.float32)
_GROUND = np.array([(90, 140, 60), (150, 140, 90), (120, 100, 70), (110, 120, 80)], dtype=np.float32)
_FIELDS = np.array([(80, 130, 50), (140, 160, 70), (190, 170, 100), (120, 90, 60), (60, 100, 45), (170, 150, 120)],
                   dtype=np.float32)


# --------------------------------------------------------------------------------------------------------------
# Shapes: polygons in a unit frame (extent [-1, 1] on the longer side, y down), each filled (1) or cut out (0)
# --------------------------------------------------------------------------------------------------------------


def _circle(radius: float = 1.0, centre: tuple[float, float] = (0.0, 0.0), n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], 1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    return pts / np.abs(pts).max()


def _heart(n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y - (y.max() + y.min()) / 2], 1)
    return pts / np.abs(pts).max()


_a = 1 / 3  # half-width of the cross's arms
_SHAPES: dict[str, list[tuple[np.ndarray, int]]] = {
    name: [(np.asarray(p, dtype=np.float64), fill) for p, fill in parts]
    for name, parts in {
        "circle": [(_circle(), 1)],
        "square": [([(-1, -1), (1, -1), (1, 1), (-1, 1)], 1)],
        "triangle": [([(0, -1), (1, 1), (-1, 1)], 1)],
        "star": [(_star(), 1)],
        "cross": [([(-_a, -1), (_a, -1), (_a, -_a), (1, -_a), (1, _a), (_a, _a), (_a, 1), (-_a, 1), (-_a, _a),
                    (-1, _a), (-1, -_a), (-_a, -_a)], 1)],
        "hexagon": [(_circle(n=6), 1)],
        "diamond": [([(0, -1), (0.6, 0), (0, 1), (-0.6, 0)], 1)],
        "ring": [(_circle(), 1), (_circle(0.55), 0)],
        "arrow": [([(-1, -0.28), (0.15, -0.28), (0.15, -0.8), (1, 0), (0.15, 0.8), (0.15, 0.28), (-1, 0.28)], 1)],
        "trapezoid": [([(-0.5, -0.6), (0.5, -0.6), (1, 0.6), (-1, 0.6)], 1)],
        "crescent": [(_circle(), 1), (_circle(0.85, (0.5, -0.1)), 0)],
        "heart": [(_heart(), 1)],
    }.items()
}


def _shape_parts(name: str, rng: np.random.Generator, size: float, angle: float) -> list[tuple[np.ndarray, int]]:
    """The shape's polygons in pixels around (0, 0): a little aspect jitter, mirrored or not (arrows point
    either way), rotated, then scaled so that the longer side of its box is `size`."""
    aspect = np.exp(rng.uniform(-0.1, 0.1))
    mirror = rng.choice([-1.0, 1.0])
    c, s = np.cos(angle), np.sin(angle)
    transform = np.array([[c, -s], [s, c]]) @ np.diag([mirror * aspect, 1 / aspect])
    parts = [(pts @ transform.T, fill) for pts, fill in _SHAPES[name]]
    extent = np.ptp(np.concatenate([pts for pts, _ in parts]), axis=0).max()
    return [(pts * (size / extent), fill) for pts, fill in parts]


def _fill(canvas: np.ndarray, pts: np.ndarray, value: object) -> None:
    cv2.fillPoly(canvas, [np.round(pts * (1 << _SHIFT)).astype(np.int32)], value, cv2.LINE_8, _SHIFT)


def _mask(parts: list[tuple[np.ndarray, int]], offset: tuple[float, float]) -> np.ndarray:
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for pts, fill in parts:
        _fill(mask, pts + offset, fill)
    return mask.astype(bool)


def _tight_box(mask: np.ndarray) -> list[float] | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def _px(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0])), int(round(point[1]))


def _iou(a: list[float], b: list[float]) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


# --------------------------------------------------------------------------------------------------------------
# Textures and clutter
# --------------------------------------------------------------------------------------------------------------


def _colour(rng: np.random.Generator, colours: np.ndarray = _PALETTE) -> np.ndarray:
    return np.clip(colours[rng.integers(len(colours))] + rng.normal(0, 12, 3), 0, 255).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1] of shape (h, w): random cells upsampled bicubically."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def _texture(rng: np.random.Generator, h: int, w: int, colours: np.ndarray = _PALETTE) -> np.ndarray:
    """An (h, w, 3) float32 patch: solid, stripes, checker or noise, in colours drawn from `colours`."""
    a = _colour(rng, colours)
    kind = rng.integers(4)
    if kind == 0:
        return np.broadcast_to(a, (h, w, 3))
    b = _colour(rng, colours)
    if kind == 3:
        blend = _smooth_noise(rng, h, w, int(rng.integers(3, 6)))[..., None]
        return a * (1 - blend) + b * blend + rng.normal(0, 8, (h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    period = rng.uniform(3, 8)
    if kind == 1:
        select = (u / period + rng.random()) % 1 < 0.5
    else:
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        select = (np.floor(u / period * 2) + np.floor(v / period * 2)) % 2 == 0
    return np.where(select[..., None], a, b)


def _paint(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, colours: np.ndarray = _PALETTE) -> None:
    """Paint a fresh texture into `image` where `mask` is set (only the mask's box is textured, for speed)."""
    box = _tight_box(mask)
    if box is None:
        return
    x, y, w, h = (int(v) for v in box)
    window = (slice(y, y + h), slice(x, x + w))
    inside = mask[window]
    image[window][inside] = _texture(rng, h, w, colours)[inside]


def _blob(image: np.ndarray, rng: np.random.Generator, centre: tuple[float, float], size: float) -> None:
    """Clutter: an irregular textured blob about `size` px across, in the objects' palette."""
    n = int(rng.integers(7, 12))
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = size / 2 * rng.uniform(0.35, 1.0, n)
    pts = np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], 1)
    mask = np.zeros(image.shape[:2], np.uint8)
    _fill(mask, pts, 1)
    _paint(image, mask.astype(bool), rng)


def _scribble(image: np.ndarray, rng: np.random.Generator, y_range: tuple[float, float]) -> None:
    """Clutter: a thin polyline in a palette colour."""
    n = int(rng.integers(2, 5))
    pts = np.stack([rng.uniform(0, IMAGE_SIZE, n), rng.uniform(*y_range, n)], 1)
    cv2.polylines(image, [np.round(pts).astype(np.int32)], False, _colour(rng).tolist(), int(rng.integers(1, 3)))


# --------------------------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------------------------


def _road_size(y_bottom: float, horizon: float) -> float:
    """Object size at a ground row: linear from 12 px at the horizon to 40 px at the bottom row."""
    lo, hi = _ROAD_SIZE
    return lo + (hi - lo) * (y_bottom - horizon) / (IMAGE_SIZE - horizon)


def _road_background(rng: np.random.Generator, horizon: float) -> np.ndarray:
    n = IMAGE_SIZE
    image = np.empty((n, n, 3), np.float32)
    h = int(round(horizon))
    # Sky: a vertical gradient between two sky colours, with soft clouds.
    top, bottom = _colour(rng, _SKY), _colour(rng, _SKY)
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    image[:h] = top * (1 - ramp) + bottom * ramp
    clouds = np.zeros((h, n), np.float32)
    for _ in range(rng.integers(0, 4)):
        centre = (int(rng.integers(0, n)), int(rng.integers(0, h)))
        axes = (int(rng.integers(6, 25)), int(rng.integers(2, 7)))
        cv2.ellipse(clouds, centre, axes, 0, 0, 360, float(rng.uniform(0.4, 0.9)), -1)
    clouds = cv2.GaussianBlur(clouds, (0, 0), 2.5)[..., None]
    image[:h] = image[:h] * (1 - clouds) + 240 * clouds
    # Ground: a base colour modulated by coarse and fine noise.
    ground = _colour(rng, _GROUND) * (0.8 + 0.4 * _smooth_noise(rng, n - h, n, 6)[..., None])
    image[h:] = ground + rng.normal(0, 6, (n - h, n, 3)).astype(np.float32)
    if rng.random() < 0.5:  # a tree line along the horizon
        dark = _colour(rng, _GROUND) * 0.5
        for x in np.arange(rng.uniform(-4, 0), n, rng.uniform(4, 8)):
            cv2.ellipse(image, (int(x), h), (int(rng.integers(3, 7)), int(rng.integers(2, 6))), 0, 180, 360,
                        dark.tolist(), -1)
    # Road: a trapezoid from the vanishing point, with edge lines, kerbs and perspective-spaced lane dashes.
    vx = rng.uniform(0.3, 0.7) * n
    bx, half = vx + rng.uniform(-0.3, 0.3) * n, rng.uniform(0.3, 0.6) * n

    def at(row: float, side: float) -> np.ndarray:  # the point at `row` on the line from the vanishing point
        return np.array([vx + (bx + side - vx) * (row - horizon) / (n - horizon), row])

    road = np.array([at(horizon, -half), at(horizon, half), at(n, half), at(n, -half)])
    asphalt = rng.uniform(60, 120) + rng.normal(0, 8, 3)
    road_mask = np.zeros((n, n), np.uint8)
    _fill(road_mask, road, 1)
    road_mask = road_mask.astype(bool)
    image[road_mask] = (asphalt + rng.normal(0, 5, (int(road_mask.sum()), 3))).astype(np.float32)
    if rng.random() < 0.5:
        kerb = _colour(rng).tolist()
        for side in (-1.08 * half, 1.08 * half):
            cv2.line(image, _px(at(horizon + 1, side)), _px(at(n, side)), kerb, 2)
    if rng.random() < 0.7:
        for side in (-0.9 * half, 0.9 * half):
            cv2.line(image, _px(at(horizon + 1, side)), _px(at(n, side)), (235, 235, 235), 1)
    paint = (235, 235, 235) if rng.random() < 0.6 else (235, 200, 50)
    # Dashes equally spaced on the ground plane land at rows horizon + (n - horizon) * d0 / d.
    period = rng.uniform(0.8, 1.5)
    dash = period * rng.uniform(0.3, 0.5)
    for d in np.arange(1.0 + rng.random() * period, 40.0, period):
        y0, y1 = horizon + (n - horizon) / (d + dash), horizon + (n - horizon) / d
        thickness = max(1, int(round(4 * (y1 - horizon) / (n - horizon))))
        cv2.line(image, _px(at(y0, 0)), _px(at(y1, 0)), paint, thickness)
    # Poles and clutter stand on the ground with the objects' perspective.
    for _ in range(rng.integers(0, 4)):
        y_bottom = rng.uniform(horizon + 2, n)
        size = _road_size(y_bottom, horizon)
        x = rng.uniform(0, n)
        width = max(1.0, size / 12)
        pole = np.array([(x - width, y_bottom - 2.5 * size), (x + width, y_bottom - 2.5 * size),
                         (x + width, y_bottom), (x - width, y_bottom)])
        _fill(image, pole, _colour(rng, _PALETTE[9:12]).tolist())
    for _ in range(rng.integers(1, 5)):
        y = rng.uniform(horizon + 2, n)
        _blob(image, rng, (rng.uniform(0, n), y), _road_size(y, horizon) * rng.uniform(0.4, 1.0))
    for _ in range(rng.integers(0, 3)):
        _scribble(image, rng, (horizon + 2, n))
    return image


def _aerial_background(rng: np.random.Generator) -> np.ndarray:
    n = IMAGE_SIZE
    image = _colour(rng, _FIELDS) * (0.8 + 0.4 * _smooth_noise(rng, n, n, 5)[..., None])
    # Fields: rotated rectangles, many of them ploughed (row stripes), in the fields' palette.
    for _ in range(rng.integers(3, 8)):
        centre = rng.uniform(0, n, 2)
        half = rng.uniform(15, 55, 2)
        c, s = np.cos(angle := rng.uniform(0, np.pi)), np.sin(angle)
        corners = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)]) * half @ np.array([[c, s], [-s, c]]) + centre
        mask = np.zeros((n, n), np.uint8)
        _fill(mask, corners, 1)
        _paint(image, mask.astype(bool), rng, _FIELDS)
    for _ in range(rng.integers(0, 3)):  # paths across the image
        a, b = rng.uniform(0, n, 2), rng.uniform(0, n, 2)
        direction = (b - a) / (np.linalg.norm(b - a) + 1e-6) * 2 * n
        colour = (rng.uniform(110, 190) + rng.normal(0, 8, 3)).tolist()
        cv2.line(image, _px(a - direction), _px(a + direction), colour, int(rng.integers(2, 6)))
    for _ in range(rng.integers(0, 16)):  # trees: small dark discs, far smaller than any object
        centre = tuple(int(v) for v in rng.integers(0, n, 2))
        cv2.circle(image, centre, int(rng.integers(1, 4)), (_colour(rng, _FIELDS) * 0.45).tolist(), -1)
    for _ in range(rng.integers(1, 4)):
        _blob(image, rng, tuple(rng.uniform(0, n, 2)), rng.uniform(8, 26))
    for _ in range(rng.integers(0, 3)):
        _scribble(image, rng, (0, n))
    image += rng.normal(0, 5, image.shape).astype(np.float32)
    return image


# --------------------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------------------


def _sample_objects(context: str, rng: np.random.Generator, horizon: float) -> list[dict]:
    n_objects = 0 if rng.random() < _EMPTY_PROB else int(rng.integers(2, 7))
    objects: list[dict] = []
    for _ in range(n_objects):
        name = CLASSES[rng.integers(len(CLASSES))]
        for _ in range(_PLACEMENT_TRIES):
            if context == "road":
                # The size follows the row the object stands on; the row is drawn first, the shape fitted to it.
                row = rng.uniform(horizon + 2, IMAGE_SIZE)
                size = float(np.clip(_road_size(row, horizon) * rng.uniform(0.9, 1.1), *_ROAD_SIZE))
                parts = _shape_parts(name, rng, size, np.deg2rad(rng.uniform(-15, 15)))
                bottom = max(pts[:, 1].max() for pts, _ in parts)
                offset = (rng.uniform(0.2 * size, IMAGE_SIZE - 0.2 * size), row - bottom)
            else:
                size = rng.uniform(*_AERIAL_SIZE)
                parts = _shape_parts(name, rng, size, rng.uniform(0, 2 * np.pi))
                offset = tuple(rng.uniform(0.2 * size, IMAGE_SIZE - 0.2 * size, 2))
            mask = _mask(parts, offset)
            box = _tight_box(mask)
            if box is not None and all(_iou(box, o["bbox"]) <= _MAX_IOU for o in objects):
                objects.append({"category": name, "bbox": box, "mask": mask})
                break
    return objects


def render(seed: int, split: str, index: int) -> tuple[np.ndarray, list[dict]]:
    """Image `index` of `split`: an RGB uint8 (128, 128, 3) array and its objects in painting order, each
    {"category": class name, "bbox": [x, y, w, h] (tight box of the mask), "mask": bool (128, 128) full shape}.
    """
    split_number, context = RENDERED_SPLITS[split]
    rng = np.random.default_rng([seed, split_number, index])
    horizon = rng.uniform(0.30, 0.45) * IMAGE_SIZE if context == "road" else 0.0
    image = _road_background(rng, horizon) if context == "road" else _aerial_background(rng)
    objects = _sample_objects(context, rng, horizon)
    if context == "road":  # farther objects first: nearer ones occlude them, as in a street
        objects.sort(key=lambda o: o["bbox"][1] + o["bbox"][3])
    for obj in objects:
        _paint(image, obj["mask"], rng)
    image = image * rng.uniform(0.9, 1.1) + rng.normal(0, _NOISE_SIGMA, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), objects


def image_id(split: str, index: int) -> str:
    """The id (file stem) of image `index` of a rendered split, e.g. "road_100042" for t2_train image 42."""
    split_number, context = RENDERED_SPLITS[split]
    return f"{context}_{split_number * _MAX_PER_SPLIT + index:06d}"


# --------------------------------------------------------------------------------------------------------------
# Writing the dataset
# --------------------------------------------------------------------------------------------------------------


def _empty_gt(root: Path) -> dict:
    return {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)],
            "image_root": str(root / "JPEGImages")}


def _render_split(root: Path, seed: int, split: str, size: int) -> dict:
    gt = _empty_gt(root)
    for index in range(size):
        stem = image_id(split, index)
        number = int(stem.rsplit("_", 1)[1])
        image, objects = render(seed, split, index)
        path = root / "JPEGImages" / f"{stem}.jpg"
        cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        gt["images"].append({"id": number, "file_name": f"{stem}.jpg", "width": IMAGE_SIZE, "height": IMAGE_SIZE})
        for k, obj in enumerate(objects):
            x, y, w, h = obj["bbox"]
            gt["annotations"].append({"id": number * 10 + k, "image_id": number,
                                      "category_id": CLASSES.index(obj["category"]) + 1, "bbox": obj["bbox"],
                                      "area": w * h, "iscrowd": 0, "difficult": 0})
    return gt


def exemplar_split(train_gts: list[dict], known: list[str], exemplars: int, root: Path) -> dict:
    """ORE's balanced fine-tuning set: images of `train_gts` in order, each kept when it holds an instance of a
    known class that has fewer than `exemplars` instances so far, until every known class has `exemplars`."""
    known_ids = {CLASSES.index(c) + 1 for c in known}
    counts = dict.fromkeys(known_ids, 0)
    gt = _empty_gt(root)
    for train in train_gts:
        by_image: dict[int, list[dict]] = {im["id"]: [] for im in train["images"]}
        for ann in train["annotations"]:
            by_image[ann["image_id"]].append(ann)
        for im in train["images"]:
            if all(v >= exemplars for v in counts.values()):
                return gt
            anns = by_image[im["id"]]
            if any(a["category_id"] in known_ids and counts[a["category_id"]] < exemplars for a in anns):
                gt["images"].append(im)
                gt["annotations"].extend(anns)
                for a in anns:
                    if a["category_id"] in known_ids:
                        counts[a["category_id"]] += 1
    short = {CLASSES[i - 1]: v for i, v in counts.items() if v < exemplars}
    if short:
        raise ValueError(f"the training splits hold too few instances for {exemplars} exemplars per known class: "
                         f"{short}; generate larger training splits or fewer exemplars")
    return gt


def generate(root: str | Path, seed: int = 0, sizes: dict[str, int] | None = None, exemplars: int = 50) -> None:
    """Write shape world under `root` (layout in the module docstring). `sizes` overrides the number of images
    of some rendered splits (DEFAULT_SIZES for the rest); `exemplars` is the instances per known class in the
    t2_ft / t3_ft fine-tuning sets. The default (2900 images) takes about 22 s on one CPU core and 32 MB."""
    unknown = set(sizes or {}) - set(RENDERED_SPLITS)
    if unknown:
        raise ValueError(f"unknown shape world splits {sorted(unknown)}; expected some of {list(RENDERED_SPLITS)}")
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    too_big = {s: n for s, n in sizes.items() if not 0 <= n < _MAX_PER_SPLIT}
    if too_big:
        raise ValueError(f"split sizes must be in [0, {_MAX_PER_SPLIT}), got {too_big}")
    root = Path(root).resolve()
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    gts = {split: _render_split(root, seed, split, sizes[split]) for split in RENDERED_SPLITS}
    for split, task in FT_SPLITS.items():
        known = [c for classes in TASKS[:task] for c in classes]
        gts[split] = exemplar_split([gts[f"t{k + 1}_train"] for k in range(task)], known, exemplars, root)
    for split, gt in gts.items():
        write_voc(gt, root, split)
        write_coco(gt, root / "annotations" / f"instances_{split}.json")
    contexts = {split: context for split, (_, context) in RENDERED_SPLITS.items()} | dict.fromkeys(FT_SPLITS, "road")
    meta = {"classes": CLASSES, "tasks": TASKS, "never_known": NEVER_KNOWN, "contexts": contexts}
    (root / "classes.json").write_text(json.dumps(meta, indent=2) + "\n")
