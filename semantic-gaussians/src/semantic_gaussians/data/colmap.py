"""COLMAP sparse models (binary and text, read and write) and a scene dataset over a COLMAP reconstruction.

Format: the COLMAP documentation, "Output format" (https://colmap.github.io/format.html); the byte layout of the
``.bin`` files is that of COLMAP's ``scripts/python/read_write_model.py`` (little-endian):

- ``cameras.bin``: uint64 count; per camera int32 id, int32 model_id, uint64 width, uint64 height,
  float64 params[n(model)].
- ``images.bin``: uint64 count; per image int32 id, float64 qvec[4] (w, x, y, z), float64 tvec[3], int32 camera_id,
  null-terminated name, uint64 num_points2D, then per point float64 x, float64 y, int64 point3D_id (-1 = none).
- ``points3D.bin``: uint64 count; per point uint64 id, float64 xyz[3], uint8 rgb[3], float64 error, uint64
  track_length, then per track element int32 image_id, int32 point2D_idx.

The ``.txt`` files hold the same fields, one line per camera / point and two lines per image (the second, the 2D
points, may be empty); lines starting with '#' are comments.

Conventions (COLMAP docs): ``X_cam = R(qvec) X_world + tvec`` (world to camera), camera axes x right, y down,
z forward (OpenCV's); the centre of the top-left pixel is (0.5, 0.5), so ``K`` built from the params maps a camera
point to COLMAP pixel coordinates in which an image W pixels wide spans [0, W]. :class:`ColmapScene` serves the
images the way 3D Gaussian Splatting (Kerbl et al., SIGGRAPH 2023) reads COLMAP scenes: images ordered by name,
every 8th one held out for testing, the scene extent of its ``getNerfppNorm``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from shared_utils.datasets import DatasetFormatError, folder_listing

PathLike = str | Path

# COLMAP's src/colmap/sensor/models.h: model id -> (name, number of params)
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
}
MODEL_IDS = {name: model_id for model_id, (name, _) in CAMERA_MODELS.items()}
NUM_PARAMS = dict(CAMERA_MODELS.values())
LOADABLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")  # pinhole + OpenCV distortion
MODEL_FILES = ("cameras", "images", "points3D")
MODEL_EXTENSIONS = (".bin", ".txt")
SPLITS = ("train", "test", "all")
EXTENT_MARGIN = 1.1  # 3DGS getNerfppNorm: radius = 1.1 * largest camera distance from the mean camera centre

POINT2D_DTYPE = np.dtype([("xy", "<f8", (2,)), ("point3D_id", "<i8")])
TRACK_DTYPE = np.dtype([("image_id", "<i4"), ("point2D_idx", "<i4")])


@dataclass
class Camera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64, NUM_PARAMS[model] values in the order of COLMAP's models.h


@dataclass
class Image:
    id: int
    qvec: np.ndarray  # (4,) float64, (w, x, y, z) of the world-to-camera rotation
    tvec: np.ndarray  # (3,) float64, world-to-camera translation
    camera_id: int
    name: str  # path relative to the images folder
    xys: np.ndarray  # (P, 2) float64 keypoints in COLMAP pixel coordinates
    point3D_ids: np.ndarray  # (P,) int64, -1 = keypoint without a 3D point  # noqa: N815 (COLMAP's name)


@dataclass
class Point3D:
    id: int
    xyz: np.ndarray  # (3,) float64
    rgb: np.ndarray  # (3,) uint8
    error: float  # mean reprojection error in pixels
    image_ids: np.ndarray  # (T,) int32
    point2D_idxs: np.ndarray  # (T,) int32, index into that image's xys  # noqa: N815 (COLMAP's name)


# -------------------------------------------------------------------------------------------------- rotations


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """The 3 x 3 rotation of a unit quaternion (w, x, y, z), COLMAP's order; normalised first, as COLMAP does when
    it reads a model, so that a quaternion written with few digits still gives a rotation."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """The unit quaternion (w, x, y, z), w >= 0, of a rotation matrix: the eigenvector of the largest eigenvalue of
    Horn's symmetric 4 x 4 matrix (Horn, JOSA A 1987; Bar-Itzhack, 2000), which stays accurate near 180 degrees
    where the trace formula divides by almost zero."""
    (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = np.asarray(R, dtype=np.float64)
    N = np.array([
        [r00 + r11 + r22, r21 - r12, r02 - r20, r10 - r01],
        [r21 - r12, r00 - r11 - r22, r01 + r10, r02 + r20],
        [r02 - r20, r01 + r10, r11 - r00 - r22, r12 + r21],
        [r10 - r01, r02 + r20, r12 + r21, r22 - r00 - r11],
    ])
    eigenvalues, eigenvectors = np.linalg.eigh(N)
    qvec = eigenvectors[:, np.argmax(eigenvalues)]
    return qvec if qvec[0] >= 0 else -qvec


def world_to_camera_matrix(image: Image) -> np.ndarray:
    """4 x 4 [R | t] of an image: X_cam = R X_world + t."""
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = qvec_to_rotmat(image.qvec), image.tvec
    return matrix


def camera_extent(world_to_cameras: np.ndarray) -> float:
    """3DGS's ``getNerfppNorm`` radius: 1.1 times the largest distance of a camera centre (C = -R^T t) from the
    mean centre. 3DGS scales its densification thresholds and position learning rate by it."""
    world_to_cameras = np.asarray(world_to_cameras, dtype=np.float64)
    R, t = world_to_cameras[:, :3, :3], world_to_cameras[:, :3, 3]
    centres = -np.einsum("nji,nj->ni", R, t)
    return float(EXTENT_MARGIN * np.linalg.norm(centres - centres.mean(axis=0), axis=1).max())


# ------------------------------------------------------------------------------------------------- intrinsics


def camera_intrinsics(camera: Camera, source: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """(K, OpenCV distortion (k1, k2, p1, p2) or None) of a camera whose model is a pinhole or OpenCV's model.

    K is in COLMAP's pixel convention (pixel centres at +0.5). SIMPLE_RADIAL and RADIAL are OpenCV's model with
    the missing coefficients zero (COLMAP's models.h applies the same polynomial to normalised coordinates).
    ``source`` (the cameras file) names where the camera came from in the error for the other models."""
    params = camera.params
    if camera.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = params[0]
        cx, cy = params[1:3]
    elif camera.model in ("PINHOLE", "OPENCV"):
        fx, fy, cx, cy = params[:4]
    else:
        raise DatasetFormatError(f"{source}: camera {camera.id} has model {camera.model}: expected one of "
                                 f"{', '.join(LOADABLE_MODELS)} (undistort the images with COLMAP's "
                                 "image_undistorter for the others)")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if camera.model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return K, None
    k1k2p1p2 = params[4:8] if camera.model == "OPENCV" else np.pad(params[3:], (0, 4 - len(params[3:])))
    return K, np.asarray(k1k2p1p2, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- binary files


class _BinaryReader:
    """A cursor over a binary file whose every read names the file, the field and the byte offset when the file
    ends too early: a truncated or foreign file stops with that message, not with a struct error."""

    def __init__(self, path: Path) -> None:
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def _take(self, size: int, field: str) -> int:
        if self.pos + size > len(self.data):
            raise DatasetFormatError(f"{self.path}: truncated at byte {self.pos} reading {field}: expected "
                                     f"{size} more bytes, found {len(self.data) - self.pos}")
        start, self.pos = self.pos, self.pos + size
        return start

    def unpack(self, fmt: str, field: str) -> tuple:
        return struct.unpack_from(fmt, self.data, self._take(struct.calcsize(fmt), field))

    def array(self, dtype: np.dtype, count: int, field: str) -> np.ndarray:
        return np.frombuffer(self.data, dtype, count, self._take(dtype.itemsize * count, field)).copy()

    def name(self, field: str) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise DatasetFormatError(f"{self.path}: {field} at byte {self.pos} has no terminating null byte")
        name, self.pos = self.data[self.pos:end].decode("utf-8"), end + 1
        return name

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise DatasetFormatError(f"{self.path}: {len(self.data) - self.pos} bytes left after the last record "
                                     f"(byte {self.pos}): expected the file to end there")


def _read_cameras_bin(path: Path) -> dict[int, Camera]:
    reader, cameras = _BinaryReader(path), {}
    for _ in range(reader.unpack("<Q", "the camera count")[0]):
        camera_id, model_id, width, height = reader.unpack("<iiQQ", "a camera header")
        if model_id not in CAMERA_MODELS:
            raise DatasetFormatError(f"{path}: camera {camera_id} has model id {model_id}: expected a COLMAP "
                                     f"camera model id in 0..{max(CAMERA_MODELS)}")
        model, num_params = CAMERA_MODELS[model_id]
        params = reader.array(np.dtype("<f8"), num_params, f"the {num_params} params of camera {camera_id}")
        cameras[camera_id] = Camera(camera_id, model, width, height, params)
    reader.finish()
    return cameras


def _read_images_bin(path: Path) -> dict[int, Image]:
    reader, images = _BinaryReader(path), {}
    for _ in range(reader.unpack("<Q", "the image count")[0]):
        image_id, *pose, camera_id = reader.unpack("<i7di", "an image header")
        name = reader.name(f"the name of image {image_id}")
        (num_points,) = reader.unpack("<Q", f"the point count of image {image_id}")
        points = reader.array(POINT2D_DTYPE, num_points, f"the {num_points} points of image {image_id}")
        images[image_id] = Image(image_id, np.array(pose[:4]), np.array(pose[4:]), camera_id, name,
                                 points["xy"].astype(np.float64), points["point3D_id"].astype(np.int64))
    reader.finish()
    return images


def _read_points3d_bin(path: Path) -> dict[int, Point3D]:
    reader, points = _BinaryReader(path), {}
    for _ in range(reader.unpack("<Q", "the point count")[0]):
        point_id, x, y, z, r, g, b, error, track_length = reader.unpack("<Q3d3BdQ", "a point header")
        track = reader.array(TRACK_DTYPE, track_length, f"the track of point {point_id}")
        points[point_id] = Point3D(point_id, np.array([x, y, z]), np.array([r, g, b], np.uint8), error,
                                   track["image_id"].astype(np.int32), track["point2D_idx"].astype(np.int32))
    reader.finish()
    return points


def _write_cameras_bin(path: Path, cameras: Mapping[int, Camera]) -> None:
    chunks = [struct.pack("<Q", len(cameras))]
    for camera in cameras.values():
        _check_params(camera)
        chunks.append(struct.pack("<iiQQ", camera.id, MODEL_IDS[camera.model], camera.width, camera.height))
        chunks.append(np.asarray(camera.params, "<f8").tobytes())
    path.write_bytes(b"".join(chunks))


def _write_images_bin(path: Path, images: Mapping[int, Image]) -> None:
    chunks = [struct.pack("<Q", len(images))]
    for image in images.values():
        points = np.empty(len(image.point3D_ids), POINT2D_DTYPE)
        points["xy"], points["point3D_id"] = np.reshape(image.xys, (-1, 2)), image.point3D_ids
        chunks += [struct.pack("<i7di", image.id, *image.qvec, *image.tvec, image.camera_id),
                   image.name.encode("utf-8") + b"\x00", struct.pack("<Q", len(points)), points.tobytes()]
    path.write_bytes(b"".join(chunks))


def _write_points3d_bin(path: Path, points3D: Mapping[int, Point3D]) -> None:
    chunks = [struct.pack("<Q", len(points3D))]
    for point in points3D.values():
        track = np.empty(len(point.image_ids), TRACK_DTYPE)
        track["image_id"], track["point2D_idx"] = point.image_ids, point.point2D_idxs
        chunks += [struct.pack("<Q3d3BdQ", point.id, *point.xyz, *point.rgb, point.error, len(track)),
                   track.tobytes()]
    path.write_bytes(b"".join(chunks))


def _check_params(camera: Camera) -> None:
    """Writers refuse what the readers would reject, so that a written model always reads back."""
    if camera.model not in NUM_PARAMS or len(camera.params) != NUM_PARAMS[camera.model]:
        raise ValueError(f"camera {camera.id}: model {camera.model!r} with {len(camera.params)} params: expected "
                         f"one of {', '.join(f'{m} ({n})' for m, n in NUM_PARAMS.items())}")


# ------------------------------------------------------------------------------------------------ text files


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of every line that is not a '#' comment, blank lines included."""
    return [(number, line.strip()) for number, line in enumerate(path.read_text().splitlines(), start=1)
            if not line.lstrip().startswith("#")]


def _parse(values: list[str], dtype: type, path: Path, line: int, field: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=str).astype(dtype)
    except ValueError:
        kind = "integers" if np.issubdtype(dtype, np.integer) else "numbers"
        raise DatasetFormatError(f"{path} line {line} ({field}): expected {kind}, found {' '.join(values)!r}") \
            from None


def _check_count(fields: list[str], count: int, exact: bool, path: Path, line: int, expected: str) -> None:
    if len(fields) < count or (exact and len(fields) != count):
        raise DatasetFormatError(f"{path} line {line}: expected {'' if exact else 'at least '}{count} fields "
                                 f"({expected}), found {len(fields)}: {' '.join(fields)!r}")


def _read_cameras_txt(path: Path) -> dict[int, Camera]:
    cameras = {}
    for line, text in _data_lines(path):
        fields = text.split()
        if not fields:
            continue
        _check_count(fields, 4, False, path, line, "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]")
        camera_id, width, height = _parse([fields[0], fields[2], fields[3]], np.int64, path, line,
                                          "CAMERA_ID, WIDTH, HEIGHT")
        model = fields[1]
        if model not in NUM_PARAMS:
            raise DatasetFormatError(f"{path} line {line}: camera {camera_id} has model {model!r}: expected a COLMAP "
                                     f"camera model ({', '.join(NUM_PARAMS)})")
        _check_count(fields, 4 + NUM_PARAMS[model], True, path, line, f"{model} has {NUM_PARAMS[model]} params")
        params = _parse(fields[4:], np.float64, path, line, "PARAMS")
        cameras[int(camera_id)] = Camera(int(camera_id), model, int(width), int(height), params)
    return cameras


def _read_images_txt(path: Path) -> dict[int, Image]:
    rows, images, i = _data_lines(path), {}, 0
    while i < len(rows):
        line, text = rows[i]
        if not text:  # blank lines between images; the (possibly blank) points line is consumed below
            i += 1
            continue
        points_line, points_text = rows[i + 1] if i + 1 < len(rows) else (line + 1, "")
        i += 2
        fields = text.split(maxsplit=9)
        _check_count(fields, 10, True, path, line, "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        image_id, camera_id = _parse([fields[0], fields[8]], np.int64, path, line, "IMAGE_ID, CAMERA_ID")
        pose = _parse(fields[1:8], np.float64, path, line, "QW QX QY QZ TX TY TZ")
        points = points_text.split()
        if len(points) % 3:
            raise DatasetFormatError(f"{path} line {points_line}: expected (X Y POINT3D_ID) triples of image "
                                     f"{image_id}, found {len(points)} fields")
        xys = _parse(points[0::3] + points[1::3], np.float64, path, points_line, "X Y").reshape(2, -1).T
        point3D_ids = _parse(points[2::3], np.int64, path, points_line, "POINT3D_ID")
        images[int(image_id)] = Image(int(image_id), pose[:4], pose[4:], int(camera_id), fields[9],
                                      np.ascontiguousarray(xys), point3D_ids)
    return images


def _read_points3d_txt(path: Path) -> dict[int, Point3D]:
    points = {}
    for line, text in _data_lines(path):
        fields = text.split()
        if not fields:
            continue
        _check_count(fields, 8, False, path, line, "POINT3D_ID X Y Z R G B ERROR TRACK[]")
        if (len(fields) - 8) % 2:
            raise DatasetFormatError(f"{path} line {line}: expected (IMAGE_ID POINT2D_IDX) pairs after ERROR, "
                                     f"found {len(fields) - 8} fields")
        point_id = int(_parse(fields[:1], np.int64, path, line, "POINT3D_ID")[0])
        xyz = _parse(fields[1:4], np.float64, path, line, "X Y Z")
        rgb = _parse(fields[4:7], np.int64, path, line, "R G B")
        if rgb.min() < 0 or rgb.max() > 255:
            raise DatasetFormatError(f"{path} line {line} (R G B): expected 0..255, found {rgb.tolist()}")
        error = float(_parse(fields[7:8], np.float64, path, line, "ERROR")[0])
        track = _parse(fields[8:], np.int32, path, line, "TRACK")
        points[point_id] = Point3D(point_id, xyz, rgb.astype(np.uint8), error, track[0::2].copy(), track[1::2].copy())
    return points


def _numbers(values: np.ndarray) -> str:
    # repr gives the shortest text that parses back to the same float64: text models round-trip exactly
    return " ".join(repr(float(v)) for v in np.ravel(values))


def _write_cameras_txt(path: Path, cameras: Mapping[int, Camera]) -> None:
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"# Number of cameras: {len(cameras)}"]
    for camera in cameras.values():
        _check_params(camera)
        lines.append(f"{camera.id} {camera.model} {camera.width} {camera.height} {_numbers(camera.params)}")
    path.write_text("\n".join(lines) + "\n")


def _write_images_txt(path: Path, images: Mapping[int, Image]) -> None:
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)",
             f"# Number of images: {len(images)}"]
    for image in images.values():
        lines.append(f"{image.id} {_numbers(image.qvec)} {_numbers(image.tvec)} {image.camera_id} {image.name}")
        lines.append(" ".join(f"{x!r} {y!r} {int(i)}" for (x, y), i in
                              zip(np.reshape(image.xys, (-1, 2)).tolist(), image.point3D_ids)))
    path.write_text("\n".join(lines) + "\n")


