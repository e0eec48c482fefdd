"""The SoccerNet camera-calibration layout (sn-calibration challenge, 2022-2023 editions).

    <root>/<split>/<name>.jpg            broadcast frames (split: train, valid, test, challenge)
    <root>/<split>/<name>.json           pitch-marking annotation: {line class: [{"x": u, "y": v}, ...]}
    <camera_dir>/camera_<name>.json      a camera in the format the baseline writes (``baseline_cameras.py``)

The annotation points are normalised by the image size (u = x / width, v = y / height, in [0, 1]); straight
markings carry their two extremities, circles a few points along the arc (sn-calibration README, "Soccer pitch
annotations"). Camera files are what a calibration method outputs, so they usually live in their own folder
(``camera_dir``; the frames' folder by default). A frame is a ``*.jpg``: other files of the split folder
(``match_info.json``, ``per_match_info.json``) are not frames and are left alone.

Missing files raise ``FileNotFoundError``, malformed content ``DatasetFormatError`` (a ``ValueError``), each naming
the file, the field and what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared_utils.datasets import DatasetFormatError, folder_listing
from sports_image_gen.data.camera import Camera
from sports_image_gen.data.pitch import LINE_CLASSES

LAYOUT = ("SoccerNet-calibration layout <split>/<name>.jpg with <split>/<name>.json (line class -> list of "
          "{\"x\", \"y\"} normalised points) and camera_<name>.json (sn-calibration camera parameters)")


@dataclass
class CalibrationFrame:
    """One frame of a split: its camera (None where no camera file exists) and its annotated pitch markings
    (class -> K x 2 points normalised to the image, None when lines were not read)."""

    name: str
    image_path: Path
    camera: Camera | None
    lines: dict[str, np.ndarray] | None


def _read_json(path: Path) -> object:
    """The parsed content of ``path``; a file that is not JSON is a DatasetFormatError naming it."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{path}: not valid JSON ({error})") from error


def _is_number(value: object) -> bool:
    """A finite JSON number (JSON true / false are Python bools, which are ints: not coordinates)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_camera_json(path: Path) -> Camera:
    """The camera of a ``camera_<name>.json`` file (sn-calibration ``Camera.to_json_parameters`` format)."""
    params = _read_json(path)
    if not isinstance(params, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object of camera parameters, found {type(params).__name__}")
    try:
        return Camera.from_json_parameters(params, source=str(path))
    except ValueError as error:  # already names the file and the field: re-raised as the collection's data error
        raise DatasetFormatError(str(error)) from error


def read_lines_json(path: Path) -> dict[str, np.ndarray]:
    """The pitch-marking annotation of one frame: line class -> K x 2 normalised (x, y) points."""
    annotation = _read_json(path)
    if not isinstance(annotation, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object (line class -> list of points), found "
                                 f"{type(annotation).__name__}")
    lines = {}
    for name, points in annotation.items():
        if name not in LINE_CLASSES:
            raise DatasetFormatError(f"{path}: unknown line class {name!r}; expected one of the 28 sn-calibration "
                                     f"classes {list(LINE_CLASSES)}")
        if not isinstance(points, list):
            raise DatasetFormatError(f"{path}: class {name!r} should be a list of {{\"x\", \"y\"}} points, found "
                                     f"{type(points).__name__}")
        for index, point in enumerate(points):
            if not (isinstance(point, dict) and _is_number(point.get("x")) and _is_number(point.get("y"))):
                raise DatasetFormatError(f"{path}: class {name!r}, point {index}: expected {{\"x\": number, "
                                         f"\"y\": number}}, found {point!r}")
        lines[name] = np.array([[point["x"], point["y"]] for point in points], dtype=np.float64).reshape(-1, 2)
    return lines


def read_calibration_split(folder: str | Path, camera_dir: str | Path | None = None, require_camera: bool = False,
                           read_lines: bool = True) -> list[CalibrationFrame]:
    """Every ``*.jpg`` of ``folder`` as a CalibrationFrame, sorted by name.

    ``camera_<name>.json`` is looked for in ``camera_dir`` (default ``folder``); a frame without one gets camera
    None, or, with ``require_camera``, raises FileNotFoundError naming the missing file. With ``read_lines`` each
    frame's ``<name>.json`` annotation must exist (the challenge split has none: pass ``read_lines=False``).
    """
    folder = Path(folder)
    camera_dir = folder if camera_dir is None else Path(camera_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"calibration split folder {folder} not found; expected the {LAYOUT}; "
                                f"{folder_listing(folder)}")
    if not camera_dir.is_dir():
        raise FileNotFoundError(f"camera folder {camera_dir} not found; expected camera_<name>.json files; "
                                f"{folder_listing(camera_dir)}")
    images = sorted(folder.glob("*.jpg"))
    if not images:
        raise DatasetFormatError(f"calibration split folder {folder} holds no .jpg frame; expected the {LAYOUT}; "
                                 f"{folder_listing(folder)}")
    frames = []
    for image_path in images:
        name = image_path.stem
        camera_path = camera_dir / f"camera_{name}.json"
        camera = None
        if camera_path.is_file():
            camera = read_camera_json(camera_path)
        elif require_camera:
            raise FileNotFoundError(f"camera file {camera_path} not found for frame {image_path} "
                                    f"(require_camera=True); expected camera_<name>.json in {camera_dir}")
        lines = None
        if read_lines:
            lines_path = folder / f"{name}.json"
            if not lines_path.is_file():
                raise FileNotFoundError(f"line annotation {lines_path} not found for frame {image_path}; expected "
                                        f"the {LAYOUT} (read_lines=False for a split without annotations)")
            lines = read_lines_json(lines_path)
        frames.append(CalibrationFrame(name=name, image_path=image_path, camera=camera, lines=lines))
    return frames


def write_camera_json(path: str | Path, camera: Camera) -> None:
    """Write ``camera`` as ``camera_<name>.json`` (the baseline's format: 4-space indented JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(camera.to_json_parameters(), indent=4), encoding="utf-8")


def write_lines_json(path: str | Path, lines: Mapping[str, np.ndarray]) -> None:
    """Write a frame's ``<name>.json`` annotation from class -> K x 2 points normalised to the image."""
    annotation = {}
    for name, points in lines.items():
        if name not in LINE_CLASSES:
            raise ValueError(f"write_lines_json({path}): unknown line class {name!r}; expected one of "
                             f"{list(LINE_CLASSES)}")
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"write_lines_json({path}): class {name!r} should be K x 2 normalised points, got "
                             f"shape {points.shape}")
        annotation[name] = [{"x": float(x), "y": float(y)} for x, y in points]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(annotation, indent=4), encoding="utf-8")
