"""Demonstrations in the LeRobot v2.1 on-disk layout, written and read with pyarrow (no ``lerobot`` package).

Layout (LeRobot ``lerobot/common/datasets/utils.py`` and ``lerobot_dataset.py``, codebase_version v2.1)::

    root/meta/info.json                 codebase_version, fps, totals, chunks_size, splits, data_path,
                                        video_path, features {key: {dtype, shape, names}}
    root/meta/episodes.jsonl            {"episode_index", "tasks": [str], "length"} per line
    root/meta/tasks.jsonl               {"task_index", "task"} per line
    root/meta/episodes_stats.jsonl      {"episode_index", "stats": {key: {min, max, mean, std, count}}}
    root/data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet     one row per frame
    root/videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4  ("video" features)

with ``episode_chunk = episode_index // chunks_size``. Each parquet has ``observation.state`` and ``action``
(fixed-size float32 lists, as HF ``datasets.Sequence(length=n)`` stores them), the default columns of
``DEFAULT_FEATURES`` and one ``{"bytes", "path"}`` struct per "image" feature (HF ``datasets.Image``).
LeRobot's tools embed the image bytes in the parquet; this writer keeps PNG files under ``IMAGE_PATH``
(bytes null, path relative to root), so the reader accepts both. v3.0 (many episodes per file) is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shared_utils.datasets import DatasetFormatError, folder_listing

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000  # LeRobot's DEFAULT_CHUNK_SIZE: episodes per data/chunk-XXX folder
INFO_PATH = "meta/info.json"
EPISODES_PATH = "meta/episodes.jsonl"
TASKS_PATH = "meta/tasks.jsonl"
EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
IMAGE_PATH = "images/{image_key}/episode_{episode_index:06d}/frame_{frame_index:06d}.png"
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
REQUIRED_FEATURES = ("observation.state", "action", *DEFAULT_FEATURES)
VISUAL_DTYPES = ("image", "video")
IMAGE_STRUCT = pa.struct({"bytes": pa.binary(), "path": pa.string()})  # HF datasets.Image storage


class LeRobotWriter:
    """Writes episodes one parquet file each; ``finalize`` writes the metadata that makes the root a dataset.

    The metadata is written last, so an interrupted recording never looks like a finished dataset.
    """

    def __init__(self, root: str | Path, fps: int, robot_type: str, state_names: list[str],
                 action_names: list[str], image_keys: Sequence[str] = (),
                 image_shape: tuple[int, int, int] = (96, 96, 3),
                 vector_names: Mapping[str, list[str]] | None = None) -> None:
        """``vector_names``: further float32 vector features, e.g. ``observation.environment_state``
        (LeRobot's key for privileged simulator state) -> its element names."""
        self.root = Path(root)
        self._refuse_overwrite()
        if len(image_shape) != 3 or image_shape[2] != 3:
            raise ValueError(f"image_shape: expected (height, width, 3), got {tuple(image_shape)}")
        self.fps, self.robot_type = fps, robot_type
        self.image_keys, self.image_shape = tuple(image_keys), tuple(image_shape)
        self.features = {
            "observation.state": {"dtype": "float32", "shape": [len(state_names)], "names": list(state_names)},
            "action": {"dtype": "float32", "shape": [len(action_names)], "names": list(action_names)},
            **{key: {"dtype": "float32", "shape": [len(names)], "names": list(names)}
               for key, names in (vector_names or {}).items()},
            **{key: {"dtype": "image", "shape": list(image_shape), "names": ["height", "width", "channel"]}
               for key in self.image_keys},
            **DEFAULT_FEATURES,
        }
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict] = []
        self.episodes_stats: list[dict] = []
        self.total_frames = 0

    def _refuse_overwrite(self) -> None:
        if (self.root / INFO_PATH).exists():
            raise FileExistsError(f"{self.root / INFO_PATH}: a dataset is already finalized here; refusing to "
                                  "overwrite it (choose a new root or delete the old dataset first)")

    def add_episode(self, states: np.ndarray, actions: np.ndarray, task: str,
                    images: Mapping[str, np.ndarray] | None = None,
                    vectors: Mapping[str, np.ndarray] | None = None) -> int:
        """Writes one episode (``states`` (T, S), ``actions`` (T, A), ``images[key]`` (T, H, W, 3) uint8 RGB,
        ``vectors[key]`` (T, n) for the writer's ``vector_names``) and returns its episode_index."""
        self._refuse_overwrite()
        S, A = self.features["observation.state"]["shape"][0], self.features["action"]["shape"][0]
        states, actions = np.asarray(states), np.asarray(actions)
        images = {key: np.asarray(frames) for key, frames in (images or {}).items()}
        if states.ndim != 2 or states.shape[0] == 0 or states.shape[1] != S:
            raise ValueError(f"states: expected shape (T, {S}) with T >= 1, got {states.shape}")
        T = len(states)
        if actions.shape != (T, A):
            raise ValueError(f"actions: expected shape ({T}, {A}) (T from states), got {actions.shape}")
        if sorted(images) != sorted(self.image_keys):
            raise ValueError(f"images: expected keys {sorted(self.image_keys)}, got {sorted(images)}")
        for key, frames in images.items():
            if frames.shape != (T, *self.image_shape) or frames.dtype != np.uint8:
                raise ValueError(f"images['{key}']: expected uint8 of shape {(T, *self.image_shape)}, "
                                 f"got {frames.dtype} of shape {frames.shape}")
        vectors = {key: np.asarray(values) for key, values in (vectors or {}).items()}
        vector_keys = [k for k, ft in self.features.items() if ft["dtype"] == "float32" and k not in
                       ("observation.state", "action", "timestamp")]
        if sorted(vectors) != sorted(vector_keys):
            raise ValueError(f"vectors: expected keys {sorted(vector_keys)}, got {sorted(vectors)}")
        for key, values in vectors.items():
            n = self.features[key]["shape"][0]
            if values.shape != (T, n):
                raise ValueError(f"vectors['{key}']: expected shape ({T}, {n}), got {values.shape}")
        if not isinstance(task, str) or not task:
            raise ValueError(f"task: expected a non-empty string, got {task!r}")

        episode_index = len(self.episodes)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        frame_index = np.arange(T, dtype=np.int64)
        columns = {
            "observation.state": states.astype(np.float32), "action": actions.astype(np.float32), **images,
            **{key: values.astype(np.float32) for key, values in vectors.items()},
            "timestamp": (frame_index / self.fps).astype(np.float32),  # LeRobot's add_frame default
            "frame_index": frame_index,
            "episode_index": np.full(T, episode_index, dtype=np.int64),
            "index": self.total_frames + frame_index,
            "task_index": np.full(T, task_index, dtype=np.int64),
        }
        arrays = {}
        for key, values in columns.items():
            if key in images:
                paths = [self._write_png(key, episode_index, i, frame) for i, frame in enumerate(values)]
                arrays[key] = pa.array([{"bytes": None, "path": p} for p in paths], type=IMAGE_STRUCT)
            elif values.ndim == 2:
                arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
            else:
                arrays[key] = pa.array(values)
        table = pa.table(arrays).replace_schema_metadata({"huggingface": json.dumps(_hf_features(self.features))})
        path = self.root / DATA_PATH.format(episode_chunk=episode_index // CHUNKS_SIZE, episode_index=episode_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

        self.episodes.append({"episode_index": episode_index, "tasks": [task], "length": T})
        self.episodes_stats.append({"episode_index": episode_index,
                                    "stats": {key: _feature_stats(values, key in images)
                                              for key, values in columns.items()}})
        self.total_frames += T
        return episode_index

    def _write_png(self, key: str, episode_index: int, frame_index: int, rgb: np.ndarray) -> str:
        relative = IMAGE_PATH.format(image_key=key, episode_index=episode_index, frame_index=frame_index)
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: OpenCV could not write the PNG")
        return relative

    def finalize(self) -> Path:
        """Writes meta/info.json, episodes.jsonl, tasks.jsonl and episodes_stats.jsonl; returns the root."""
        self._refuse_overwrite()
        if not self.episodes:
            raise ValueError(f"{self.root}: no episodes were added; refusing to write an empty dataset")
        n = len(self.episodes)
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
            "total_episodes": n, "total_frames": self.total_frames, "total_tasks": len(self.tasks),
            "total_videos": 0, "total_chunks": (n - 1) // CHUNKS_SIZE + 1, "chunks_size": CHUNKS_SIZE,
            "fps": self.fps, "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH, "video_path": None,
            "features": self.features,
        }
        _write_jsonl(self.root / EPISODES_PATH, self.episodes)
        _write_jsonl(self.root / TASKS_PATH, [{"task_index": i, "task": t} for t, i in self.tasks.items()])
        _write_jsonl(self.root / EPISODES_STATS_PATH, self.episodes_stats)
        (self.root / INFO_PATH).write_text(json.dumps(info, indent=4, ensure_ascii=False))
        return self.root


