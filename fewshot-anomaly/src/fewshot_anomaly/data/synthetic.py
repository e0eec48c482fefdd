"""Procedural industrial anomaly data written in the official MVTec AD layout.

The generator is the project's stand-in for MVTec AD (Bergmann et al., CVPR 2019): two stationary textures
(`fabric`, `wood`) and two objects (`circuit`, `screws`) whose whole layout is rotated and shifted between
images, so methods that keep per-position statistics (PaDiM) pay for misalignment as they do on real objects.
Every image, normal ones included, gets colour/brightness jitter and sensor noise.

Defects are drawn with exact masks: a defect is a per-pixel blend weight, and the mask is the set of pixels with
a non-zero weight, so nothing outside the mask changes. `scratch`, `hole`, `stain` and `extra` need no metadata
and work on any RGB image (the datamodule puts them on held-out normal images of real datasets for validation);
`missing` removes a part of an object and repaints the board or plate that was under it.

Layout written by `generate` (the one the MVTec AD loader reads)::

    <root>/<category>/train/good/000.png
    <root>/<category>/test/good/000.png
    <root>/<category>/test/<defect>/000.png
    <root>/<category>/ground_truth/<defect>/000_mask.png   (uint8 0/255, same size as the image)
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from shared_utils.cache import generate_once

CATEGORIES = ("fabric", "wood", "circuit", "screws")
TEXTURES = ("fabric", "wood")
OBJECTS = ("circuit", "screws")
DEFECTS = ("scratch", "hole", "stain", "missing", "extra")

# Bump when the images change, so ensure_synthetic does not serve a cache made by older code.
_VERSION = 2
_NOISE_SIGMA = 3.0  # sensor noise (grey levels), also put on defect pixels so they are not suspiciously clean
_MAX_ANGLE = 8.0  # object pose jitter: rotation in degrees ...
_MAX_SHIFT = 0.05  # ... and shift as a fraction of the image size
_SUBPIXEL_BITS = 4  # cv2 drawing `shift`: shapes land at fractional positions, so the pose jitter is continuous

Shape = tuple  # ("poly", points) | ("circle", centre, radius) | ("line", points, thickness); unit-square coords
Rgb = tuple[float, float, float]


def defects_of(category: str) -> tuple[str, ...]:
    """The defect types generated for a category: objects lose a part, textures get a foreign part pasted."""
    _check_category(category)
    return ("scratch", "hole", "stain", "missing") if category in OBJECTS else ("scratch", "hole", "stain", "extra")


# --------------------------------------------------------------------------------------------------------------
# Normal images
# --------------------------------------------------------------------------------------------------------------


def render_normal(category: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """Render one defect-free RGB uint8 image of shape (size, size, 3).

    The metadata holds what part-related defects need: `object_mask` (bool, where the board/plate is; None for
    textures), `parts` (list of {"name", "mask"}: each removable part's visible footprint after the pose jitter),
    `background` (float32 RGB of the object without its parts, jittered but noise-free; None for textures) and
    `pose` ({"angle", "shift"}; None for textures).
    """
    _check_category(category)
    if size < 32:
        raise ValueError(f"image size must be >= 32 pixels to draw the parts, got {size}")
    meta: dict = {"category": category, "object_mask": None, "parts": [], "background": None, "pose": None}
    if category == "fabric":
        image = _fabric(rng, size)
    elif category == "wood":
        image = _wood(rng, size)
    else:
        image = _object(category, rng, size, meta)
    # Illumination and camera white balance differ a little between shots; the noise is the sensor's.
    gain = (rng.uniform(0.92, 1.08) * rng.uniform(0.96, 1.04, 3)).astype(np.float32)
    image = image * gain
    if meta["background"] is not None:
        meta["background"] = meta["background"] * gain
    return _to_uint8(image + rng.normal(0.0, _NOISE_SIGMA, image.shape)), meta


def _fabric(rng: np.random.Generator, size: int) -> np.ndarray:
    """Plain weave: threads alternate over/under in a checkerboard of cells, plus yarn fuzz and dye blotches."""
    pitch = max(3.0, size / 26)  # thread pitch in pixels (~5 px at 128 px)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    u = (x + rng.uniform(0, 2 * pitch)) / pitch  # random phase: every crop of the cloth is as likely
    v = (y + rng.uniform(0, 2 * pitch)) / pitch
    across_u, across_v = np.sin(np.pi * (u % 1)), np.sin(np.pi * (v % 1))
    warp_on_top = (np.floor(u) + np.floor(v)) % 2 == 0
    # A visible thread is brightest along its centre line and dips where it goes under the crossing thread.
    weave = np.where(warp_on_top, across_u * (0.6 + 0.4 * across_v), across_v * (0.6 + 0.4 * across_u))
    fuzz = _streaks(rng, size, 0.7, 0.7)
    lum = 0.7 + 0.32 * weave + 0.04 * fuzz + 0.04 * _smooth_noise(rng, size, cells=4)
    base = np.array([72, 98, 150], np.float32) * rng.uniform(0.95, 1.05, 3).astype(np.float32)  # denim blue
    return lum[..., None] * base


def _wood(rng: np.random.Generator, size: int) -> np.ndarray:
    """Plain-sawn wood: growth rings of a trunk centred far outside the image, warped by smooth noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = np.deg2rad(rng.uniform(-6, 6))  # grain runs roughly horizontally
    xr, yr = x * np.cos(theta) + y * np.sin(theta), -x * np.sin(theta) + y * np.cos(theta)
    # A far centre makes the rings near-parallel arcs of the same curvature everywhere: the texture is stationary.
    cx, cy = rng.uniform(-size, 2 * size), -size * rng.uniform(2.5, 5.0)
    period = size / 9 * rng.uniform(0.85, 1.15)
    # Rings bend gently along the grain and hardly across it: warp noise stretched along x.
    radius = np.sqrt((xr - cx) ** 2 + (yr - cy) ** 2) + 0.6 * period * _smooth_noise(rng, size, cells=(4, 2))
    ring = ((radius / period + rng.uniform()) % 1) ** 2.5  # slow earlywood rise, sharp dark latewood edge
    # Fibres: white noise smeared along the grain.
    fibre = _streaks(rng, size, size / 12, 0.6)
    dark = np.clip(0.2 + 0.6 * ring + 0.1 * fibre + 0.06 * _smooth_noise(rng, size, cells=5), 0, 1)[..., None]
    light, brown = np.array([205, 155, 100], np.float32), np.array([125, 75, 38], np.float32)
    return (light + (brown - light) * dark) * rng.uniform(0.95, 1.05, 3).astype(np.float32)


def _object(category: str, rng: np.random.Generator, size: int, meta: dict) -> np.ndarray:
    """Draw a backdrop, the object body (board/plate) and its removable parts under one random pose."""
    angle, shift = rng.uniform(-_MAX_ANGLE, _MAX_ANGLE), rng.uniform(-_MAX_SHIFT, _MAX_SHIFT, 2) * size
    pose = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    pose[:, 2] += shift
    layout = _circuit_layout if category == "circuit" else _screws_layout
    backdrop, outline, body_colour, body_texture, marks, parts = layout(rng, size, pose)

    image = np.broadcast_to(np.asarray(backdrop, np.float32), (size, size, 3)).copy()
    image += 4.0 * _smooth_noise(rng, size, cells=3)[..., None]  # uneven lighting of the backdrop
    body = _coverage(outline, size, pose)
    image = _blend(image, body / np.float32(255), np.asarray(body_colour, np.float32) * (1 + body_texture[..., None]))
    for shape, colour in marks:  # printed or machined into the body: traces, pads, holes
        _paint(image, _coverage(shape, size, pose), colour)
    meta["background"] = image.copy()  # what is left when a part goes missing

    footprints = []
    for name, shapes in parts:
        part = np.zeros((size, size), bool)
        for shape, colour in shapes:
            coverage = _coverage(shape, size, pose)
            _paint(image, coverage, colour)
            part |= coverage > 0
        footprints.append((name, part))
    covered = np.zeros((size, size), bool)
    for name, part in reversed(footprints):  # a part drawn later hides what is under it
        meta["parts"].insert(0, {"name": name, "mask": part & ~covered})
        covered |= part
    meta["object_mask"] = body > 127
    meta["pose"] = {"angle": float(angle), "shift": (float(shift[0]), float(shift[1]))}
    return image


def _circuit_layout(rng: np.random.Generator, size: int, pose: np.ndarray):
    """A green PCB with traces and pads; parts: a chip with pins, two capacitors, two resistors."""
    board = _rect(0.5, 0.5, 0.66, 0.52)
    copper, gold = (150, 120, 55), (200, 170, 80)
    marks = [
        (("line", [(0.22, 0.30), (0.60, 0.30), (0.68, 0.38)], 0.012), copper),
        (("line", [(0.30, 0.70), (0.24, 0.70), (0.24, 0.40), (0.30, 0.40)], 0.012), copper),
        (("line", [(0.58, 0.66), (0.68, 0.66), (0.68, 0.60)], 0.012), copper),
        (("line", [(0.50, 0.47), (0.78, 0.47)], 0.010), copper),
    ]
    marks += [(("poly", _rect(x, 0.66, 0.035, 0.05)), gold) for x in (0.29, 0.41, 0.46, 0.58)]  # resistor pads
    marks += [(("circle", c, 0.025), gold) for c in ((0.21, 0.27), (0.79, 0.27), (0.21, 0.73), (0.79, 0.73))]
    marks += [(("circle", c, 0.012), (20, 20, 20)) for c in ((0.21, 0.27), (0.79, 0.27), (0.21, 0.73), (0.79, 0.73))]

    chip = [(("poly", _rect(0.40, 0.47, 0.18, 0.14)), (28, 28, 32))]
    for i in range(5):  # gull-wing pins on both long sides
        px = 0.32 + i * 0.04
        chip += [(("poly", _rect(px, 0.385, 0.018, 0.03)), (195, 195, 200))]
        chip += [(("poly", _rect(px, 0.555, 0.018, 0.03)), (195, 195, 200))]
    chip += [(("circle", (0.33, 0.42), 0.012), (75, 75, 80))]  # pin-1 dot
    capacitor = [
        (("circle", (0.68, 0.38), 0.055), (185, 187, 192)),
        (("circle", (0.68, 0.38), 0.045), (160, 165, 175)),
        (("line", [(0.65, 0.38), (0.71, 0.38)], 0.008), (90, 90, 95)),  # pressure vent
        (("line", [(0.68, 0.35), (0.68, 0.41)], 0.008), (90, 90, 95)),
    ]
    blue_cap = [(("circle", (0.68, 0.60), 0.045), (50, 80, 160)), (("circle", (0.68, 0.60), 0.03), (180, 182, 190))]

    def resistor(x: float) -> list:
        body = [(("poly", _rect(x, 0.66, 0.10, 0.045)), (210, 180, 130))]
        bands = [(110, 60, 20), (200, 30, 30), (230, 120, 30)]  # colour code, random value per board
        order = rng.permutation(3)
        return body + [(("poly", _rect(x - 0.02 * (1 - j), 0.66, 0.012, 0.045)), bands[k]) for j, k in enumerate(order)]

    parts = [("chip", chip), ("capacitor", capacitor), ("blue_capacitor", blue_cap)]
    parts += [("resistor_left", resistor(0.35)), ("resistor_right", resistor(0.52))]
    texture = 0.02 * _streaks(rng, size, 0.8, 0.8)  # glass-fibre weave showing through the solder mask
    return (38, 38, 42), ("poly", board), (30, 100, 55), texture, marks, parts


def _screws_layout(rng: np.random.Generator, size: int, pose: np.ndarray):
    """A brushed-metal bracket fastened by four screws and a central nut; under each sits a threaded hole."""
    plate = _rounded_rect(0.5, 0.5, 0.62, 0.48, 0.06)
    corners = [(0.5 + dx, 0.5 + dy) for dy in (-0.16, 0.16) for dx in (-0.23, 0.23)]
    holes = [(("circle", c, 0.02), (35, 35, 38)) for c in [*corners, (0.5, 0.5)]]
    holes += [(("poly", _rounded_rect(x, 0.5, 0.035, 0.12, 0.017)), (45, 45, 48)) for x in (0.33, 0.67)]  # slots

    parts = []
    for i, (cx, cy) in enumerate(corners):
        phi = rng.uniform(0, np.pi)  # each screw is tightened to its own slot angle
        d = 0.036 * np.array([np.cos(phi), np.sin(phi)])
        e = np.array([-d[1], d[0]])
        c = np.array([cx, cy])
        screw = [
            (("circle", (cx, cy), 0.05), (105, 107, 112)),
            (("circle", (cx - 0.006, cy - 0.006), 0.04), (150, 152, 158)),  # lit dome of the head
            (("line", [tuple(c - d), tuple(c + d)], 0.011), (40, 40, 44)),  # Phillips cross
            (("line", [tuple(c - e), tuple(c + e)], 0.011), (40, 40, 44)),
        ]
        parts.append((f"screw_{i}", screw))
    hexagon = [(0.5 + 0.075 * np.cos(a), 0.5 + 0.075 * np.sin(a)) for a in np.arange(6) * np.pi / 3 + rng.uniform(0, 1)]
    nut = [
        (("poly", hexagon), (125, 128, 134)),
        (("circle", (0.5, 0.5), 0.042), (95, 97, 102)),
        (("circle", (0.5, 0.5), 0.03), (165, 167, 172)),  # bolt end
    ]
    parts.append(("nut", nut))
    # Brushing marks follow the plate: smear noise along x, then move it with the pose.
    brushed = cv2.warpAffine(_streaks(rng, size, size / 10, 0.5), pose, (size, size), borderMode=cv2.BORDER_REFLECT)
    return (62, 58, 54), ("poly", plate), (170, 172, 176), 0.06 * brushed, holes, parts


# --------------------------------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------------------------------


def add_defect(
    image: np.ndarray, kind: str, rng: np.random.Generator, meta: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (defective RGB uint8 image, exact bool mask of the changed pixels).

    `scratch`, `hole`, `stain` and `extra` work on any RGB uint8 image; with `meta` from `render_normal` they are
    placed on the object rather than the backdrop. `missing` needs that `meta` (an object's parts and background).
    Defects cover roughly 0.2%-5% of the image.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    if kind not in DEFECTS:
        raise ValueError(f"unknown defect {kind!r}; expected one of {DEFECTS}")
    h, w = image.shape[:2]
    scale = min(h, w)
    region = meta.get("object_mask") if meta else None
    source = image.astype(np.float32)

    if kind == "missing":
        parts = meta.get("parts") if meta else None
        if not parts:
            raise ValueError("'missing' needs the meta of an object image from render_normal (its parts)")
        part = parts[rng.integers(len(parts))]
        alpha = part["mask"].astype(np.float32)
        target = meta["background"]
    elif kind == "scratch":
        alpha, target = _scratch(source, rng, scale, _pick_centre(rng, h, w, 0.22 * scale, region))
    elif kind == "hole":
        alpha, target = _hole(source, rng, scale, _pick_centre(rng, h, w, 0.1 * scale, region))
    elif kind == "stain":
        alpha, target = _stain(source, rng, scale, _pick_centre(rng, h, w, 0.1 * scale, region))
    else:
        alpha, target = _extra(source, rng, scale, _pick_centre(rng, h, w, 0.12 * scale, region))

    mask = alpha > 0
    changed = _blend(source, alpha, target) + rng.normal(0.0, _NOISE_SIGMA, source.shape)
    # Pixels outside the mask are copied, not re-quantised: the mask is exactly the set of pixels that changed.
    return np.where(mask[..., None], _to_uint8(changed), image), mask


def _scratch(image: np.ndarray, rng: np.random.Generator, scale: int, centre: np.ndarray):
    """A thin curved line: a bent segment drawn hard-edged, bright on dark surfaces and dark on bright ones."""
    length, bend, direction = scale * rng.uniform(0.25, 0.42), rng.uniform(-0.3, 0.3), rng.uniform(0, np.pi)
    along = np.array([np.cos(direction), np.sin(direction)])
    normal = np.array([-along[1], along[0]])
    t = np.linspace(-0.5, 0.5, 24)[:, None]
    points = centre + t * length * along + (t**2 - 0.25) * bend * length * normal
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.polylines(mask, [np.round(points).astype(np.int32)], False, 1, thickness=max(1, round(scale / 64)))
    lum = _luminance(image)[mask > 0].mean() if mask.any() else 128.0
    alpha = mask * np.float32(rng.uniform(0.75, 0.95))
    return alpha, (25.0 if lum > 110 else 235.0)


def _hole(image: np.ndarray, rng: np.random.Generator, scale: int, centre: np.ndarray):
    """A dark irregular blob (the hole) with a lighter torn rim around it."""
    blob = _blob(image.shape[:2], centre, scale * rng.uniform(0.035, 0.06), rng)
    rim_width = max(1, round(scale / 96))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim_width + 1, 2 * rim_width + 1))
    rim = (cv2.dilate(blob, kernel) > 0) & (blob == 0)
    target = np.where(rim[..., None], 0.45 * image + 0.55 * 225.0, np.float32([18, 16, 15]))
    return (rim | (blob > 0)).astype(np.float32), target


def _stain(image: np.ndarray, rng: np.random.Generator, scale: int, centre: np.ndarray):
    """A colour-tinted blob whose opacity fades out towards a ragged edge (coffee, rust, oil, ink, ...)."""
    h, w = image.shape[:2]
    radius = scale * rng.uniform(0.05, 0.085)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ragged = np.clip(1 + 0.25 * _smooth_noise(rng, max(h, w), cells=6)[:h, :w], 0.7, 1.3)  # stays one blob
    distance = np.hypot(x - centre[0], y - centre[1]) / radius * ragged
    alpha = np.clip((1 - distance) / 0.3, 0, 1) * np.float32(rng.uniform(0.7, 0.9))
    alpha[alpha < 0.08] = 0  # cut the faint tail, so the mask is the stain a person would outline
    tints = np.float32([[0.85, 0.6, 0.35], [0.9, 0.45, 0.2], [0.45, 0.42, 0.35], [0.35, 0.45, 0.9], [0.55, 0.8, 0.35]])
    tint = tints[rng.integers(len(tints))]
    # Dye both multiplies the surface (it stays visible through the stain) and adds its own colour.
    return alpha, 0.6 * image * tint + 0.3 * 255.0 * tint


def _extra(image: np.ndarray, rng: np.random.Generator, scale: int, centre: np.ndarray):
    """A foreign hard-edged piece (plastic, debris) lying on the surface, shaded and outlined."""
    h, w = image.shape[:2]
    blob = _blob((h, w), centre, scale * rng.uniform(0.04, 0.06), rng, stretch=rng.uniform(1.2, 2.0)) > 0
    palette = np.float32([[235, 235, 228], [205, 35, 35], [35, 65, 205], [240, 205, 45], [25, 25, 25]])
    local = image[blob].mean(axis=0)
    colour = palette[np.argmax(np.abs(palette - local).sum(axis=1))]  # the colour that stands out most here
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    light = np.clip(1.1 - 0.3 * ((x - centre[0]) + (y - centre[1])) / (0.1 * scale), 0.7, 1.3)  # lit from top-left
    outline = blob & ~cv2.erode(blob.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    target = colour * light[..., None] * np.where(outline, 0.55, 1.0)[..., None]
    return blob.astype(np.float32), target


def _blob(shape: tuple[int, int], centre: np.ndarray, radius: float, rng: np.random.Generator, stretch: float = 1.0):
    """uint8 mask of an irregular filled polygon: a circle with random low harmonics, optionally elongated."""
    angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    wobble = 1 + sum(rng.uniform(0, 0.12) * np.cos(k * angles + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    local = np.stack([stretch * np.cos(angles), np.sin(angles) / stretch], axis=1) * (radius * wobble)[:, None]
    turn = rng.uniform(0, np.pi)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(centre + local @ rotation.T).astype(np.int32)], 1)
    return mask


def _pick_centre(rng: np.random.Generator, h: int, w: int, margin: float, region: np.ndarray | None) -> np.ndarray:
    """A defect centre `margin` pixels inside the image, on the object when its mask is known."""
    margin = min(margin, 0.45 * min(h, w))
    if region is not None:
        inner = np.zeros((h, w), bool)
        m = int(np.ceil(margin))
        inner[m : h - m, m : w - m] = region[m : h - m, m : w - m]
        ys, xs = np.nonzero(inner)
        if len(xs):
            i = rng.integers(len(xs))
            return np.array([xs[i], ys[i]], np.float64) + rng.uniform(-0.5, 0.5, 2)
    return np.array([rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)])


# --------------------------------------------------------------------------------------------------------------
# Writing the MVTec AD layout
# --------------------------------------------------------------------------------------------------------------


def generate(
    root: str | Path,
    categories: Sequence[str] = CATEGORIES,
    image_size: int = 128,
    n_train: int = 60,
    n_test_good: int = 20,
    n_test_per_defect: int = 10,
    seed: int = 0,
) -> Path:
    """Write the synthetic categories under `root` in the MVTec AD layout and return `root`.

    Each image draws from its own child seed keyed by (seed, category, split, index), so a category or an image
    is the same whichever other categories and counts are asked for. A category folder that already holds files
    is refused rather than overwritten (the root may be a real dataset: MVTec AD also has `wood`).
    """
    root = Path(root)
    for category in categories:
        _check_category(category)
        folder = root / category
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} already exists and is not empty; generate into a fresh root")
    for category in categories:
        folder = root / category
        for i in range(n_train):
            image, _ = render_normal(category, _child_rng(seed, category, "train/good", i), image_size)
            _write(folder / "train" / "good" / f"{i:03d}.png", image)
        for i in range(n_test_good):
            image, _ = render_normal(category, _child_rng(seed, category, "test/good", i), image_size)
            _write(folder / "test" / "good" / f"{i:03d}.png", image)
        for kind in defects_of(category):
            for i in range(n_test_per_defect):
                rng = _child_rng(seed, category, f"test/{kind}", i)
                normal, meta = render_normal(category, rng, image_size)
                image, mask = add_defect(normal, kind, rng, meta)
                _write(folder / "test" / kind / f"{i:03d}.png", image)
                _write(folder / "ground_truth" / kind / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
    return root


def ensure_synthetic(cache_dir: str | Path, **kwargs) -> Path:
    """Generate once into `cache_dir/<hash of the arguments>/` and return that root (`shared_utils.cache`:
    a marker written last, an interrupted run never leaves a half dataset that looks complete)."""
    bound = inspect.signature(generate).bind(None, **kwargs)
    bound.apply_defaults()
    settings = {k: v for k, v in bound.arguments.items() if k != "root"}
    settings["categories"] = list(settings["categories"])
    record = {"version": _VERSION, **settings}
    return generate_once(cache_dir, record, lambda root: generate(root, **settings))


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------


def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"unknown synthetic category {category!r}; expected one of {CATEGORIES}")