def _write_points3d_txt(path: Path, points3D: Mapping[int, Point3D]) -> None:
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
             f"# Number of points: {len(points3D)}"]
    for point in points3D.values():
        track = " ".join(f"{int(i)} {int(j)}" for i, j in zip(point.image_ids, point.point2D_idxs))
        rgb = " ".join(str(int(c)) for c in point.rgb)
        lines.append(f"{point.id} {_numbers(point.xyz)} {rgb} {float(point.error)!r} {track}".rstrip())
    path.write_text("\n".join(lines) + "\n")


READERS = {".bin": (_read_cameras_bin, _read_images_bin, _read_points3d_bin),
           ".txt": (_read_cameras_txt, _read_images_txt, _read_points3d_txt)}
WRITERS = {".bin": (_write_cameras_bin, _write_images_bin, _write_points3d_bin),
           ".txt": (_write_cameras_txt, _write_images_txt, _write_points3d_txt)}


# ---------------------------------------------------------------------------------------------------- models


def model_format(path: PathLike) -> str:
    """".bin" when the folder holds all three binary files, else ".txt" when it holds all three text files (COLMAP
    writes one or the other; binary wins when both are there, as in COLMAP's own reader)."""
    path = Path(path)
    for ext in MODEL_EXTENSIONS:
        if all((path / f"{name}{ext}").is_file() for name in MODEL_FILES):
            return ext
    raise DatasetFormatError(f"{path}: expected a COLMAP sparse model ({{cameras,images,points3D}}.bin or "
                             f"{{cameras,images,points3D}}.txt); {folder_listing(path)}")


