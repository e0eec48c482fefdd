"""LightningDataModules: a SoccerNet-calibration folder, and the synthetic broadcast proxy written in that layout.

Both read the same files through the real loaders: ``<root>/<split>/<name>.jpg`` with ``camera_<name>.json`` (the
camera; frames without one are skipped: they have no condition), and, where present in the split folder,
``Labels-GameState.json`` (players: boxes, pitch positions, team), ``person_keypoints.json`` (COCO-17 skeletons) and
``prompts.json`` ({name: prompt}; default prompt otherwise). Each item is a dict:

- ``image`` (3, H, W) in [0, 1]: the whole frame letterboxed into H x W (resized when the aspect ratio matches, as
  for SoccerNet's 16:9 frames and the default 64 x 36);
- ``grid_keypoints`` (91, 2) float pixels of the returned image (x right, y down) of the ground points
  (x_i, y_j, 0), x_i = linspace(-52.5, 52.5, 13)[i], y_j = linspace(-34, 34, 7)[j], k = 13 j + i;
  ``grid_visible`` (91,) bool: in front of the camera and inside the frame as it appears in the returned image;
- ``camera_map`` (3, H, W), ``pitch_map`` (3, H, W), ``players_map`` (4, H, W), ``skeleton_map`` (3, H, W):
  ``data/conditions.py``;
- ``prompt`` (str) and ``text`` (384,): its sentence embedding;
- ``entities`` for GLIGEN (``xy`` (N, 2) pitch positions normalised to [0, 1], ``attributes`` (N, 6) jersey RGB
  + role one-hot left / right / referee, ``mask`` (N,)) and ``boxes`` (N, 4) / ``labels`` (N,) for the player
  metrics, padded to ``MAX_PEOPLE``;
- ``camera_960`` (91, 2) / ``visible_960``: the grid in the 960 x 540 frame, where the metrics measure pixels.

No horizontal flip: mirroring the image would mirror the pitch, which relabels every grid point.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from shared_utils.cache import generate_once
from shared_utils.language import SentenceEncoder
from shared_utils.paths import anchored
from sports_image_gen.data.conditions import camera_map, grid_lines, pitch_map, players_map, skeleton_map
from sports_image_gen.data.gamestate import read_gamestate
from sports_image_gen.data.soccernet_calibration import CalibrationFrame, read_calibration_split

MAX_PEOPLE = 24
DEFAULT_PROMPT = "a broadcast view of a soccer match"
METRIC_SIZE = (960, 540)  # SoccerNet-calibration's image size, where reprojection errors are measured
ROLES = {"left": 0, "right": 1, "referee": 2}
TEXT_CACHE = "data/sports-image-gen/text"
GRID_LINES = grid_lines()  # the same world points for every frame


def letterbox(width: int, height: int, out_w: int, out_h: int) -> tuple[float, float, float]:
    """(scale, x offset, y offset) that fit a width x height image into out_w x out_h, centred."""
    scale = min(out_w / width, out_h / height)
    return scale, (out_w - width * scale) / 2, (out_h - height * scale) / 2


def _role(player) -> int | None:
    if player.role in ("player", "goalkeeper") and player.team in ("left", "right"):
        return ROLES[player.team]
    if player.role == "referee":
        return ROLES["referee"]
    return None


def _jersey_colour(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Median RGB of the torso (rows 20-45 %, the middle third of the columns of the box, which has a margin around
    the body): GSR labels carry no kit colour, so it is read from the frame, the same way on real and rendered
    images."""
    x1, y1, x2, y2 = box
    h, w = y2 - y1, x2 - x1
    r1, r2 = int(np.floor(y1 + 0.2 * h)), int(np.ceil(y1 + 0.45 * h))
    c1, c2 = int(np.floor(x1 + w / 3)), int(np.ceil(x2 - w / 3))
    patch = image[max(r1, 0):max(r2, r1 + 1), max(c1, 0):max(c2, c1 + 1)].reshape(-1, 3)
    return np.median(patch, 0) / 255 if len(patch) else np.zeros(3)


def _read_optional_json(path: Path) -> object | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _coco_keypoints(path: Path) -> dict[str, np.ndarray]:
    """{image stem: (N, 17, 3)} from a COCO person-keypoints file; malformed entries raise naming the field."""
    data = _read_optional_json(path)
    if data is None:
        return {}
    try:
        names = {im["id"]: Path(im["file_name"]).stem for im in data["images"]}
        out: dict[str, list] = {}
        for i, ann in enumerate(data["annotations"]):
            points = np.asarray(ann["keypoints"], np.float32)
            if points.shape != (51,):
                raise ValueError(f"{path}: annotations[{i}].keypoints has {points.size} values, expected 17 x 3 = 51")
            out.setdefault(names[ann["image_id"]], []).append(points.reshape(17, 3))
    except KeyError as err:
        raise ValueError(f"{path}: missing field {err} (expected the COCO keypoints format)") from err
    return {k: np.stack(v) for k, v in out.items()}


