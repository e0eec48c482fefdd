"""Readers and writers of the on-disk formats of KITTI 2015, KITTI odometry, Virtual KITTI 2 and MPI-Sintel.

Each reader checks what it decodes (bit depth, channels, header, field count) and raises
:class:`~shared_utils.datasets.DatasetFormatError` naming the file, the field or line, what was expected and
what was found: a wrongly decoded flow map (an 8-bit PNG read as flow, a swapped channel) silently gives
wrong numbers, which is worse than stopping. Writers are the exact inverses (up to the format's quantisation),
so that the synthetic generator and the tests write the real formats and one loader serves both.

Sources of the encodings:

- KITTI 2015 devkit ``readme.txt`` (Menze & Geiger, CVPR 2015): flow PNG = 3-channel uint16, channel 1 = u,
  2 = v, 3 = valid, ``flow = (value - 2**15) / 64``; disparity PNG = uint16, ``disp = value / 256``, 0 = invalid.
  OpenCV reads channels as BGR, so u is OpenCV channel 2, v channel 1, valid channel 0.
  ``calib_cam_to_cam/NNNNNN.txt`` holds ``key: values`` lines such as ``P_rect_02: <12 floats>``.
- KITTI odometry devkit: ``sequences/XX/calib.txt`` lines ``P0:`` .. ``P3:``, ``Tr:`` (12 floats each);
  ``poses/XX.txt``: 12 floats per line, the 3 x 4 camera-to-world pose of camera 0 (left grey).
- Virtual KITTI 2.0.3 ``README`` (Cabon et al., arXiv:2001.10773): forward flow PNG = 3-channel uint16,
  ``invalid = B == 0``, ``flow = 2 / (2**16 - 1) * [R, G] - 1`` then u *= W - 1, v *= H - 1; depth PNG =
  uint16 centimetres (65535 = sky, clipped far plane); ``intrinsic.txt``, ``extrinsic.txt`` (the 4 x 4
  world-to-camera matrix) and ``bbox.txt`` are space-separated tables with a header line, one row per frame
  *and* camera; ``bbox.txt`` (not ``pose.txt``) carries the ``isMoving`` flag ("whether the object is really
  moving between this frame and the next one"); ``instancegt_*.png`` is an 8-bit indexed PNG whose index is
  ``trackID + 1`` (0 = background).
- MPI-Sintel SDK ``sintel_io.py`` (Butler et al., ECCV 2012): ``.flo`` = tag 202021.25 (bytes ``PIEH``),
  int32 width, int32 height, float32 (u, v) interleaved; ``.dpt`` = tag, width, height, float32 depth;
  ``.cam`` = tag, 9 float64 M (intrinsics), 12 float64 N (3 x 4 world-to-camera, ``x = M N X``).

Indexed PNGs: OpenCV always expands a palette to colours, and colours need not identify indices (a palette may
repeat a colour). :func:`read_png_indices` therefore swaps the file's palette for one whose red value *is* the
index (recomputing the chunk's CRC) before decoding: exact indices with OpenCV alone.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from shared_utils.datasets import DatasetFormatError, folder_listing

PathLike = str | Path

KITTI_FLOW = "KITTI flow PNG (3-channel uint16: u, v, valid)"
KITTI_DISPARITY = "KITTI disparity PNG (1-channel uint16, disparity * 256, 0 = invalid)"
VKITTI2_FLOW = "Virtual KITTI 2 flow PNG (3-channel uint16: normalised u, v and a validity channel)"
VKITTI2_DEPTH = "Virtual KITTI 2 depth PNG (1-channel uint16 centimetres)"
INDEX_PNG = "8-bit indexed (palette) or 8-bit grey PNG"
VKITTI2_INTRINSIC_HEADER = ("frame", "cameraID", "K[0,0]", "K[1,1]", "K[0,2]", "K[1,2]")
VKITTI2_EXTRINSIC_HEADER = ("frame", "cameraID", "r1,1", "r1,2", "r1,3", "t1", "r2,1", "r2,2", "r2,3", "t2",
                            "r3,1", "r3,2", "r3,3", "t3", "0", "0", "0", "1")
VKITTI2_BBOX_HEADER = ("frame", "cameraID", "trackID", "left", "right", "top", "bottom", "number_pixels",
                       "truncation_ratio", "occupancy_ratio", "isMoving")
VKITTI2_FAR_CM = 2**16 - 1  # the depth PNG's clipped far plane (sky): no depth measurement
SINTEL_TAG = b"PIEH"  # float32 202021.25, little-endian
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UINT16_MAX = 2**16 - 1


# ---------------------------------------------------------------------------------------------------- helpers


def _require_file(path: Path, expected: str) -> None:
    if not path.is_file():
        raise DatasetFormatError(f"{path} not found: expected the {expected}; {folder_listing(path.parent)}")


def _imread(path: PathLike, flags: int, expected: str) -> np.ndarray:
    path = Path(path)
    _require_file(path, expected)
    image = cv2.imread(str(path), flags)
    if image is None:
        raise DatasetFormatError(f"{path}: expected a {expected}, found a file OpenCV cannot decode as an image")
    return image


def _imwrite(path: PathLike, image: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"OpenCV could not write {path}")


def _describe(image: np.ndarray) -> str:
    channels = 1 if image.ndim == 2 else image.shape[2]
    return f"{channels}-channel {image.dtype} image"


def _check_png(image: np.ndarray, path: PathLike, expected: str, dtype: type, channels: int) -> None:
    found_channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != dtype or found_channels != channels:
        raise DatasetFormatError(f"{path}: expected a {expected}, found a {_describe(image)}")


def _write_text(path: PathLike, lines: Iterable[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def _floats(values: Sequence[str], path: Path, line: int, field: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        raise DatasetFormatError(f"{path} line {line} ({field}): expected numbers, found {' '.join(values)!r}") \
            from None


def _format(values: Iterable[float]) -> str:
    return " ".join(f"{float(v):.9g}" for v in values)


def read_rgb(path: PathLike) -> np.ndarray:
    """An 8-bit colour image as H x W x 3 uint8 RGB (OpenCV decodes BGR)."""
    return _imread(path, cv2.IMREAD_COLOR, "colour image")[..., ::-1].copy()


# ---------------------------------------------------------------------------------------------- indexed PNGs


def _png_chunks(data: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    """The (type, payload) chunks of a PNG file, checking the signature and that no chunk is truncated."""
    if not data.startswith(PNG_SIGNATURE):
        raise DatasetFormatError(f"{path}: expected a {INDEX_PNG}, found a file without the PNG signature")
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 12 > len(data):
            raise DatasetFormatError(f"{path}: truncated PNG chunk header at byte {pos}")
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        if pos + 12 + length > len(data):
            raise DatasetFormatError(f"{path}: PNG chunk {kind!r} at byte {pos} runs past the end of the file")
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def read_png_indices(path: PathLike, expected: str = INDEX_PNG) -> np.ndarray:
    """The indices of an 8-bit indexed (palette) PNG, or the values of an 8-bit grey PNG, as H x W uint8.

    The palette is replaced by entry i = (R=i, G=0, B=0) before OpenCV decodes the file, so the decoded red
    channel is the index whatever colours the file's own palette holds (duplicates included)."""
    path = Path(path)
    _require_file(path, expected)
    data = path.read_bytes()
    chunks = _png_chunks(data, path)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) < 10:
        raise DatasetFormatError(f"{path}: expected a {expected}, found a PNG whose first chunk is not IHDR")
    bit_depth, colour_type = chunks[0][1][8], chunks[0][1][9]
    if colour_type == 0 and bit_depth == 8:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    elif colour_type == 3:
        rebuilt = [PNG_SIGNATURE]
        for kind, payload in chunks:
            if kind == b"PLTE":
                payload = bytes(b for i in range(len(payload) // 3) for b in (i, 0, 0))
            if kind != b"tRNS":  # transparency would add an alpha channel; indices do not need it
                rebuilt.append(_png_chunk(kind, payload))
        image = cv2.imdecode(np.frombuffer(b"".join(rebuilt), np.uint8), cv2.IMREAD_COLOR)
        image = None if image is None else image[..., 2]
    else:
        raise DatasetFormatError(f"{path}: expected a {expected}, found PNG colour type {colour_type} "
                                 f"with bit depth {bit_depth}")
    if image is None:
        raise DatasetFormatError(f"{path}: expected a {expected}, found a PNG OpenCV cannot decode")
    return image


def write_png_indices(path: PathLike, indices: np.ndarray) -> None:
    """Write H x W integer indices in [0, 255] as an 8-bit indexed PNG (a fixed 256-colour palette, index 0
    black), the encoding of Virtual KITTI 2's ``instancegt`` files. OpenCV cannot write palettes, so the
    chunks are assembled here (unfiltered rows, zlib-compressed)."""
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.size and (indices.min() < 0 or indices.max() > 255):
        raise ValueError(f"indexed PNG {path}: expected H x W indices in [0, 255], found shape {indices.shape} "
                         f"and range [{indices.min()}, {indices.max()}]")
    height, width = indices.shape
    i = np.arange(256)
    palette = np.stack([i * 67 % 256, i * 149 % 256, i * 37 % 256], axis=1).astype(np.uint8)
    rows = np.concatenate([np.zeros((height, 1), np.uint8), indices.astype(np.uint8)], axis=1)
    png = (PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
           + _png_chunk(b"PLTE", palette.tobytes()) + _png_chunk(b"IDAT", zlib.compress(rows.tobytes()))
           + _png_chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


# -------------------------------------------------------------------------------------------------- KITTI 2015


def read_kitti_flow(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """KITTI flow PNG -> (flow H x W x 2 float32 (u, v) in pixels, zero where invalid; valid H x W bool)."""
    image = _imread(path, cv2.IMREAD_UNCHANGED, KITTI_FLOW)
    _check_png(image, path, KITTI_FLOW, np.uint16, 3)
    flow = (image[..., 2:0:-1].astype(np.float32) - 2**15) / 64.0
    valid = image[..., 0] > 0
    flow[~valid] = 0.0
    return flow, valid


def write_kitti_flow(path: PathLike, flow: np.ndarray, valid: np.ndarray) -> None:
    """Inverse of :func:`read_kitti_flow` (1/64 px steps, clipped to the format's +-512 px)."""
    encoded = np.clip(np.rint(np.where(valid[..., None], flow, 0.0) * 64.0 + 2**15), 0, UINT16_MAX)
    _imwrite(path, np.dstack([valid, encoded[..., 1], encoded[..., 0]]).astype(np.uint16))


def read_kitti_disparity(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """KITTI disparity PNG -> (disparity H x W float32 pixels, valid H x W bool)."""
    image = _imread(path, cv2.IMREAD_UNCHANGED, KITTI_DISPARITY)
    _check_png(image, path, KITTI_DISPARITY, np.uint16, 1)
    return image.astype(np.float32) / 256.0, image > 0


def write_kitti_disparity(path: PathLike, disparity: np.ndarray, valid: np.ndarray) -> None:
    """Inverse of :func:`read_kitti_disparity` (1/256 px steps; a valid pixel is stored as at least 1)."""
    encoded = np.clip(np.rint(disparity * 256.0), 1, UINT16_MAX)
    _imwrite(path, np.where(valid, encoded, 0).astype(np.uint16))


def read_kitti_object_map(path: PathLike) -> np.ndarray:
    """KITTI 2015 ``obj_map`` PNG -> H x W bool, True on the (moving) car objects (index > 0)."""
    return read_png_indices(path, f"KITTI object map ({INDEX_PNG}, 0 = background)") > 0


def write_kitti_object_map(path: PathLike, mask: np.ndarray) -> None:
    """Write a foreground mask as an ``obj_map`` PNG (index 1 on the objects, 0 elsewhere)."""
    write_png_indices(path, np.asarray(mask, dtype=np.uint8))


def _read_key_values(path: PathLike, expected: str) -> tuple[Path, list[tuple[int, str, list[str]]]]:
    """``key: v1 v2 ...`` lines (KITTI calibration files) as (line number, key, values); blank lines skipped."""
    path = Path(path)
    _require_file(path, expected)
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        key, colon, values = line.partition(":")
        if not colon:
            raise DatasetFormatError(f"{path} line {number}: expected 'key: values' ({expected}), found {line!r}")
        entries.append((number, key.strip(), values.split()))
    return path, entries


def _projection(values: np.ndarray, path: Path, line: int, key: str) -> np.ndarray:
    if values.size != 12:
        raise DatasetFormatError(f"{path} line {line} ({key}): expected 12 numbers (a 3 x 4 matrix), "
                                 f"found {values.size}")
    return values.reshape(3, 4)


def read_kitti_cam_to_cam(path: PathLike) -> dict[str, np.ndarray]:
    """KITTI 2015 ``calib_cam_to_cam/NNNNNN.txt`` -> {key: values}: ``P_rect_0i`` as 3 x 4, other keys flat.

    ``calib_time`` (a date, not numbers) is skipped; ``P_rect_02`` and ``P_rect_03`` are required (the loader
    takes K and the stereo baseline from them)."""
    expected = "KITTI calib_cam_to_cam file ('P_rect_02: <12 floats>' lines)"
    path, entries = _read_key_values(path, expected)
    calib = {}
    for line, key, values in entries:
        if key == "calib_time":
            continue
        numbers = _floats(values, path, line, key)
        calib[key] = _projection(numbers, path, line, key) if key.startswith("P_rect_") else numbers
    for key in ("P_rect_02", "P_rect_03"):
        if key not in calib:
            raise DatasetFormatError(f"{path}: no {key} line: expected the {expected}; found keys {sorted(calib)}")
    return calib


def write_kitti_cam_to_cam(path: PathLike, P_rect_02: np.ndarray, P_rect_03: np.ndarray) -> None:
    """Write the two lines of ``calib_cam_to_cam`` that :func:`read_kitti_cam_to_cam` requires."""
    _write_text(path, [f"P_rect_02: {_format(np.ravel(P_rect_02))}", f"P_rect_03: {_format(np.ravel(P_rect_03))}"])


# ----------------------------------------------------------------------------------------------- KITTI odometry


def read_kitti_odometry_calib(path: PathLike) -> dict[str, np.ndarray]:
    """KITTI odometry ``calib.txt`` -> {"P0".."P3", "Tr": 3 x 4}; ``P2`` (the left colour camera) is required."""
    expected = "KITTI odometry calib.txt ('P0: <12 floats>' .. 'P3:', 'Tr:' lines)"
    path, entries = _read_key_values(path, expected)
    calib = {key: _projection(_floats(values, path, line, key), path, line, key) for line, key, values in entries}
    if "P2" not in calib:
        raise DatasetFormatError(f"{path}: no P2 line: expected the {expected}; found keys {sorted(calib)}")
    return calib


def write_kitti_odometry_calib(path: PathLike, P2: np.ndarray) -> None:
    """Write the ``P2`` line of ``calib.txt`` (the one the loader reads)."""
    _write_text(path, [f"P2: {_format(np.ravel(P2))}"])


def read_kitti_poses(path: PathLike) -> np.ndarray:
    """KITTI odometry ``poses/XX.txt`` -> N x 4 x 4 float64 camera-0-to-world poses (12 floats per line)."""
    path = Path(path)
    expected = "KITTI odometry poses file (12 floats per line: a 3 x 4 camera-0-to-world pose)"
    _require_file(path, expected)
    poses = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            pose = _projection(_floats(line.split(), path, number, "pose"), path, number, "pose")
            poses.append(np.vstack([pose, [0.0, 0.0, 0.0, 1.0]]))
    if not poses:
        raise DatasetFormatError(f"{path}: expected the {expected}, found no pose")
    return np.stack(poses)


def write_kitti_poses(path: PathLike, poses: np.ndarray) -> None:
    """Inverse of :func:`read_kitti_poses` (the top 3 x 4 of each N x 4 x 4 pose)."""
    _write_text(path, [_format(pose[:3].ravel()) for pose in np.asarray(poses)])


# ----------------------------------------------------------------------------------------------------- VKITTI2


def read_vkitti2_flow(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Virtual KITTI 2 ``forwardFlow`` PNG -> (flow H x W x 2 float32 pixels, zero where invalid; valid bool),
    the decoding of the dataset README."""
    image = _imread(path, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH, VKITTI2_FLOW)
    _check_png(image, path, VKITTI2_FLOW, np.uint16, 3)
    height, width = image.shape[:2]
    valid = image[..., 0] > 0
    flow = 2.0 / UINT16_MAX * image[..., 2:0:-1].astype(np.float32) - 1.0
    flow[..., 0] *= width - 1
    flow[..., 1] *= height - 1
    flow[~valid] = 0.0
    return flow, valid


def write_vkitti2_flow(path: PathLike, flow: np.ndarray, valid: np.ndarray) -> None:
    """Inverse of :func:`read_vkitti2_flow` (steps of 2 (W - 1) / 65535 px in u, 2 (H - 1) / 65535 px in v)."""
    height, width = flow.shape[:2]
    normalised = np.where(valid[..., None], flow, 0.0) / np.array([width - 1, height - 1])
    encoded = np.clip(np.rint((normalised + 1.0) * UINT16_MAX / 2.0), 0, UINT16_MAX)
    _imwrite(path, np.dstack([valid, encoded[..., 1], encoded[..., 0]]).astype(np.uint16))


def read_vkitti2_depth(path: PathLike) -> np.ndarray:
    """Virtual KITTI 2 depth PNG -> H x W float32 metres; the 65535 cm far plane (sky) becomes 0 = unknown."""
    image = _imread(path, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH, VKITTI2_DEPTH)
    _check_png(image, path, VKITTI2_DEPTH, np.uint16, 1)
    return np.where(image == VKITTI2_FAR_CM, 0.0, image / 100.0).astype(np.float32)


def write_vkitti2_depth(path: PathLike, depth: np.ndarray) -> None:
    """Inverse of :func:`read_vkitti2_depth`: centimetres; unknown (<= 0) or beyond 655.34 m is stored as 65535."""
    centimetres = np.rint(np.nan_to_num(depth, nan=0.0, posinf=0.0) * 100.0)
    far = (centimetres <= 0) | (centimetres >= VKITTI2_FAR_CM)
    _imwrite(path, np.where(far, VKITTI2_FAR_CM, np.clip(centimetres, 1, VKITTI2_FAR_CM - 1)).astype(np.uint16))


def _read_table(path: PathLike, header: tuple[str, ...], expected: str) -> tuple[Path, list[tuple[int, list[str]]]]:
    """A Virtual KITTI 2 text table: checks the header line, returns (line number, fields) of each data row.
    Fields are whitespace-separated (trailing spaces and blank lines are tolerated)."""
    path = Path(path)
    _require_file(path, expected)
    lines = path.read_text().splitlines()
    found = tuple(lines[0].split()) if lines else ()
    if found != header:
        raise DatasetFormatError(f"{path} line 1: expected the header {' '.join(header)!r} ({expected}), "
                                 f"found {' '.join(found)!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(header):
            raise DatasetFormatError(f"{path} line {number}: expected {len(header)} fields ({' '.join(header)}), "
                                     f"found {len(fields)}: {line.strip()!r}")
        rows.append((number, fields))
    return path, rows


def _frame_camera(fields: list[str], path: Path, line: int) -> tuple[int, int]:
    try:
        return int(fields[0]), int(fields[1])
    except ValueError:
        raise DatasetFormatError(f"{path} line {line} (frame, cameraID): expected integers, "
                                 f"found {fields[0]!r} {fields[1]!r}") from None


def read_vkitti2_intrinsics(path: PathLike) -> dict[tuple[int, int], np.ndarray]:
    """``intrinsic.txt`` -> {(frame, camera): K 3 x 3 float64}."""
    path, rows = _read_table(path, VKITTI2_INTRINSIC_HEADER, "Virtual KITTI 2 intrinsic.txt")
    intrinsics = {}
    for line, fields in rows:
        fx, fy, cx, cy = _floats(fields[2:], path, line, "K")
        intrinsics[_frame_camera(fields, path, line)] = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    return intrinsics


def write_vkitti2_intrinsics(path: PathLike, intrinsics: Mapping[tuple[int, int], np.ndarray]) -> None:
    """Inverse of :func:`read_vkitti2_intrinsics`."""
    rows = [f"{f} {c} {_format([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])}" for (f, c), K in sorted(intrinsics.items())]
    _write_text(path, [" ".join(VKITTI2_INTRINSIC_HEADER), *rows])


def read_vkitti2_extrinsics(path: PathLike) -> dict[tuple[int, int], np.ndarray]:
    """``extrinsic.txt`` -> {(frame, camera): 4 x 4 float64 world-to-camera} (X_cam = E @ X_world)."""
    path, rows = _read_table(path, VKITTI2_EXTRINSIC_HEADER, "Virtual KITTI 2 extrinsic.txt")
    return {_frame_camera(fields, path, line): _floats(fields[2:], path, line, "extrinsic").reshape(4, 4)
            for line, fields in rows}


def write_vkitti2_extrinsics(path: PathLike, world_to_camera: Mapping[tuple[int, int], np.ndarray]) -> None:
    """Inverse of :func:`read_vkitti2_extrinsics`."""
    rows = [f"{f} {c} {_format(np.ravel(E))}" for (f, c), E in sorted(world_to_camera.items())]
    _write_text(path, [" ".join(VKITTI2_EXTRINSIC_HEADER), *rows])


def read_vkitti2_moving(path: PathLike) -> dict[tuple[int, int], set[int]]:
    """``bbox.txt`` -> {(frame, camera): track ids whose ``isMoving`` is true} for every (frame, camera) listed.

    Virtual KITTI 2.0.3 keeps ``isMoving`` in ``bbox.txt`` (``pose.txt`` has no such column); the flag says
    whether the object moves between this frame and the next, i.e. over the forward-flow pair."""
    path, rows = _read_table(path, VKITTI2_BBOX_HEADER, "Virtual KITTI 2 bbox.txt")
    moving: dict[tuple[int, int], set[int]] = {}
    for line, fields in rows:
        key = _frame_camera(fields, path, line)
        flag = fields[-1].lower()
        if flag not in ("true", "false", "1", "0"):
            raise DatasetFormatError(f"{path} line {line} (isMoving): expected True/False or 1/0, found {fields[-1]!r}")
        try:
            track = int(fields[2])
        except ValueError:
            raise DatasetFormatError(f"{path} line {line} (trackID): expected an integer, found {fields[2]!r}") \
                from None
        tracks = moving.setdefault(key, set())
        if flag in ("true", "1"):
            tracks.add(track)
    return moving


def write_vkitti2_moving(path: PathLike, moving: Mapping[tuple[int, int], Iterable[int]]) -> None:
    """Write ``bbox.txt`` rows with ``isMoving`` True for the given tracks of each (frame, camera); the box
    columns, which the loader does not read, are written as 0."""
    rows = [f"{f} {c} {track} 0 0 0 0 0 0 0 True"
            for (f, c), tracks in sorted(moving.items()) for track in sorted(tracks)]
    _write_text(path, [" ".join(VKITTI2_BBOX_HEADER), *rows])


def read_vkitti2_instances(path: PathLike) -> np.ndarray:
    """``instancegt_*.png`` -> H x W int32: trackID + 1 on objects, 0 on background."""
    return read_png_indices(path, f"Virtual KITTI 2 instance PNG ({INDEX_PNG}, trackID + 1, 0 = background)"
                            ).astype(np.int32)


def write_vkitti2_instances(path: PathLike, instances: np.ndarray) -> None:
    """Inverse of :func:`read_vkitti2_instances` (8-bit indexed PNG: at most 255 tracks)."""
    write_png_indices(path, instances)


# ------------------------------------------------------------------------------------------------------ Sintel


def _read_sintel(path: PathLike, expected: str) -> tuple[Path, bytes]:
    path = Path(path)
    _require_file(path, expected)
    data = path.read_bytes()
    if data[:4] != SINTEL_TAG:
        raise DatasetFormatError(f"{path}: expected a {expected} starting with the tag {SINTEL_TAG!r} "
                                 f"(float 202021.25), found {data[:4]!r}")
    return path, data


def _read_sintel_grid(path: PathLike, expected: str, channels: int) -> np.ndarray:
    path, data = _read_sintel(path, expected)
    if len(data) < 12:
        raise DatasetFormatError(f"{path}: expected a {expected} with a 12-byte header, found {len(data)} bytes")
    width, height = struct.unpack("<ii", data[4:12])
    size = 12 + 4 * width * height * channels
    if width <= 0 or height <= 0 or len(data) != size:
        raise DatasetFormatError(f"{path}: expected a {expected}: header {width} x {height} needs {size} bytes, "
                                 f"found {len(data)}")
    return np.frombuffer(data, "<f4", offset=12).reshape(height, width, channels).copy()


def _write_sintel_grid(path: PathLike, grid: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = grid.shape[:2]
    path.write_bytes(SINTEL_TAG + struct.pack("<ii", width, height) + grid.astype("<f4").tobytes())


def read_flo(path: PathLike) -> np.ndarray:
    """Sintel / Middlebury ``.flo`` -> H x W x 2 float32 flow (u, v)."""
    return _read_sintel_grid(path, "Sintel .flo flow file", 2)


def write_flo(path: PathLike, flow: np.ndarray) -> None:
    """Inverse of :func:`read_flo`."""
    _write_sintel_grid(path, flow)


def read_dpt(path: PathLike) -> np.ndarray:
    """Sintel ``.dpt`` -> H x W float32 depth (metres along the optical axis)."""
    return _read_sintel_grid(path, "Sintel .dpt depth file", 1)[..., 0]


def write_dpt(path: PathLike, depth: np.ndarray) -> None:
    """Inverse of :func:`read_dpt`."""
    _write_sintel_grid(path, depth[..., None])


def read_cam(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Sintel ``.cam`` -> (M 3 x 3 intrinsics, N 3 x 4 world-to-camera), float64: x = M N X."""
    size = 4 + 21 * 8
    path, data = _read_sintel(path, "Sintel .cam camera file")
    if len(data) != size:
        raise DatasetFormatError(f"{path}: expected a Sintel .cam camera file of {size} bytes (tag, 9 + 12 "
                                 f"float64), found {len(data)}")
    values = np.frombuffer(data, "<f8", offset=4)
    return values[:9].reshape(3, 3).copy(), values[9:].reshape(3, 4).copy()


def write_cam(path: PathLike, M: np.ndarray, N: np.ndarray) -> None:
    """Inverse of :func:`read_cam`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(SINTEL_TAG + np.concatenate([np.ravel(M), np.ravel(N)]).astype("<f8").tobytes())