def read_model(path: PathLike) -> tuple[dict[int, Camera], dict[int, Image], dict[int, Point3D]]:
    """(cameras, images, points3D) of a sparse model folder such as ``sparse/0``, keyed by their ids."""
    path = Path(path)
    ext = model_format(path)
    cameras, images, points3D = (read(path / f"{name}{ext}") for read, name in zip(READERS[ext], MODEL_FILES))
    return cameras, images, points3D


def write_model(cameras: Mapping[int, Camera], images: Mapping[int, Image], points3D: Mapping[int, Point3D],
                path: PathLike, ext: str = ".bin") -> None:
    """Write a sparse model in COLMAP's binary (".bin") or text (".txt") format; creates the folder. The synthetic
    scenes and the tests write real COLMAP models with it, so one loader serves both."""
    if ext not in WRITERS:
        raise ValueError(f"ext {ext!r}: expected one of {', '.join(MODEL_EXTENSIONS)}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for write, name, records in zip(WRITERS[ext], MODEL_FILES, (cameras, images, points3D)):
        write(path / f"{name}{ext}", records)


# ----------------------------------------------------------------------------------------------------- scene


def _in_split(index: int, split: str, test_every: int) -> bool:
    """3DGS / Mip-NeRF 360 evaluation split: every ``test_every``-th image in name order (0, 8, 16, ...) is a
    test view."""
    return split == "all" or (index % test_every == 0) == (split == "test")


class ColmapScene(Dataset):
    """The images of a COLMAP reconstruction with their intrinsics and world-to-camera poses, for 3DGS training.

    Layout: ``root/<images_dir>/<name>`` for every image of ``root/<sparse_dir>/{cameras,images,points3D}.{bin,txt}``.
    Images are ordered by name (ids need not be contiguous nor follow capture order); ``split`` "test" holds every
    ``test_every``-th of them, "train" the others, "all" all (3DGS ``--eval``). Distorted models (SIMPLE_RADIAL,
    RADIAL, OPENCV) are undistorted on load to a pinhole camera with the same K; the renderer only models a pinhole.

    Sample: ``image`` (3, H, W) float32 RGB in [0, 1], ``K`` (3, 3) float32 in pixels of the returned image
    (centres at +0.5), ``world_to_camera`` (4, 4) float32 (OpenCV camera axes), ``image_name``, ``index`` (position
    in the split).
    """

    def __init__(self, root: PathLike, split: str = "train", images_dir: str = "images", sparse_dir: str = "sparse/0",
                 test_every: int = 8, downscale: int = 1, undistort: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
        if test_every < 1 or downscale < 1:
            raise ValueError(f"test_every {test_every} and downscale {downscale}: expected integers >= 1")
        self.root, self.downscale = Path(root), downscale
        self.images_folder, sparse = self.root / images_dir, self.root / sparse_dir
        if not sparse.is_dir():
            raise DatasetFormatError(f"{sparse}: COLMAP sparse model folder not found: expected "
                                     f"root/{sparse_dir}/{{cameras,images,points3D}}.{{bin,txt}}; "
                                     f"{folder_listing(sparse.parent)}")
        ext = model_format(sparse)
        self.cameras_file, self.images_file = sparse / f"cameras{ext}", sparse / f"images{ext}"
        self.cameras, images, self.points3D = read_model(sparse)
        self.all_images = sorted(images.values(), key=lambda image: image.name)
        if not self.all_images:
            raise DatasetFormatError(f"{self.images_file}: expected at least one image, found none")
        self._check_images()
        self._intrinsics = {camera_id: self._pinhole(self.cameras[camera_id], undistort)
                            for camera_id in sorted({image.camera_id for image in self.all_images})}
        self.images = [image for i, image in enumerate(self.all_images) if _in_split(i, split, test_every)]
        if not self.images:
            raise DatasetFormatError(f"{self.images_file}: split {split!r} is empty: {len(self.all_images)} images "
                                     f"with every {test_every}th one a test view")

    def _check_images(self) -> None:
        """Every image's camera and file exist, checked up front: a bad sample should not stop a run hours in."""
        for image in self.all_images:
            if image.camera_id not in self.cameras:
                raise DatasetFormatError(f"{self.images_file}: image {image.id} ({image.name}) refers to camera "
                                         f"{image.camera_id}, which {self.cameras_file} does not hold (it holds "
                                         f"cameras {sorted(self.cameras)})")
            path = self.images_folder / image.name
            if not path.is_file():
                raise DatasetFormatError(f"{path} not found: {self.images_file} lists image {image.id} "
                                         f"{image.name!r}; {folder_listing(path.parent)}")

    def _pinhole(self, camera: Camera, undistort: bool) -> tuple[np.ndarray, np.ndarray | None]:
        K, distortion = camera_intrinsics(camera, self.cameras_file)
        if distortion is not None and not undistort:
            raise DatasetFormatError(f"{self.cameras_file}: camera {camera.id} has the distorted model "
                                     f"{camera.model}: with undistort=False expected SIMPLE_PINHOLE or PINHOLE")
        return K, distortion

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        camera = self.cameras[image.camera_id]
        K, distortion = self._intrinsics[image.camera_id]
        path = self.images_folder / image.name
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetFormatError(f"{path}: expected a colour image, found a file OpenCV cannot decode")
        if bgr.shape[:2] != (camera.height, camera.width):
            raise DatasetFormatError(f"{path}: expected {camera.width} x {camera.height} pixels (camera "
                                     f"{camera.id} of {self.cameras_file}), found {bgr.shape[1]} x {bgr.shape[0]}: "
                                     "use downscale with the full-resolution images")
        if distortion is not None:
            # OpenCV puts pixel centres at integers, COLMAP at +0.5: same K shifted by half a pixel
            K_opencv = K - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
            bgr = cv2.undistort(bgr, K_opencv, distortion)
        if self.downscale > 1:
            size = (round(camera.width / self.downscale), round(camera.height / self.downscale))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            # pixel edges, not centres, scale by 1/s: exact with centres at +0.5
            K = np.diag([1 / self.downscale, 1 / self.downscale, 1.0]) @ K
        rgb = np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1))
        return {"image": torch.from_numpy(rgb).float() / 255.0, "K": torch.from_numpy(K).float(),
                "world_to_camera": torch.from_numpy(world_to_camera_matrix(image)).float(),
                "image_name": image.name, "index": index}

    def points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The sparse points' xyz (P, 3) float32 and colours (P, 3) float32 in [0, 1], 3DGS's initial Gaussians."""
        points = [self.points3D[point_id] for point_id in sorted(self.points3D)]
        xyz = np.array([point.xyz for point in points], dtype=np.float32).reshape(-1, 3)
        rgb = np.array([point.rgb for point in points], dtype=np.float32).reshape(-1, 3) / 255.0
        return torch.from_numpy(xyz), torch.from_numpy(rgb)

    @property
    def cameras_extent(self) -> float:
        """:func:`camera_extent` over all images of the model (3DGS's value when it trains on all of them), so that
        the train and test splits agree."""
        return camera_extent(np.stack([world_to_camera_matrix(image) for image in self.all_images]))
