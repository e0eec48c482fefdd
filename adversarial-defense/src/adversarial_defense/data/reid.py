"""Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015): the loader of its
official layout and a synthetic stand-in written in that same layout, so one loader serves both.

Layout (the dataset's own; other folders such as ``gt_bbox`` are ignored)::

    <root>/bounding_box_train/0002_c1s1_000451_03.jpg   training identities
    <root>/query/0001_c1s1_001051_00.jpg                 one query per identity per camera it appears in
    <root>/bounding_box_test/0000_c1s1_000151_01.jpg     gallery: test identities, distractors, junk

File names are ``<pid>_c<camera>s<sequence>_<frame>_<box>.jpg``: pid is four digits, ``0000`` for distractors
(false detections, kept in the gallery, never a match) and ``-1`` for junk (badly cropped boxes, dropped, as
the official evaluation and torchreid do); camera and sequence are one digit each, 1-based; frame is six
digits; box is the detection's index in the frame.

Protocol of ``read_market1501`` (torchreid's ``Market1501`` dataset class): only ``*.jpg`` files are read
(Market ships ``Thumbs.db`` files), sorted by name; junk is dropped in every split; camera ids are 0-based;
pids stay as in the file names in all three splits. ``relabel_pids`` maps the training pids to labels
0..N-1 (sorted pid order) for the identity classifier; query and gallery keep their pids, which only have to
match each other. Evaluation: ``adversarial_defense.metrics.market_cmc_map``.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from shared_utils.cache import generate_once
from shared_utils.datasets import DatasetFormatError, folder_listing

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAME_PATTERN = re.compile(r"^(-1|\d{4})_c([1-9])s([1-9])_(\d{6})_(\d{2})\.jpg$")
NAME_FORMAT = "<pid: 4 digits or -1>_c<camera 1-9>s<sequence 1-9>_<frame: 6 digits>_<box: 2 digits>.jpg"
LAYOUT = "<root>/bounding_box_train/*.jpg, <root>/query/*.jpg, <root>/bounding_box_test/*.jpg (Market-1501)"

Sample = tuple[Path, int, int]  # (image path, pid, 0-based camera id)


def parse_market_name(path: str | Path) -> tuple[int, int, int, int]:
    """``(pid, camid, sequence, frame)`` of a Market-1501 file name: pid as written (-1 junk, 0 distractor),
    camid 0-based (``c1`` is 0, as torchreid), sequence and frame as written (``s1`` is 1).

    >>> parse_market_name("0002_c1s1_000451_03.jpg")
    (2, 0, 1, 451)
    """
    match = NAME_PATTERN.match(Path(path).name)
    if match is None:
        raise DatasetFormatError(f"{path}: not a Market-1501 image name; expected {NAME_FORMAT}, "
                                 f"e.g. 0002_c1s1_000451_03.jpg")
    pid, camera, sequence, frame, _ = match.groups()
    return int(pid), int(camera) - 1, int(sequence), int(frame)


def _read_split(folder: Path) -> list[Sample]:
    if not folder.is_dir():
        raise DatasetFormatError(f"Market-1501 folder {folder} not found; expected the layout {LAYOUT}; "
                                 f"{folder_listing(folder.parent)}")
    samples = []
    for path in sorted(folder.glob("*.jpg")):
        pid, camid, _, _ = parse_market_name(path)
        if pid != -1:  # junk: neither a match nor a distractor, the official protocol ignores it
            samples.append((path, pid, camid))
    if not samples:
        raise DatasetFormatError(f"Market-1501 folder {folder} holds no image with a pid other than -1; expected "
                                 f"files named {NAME_FORMAT}; {folder_listing(folder)}")
    return samples


def read_market1501(root: str | Path) -> dict[str, list[Sample]]:
    """``{"train", "query", "gallery"}`` -> sorted lists of ``(path, pid, camid)``, protocol in the module
    docstring. A missing split folder, an empty one or a file not named as Market names them is a
    ``DatasetFormatError`` naming the path and the expected layout."""
    root = Path(root)
    return {split: _read_split(root / folder) for split, folder in SPLIT_FOLDERS.items()}


def relabel_pids(samples: list[Sample]) -> list[Sample]:
    """Training samples with each pid replaced by its index among the sorted distinct pids (0..N-1), the class
    label of the identity classifier (torchreid's ``relabel=True`` for the train split)."""
    label = {pid: i for i, pid in enumerate(sorted({pid for _, pid, _ in samples}))}
    return [(path, label[pid], camid) for path, pid, camid in samples]


# --------------------------------------------------------------------------------------------------------------
# Synthetic Market-1501
# --------------------------------------------------------------------------------------------------------------

SYNTHETIC_VERSION = 1  # bump when the generated images change (the cache key)
HEIGHT, WIDTH = 128, 64  # Market-1501's box size
JPEG_QUALITY = 95
_MAX_PID = 1501  # Market's pids run 0001..1501

# Clothing and hair colours (RGB); every identity draws its own, with a little jitter.
_PALETTE = np.array(
    [(200, 30, 30), (230, 120, 30), (230, 200, 40), (40, 140, 60), (30, 130, 140), (40, 70, 180), (20, 30, 80),
     (110, 50, 160), (220, 80, 150), (240, 240, 240), (150, 150, 150), (60, 60, 60), (20, 20, 20), (120, 80, 40),
     (200, 180, 140), (90, 110, 60)], dtype=np.float32)
_SKIN = np.array([(240, 200, 170), (220, 170, 130), (180, 130, 90), (130, 90, 60), (90, 60, 40)], dtype=np.float32)
_HAIR = np.array([(20, 15, 10), (70, 45, 25), (140, 100, 50), (210, 180, 110), (150, 150, 150), (120, 40, 20)],
                 dtype=np.float32)
_TOPS = ("solid", "horizontal_stripes", "vertical_stripes", "checks", "two_tone", "logo")
_BOTTOMS = ("trousers", "shorts", "skirt")
_BAGS = ("none", "backpack", "handbag")


def _colour(rng: np.random.Generator, palette: np.ndarray = _PALETTE) -> np.ndarray:
    return np.clip(palette[rng.integers(len(palette))] + rng.normal(0, 10, 3), 0, 255).astype(np.float32)


def _identity(seed: int, pid: int) -> dict:
    """What stays the same in every image of a person: body build, colours, clothes and their textures."""
    rng = np.random.default_rng([seed, 1, pid])
    return {
        "skin": _colour(rng, _SKIN), "hair": _colour(rng, _HAIR), "long_hair": rng.random() < 0.35,
        "top": _TOPS[rng.integers(len(_TOPS))], "top_colours": (_colour(rng), _colour(rng)),
        "stripe_period": rng.uniform(4, 9), "long_sleeves": rng.random() < 0.5,
        "bottom": _BOTTOMS[rng.integers(len(_BOTTOMS))], "bottom_colour": _colour(rng),
        "shoes": _colour(rng, _PALETTE[9:14]), "bag": _BAGS[rng.integers(len(_BAGS))], "bag_colour": _colour(rng),
        "width": rng.uniform(0.85, 1.15), "height": rng.uniform(0.9, 1.0),
    }


def _camera(seed: int, camera: int) -> dict:
    """A camera's look, shared by all its images: colour cast, brightness and contrast, blur, background,
    how large people appear in its boxes, sensor noise (the domain gap between Market's six cameras)."""
    rng = np.random.default_rng([seed, 2, camera])
    return {
        "gain": rng.uniform(0.7, 1.3, 3).astype(np.float32), "offset": rng.uniform(-30, 30),
        "contrast": rng.uniform(0.75, 1.2), "blur": rng.uniform(0.0, 1.5), "scale": rng.uniform(0.75, 0.95),
        "noise": rng.uniform(2, 6), "wall": _colour(rng, _PALETTE[9:]), "floor": _colour(rng, _PALETTE[9:]),
        "horizon": rng.uniform(0.45, 0.75) * HEIGHT, "pillars": rng.uniform(8, 30) if rng.random() < 0.6 else 0.0,
    }


def _background(rng: np.random.Generator, cam: dict) -> np.ndarray:
    """Wall above a floor line, optional pillars, soft texture; shifted a little per image (another box)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    horizon = cam["horizon"] + rng.uniform(-8, 8)
    image = np.where((yy < horizon)[..., None], cam["wall"], cam["floor"]).astype(np.float32)
    if cam["pillars"]:
        pillar = ((xx + rng.uniform(0, 2 * cam["pillars"])) % (2 * cam["pillars"]) < cam["pillars"]) & (yy < horizon)
        image[pillar] *= 0.8
    coarse = rng.random((6, 3)).astype(np.float32)
    image *= 0.85 + 0.3 * cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)[..., None]
    return image


def _paint(image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    image[mask.astype(bool)] = colour


def _poly(points: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(points) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return mask


def _limb(a: tuple[float, float], b: tuple[float, float], thickness: float) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.line(mask, (round(a[0] * 16), round(a[1] * 16)), (round(b[0] * 16), round(b[1] * 16)), 1,
             max(1, round(thickness)), cv2.LINE_8, 4)
    return mask


def _draw_person(image: np.ndarray, rng: np.random.Generator, person: dict, cam: dict,
                 shift: tuple[float, float] = (0.0, 0.0)) -> None:
    """Draw ``person`` into ``image`` (H, W, 3 float) with this image's pose: walking phase, arm swing, facing
    the camera or not, position and size jitter within the camera's box scale."""
    h = HEIGHT * cam["scale"] * person["height"] * rng.uniform(0.95, 1.05)
    w = h * 0.24 * person["width"]
    cx = WIDTH / 2 + rng.uniform(-3, 3) + shift[0]
    top = HEIGHT - 3 - h + rng.uniform(-2, 2) + shift[1]
    front = rng.random() < 0.5  # facing the camera (logo, bag strap) or walking away (backpack)
    stride = rng.uniform(-0.18, 0.18) * h  # feet apart
    swing = rng.uniform(-0.1, 0.1) * h

    def y(f: float) -> float:  # a height fraction of the body -> image row
        return top + f * h

    head_r = 0.065 * h
    shoulder, hip, knee, foot = y(0.16), y(0.52), y(0.75), y(0.98)
    limb = 0.08 * h
    # Legs, then skirt or shorts over them.
    leg_colour = person["skin"] if person["bottom"] != "trousers" else person["bottom_colour"]
    for side, dx in ((-1, -stride / 2), (1, stride / 2)):
        hip_x = cx + side * w * 0.22
        _paint(image, _limb((hip_x, hip), (hip_x + dx, foot - limb / 2), limb), leg_colour)
        _paint(image, _limb((hip_x + dx - 1.5, foot), (hip_x + dx + 1.5, foot), limb * 0.8), person["shoes"])
        if person["bottom"] == "shorts":
            _paint(image, _limb((hip_x, hip), (hip_x + dx * 0.4, y(0.65)), limb * 1.1), person["bottom_colour"])
    if person["bottom"] == "skirt":
        _paint(image, _poly([(cx - w * 0.45, hip), (cx + w * 0.45, hip), (cx + w * 0.7, knee), (cx - w * 0.7, knee)]),
               person["bottom_colour"])
    # Arms: sleeves in the top's first colour, hands (and forearms with short sleeves) in skin.
    top_a, top_b = person["top_colours"]
    for side, s in ((-1, swing), (1, -swing)):
        a = (cx + side * w * 0.5, shoulder + limb / 2)
        hand = (cx + side * w * 0.62 + s * 0.3, y(0.5) + abs(s) * 0.2)
        elbow = ((a[0] + hand[0]) / 2, (a[1] + hand[1]) / 2)
        _paint(image, _limb(a, hand, limb * 0.8), top_a if person["long_sleeves"] else person["skin"])
        if not person["long_sleeves"]:
            _paint(image, _limb(a, elbow, limb * 0.85), top_a)
        _paint(image, _limb(hand, hand, limb * 0.8), person["skin"])
    # Torso with the identity's clothing texture, anchored to the torso so it moves with the person.
    torso = _poly([(cx - w / 2, shoulder), (cx + w / 2, shoulder), (cx + w * 0.42, hip), (cx - w * 0.42, hip)])
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    period = person["stripe_period"] * h / 100
    pattern = {
        "solid": np.zeros_like(yy, dtype=bool),
        "horizontal_stripes": (yy - shoulder) % period < period / 2,
        "vertical_stripes": (xx - cx) % period < period / 2,
        "checks": (((yy - shoulder) // (period / 2) + (xx - cx) // (period / 2)) % 2) == 0,
        "two_tone": yy > (shoulder + hip) / 2,
        "logo": front & (np.abs(xx - cx) < w * 0.18) & (np.abs(yy - y(0.3)) < w * 0.18),
    }[person["top"]]
    image[torso.astype(bool)] = np.where(pattern[torso.astype(bool)][:, None], top_b, top_a)
    # Bags: a backpack covers the back, seen from behind; from the front only its strap shows.
    if person["bag"] == "backpack":
        if front:
            _paint(image, _limb((cx - w * 0.3, shoulder), (cx - w * 0.3, y(0.4)), limb * 0.35), person["bag_colour"])
        else:
            _paint(image, _poly([(cx - w * 0.38, y(0.2)), (cx + w * 0.38, y(0.2)), (cx + w * 0.38, y(0.45)),
                                 (cx - w * 0.38, y(0.45))]), person["bag_colour"])
    elif person["bag"] == "handbag":
        bx = cx + w * 0.7 * (1 if front else -1)
        _paint(image, _poly([(bx - w * 0.18, y(0.45)), (bx + w * 0.18, y(0.45)), (bx + w * 0.2, y(0.58)),
                             (bx - w * 0.2, y(0.58))]), person["bag_colour"])
    # Neck, head, hair (long hair falls to the shoulders; seen from behind, hair covers the face).
    head_y = top + head_r * 1.1
    _paint(image, _limb((cx, head_y), (cx, shoulder), head_r * 0.8), person["skin"])
    head = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(head, (round(cx * 16), round(head_y * 16)), (round(head_r * 0.85 * 16), round(head_r * 1.1 * 16)),
                0, 0, 360, 1, -1, cv2.LINE_8, 4)
    _paint(image, head, person["skin"])
    hair = head * (yy < head_y - head_r * 0.3) if front else head
    if person["long_hair"]:
        for side in (-1, 1):  # strands down to the shoulders, either side of the face
            hair |= _limb((cx + side * head_r * 0.9, head_y - head_r * 0.5), (cx + side * head_r, shoulder),
                          head_r * 0.5)
        if not front:
            hair |= _poly([(cx - head_r, head_y), (cx + head_r, head_y), (cx + head_r * 1.1, shoulder + head_r),
                           (cx - head_r * 1.1, shoulder + head_r)])
    _paint(image, hair, person["hair"])


def _finish(image: np.ndarray, rng: np.random.Generator, cam: dict) -> np.ndarray:
    """The camera's look (per-image jitter on top): blur, colour cast, contrast, brightness, noise."""
    sigma = cam["blur"] + rng.uniform(0, 0.4)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    mean = image.mean()
    image = (image - mean) * cam["contrast"] + mean
    image = image * cam["gain"] * rng.uniform(0.9, 1.1) + cam["offset"] + rng.uniform(-8, 8)
    image = image + rng.normal(0, cam["noise"], image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def render_reid(seed: int, pid: int, camera: int, index: int, kind: str = "person") -> np.ndarray:
    """One RGB uint8 (128, 64, 3) box of camera ``camera`` (0-based): ``kind`` "person" shows identity ``pid``,
    "junk" shows it badly cropped (shifted by half a body), "distractor" shows background and clutter only.
    A function of (seed, pid, camera, index, kind): ``index`` tells apart images of the same person and camera."""
    rng = np.random.default_rng([seed, 3, pid, camera, index, ("person", "junk", "distractor").index(kind)])
    cam = _camera(seed, camera)
    image = _background(rng, cam)
    if kind == "distractor":  # a false detection: background with a clothes-coloured blob or a pole
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        centre = (round(rng.uniform(10, WIDTH - 10) * 16), round(rng.uniform(20, HEIGHT - 20) * 16))
        axes = (round(rng.uniform(5, 20) * 16), round(rng.uniform(10, 45) * 16))
        cv2.ellipse(mask, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1, cv2.LINE_8, 4)
        _paint(image, mask, _colour(rng))
    else:
        shift = (0.0, 0.0)
        if kind == "junk":
            shift = (rng.choice([-1, 1]) * rng.uniform(0.4, 0.6) * WIDTH, rng.uniform(-0.4, 0.4) * HEIGHT)
        _draw_person(image, rng, _identity(seed, pid), cam, shift)
    return _finish(image, rng, cam)


def generate_synthetic_reid(root: str | Path, seed: int = 0, num_train_ids: int = 100, num_test_ids: int = 100,
                            cameras: int = 6, distractors: int = 50, junk: int = 20) -> Path:
    """Write a synthetic Market-1501 under ``root`` (layout in the module docstring) and return ``root``.

    Pids are drawn from 1..1501 without replacement, train and test identities disjoint. Each identity appears
    in 2..``cameras`` cameras (as every Market identity is seen by at least two). A training identity has 2-4
    boxes per camera; a test identity has, per camera, one query (Market's one query per identity and camera)
    and 1-3 gallery boxes, so every query has a match in another camera. The gallery also holds ``distractors``
    boxes of pid 0000 and ``junk`` boxes of pid -1, in random cameras. File names follow Market's pattern with
    random sequence, frame and box numbers (unique names). Nothing is cached here: ``ensure_synthetic_reid``
    generates once into a cache folder.
    """
    if not 2 <= cameras <= 9:
        raise ValueError(f"cameras must be in 2..9 (one digit in Market file names, two to match), got {cameras}")
    if min(num_train_ids, num_test_ids) < 1 or num_train_ids + num_test_ids > _MAX_PID:
        raise ValueError(f"need at least one train and one test identity and at most {_MAX_PID} in all, got "
                         f"num_train_ids={num_train_ids}, num_test_ids={num_test_ids}")
    root = Path(root)
    for folder in SPLIT_FOLDERS.values():
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0])
    pids = rng.choice(np.arange(1, _MAX_PID + 1), num_train_ids + num_test_ids, replace=False)
    train_ids, test_ids = sorted(pids[:num_train_ids].tolist()), sorted(pids[num_train_ids:].tolist())
    names: set[str] = set()

    def write(folder: str, pid: int, camera: int, image: np.ndarray) -> None:
        while True:  # draw sequence, frame and box numbers until the name is new
            name = (f"{pid:04d}" if pid >= 0 else "-1") + \
                f"_c{camera + 1}s{rng.integers(1, 7)}_{rng.integers(0, 10**6):06d}_{rng.integers(1, 9):02d}.jpg"
            if name not in names:
                break
        names.add(name)
        cv2.imwrite(str(root / folder / name), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])

    def seen_by() -> list[int]:
        return sorted(rng.choice(cameras, int(rng.integers(2, cameras + 1)), replace=False).tolist())

    for pid in train_ids:
        for camera in seen_by():
            for index in range(int(rng.integers(2, 5))):
                write(SPLIT_FOLDERS["train"], pid, camera, render_reid(seed, pid, camera, index))
    for pid in test_ids:
        for camera in seen_by():
            write(SPLIT_FOLDERS["query"], pid, camera, render_reid(seed, pid, camera, 0))
            for index in range(1, int(rng.integers(2, 5))):
                write(SPLIT_FOLDERS["gallery"], pid, camera, render_reid(seed, pid, camera, index))
    for index in range(distractors):
        camera = int(rng.integers(cameras))
        write(SPLIT_FOLDERS["gallery"], 0, camera, render_reid(seed, 0, camera, index, "distractor"))
    for index in range(junk):
        pid, camera = int(rng.choice(test_ids)), int(rng.integers(cameras))
        write(SPLIT_FOLDERS["gallery"], -1, camera, render_reid(seed, pid, camera, index, "junk"))
    return root


def ensure_synthetic_reid(cache_dir: str | Path, seed: int = 0, num_train_ids: int = 100, num_test_ids: int = 100,
                          cameras: int = 6, distractors: int = 50, junk: int = 20) -> Path:
    """``generate_synthetic_reid`` once into ``cache_dir/<hash of the arguments>/`` (``shared_utils.cache``) and
    return that root, ready for ``read_market1501``."""
    settings = {"seed": seed, "num_train_ids": num_train_ids, "num_test_ids": num_test_ids, "cameras": cameras,
                "distractors": distractors, "junk": junk}
    record = {"dataset": "synthetic_market1501", "version": SYNTHETIC_VERSION, **settings}
    return generate_once(cache_dir, record, lambda root: generate_synthetic_reid(root, **settings))