def _child_rng(seed: int, category: str, split: str, index: int) -> np.random.Generator:
    """Independent stream per image, keyed by names (crc32) rather than loop positions."""
    key = (zlib.crc32(category.encode()), zlib.crc32(split.encode()), index)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image[..., ::-1] if image.ndim == 3 else image  # cv2 writes BGR
    if not cv2.imwrite(str(path), np.ascontiguousarray(data)):
        raise OSError(f"could not write {path}")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _luminance(image: np.ndarray) -> np.ndarray:
    return image @ np.float32([0.299, 0.587, 0.114])


def _blend(image: np.ndarray, alpha: np.ndarray, target) -> np.ndarray:
    """Per-pixel alpha compositing of `target` (colour or image) over `image`."""
    a = alpha[..., None]
    return image * (1 - a) + np.asarray(target, np.float32) * a


def _paint(image: np.ndarray, coverage: np.ndarray, colour: Rgb) -> None:
    """Composite a flat colour with uint8 `coverage` into `image` in place, only inside the shape's bounding box."""
    x, y, w, h = cv2.boundingRect(coverage)  # parts are small: blending the whole image per shape is the cost
    alpha = coverage[y : y + h, x : x + w, None] / np.float32(255)
    window = image[y : y + h, x : x + w]
    window[:] = window * (1 - alpha) + np.asarray(colour, np.float32) * alpha