class LeRobotDataset:
    """Reads a v2.x dataset root (as written above, or recorded / downloaded with LeRobot's tools)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path = self.root / INFO_PATH
        if not info_path.is_file():
            raise DatasetFormatError(f"{info_path}: not found; expected a LeRobot v2.1 dataset root with "
                                     f"{INFO_PATH}, {EPISODES_PATH}, {TASKS_PATH} and {DATA_PATH} "
                                     f"({folder_listing(self.root)})")
        self.info: dict = _parse_json(info_path.read_text(), str(info_path))
        for field in ("codebase_version", "fps", "chunks_size", "data_path", "total_frames", "features"):
            if field not in self.info:
                raise DatasetFormatError(f"{info_path}: missing field '{field}' (found {sorted(self.info)})")
        version = str(self.info["codebase_version"])
        if version.startswith("v3"):
            raise DatasetFormatError(f"{info_path}: codebase_version '{version}' is not supported (v3 packs many "
                                     "episodes per parquet/mp4 file); download the dataset's v2.1 revision from "
                                     "the Hub (snapshot_download(..., revision='v2.1')) or convert it with "
                                     "any4lerobot's ds_version_convert/v30_to_v21")
        if not version.startswith("v2"):
            raise DatasetFormatError(f"{info_path}: codebase_version '{version}' is not supported; "
                                     "expected v2.0 or v2.1")
        features = self.info["features"]
        missing = [key for key in REQUIRED_FEATURES if key not in features]
        if missing:
            raise DatasetFormatError(f"{info_path}: field 'features' lacks {missing} (expected "
                                     f"{list(REQUIRED_FEATURES)} plus cameras; found {sorted(features)})")
        self.fps: int = int(self.info["fps"])
        self.tasks: dict[int, str] = {row["task_index"]: row["task"]
                                      for row in _read_jsonl(self.root / TASKS_PATH, ("task_index", "task"))}
        rows = _read_jsonl(self.root / EPISODES_PATH, ("episode_index", "tasks", "length"))
        self.episodes: list[dict] = sorted(rows, key=lambda row: row["episode_index"])
        self._columns = [key for key, ft in features.items() if ft["dtype"] not in VISUAL_DTYPES]

    def __len__(self) -> int:
        return int(self.info["total_frames"])

    def episode(self, episode_index: int, image_keys: Sequence[str] = ()) -> dict[str, np.ndarray | str]:
        """One episode's columns as arrays (``observation.state`` (T, S), ``action`` (T, A), ...), its ``task``
        (the first frame's) and each requested camera as (T, H, W, 3) uint8 RGB."""
        features = self.info["features"]
        cameras = [key for key, ft in features.items() if ft["dtype"] in VISUAL_DTYPES]
        unknown = [key for key in image_keys if key not in cameras]
        if unknown:
            raise ValueError(f"image_keys: {unknown} are not cameras of {self.root / INFO_PATH} (cameras: {cameras})")
        path = self._data_file(episode_index)
        images = [key for key in image_keys if features[key]["dtype"] == "image"]
        table = _read_table(path, self._columns + images)
        out: dict[str, np.ndarray | str] = {key: _to_numpy(table[key], features[key]["shape"])
                                            for key in self._columns}
        out["task"] = self.tasks[int(out["task_index"][0])]
        for key in image_keys:
            if key in images:
                out[key] = np.stack([_decode_image(cell, self.root, path, key) for cell in table[key].to_pylist()])
            else:
                out[key] = self._decode_video(episode_index, key, out["timestamp"])
        return out

    def frames(self) -> dict[str, np.ndarray]:
        """Every non-camera column of all episodes, concatenated and sorted by the global ``index``."""
        parts: dict[str, list[np.ndarray]] = {key: [] for key in self._columns}
        for row in self.episodes:
            table = _read_table(self._data_file(row["episode_index"]), self._columns)
            for key in self._columns:
                parts[key].append(_to_numpy(table[key], self.info["features"][key]["shape"]))
        columns = {key: np.concatenate(values) for key, values in parts.items()}
        order = np.argsort(columns["index"], kind="stable")
        return {key: values[order] for key, values in columns.items()}

    def _data_file(self, episode_index: int) -> Path:
        if episode_index not in {row["episode_index"] for row in self.episodes}:
            raise IndexError(f"{self.root / EPISODES_PATH}: no episode_index {episode_index} "
                             f"({len(self.episodes)} episodes listed)")
        chunk = episode_index // int(self.info["chunks_size"])
        return self.root / self.info["data_path"].format(episode_chunk=chunk, episode_index=episode_index)

    def _decode_video(self, episode_index: int, key: str, timestamps: np.ndarray) -> np.ndarray:
        """Frames of a "video" feature at the parquet's timestamps (seconds from the episode's start)."""
        template = self.info.get("video_path")
        if not template:
            raise DatasetFormatError(f"{self.root / INFO_PATH}: feature '{key}' has dtype 'video' but 'video_path' is "
                             f"{template!r}")
        chunk = episode_index // int(self.info["chunks_size"])
        path = self.root / template.format(episode_chunk=chunk, video_key=key, episode_index=episode_index)
        if not path.is_file():
            raise DatasetFormatError(f"{path}: video of '{key}' for episode {episode_index} not found "
                                     f"({folder_listing(path.parent)})")
        capture, decoded = cv2.VideoCapture(str(path)), []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            decoded.append(bgr)
        capture.release()
        wanted = np.rint(np.asarray(timestamps, dtype=np.float64) * self.fps).astype(np.int64)
        if len(wanted) and wanted.max() >= len(decoded):
            raise DatasetFormatError(f"{path}: OpenCV decoded {len(decoded)} frames, the parquet needs frame "
                             f"{wanted.max()}; the file is truncated or its codec (LeRobot encodes AV1) is missing "
                             "from this OpenCV build. Re-encode it, e.g. "
                             f"ffmpeg -i {path} -c:v libx264 -pix_fmt yuv420p reencoded.mp4")
        return np.stack([cv2.cvtColor(decoded[i], cv2.COLOR_BGR2RGB) for i in wanted])


def _feature_stats(values: np.ndarray, is_image: bool) -> dict[str, list]:
    """LeRobot's ``compute_episode_stats``: per-dimension stats over frames; images are sampled like
    ``sample_indices`` (all frames below 100), reduced per channel to (3, 1, 1) and scaled to [0, 1]."""
    if not is_image:
        axis, keepdims = 0, values.ndim == 1
    else:
        n = len(values)
        num_samples = max(min(100, n), min(int(n**0.75), 10_000))
        values = values[np.round(np.linspace(0, n - 1, num_samples)).astype(int)].transpose(0, 3, 1, 2)
        if max(values.shape[2:]) >= 300:  # auto_downsample_height_width to about 150 pixels
            step = max(values.shape[2:]) // 150
            values = values[:, :, ::step, ::step]
        axis, keepdims = (0, 2, 3), True
    stats = {"min": np.min(values, axis=axis, keepdims=keepdims), "max": np.max(values, axis=axis, keepdims=keepdims),
             "mean": np.mean(values, axis=axis, keepdims=keepdims), "std": np.std(values, axis=axis, keepdims=keepdims)}
    if is_image:
        stats = {name: stat[0] / 255.0 for name, stat in stats.items()}
    return {**{name: stat.tolist() for name, stat in stats.items()}, "count": [len(values)]}


def _hf_features(features: dict) -> dict:
    """The ``huggingface`` parquet schema metadata through which ``datasets`` restores its feature types."""
    out = {}
    for key, ft in features.items():
        value = {"dtype": ft["dtype"], "_type": "Value"}
        if ft["dtype"] == "image":
            out[key] = {"_type": "Image"}
        elif ft["shape"] == [1]:
            out[key] = value
        else:
            out[key] = {"feature": value, "length": ft["shape"][0], "_type": "Sequence"}
    return {"info": {"features": out}}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found (expected one JSON object per line with {list(fields)}; "
                                 f"{folder_listing(path.parent)})")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = _parse_json(line, f"{path}:{number}")
        missing = [field for field in fields if field not in row]
        if missing:
            raise DatasetFormatError(f"{path}:{number}: missing field(s) {missing} (found {sorted(row)})")
        rows.append(row)
    return rows


def _parse_json(text: str, where: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{where}: not valid JSON ({err})") from err


def _read_table(path: Path, columns: list[str]) -> pa.Table:
    if not path.is_file():
        raise DatasetFormatError(f"{path}: episode parquet not found (listed in {EPISODES_PATH}; "
                                 f"{folder_listing(path.parent)})")
    names = pq.read_schema(path).names
    missing = [column for column in columns if column not in names]
    if missing:
        raise DatasetFormatError(f"{path}: missing column(s) {missing} declared in {INFO_PATH} features "
                                 f"(found {names})")
    return pq.read_table(path, columns=columns)


def _to_numpy(column: pa.ChunkedArray, shape: list[int]) -> np.ndarray:
    """A column as (N, *shape) for list columns (fixed-size or not), else (N,)."""
    array = column.combine_chunks()
    if pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type) or pa.types.is_large_list(array.type):
        return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), *shape)
    return array.to_numpy(zero_copy_only=False)


def _decode_image(cell: dict | None, root: Path, parquet: Path, key: str) -> np.ndarray:
    """An HF ``Image`` cell: embedded ``bytes`` when present (LeRobot's tools), else ``path`` under root."""
    if cell is None or (cell["bytes"] is None and not cell["path"]):
        raise DatasetFormatError(f"{parquet}: column '{key}' has a frame with neither bytes nor path "
                                 "(expected an HF Image cell {bytes, path})")
    if cell["bytes"] is not None:
        data, source = np.frombuffer(cell["bytes"], dtype=np.uint8), f"{parquet} (embedded '{key}' bytes)"
    else:
        file = root / cell["path"]
        if not file.is_file():
            raise DatasetFormatError(f"{file}: image of '{key}' referenced by {parquet} not found "
                                     f"({folder_listing(file.parent)})")
        data, source = np.fromfile(file, dtype=np.uint8), str(file)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetFormatError(f"{source}: not a decodable image (expected PNG or JPEG bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
