"""Shape-texture: a 10-class 32x32 RGB classification set for adversarial training on a CPU in minutes.

What it is a proxy of. Adversarial training papers (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018; Zhang et al., "TRADES", ICML 2019; Wong et al., "Fast is better than free",
ICLR 2020) report on CIFAR-10: 10 classes, 32x32 RGB, 50k/10k images, small CNNs/ResNets, eps 8/255. This set
keeps the format (10 classes, 32x32 RGB uint8, train/val/test) and the trait that makes those numbers
meaningful: a clean classifier is good but not perfect, and it can use both global shape and local texture
(Geirhos et al., "ImageNet-trained CNNs are biased towards texture", ICLR 2019), which adversarial training
trades against each other. It is not CIFAR-10: procedural patterns, not photos; robust accuracies on it are not
comparable with published CIFAR-10 numbers.

Each class is one shape filled with one texture family (``CLASSES``: "striped_circle" is a circle filled with
stripes). Per image the shape has a random position (at most ~40% cut off by the border), size (half-extent
8-13 px), rotation and aspect jitter; its texture a random orientation, period (3.5-6.5 px), phase and two
random colours 90-200 apart in RGB. The background is a texture of any family (class textures included) with
two textured clutter ellipses (2-7 px half-axes), all in subdued colour pairs (15-70 apart); in 25% of images a
small clutter ellipse is drawn over the object (occlusion). Then brightness/contrast jitter and Gaussian noise
(sigma 2-8 grey levels). Colours are independent of class and background, so some objects have little contrast
with their background, and every texture family also appears in the background: the class is only in the
object's shape and fill. A small CNN (5 conv layers, 16-128 channels, 14 epochs of AdamW on the 10k training
images, random flips) reached 84% on the validation split, 95% on training images: good, not perfect.

Rendering is vectorised over chunks of images: every pattern is an analytic function of pixel coordinates,
evaluated at 2x2 supersampling and averaged down (anti-aliased edges). The default 13k images take about 5 s of
one CPU core. A split is a function of (seed, split, size).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from shared_utils.cache import generate_once
from shared_utils.datasets import DatasetFormatError, folder_listing

CLASSES = [
    "striped_circle", "checked_square", "dotted_triangle", "wavy_star", "grid_cross",
    "concentric_hexagon", "zigzag_diamond", "spoked_ring", "blotchy_heart", "banded_arrow",
]
SHAPES = ["circle", "square", "triangle", "star", "cross", "hexagon", "diamond", "ring", "heart", "arrow"]
TEXTURES = ["stripes", "checks", "dots", "waves", "grid", "concentric", "zigzag", "spokes", "blotches", "bands"]
# Class k is SHAPES[k] filled with TEXTURES[k].

VERSION = 1  # bump when the generated images change (the cache key)
IMAGE_SIZE = 32
DEFAULT_SIZES = {"train": 10000, "val": 1000, "test": 2000}
_SPLIT_NUMBERS = {"train": 0, "val": 1, "test": 2}  # seeds each split's generator
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")  # ImageFolder's, less .pgm

_SS = 2  # supersampling factor: patterns are evaluated on a 64x64 grid and averaged down to 32x32
_CHUNK = 128  # images rendered at once (memory: a few (128, 64, 64) float32 arrays, cache-sized)
_HALF_EXTENT = (8.0, 13.0)  # object half-size in px
_PERIOD = (3.5, 6.5)  # texture period in px
_NOISE_SIGMA = (2.0, 8.0)
_OCCLUDE_PROB = 0.25
# Distance in RGB between a texture's two colours: the object's texture stands out, the clutter's is subdued.
_OBJECT_CONTRAST = (90.0, 200.0)
_CLUTTER_CONTRAST = (15.0, 70.0)
_N_PARAMS = 8  # uniform numbers per pattern instance (angle, period, phases, blotch directions)


# --------------------------------------------------------------------------------------------------------------
# Patterns: functions of pixel coordinates (n, H, W) relative to the pattern's origin, per-image parameters (n,1,1)
# --------------------------------------------------------------------------------------------------------------


def _rotate(x: np.ndarray, y: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return x * c + y * s, y * c - x * s


def _frac(t: np.ndarray) -> np.ndarray:
    return t - np.floor(t)


def _texture(kind: str, x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Blend weight in [0, 1] between a texture's two colours. ``r`` (n, _N_PARAMS, 1, 1): uniform numbers that
    set orientation, period and phases, so every family gets random orientation and frequency jitter."""
    period = _PERIOD[0] + (_PERIOD[1] - _PERIOD[0]) * r[:, 1]
    p, q = _rotate(x, y, np.pi * 2 * r[:, 0])
    p, q, phase = p / period, q / period, r[:, 2]
    if kind == "stripes":
        w = _frac(p + phase) < 0.5
    elif kind == "checks":
        w = (np.floor(2 * p + phase) + np.floor(2 * q + r[:, 3])) % 2 == 0
    elif kind == "dots":
        w = (_frac(p + phase) - 0.5) ** 2 + (_frac(q + r[:, 3]) - 0.5) ** 2 < 0.29**2
    elif kind == "waves":
        w = _frac(p + 0.35 * np.sin(np.pi * q) + phase) < 0.5
    elif kind == "grid":
        w = (_frac(p + phase) < 0.3) | (_frac(q + r[:, 3]) < 0.3)
    elif kind == "concentric":
        w = _frac(np.sqrt(p**2 + q**2) + phase) < 0.5
    elif kind == "zigzag":
        w = _frac(p + 0.9 * np.abs(_frac(q) - 0.5) + phase) < 0.5
    elif kind == "spokes":
        spokes = np.floor(5 + 4 * r[:, 3])
        w = _frac(spokes * np.arctan2(q, p) / (2 * np.pi) + phase) < 0.5
    elif kind == "blotches":  # three plane waves of period 2P in random directions: irregular blobs
        total = sum(np.cos(np.pi * (x * np.cos(a) + y * np.sin(a)) / period + 2 * np.pi * b)
                    for a, b in ((2 * np.pi * r[:, 3], r[:, 4]), (2 * np.pi * r[:, 5], r[:, 6]),
                                 (2 * np.pi * r[:, 7], phase)))
        w = total > 0
    elif kind == "bands":  # a smooth sinusoidal colour ramp, 3x the period: no edges at all
        return 0.5 + 0.5 * np.sin(2 * np.pi * (p / 3 + phase))
    else:
        raise ValueError(f"unknown texture {kind!r}; expected one of {TEXTURES}")
    return w.astype(np.float32)