def _smooth_noise(rng: np.random.Generator, size: int, cells: int | tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-std noise varying over about size / cells pixels (per (rows, cols) if a pair)."""
    rows, cols = (cells, cells) if isinstance(cells, int) else cells
    grid = rng.standard_normal((rows + 1, cols + 1)).astype(np.float32)  # smoothed by the bicubic upsampling
    noise = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return (noise - noise.mean()) / (noise.std() + 1e-6)


def _streaks(rng: np.random.Generator, size: int, sigma_x: float, sigma_y: float) -> np.ndarray:
    """Unit-std white noise blurred with (sigma_x, sigma_y): fibres, brushing marks or fuzz when they differ."""
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma_x, sigmaY=sigma_y)
    return noise / (noise.std() + 1e-6)


def _rect(cx: float, cy: float, w: float, h: float) -> list[tuple[float, float]]:
    return [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]


def _rounded_rect(cx: float, cy: float, w: float, h: float, r: float) -> list[tuple[float, float]]:
    points = []
    for (sx, sy), start in zip(((1, 1), (-1, 1), (-1, -1), (1, -1)), (0, 90, 180, 270)):
        corner = (cx + sx * (w / 2 - r), cy + sy * (h / 2 - r))
        for a in np.deg2rad(np.linspace(start, start + 90, 5)):
            points.append((corner[0] + r * np.cos(a), corner[1] + r * np.sin(a)))
    return points


def _coverage(shape: Shape, size: int, pose: np.ndarray) -> np.ndarray:
    """Anti-aliased uint8 coverage (0-255) of one shape given in unit-square coordinates, moved by the pose."""
    canvas = np.zeros((size, size), np.uint8)
    one = 1 << _SUBPIXEL_BITS

    def to_pixels(points) -> np.ndarray:
        pixels = np.asarray(points, np.float64).reshape(-1, 2) * size
        return np.round((pixels @ pose[:, :2].T + pose[:, 2]) * one).astype(np.int32)

    if shape[0] == "poly":
        cv2.fillPoly(canvas, [to_pixels(shape[1])], 255, cv2.LINE_AA, _SUBPIXEL_BITS)
    elif shape[0] == "circle":
        centre = tuple(int(v) for v in to_pixels(shape[1])[0])
        cv2.circle(canvas, centre, round(shape[2] * size * one), 255, -1, cv2.LINE_AA, _SUBPIXEL_BITS)
    else:
        thickness = max(1, round(shape[2] * size))
        cv2.polylines(canvas, [to_pixels(shape[1])], False, 255, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
    return canvas
