"""Shape scenes: the project's procedural detection data, written in the PASCAL VOC layout.

What it is a proxy of: a detection benchmark (PASCAL VOC, COCO) on which TOG, the sponge and detection defenses
are measured. A scene is a textured background (a colour gradient under stripes, a checkerboard or blotches,
plus pixel noise) holding 1-4 filled shapes of five classes (``CLASSES``), each 30-45 % of the image side,
turned by up to 20 degrees (the circle is not turned), in a colour drawn apart from the class and from the
background under it; objects keep 2 px apart, so every object is fully visible and its box is the tight box of
its pixels.
What it is not: real objects. It checks that attacks and defenses run and behave as the papers describe (an
attack lowers mAP, a vanishing attack removes detections), not how large the effects are on VOC.

Layout written by ``generate`` (the one ``shared_utils.detection_formats.read_voc`` reads)::

    <root>/JPEGImages/<id>.jpg  <root>/Annotations/<id>.xml  <root>/ImageSets/Main/{train,val,test}.txt

Boxes: x = the leftmost column of the shape's pixels, w = rightmost - leftmost + 1 (the same for y, h), so the
VOC file holds xmin = x + 1, xmax = x + w (1-based inclusive) and reads back exactly. Image ``i`` of a split has
the id ``<split>_<i:05d>`` and depends on (seed, split, i) only: a larger split extends a smaller one. Cache
generated sets with ``shared_utils.cache.generate_once`` and ``VERSION`` in the record.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from shared_utils.detection_formats import write_voc

CLASSES = ["circle", "square", "triangle", "star", "cross"]
VERSION = 1  # bump when the generated data changes (the cache key)
SPLITS = {"train": 0, "val": 1, "test": 2}  # split -> the number that seeds its images
DEFAULT_SIZES = {"train": 400, "val": 100, "test": 100}
JPEG_QUALITY = 95

_OBJECTS = (1, 4)  # objects per image, inclusive
_SIZE = (0.30, 0.45)  # object size (longer side of its unit frame) as a fraction of the image side
_GAP = 2  # pixels between objects
_TRIES = 50
_SHIFT = 4  # cv2 sub-pixel bits: shapes land at fractional positions and sizes
_NOISE_SIGMA = 4.0


def _polygon(name: str) -> np.ndarray:
    """The outline of class ``name`` in a unit frame (extent [-1, 1], y down)."""
    if name == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if name == "square":
        return np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64)
    if name == "triangle":
        return np.array([(0, -1), (1, 0.8), (-1, 0.8)], dtype=np.float64)
    if name == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if name == "cross":
        a = 0.33
        return np.array([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a),
                         (-1, -a), (-a, -a)], dtype=np.float64)
    raise ValueError(f"unknown shape {name!r}: expected one of {CLASSES}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background (float32 RGB in [0, 255]): a two-colour gradient under one texture."""
    a, b = rng.uniform(30, 225, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size] / size
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-9)
    image = a + (b - a) * ramp[..., None]
    texture = rng.integers(3)
    if texture == 0:  # stripes
        period, turn = rng.uniform(6, 16), rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * (np.cos(turn) * xs + np.sin(turn) * ys) * size / period)
    elif texture == 1:  # checkerboard
        cell = rng.integers(6, 16)
        wave = np.where(((np.arange(size)[:, None] // cell) + (np.arange(size)[None, :] // cell)) % 2 == 0, 1.0, -1.0)
    else:  # blotches: smoothed noise
        wave = cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), sigmaX=size / 16)
        wave /= np.abs(wave).max() + 1e-9
    image = image + rng.uniform(15, 40) * wave[..., None] * rng.uniform(0.5, 1.0, size=3)
    return image.astype(np.float32)


def _shape_mask(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """The filled shape ``name`` at a random place, scale and rotation, as a (size, size) uint8 mask."""
    scale = rng.uniform(*_SIZE) * size / 2
    turn = 0.0 if name == "circle" else np.deg2rad(rng.uniform(-20, 20))
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    points = _polygon(name) @ rotation.T * scale
    margin = np.abs(points).max(axis=0) + 1
    centre = rng.uniform(margin, size - margin)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round((points + centre) * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return mask


def render(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """One scene: a uint8 RGB image (size, size, 3) and its objects (class name, (x, y, w, h) pixel box)."""
    image = _background(rng, size)
    objects: list[tuple[str, tuple[int, int, int, int]]] = []
    taken = np.zeros((size, size), np.uint8)  # the objects so far, grown by the gap
    for _ in range(rng.integers(_OBJECTS[0], _OBJECTS[1] + 1)):
        name = CLASSES[rng.integers(len(CLASSES))]
        for _ in range(_TRIES):
            mask = _shape_mask(rng, name, size)
            if not (mask & taken).any():
                break
        else:
            continue  # no room left for this object
        taken |= cv2.dilate(mask, np.ones((2 * _GAP + 1, 2 * _GAP + 1), np.uint8))
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        # A colour far enough from the background under the shape that the object is visible.
        under = image[mask.astype(bool)].mean(axis=0)
        colour = rng.uniform(0, 255, size=3)
        while np.abs(colour - under).max() < 90:
            colour = rng.uniform(0, 255, size=3)
        shade = 1 + 0.15 * cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), sigmaX=2)[..., None]
        image = np.where(mask[..., None].astype(bool), colour * shade, image)
        objects.append((name, box))
    image = image + rng.normal(0, _NOISE_SIGMA, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), objects


def generate(root: str | Path, seed: int = 0, sizes: dict[str, int] | None = None, image_size: int = 96) -> None:
    """Write the scenes under ``root`` (layout in the module docstring): ``sizes`` overrides the number of
    images of some splits (``DEFAULT_SIZES`` for the rest), ``image_size`` is the side in pixels (96 or 128: a
    multiple of 32, CenterNet's deepest stride)."""
    unknown = set(sizes or {}) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown scene splits {sorted(unknown)}; expected some of {list(SPLITS)}")
    if image_size < 64 or image_size % 32:
        raise ValueError(f"image_size={image_size}: expected a multiple of 32 of at least 64 (e.g. 96 or 128)")
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i, "name": name} for i, name in enumerate(CLASSES, start=1)]
    for split, number in SPLITS.items():
        images, annotations = [], []
        for i in range(sizes[split]):
            rng = np.random.default_rng([seed, number, i])
            image, objects = render(rng, image_size)
            file_name = f"{split}_{i:05d}.jpg"
            cv2.imwrite(str(root / "JPEGImages" / file_name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            images.append({"id": i + 1, "file_name": file_name, "width": image_size, "height": image_size})
            for name, (x, y, w, h) in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                    "category_id": CLASSES.index(name) + 1, "bbox": [x, y, w, h], "area": w * h,
                                    "iscrowd": 0})
        write_voc({"images": images, "annotations": annotations, "categories": categories}, root, split)
