"""NeRF-synthetic (Mildenhall et al., ECCV 2020) and D-NeRF (Pumarola et al., CVPR 2021) scenes.

Layout: ``root/transforms_{train,val,test}.json`` = ``{"camera_angle_x": fov_x, "frames": [{"file_path":
"./train/r_0", "transform_matrix": 4 x 4 camera-to-world, "time": t (D-NeRF only)}, ...]}``; images are RGBA PNGs
rendered by Blender, ``file_path`` relative to ``root`` and usually without its ".png".

Conventions: ``transform_matrix`` is camera-to-world with Blender's / OpenGL's camera axes (x right, y up, z
backward); flipping y and z gives OpenCV's (x right, y down, z forward), as 3D Gaussian Splatting's
``readCamerasFromTransforms`` does. The principal point is the image centre, (W/2, H/2) with pixel centres at +0.5
like the COLMAP scenes. Transparent pixels are composited over a background colour (3DGS: white for NeRF-synthetic).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from semantic_gaussians.data.colmap import PathLike, camera_extent
from shared_utils.datasets import DatasetFormatError, folder_listing

SPLITS = ("train", "val", "test")
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips the camera's y and z axes
RANDOM_INIT_HALF_SIZE = 1.3  # 3DGS initialises NeRF-synthetic with points uniform in [-1.3, 1.3]^3
LAYOUT = "root/transforms_{split}.json with camera_angle_x and frames[{file_path, transform_matrix}]"


@dataclass
class Frame:
    path: Path  # the image file
    world_to_camera: np.ndarray  # (4, 4) float64, OpenCV camera axes
    time: float  # D-NeRF's normalised time in [0, 1]; 0 for static scenes


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetFormatError(f"{path} not found: expected the {LAYOUT}; {folder_listing(path.parent)}")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{path}: expected JSON, found a syntax error: {error}") from None
    if not isinstance(meta, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object ({LAYOUT}), found {type(meta).__name__}")
    return meta


def _number(value: Any, path: Path, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DatasetFormatError(f"{path} ({field}): expected a number, found {value!r}")
    return float(value)


def _frame(frame: Any, index: int, root: Path, path: Path) -> Frame:
    """Checks one entry of ``frames`` and finds its image: ``file_path`` as given, else with ".png" appended."""
    where = f"{path} frames[{index}]"
    if not isinstance(frame, dict):
        raise DatasetFormatError(f"{where}: expected an object with file_path and transform_matrix, found {frame!r}")
    for field in ("file_path", "transform_matrix"):
        if field not in frame:
            raise DatasetFormatError(f"{where}: no {field} field: expected file_path and transform_matrix, found "
                                     f"fields {sorted(frame)}")
    try:
        camera_to_world = np.array(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        camera_to_world = np.empty(0)  # ragged or non-numeric: reported below with the other wrong shapes
    if camera_to_world.shape != (4, 4):
        raise DatasetFormatError(f"{where} (transform_matrix): expected a 4 x 4 matrix of numbers, found "
                                 f"{frame['transform_matrix']!r}")
    candidates = [root / str(frame["file_path"]), root / f"{frame['file_path']}.png"]
    image_path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if image_path is None:
        raise DatasetFormatError(f"{candidates[0]} not found (nor {candidates[1].name}): {where} (file_path) names "
                                 f"it; {folder_listing(candidates[0].parent)}")
    time = _number(frame.get("time", 0.0), path, f"frames[{index}].time")
    return Frame(image_path, np.linalg.inv(camera_to_world @ OPENGL_TO_OPENCV), time)


def _read_rgba(path: Path) -> np.ndarray:
    """H x W x 4 float32 RGBA in [0, 1] (alpha 1 for an RGB file); 8- and 16-bit PNGs."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetFormatError(f"{path}: expected an RGB or RGBA image, found a file OpenCV cannot decode")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in (3, 4) or image.dtype not in (np.uint8, np.uint16):
        raise DatasetFormatError(f"{path}: expected an 8- or 16-bit RGB or RGBA image, found a {channels}-channel "
                                 f"{image.dtype} image")
    rgba = image.astype(np.float32) / np.iinfo(image.dtype).max
    if channels == 3:
        rgba = np.dstack([rgba, np.ones(rgba.shape[:2], np.float32)])
    return rgba[..., [2, 1, 0, 3]]  # OpenCV's BGRA -> RGBA