class BroadcastDataset(torch.utils.data.Dataset):
    """Items of one split, preprocessed once into memory (a few MB at 64 x 36)."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def build_item(frame: CalibrationFrame, height: int, width: int, people: list, skeletons: np.ndarray | None,
               prompt: str) -> dict:
    """One dataset item from a frame, its GSR objects, COCO skeletons (pixels of the jpg) and prompt."""
    image = cv2.imread(str(frame.image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{frame.image_path}: unreadable image")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h0, w0 = image.shape[:2]
    scale, ox, oy = letterbox(w0, h0, width, height)
    nw, nh = round(w0 * scale), round(h0 * scale)
    out = np.zeros((height, width, 3), np.uint8)
    x0, y0 = int(round(ox)), int(round(oy))
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    offset = np.array([x0, y0], np.float64)
    sx, sy = nw / w0, nh / h0

    uv, visible = frame.camera.project_grid(w0, h0)
    keypoints = uv * np.array([sx, sy]) + offset
    line_points, line_coords = GRID_LINES
    line_uv, _ = frame.camera.scale_to(w0, h0).project(line_points)
    line_uv = line_uv * np.array([sx, sy]) + offset
    uv960, vis960 = frame.camera.project_grid(*METRIC_SIZE)

    boxes, labels, colours, xy = [], [], [], []
    for player in people:
        label = _role(player)
        if label is None:
            continue
        box = np.asarray(player.box, np.float64)
        colours.append(_jersey_colour(image, box))
        boxes.append(box * np.array([sx, sy, sx, sy]) + np.tile(offset, 2))
        labels.append(label)
        pitch = player.pitch_xy if player.pitch_xy is not None else np.full(2, np.nan)
        xy.append([pitch[0] / 105 + 0.5, pitch[1] / 68 + 0.5])
    n = min(len(boxes), MAX_PEOPLE)
    box_t = torch.zeros(MAX_PEOPLE, 4)
    label_t = torch.full((MAX_PEOPLE,), -1, dtype=torch.long)
    attributes = torch.zeros(MAX_PEOPLE, 6)
    xy_t = torch.zeros(MAX_PEOPLE, 2)
    mask = torch.zeros(MAX_PEOPLE, dtype=torch.bool)
    if n:
        box_t[:n] = torch.tensor(np.array(boxes[:n]), dtype=torch.float32)
        label_t[:n] = torch.tensor(labels[:n])
        attributes[:n, :3] = torch.tensor(np.array(colours[:n]), dtype=torch.float32)
        attributes[torch.arange(n), 3 + label_t[:n]] = 1
        xy_np = np.array(xy[:n], np.float32)
        known = np.isfinite(xy_np).all(1)
        xy_t[:n] = torch.from_numpy(np.nan_to_num(xy_np))
        mask[:n] = torch.from_numpy(known)  # grounding tokens need a pitch position

    people_map = players_map(box_t[:n].numpy(), attributes[:n, :3].numpy(), height, width)
    if skeletons is not None and len(skeletons):
        points = skeletons.copy()
        points[..., 0] = points[..., 0] * sx + x0
        points[..., 1] = points[..., 1] * sy + y0
        pose_map = skeleton_map(points, height, width)
    else:
        pose_map = torch.zeros(3, height, width)
    kp = torch.from_numpy(keypoints).float()
    vis = torch.from_numpy(visible)
    return {
        "name": frame.name,
        "image": torch.from_numpy(out).permute(2, 0, 1).float() / 255,
        "grid_keypoints": kp, "grid_visible": vis,
        "camera_960": torch.from_numpy(uv960).float(), "visible_960": torch.from_numpy(vis960),
        "camera_map": camera_map(kp, vis, height, width, line_uv, line_coords),
        "pitch_map": pitch_map(frame.camera.scale_to(nw, nh), offset, height, width),
        "players_map": people_map, "skeleton_map": pose_map,
        "prompt": prompt,
        "boxes": box_t, "labels": label_t, "num_people": n,
        "entities": {"xy": xy_t, "attributes": attributes, "mask": mask},
        # returned-image pixels -> the 960 x 540 frame: (p - offset) * to_960
        "offset": torch.from_numpy(offset).float(),
        "to_960": torch.tensor([METRIC_SIZE[0] / nw, METRIC_SIZE[1] / nh], dtype=torch.float32),
    }


def read_split(folder: Path, height: int, width: int, camera_dir: Path | None = None) -> list[dict]:
    """Every frame with a camera of a split folder, as items in name order."""
    frames = read_calibration_split(folder, camera_dir=camera_dir, read_lines=False)
    skipped = [f.name for f in frames if f.camera is None]
    frames = [f for f in frames if f.camera is not None]
    if skipped:
        warnings.warn(f"{folder}: {len(skipped)} frame(s) without a camera file skipped (e.g. {skipped[0]})",
                      stacklevel=2)
    if not frames:
        raise FileNotFoundError(f"{folder}: no frame has a camera file camera_<name>.json "
                                f"(looked in {camera_dir or folder})")
    people: dict[str, list] = {}
    gsr = folder / "Labels-GameState.json"
    if gsr.is_file():
        state = read_gamestate(gsr)
        people = {Path(im["file_name"]).stem: state.players(im["image_id"]) for im in state.images}
    skeletons = _coco_keypoints(folder / "person_keypoints.json")
    prompts = _read_optional_json(folder / "prompts.json") or {}
    return [build_item(f, height, width, people.get(f.name, []), skeletons.get(f.name), prompts.get(f.name,
                       DEFAULT_PROMPT)) for f in frames]


class SoccerNetCalibration(L.LightningDataModule):
    """A SoccerNet-calibration folder: ``<root>/{train,valid,test}/<name>.jpg`` + ``camera_<name>.json``.

    Args:
        root: the dataset folder (relative paths are the collection's).
        height, width: the returned image size (64 x 36 keeps 16:9).
        train_size: use the first N training frames (the frugality curve: 100 / 300 / 1000).
        camera_dir: where the camera files are, when not beside the frames (``<camera_dir>/<split>/``).
        splits: folder names of the train / validation / test splits.
    """

    def __init__(self, root: str = "data/soccernet-calibration", height: int = 36, width: int = 64,
                 train_size: int | None = None, camera_dir: str | None = None,
                 splits: tuple[str, str, str] = ("train", "valid", "test"), batch_size: int = 16,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.root, self.height, self.width = root, height, width
        self.train_size, self.camera_dir, self.splits = train_size, camera_dir, tuple(splits)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.sets: dict[str, BroadcastDataset] = {}

    def dataset_root(self) -> Path:
        root = anchored(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder (expected a SoccerNet-calibration folder with "
                                    f"{'/, '.join(self.splits)}/ holding <name>.jpg and camera_<name>.json)")
        return root

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        root = self.dataset_root()
        for key, split in zip(("train", "val", "test"), self.splits):
            cameras = anchored(self.camera_dir) / split if self.camera_dir else None
            self.sets[key] = BroadcastDataset(read_split(root / split, self.height, self.width, cameras))
        self._embed_prompts()
        # The judges learn from the whole training split; a frugal run trains on its first train_size frames.
        self.full_train = self.sets["train"].items
        if self.train_size:
            self.sets["train"] = BroadcastDataset(self.full_train[: self.train_size])

    def fingerprint(self) -> dict:
        """What the judges trained on this data depend on."""
        return {"root": str(self.dataset_root()), "size": [self.height, self.width], "camera_dir": self.camera_dir,
                "splits": list(self.splits)}

    def judge_items(self) -> list[dict]:
        self.setup()
        return self.full_train

    def _embed_prompts(self) -> None:
        """The prompts' sentence embeddings, once (cached on disk by the encoder)."""
        prompts = sorted({it["prompt"] for ds in self.sets.values() for it in ds.items})
        vectors = dict(zip(prompts, SentenceEncoder(cache_dir=TEXT_CACHE).encode(prompts)))
        for ds in self.sets.values():
            for it in ds.items:
                it["text"] = vectors[it["prompt"]]

    def _loader(self, key: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.sets[key], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, drop_last=shuffle and len(self.sets[key]) > self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)


class SyntheticBroadcast(SoccerNetCalibration):
    """The procedural broadcast proxy (``data/render.py``), rendered once per setting into
    ``data/sports-image-gen/synthetic/<hash>/`` in the SoccerNet layouts, then read like a real folder.

    Args:
        train_count, val_count, test_count: frames rendered per split.
        render_width, render_height: the jpgs' size (the camera files describe the 960 x 540 frame, as the format
            allows).
        layouts: ``sampled`` formations, or ``skillcorner``: real player positions from the SkillCorner open data
            that kloppy ships (the ``[tracking]`` extra).
        seed: the renderer's seed.
    """

    VERSION = 2

    def __init__(self, train_count: int = 1000, val_count: int = 64, test_count: int = 64, render_width: int = 320,
                 render_height: int = 180, layouts: str = "sampled", seed: int = 0, height: int = 36,
                 width: int = 64, train_size: int | None = None, batch_size: int = 16, num_workers: int = 0,
                 cache_dir: str = "data/sports-image-gen/synthetic") -> None:
        super().__init__(root="", height=height, width=width, train_size=train_size, batch_size=batch_size,
                         num_workers=num_workers)
        if layouts not in ("sampled", "skillcorner"):
            raise ValueError(f"layouts must be 'sampled' or 'skillcorner', got {layouts!r}")
        self.counts = {"train": train_count, "valid": val_count, "test": test_count}
        self.render_size = (render_width, render_height)
        self.layouts, self.seed, self.cache_dir = layouts, seed, cache_dir

    def dataset_root(self) -> Path:
        from sports_image_gen.data.render import write_split

        record = {"version": self.VERSION, "counts": self.counts, "size": self.render_size, "layouts": self.layouts,
                  "seed": self.seed}

        def generate(folder: Path) -> None:
            layouts = None
            if self.layouts == "skillcorner":
                from sports_image_gen.data.tracking import load_layouts
                layouts = load_layouts(seed=self.seed)
            for i, (split, count) in enumerate(self.counts.items()):
                write_split(folder, split, count, seed=self.seed * 1000 + i, width=self.render_size[0],
                            height=self.render_size[1], layouts=layouts)

        return generate_once(self.cache_dir, record, generate)