def _star_radius(theta: np.ndarray) -> np.ndarray:
    """Boundary radius of a five-pointed star at polar angle ``theta`` (1 at the tips, 0.45 between them)."""
    tooth = np.abs(_frac(5 * theta / (2 * np.pi)) * 2 - 1)  # 1 at a tip, 0 half-way between tips
    return 0.45 + 0.55 * tooth**1.5


def _shape(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside mask of a shape in its unit frame (half-extent 1, y down)."""
    if kind == "circle":
        return u**2 + v**2 < 1
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) < 0.85
    if kind == "triangle":
        return (v < 0.8) & (np.abs(u) < 0.95 * (v + 1) / 1.8)
    if kind == "star":
        return np.sqrt(u**2 + v**2) < _star_radius(np.arctan2(v, u) + np.pi / 2)
    if kind == "cross":
        return ((np.abs(u) < 0.33) & (np.abs(v) < 1)) | ((np.abs(v) < 0.33) & (np.abs(u) < 1))
    if kind == "hexagon":
        return np.maximum(np.abs(v), np.abs(u) * 0.866 + np.abs(v) * 0.5) < 0.9
    if kind == "diamond":
        return np.abs(u) / 0.6 + np.abs(v) < 1
    if kind == "ring":
        rr = u**2 + v**2
        return (rr < 1) & (rr > 0.5**2)
    if kind == "heart":
        hx, hy = 1.15 * u, 0.3 - 1.15 * v
        return (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 < 0
    if kind == "arrow":
        shaft = (np.abs(v) < 0.3) & (u > -1) & (u < 0.15)
        head = (u >= 0.15) & (np.abs(v) < 0.85 * (1 - u) / 0.85)
        return shaft | head
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")


def _by_kind(kinds: np.ndarray, names: list[str], fn, *arrays: np.ndarray) -> np.ndarray:
    """Evaluate ``fn(name, *arrays[idx])`` on the images whose kind is ``name``, for every name."""
    out = np.empty(arrays[0].shape[:1] + arrays[0].shape[-2:], np.float32)
    for k, name in enumerate(names):
        idx = np.flatnonzero(kinds == k)
        if len(idx):
            out[idx] = fn(name, *(a[idx] for a in arrays))
    return out


# --------------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------------


def _grid() -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(IMAGE_SIZE * _SS, dtype=np.float32) + 0.5) / _SS  # sample positions in output pixels
    x, y = np.meshgrid(c, c)
    return x[None], y[None]


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    """(n, 1, 1) float32 uniform numbers: per-image parameters that broadcast over the pixel grid."""
    return rng.uniform(low, high, (n, 1, 1)).astype(np.float32)


def _ellipse(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, axes: tuple[float, float]) -> np.ndarray:
    """Inside mask (float32) of ellipses centred at the coordinates' origin, random axes and orientation."""
    n = len(x)
    a, b = _uniform(rng, *axes, n), _uniform(rng, *axes, n)
    p, q = _rotate(x, y, _uniform(rng, 0, np.pi, n))
    return ((p / a) ** 2 + (q / b) ** 2 < 1).astype(np.float32)


def _texture_weights(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Blend weights (n, H, W) of textures of families ``kinds`` with random parameters, origin at (0, 0)."""
    params = rng.random((len(x), _N_PARAMS, 1, 1), dtype=np.float32)
    return _by_kind(kinds, TEXTURES, _texture, x, y, params)


def _render_chunk(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Images of ``labels``. Each layer (background, clutter, object, occluder) is a coverage mask, texture weights
    and two colours. Because compositing is linear in the colours, the supersampled single-channel maps
    (coverage and coverage x weight) are averaged down first and the colours applied at 32x32 (6x less work)."""
    n = len(labels)
    gx, gy = _grid()
    full = (n, *gx.shape[1:])
    layers = []  # (coverage mask before later layers cover it, texture weights, colour contrast range)
    # Background: a texture of any family over the whole image, its origin anywhere.
    ox, oy = _uniform(rng, 0, IMAGE_SIZE, n), _uniform(rng, 0, IMAGE_SIZE, n)
    kinds = rng.integers(len(TEXTURES), size=n)
    layers.append((np.ones(full, np.float32), _texture_weights(rng, gx - ox, gy - oy, kinds), _CLUTTER_CONTRAST))
    for _ in range(2):  # clutter: textured ellipses, smaller than the object, possibly cut by the border
        dx, dy = gx - _uniform(rng, 0, IMAGE_SIZE, n), gy - _uniform(rng, 0, IMAGE_SIZE, n)
        kinds = rng.integers(len(TEXTURES), size=n)
        layers.append((_ellipse(rng, dx, dy, (2.0, 7.0)), _texture_weights(rng, dx, dy, kinds), _CLUTTER_CONTRAST))
    # The object: the class's shape filled with the class's texture, the texture anchored at the object centre.
    half = _uniform(rng, *_HALF_EXTENT, n)
    margin = 0.6 * half  # the centre this far inside the border: at most ~40% of the object is cut off
    cx, cy = (margin + (IMAGE_SIZE - 2 * margin) * _uniform(rng, 0, 1, n) for _ in range(2))
    dx, dy = gx - cx, gy - cy
    u, v = _rotate(dx, dy, _uniform(rng, 0, 2 * np.pi, n))
    aspect = np.exp(_uniform(rng, -0.15, 0.15, n))
    inside = _by_kind(labels, SHAPES, _shape, u * (aspect / half), v / (aspect * half))
    layers.append((inside, _texture_weights(rng, dx, dy, labels), _OBJECT_CONTRAST))
    # Occluder: a small textured ellipse near the object in some images.
    occluded = (rng.random(n) < _OCCLUDE_PROB).astype(np.float32)[:, None, None]
    dx = gx - (cx + half * rng.normal(0, 1, (n, 1, 1)).astype(np.float32))
    dy = gy - (cy + half * rng.normal(0, 1, (n, 1, 1)).astype(np.float32))
    kinds = rng.integers(len(TEXTURES), size=n)
    layers.append((_ellipse(rng, dx, dy, (2.0, 5.0)) * occluded, _texture_weights(rng, dx, dy, kinds),
                   _CLUTTER_CONTRAST))
    # Composite: each layer's visible coverage, averaged down to 32x32 with its texture weights, times its colours.
    image = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    hidden = np.zeros(full, np.float32)  # how much of each pixel later layers cover
    for mask, weights, contrast in reversed(layers):
        visible = mask * (1 - hidden)
        hidden += visible
        a, b = _colour_pair(rng, n, contrast)
        image += _downsample(visible)[..., None] * a + _downsample(visible * weights)[..., None] * (b - a)
    # Photometric jitter and sensor noise.
    mean = image.mean(axis=(1, 2, 3), keepdims=True)
    contrast = rng.uniform(0.7, 1.2, (n, 1, 1, 1)).astype(np.float32)
    image = (image - mean) * contrast + mean + rng.uniform(-25, 25, (n, 1, 1, 1)).astype(np.float32)
    sigma = rng.uniform(*_NOISE_SIGMA, (n, 1, 1, 1)).astype(np.float32)
    image += rng.standard_normal(image.shape, dtype=np.float32) * sigma
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _colour_pair(rng: np.random.Generator, n: int, contrast: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB colours (n, 1, 1, 3) per image: a uniform one and one at a distance in ``contrast`` from it in a
    random direction (both clipped to [0, 255])."""
    a = rng.uniform(0, 255, (n, 3))
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    b = np.clip(a + direction * rng.uniform(*contrast, (n, 1)), 0, 255)
    return a.astype(np.float32)[:, None, None], b.astype(np.float32)[:, None, None]


def _downsample(maps: np.ndarray) -> np.ndarray:
    """(n, 64, 64) -> (n, 32, 32) by averaging 2x2 blocks (the supersampling's box filter, _SS = 2)."""
    return (maps[:, 0::2, 0::2] + maps[:, 1::2, 0::2] + maps[:, 0::2, 1::2] + maps[:, 1::2, 1::2]) * 0.25


def generate(seed: int, sizes: dict[str, int] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Render the splits: ``{split: (images uint8 (N, 32, 32, 3) RGB, labels int64 (N,))}``.

    ``sizes`` maps split names ("train", "val", "test") to image counts (``DEFAULT_SIZES`` when None). Labels
    are balanced (each class ``N / 10`` times, up to rounding) in random order. Deterministic: a split depends on
    (seed, split, size) only, so changing the training size leaves val and test as they were.
    """
    sizes = dict(DEFAULT_SIZES) if sizes is None else dict(sizes)
    unknown = set(sizes) - set(_SPLIT_NUMBERS)
    if unknown:
        raise ValueError(f"unknown shape-texture splits {sorted(unknown)}; expected some of {list(_SPLIT_NUMBERS)}")
    bad = {s: n for s, n in sizes.items() if not (isinstance(n, int) and n >= 0)}
    if bad:
        raise ValueError(f"split sizes must be non-negative integers, got {bad}")
    out = {}
    for split, size in sizes.items():
        rng = np.random.default_rng([seed, _SPLIT_NUMBERS[split]])
        labels = rng.permutation(np.arange(size) % len(CLASSES)).astype(np.int64)
        chunks = [_render_chunk(rng, labels[i:i + _CHUNK]) for i in range(0, size, _CHUNK)]
        images = np.concatenate(chunks) if chunks else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        out[split] = (images, labels)
    return out


def load(cache_dir: str | Path, seed: int = 0,
         sizes: dict[str, int] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``generate(seed, sizes)``, rendered once into ``cache_dir/<hash>/shapetexture.npz`` (arrays
    ``<split>_images`` and ``<split>_labels``) through ``shared_utils.cache.generate_once`` and read back."""
    sizes = dict(DEFAULT_SIZES) if sizes is None else dict(sizes)
    record = {"dataset": "shapetexture", "version": VERSION, "seed": seed, "sizes": sizes}

    def write(folder: Path) -> None:
        arrays = {}
        for split, (images, labels) in generate(seed, sizes).items():
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
        np.savez(folder / "shapetexture.npz", **arrays)

    folder = generate_once(cache_dir, record, write)
    with np.load(folder / "shapetexture.npz") as data:
        return {split: (data[f"{split}_images"], data[f"{split}_labels"]) for split in sizes}


def read_image_folder(root: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """A real dataset in torchvision's ``ImageFolder`` layout (``root/<class>/**/<image>``), e.g. CIFAR-10 or an
    ImageNet subset exported to folders: ``(paths, labels int64 (N,), classes)``.

    Semantics of ``torchvision.datasets.ImageFolder``: ``classes`` are the sorted names of ``root``'s
    subfolders, an image's label is its class's index there, class folders are searched recursively (sorted,
    symlinks followed) for files whose extension is in ``IMAGE_EXTENSIONS`` (case-insensitive). One deviation:
    hidden files and folders (name starting with ".", e.g. ``.ipynb_checkpoints``, macOS ``._x.jpg``) are
    skipped, where torchvision would take them as a class or an image. A missing root, a root without class
    folders, or a class folder without images is a ``DatasetFormatError`` naming the folder.
    """
    root = Path(root)
    layout = f"expected the ImageFolder layout {root}/<class>/<image> with extensions {', '.join(IMAGE_EXTENSIONS)}"
    if not root.is_dir():
        raise DatasetFormatError(f"image folder {root} not found; {layout}; {folder_listing(root)}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DatasetFormatError(f"image folder {root} holds no class folders; {layout}; {folder_listing(root)}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        walked = []
        for folder, dirs, files in os.walk(root / name, followlinks=True):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # os.walk descends only into what is left
            walked.append((folder, files))
        found = [Path(folder) / f for folder, files in sorted(walked) for f in sorted(files)
                 if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise DatasetFormatError(f"class folder {root / name} holds no image; {layout}; "
                                     f"{folder_listing(root / name)}")
        paths += found
        labels += [label] * len(found)
    return paths, np.asarray(labels, dtype=np.int64), classes