class BlenderScene(Dataset):
    """One split of a NeRF-synthetic or D-NeRF scene, with the sample structure of :class:`ColmapScene`.

    Sample: ``image`` (3, H, W) float32 RGB composited over ``background``, ``alpha`` (H, W) float32, ``K`` (3, 3)
    float32 (fx = fy = W / (2 tan(camera_angle_x / 2)), fy from ``camera_angle_y`` when given, principal point at
    the centre), ``world_to_camera`` (4, 4) float32 (OpenCV axes), ``image_name`` (file stem), ``index``, ``time``.
    ``downscale`` s resizes with ``cv2.INTER_AREA`` to (round(W/s), round(H/s)) and divides K's first two rows by s.
    """

    def __init__(self, root: PathLike, split: str = "train", background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 downscale: int = 1) -> None:
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
        if downscale < 1:
            raise ValueError(f"downscale {downscale}: expected an integer >= 1")
        self.root, self.downscale = Path(root), downscale
        self.background = np.asarray(background, dtype=np.float32)
        self.transforms_file = self.root / f"transforms_{split}.json"
        meta = _read_json(self.transforms_file)
        if "camera_angle_x" not in meta:
            raise DatasetFormatError(f"{self.transforms_file}: no camera_angle_x field: expected the {LAYOUT}; "
                                     f"found fields {sorted(meta)}")
        self.angle_x = _number(meta["camera_angle_x"], self.transforms_file, "camera_angle_x")
        self.angle_y = None if "camera_angle_y" not in meta else \
            _number(meta["camera_angle_y"], self.transforms_file, "camera_angle_y")
        frames = meta.get("frames")
        if not isinstance(frames, list) or not frames:
            raise DatasetFormatError(f"{self.transforms_file} (frames): expected a non-empty list of frames, "
                                     f"found {frames!r}")
        self.frames = [_frame(frame, i, self.root, self.transforms_file) for i, frame in enumerate(frames)]

    def __len__(self) -> int:
        return len(self.frames)

    def _intrinsics(self, width: int, height: int) -> np.ndarray:
        fx = 0.5 * width / math.tan(0.5 * self.angle_x)
        fy = fx if self.angle_y is None else 0.5 * height / math.tan(0.5 * self.angle_y)
        return np.array([[fx, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]])

    def __getitem__(self, index: int) -> dict:
        frame = self.frames[index]
        rgba = _read_rgba(frame.path)
        height, width = rgba.shape[:2]
        K = self._intrinsics(width, height)
        alpha = rgba[..., 3:]
        rgb = rgba[..., :3] * alpha + self.background * (1.0 - alpha)
        if self.downscale > 1:
            size = (round(width / self.downscale), round(height / self.downscale))
            rgb, alpha = (cv2.resize(channels, size, interpolation=cv2.INTER_AREA) for channels in (rgb, alpha))
            K = np.diag([1 / self.downscale, 1 / self.downscale, 1.0]) @ K
        return {"image": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float(),
                "alpha": torch.from_numpy(np.ascontiguousarray(alpha.reshape(rgb.shape[:2]))).float(),
                "K": torch.from_numpy(K).float(), "world_to_camera": torch.from_numpy(frame.world_to_camera).float(),
                "image_name": frame.path.stem, "index": index, "time": frame.time}

    def points(self, n: int = 10_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """3DGS's initial points for NeRF-synthetic, which ships no SfM points: ``n`` positions uniform in
        [-1.3, 1.3]^3 (the scenes fit in it) and colours uniform in [0, 1], seeded."""
        generator = torch.Generator().manual_seed(seed)
        xyz = (torch.rand(n, 3, generator=generator) * 2 - 1) * RANDOM_INIT_HALF_SIZE
        return xyz, torch.rand(n, 3, generator=generator)

    @property
    def cameras_extent(self) -> float:
        """:func:`~semantic_gaussians.data.colmap.camera_extent` over the frames of this split's transforms file
        (3DGS: of the train cameras)."""
        return camera_extent(np.stack([frame.world_to_camera for frame in self.frames]))
