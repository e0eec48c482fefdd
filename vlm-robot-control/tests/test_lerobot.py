"""LeRobot v2.1 writer and reader: fixtures written in the exact on-disk layout under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared_utils.datasets import DatasetFormatError
from vlm_robot_control.data import lerobot
from vlm_robot_control.data.lerobot import LeRobotDataset, LeRobotWriter

FPS = 10
CAM = "observation.images.top"
SHAPE = (6, 8, 3)
STATE_NAMES = ["x", "y", "z", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz"]
LENGTHS = (5, 7, 4)
TASKS = ("pick the red block", "pick the red block", "push the blue bowl")  # a new task after a repeat
TASK_INDEX = (0, 0, 1)  # tasks.jsonl numbers tasks in order of first appearance


def _episodes(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"states": rng.normal(size=(T, 4)).astype(np.float32), "actions": rng.normal(size=(T, 3)),
             "task": task, "images": {CAM: rng.integers(0, 256, size=(T, *SHAPE), dtype=np.uint8)}}
            for T, task in zip(LENGTHS, TASKS)]


def _writer(root: Path, image_keys: tuple[str, ...] = (CAM,)) -> LeRobotWriter:
    return LeRobotWriter(root, fps=FPS, robot_type="mujoco_tabletop", state_names=STATE_NAMES,
                         action_names=ACTION_NAMES, image_keys=image_keys, image_shape=SHAPE)


def _write(root: Path) -> list[dict]:
    episodes = _episodes()
    writer = _writer(root)
    for i, ep in enumerate(episodes):
        assert writer.add_episode(ep["states"], ep["actions"], ep["task"], ep["images"]) == i
    assert writer.finalize() == root
    return episodes


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _edit_info(root: Path, edit) -> Path:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))
    return path


def test_round_trip_values(tmp_path):
    episodes = _write(tmp_path)
    ds = LeRobotDataset(tmp_path)
    assert len(ds) == sum(LENGTHS) and ds.fps == FPS
    assert ds.tasks == {0: TASKS[0], 1: TASKS[2]}
    start = 0
    for i, ep in enumerate(episodes):
        got = ds.episode(i, image_keys=(CAM,))
        T = LENGTHS[i]
        assert got["observation.state"].dtype == np.float32 and got["action"].dtype == np.float32
        np.testing.assert_array_equal(got["observation.state"], ep["states"])
        np.testing.assert_array_equal(got["action"], ep["actions"].astype(np.float32))
        np.testing.assert_array_equal(got[CAM], ep["images"][CAM])  # PNG is lossless, RGB order kept
        assert got["task"] == ep["task"]
        np.testing.assert_array_equal(got["task_index"], [TASK_INDEX[i]] * T)
        np.testing.assert_array_equal(got["frame_index"], np.arange(T))
        np.testing.assert_array_equal(got["index"], start + np.arange(T))
        np.testing.assert_allclose(got["timestamp"], np.arange(T) / FPS, rtol=0, atol=1e-7)
        start += T
    frames = ds.frames()
    assert CAM not in frames
    np.testing.assert_array_equal(frames["index"], np.arange(sum(LENGTHS)))
    np.testing.assert_array_equal(frames["episode_index"], np.repeat(np.arange(3), LENGTHS))
    np.testing.assert_array_equal(frames["observation.state"], np.concatenate([ep["states"] for ep in episodes]))
    assert frames["observation.state"].shape == (sum(LENGTHS), 4) and frames["action"].shape == (sum(LENGTHS), 3)


def test_layout_and_metadata(tmp_path):
    episodes = _write(tmp_path)
    for i, T in enumerate(LENGTHS):
        assert (tmp_path / f"data/chunk-000/episode_{i:06d}.parquet").is_file()
        assert (tmp_path / f"images/{CAM}/episode_{i:06d}/frame_{T - 1:06d}.png").is_file()
        assert not (tmp_path / f"images/{CAM}/episode_{i:06d}/frame_{T:06d}.png").exists()
    info = json.loads((tmp_path / "meta/info.json").read_text())
    assert {k: info[k] for k in info if k != "features"} == {
        "codebase_version": "v2.1", "robot_type": "mujoco_tabletop", "total_episodes": 3, "total_frames": 16,
        "total_tasks": 2, "total_videos": 0, "total_chunks": 1, "chunks_size": 1000, "fps": FPS,
        "splits": {"train": "0:3"}, "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": None}
    assert info["features"]["observation.state"] == {"dtype": "float32", "shape": [4], "names": STATE_NAMES}
    assert info["features"]["action"] == {"dtype": "float32", "shape": [3], "names": ACTION_NAMES}
    assert info["features"][CAM] == {"dtype": "image", "shape": list(SHAPE), "names": ["height", "width", "channel"]}
    assert info["features"]["index"] == {"dtype": "int64", "shape": [1], "names": None}
    assert set(info["features"]) == {"observation.state", "action", CAM, "timestamp", "frame_index",
                                     "episode_index", "index", "task_index"}
    assert _jsonl(tmp_path / "meta/episodes.jsonl") == [
        {"episode_index": i, "tasks": [TASKS[i]], "length": LENGTHS[i]} for i in range(3)]
    assert _jsonl(tmp_path / "meta/tasks.jsonl") == [{"task_index": 0, "task": TASKS[0]},
                                                     {"task_index": 1, "task": TASKS[2]}]
    stats = _jsonl(tmp_path / "meta/episodes_stats.jsonl")
    assert [row["episode_index"] for row in stats] == [0, 1, 2]
    s, ep = stats[1]["stats"], episodes[1]
    assert set(s) == set(info["features"])
    np.testing.assert_allclose(s["observation.state"]["min"], ep["states"].min(0), rtol=1e-6)
    np.testing.assert_allclose(s["observation.state"]["std"], ep["states"].std(0), rtol=1e-5)
    assert s["observation.state"]["count"] == [7] and s["frame_index"]["max"] == [6]
    image = ep["images"][CAM] / 255.0
    assert np.asarray(s[CAM]["mean"]).shape == (3, 1, 1) and s[CAM]["count"] == [7]
    np.testing.assert_allclose(np.asarray(s[CAM]["mean"])[:, 0, 0], image.mean((0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(s[CAM]["max"])[:, 0, 0], image.max((0, 1, 2)), rtol=1e-6)


def test_parquet_schema(tmp_path):
    _write(tmp_path)
    path = tmp_path / "data/chunk-000/episode_000001.parquet"
    schema = pq.read_schema(path)
    assert schema.names == ["observation.state", "action", CAM, "timestamp", "frame_index", "episode_index",
                            "index", "task_index"]
    assert schema.field("observation.state").type == pa.list_(pa.float32(), 4)  # datasets.Sequence(length=4)
    assert schema.field("action").type == pa.list_(pa.float32(), 3)
    assert schema.field(CAM).type == pa.struct({"bytes": pa.binary(), "path": pa.string()})
    assert schema.field("timestamp").type == pa.float32()
    for name in ("frame_index", "episode_index", "index", "task_index"):
        assert schema.field(name).type == pa.int64()
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert hf[CAM] == {"_type": "Image"} and hf["index"] == {"dtype": "int64", "_type": "Value"}
    assert hf["observation.state"] == {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4,
                                       "_type": "Sequence"}
    cells = pq.read_table(path)[CAM].to_pylist()
    assert cells[2] == {"bytes": None, "path": f"images/{CAM}/episode_000001/frame_000002.png"}


def test_reads_embedded_image_bytes(tmp_path):
    """Datasets pushed by LeRobot's tools carry the PNG bytes in the parquet and no images/ folder."""
    episodes = _write(tmp_path)
    path = tmp_path / "data/chunk-000/episode_000002.parquet"
    table = pq.read_table(path)
    cells = [{"bytes": (tmp_path / c["path"]).read_bytes(), "path": Path(c["path"]).name}
             for c in table[CAM].to_pylist()]
    column = table.schema.get_field_index(CAM)
    table = table.set_column(column, CAM, pa.array(cells, type=table.schema.field(CAM).type))
    pq.write_table(table, path)
    for png in (tmp_path / "images").rglob("*.png"):
        png.unlink()
    np.testing.assert_array_equal(LeRobotDataset(tmp_path).episode(2, (CAM,))[CAM], episodes[2]["images"][CAM])
    with pytest.raises(DatasetFormatError, match="frame_000000.png.*episode_000001.parquet"):
        LeRobotDataset(tmp_path).episode(1, (CAM,))


def test_reads_variable_length_list_columns(tmp_path):
    """Other writers store vectors as list<float32> rather than fixed-size lists: both are read."""
    episodes = _write(tmp_path)
    path = tmp_path / "data/chunk-000/episode_000000.parquet"
    table = pq.read_table(path)
    table = table.set_column(0, "observation.state", table["observation.state"].cast(pa.list_(pa.float32())))
    pq.write_table(table, path)
    assert pq.read_schema(path).field("observation.state").type == pa.list_(pa.float32())
    np.testing.assert_array_equal(LeRobotDataset(tmp_path).episode(0)["observation.state"], episodes[0]["states"])


def test_chunk_folders_follow_chunks_size(tmp_path, monkeypatch):
    monkeypatch.setattr(lerobot, "CHUNKS_SIZE", 2)
    episodes = _episodes() + _episodes(seed=1)[:1]
    writer = _writer(tmp_path)
    for ep in episodes:
        writer.add_episode(ep["states"], ep["actions"], ep["task"], ep["images"])
    writer.finalize()
    assert (tmp_path / "data/chunk-000/episode_000001.parquet").is_file()
    assert (tmp_path / "data/chunk-001/episode_000002.parquet").is_file()
    assert (tmp_path / "data/chunk-001/episode_000003.parquet").is_file()
    ds = LeRobotDataset(tmp_path)
    assert ds.info["chunks_size"] == 2 and ds.info["total_chunks"] == 2
    np.testing.assert_array_equal(ds.episode(3)["observation.state"], episodes[3]["states"])


def test_refuses_to_overwrite(tmp_path):
    _write(tmp_path)
    with pytest.raises(FileExistsError, match=str(tmp_path / "meta" / "info.json")):
        _writer(tmp_path)
    writer = _writer(tmp_path / "other")
    ep = _episodes()[0]
    writer.add_episode(ep["states"], ep["actions"], ep["task"], ep["images"])
    writer.finalize()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        writer.add_episode(ep["states"], ep["actions"], ep["task"], ep["images"])
    with pytest.raises(ValueError, match="no episodes"):
        _writer(tmp_path / "empty").finalize()


def test_missing_info_json(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "README.md").write_text("")
    with pytest.raises(DatasetFormatError, match=rf"{tmp_path}/meta/info\.json: not found.*"
                                                 rf"found in {tmp_path}: README\.md, data/"):
        LeRobotDataset(tmp_path)
    with pytest.raises(DatasetFormatError, match=rf"found nothing: {tmp_path / 'nowhere'} does not exist"):
        LeRobotDataset(tmp_path / "nowhere")


def test_v3_codebase_version_is_refused(tmp_path):
    _write(tmp_path)
    info = _edit_info(tmp_path, lambda info: info.update(codebase_version="v3.0"))
    with pytest.raises(DatasetFormatError, match=rf"{info}: codebase_version 'v3.0' is not supported.*v30_to_v21"):
        LeRobotDataset(tmp_path)


def test_missing_feature_in_info(tmp_path):
    _write(tmp_path)
    info = _edit_info(tmp_path, lambda info: info["features"].pop("action"))
    with pytest.raises(DatasetFormatError, match=rf"{info}: field 'features' lacks \['action'\]"):
        LeRobotDataset(tmp_path)


def test_missing_feature_column(tmp_path):
    _write(tmp_path)
    path = tmp_path / "data/chunk-000/episode_000001.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["action"]), path)
    ds = LeRobotDataset(tmp_path)
    ds.episode(0)
    with pytest.raises(DatasetFormatError, match=rf"{path}: missing column\(s\) \['action'\]"):
        ds.episode(1)
    with pytest.raises(DatasetFormatError, match=rf"{path}: missing column\(s\) \['action'\]"):
        ds.frames()


@pytest.mark.parametrize(("change", "message"), [
    (lambda ep: ep.update(states=ep["states"][:, :3]), r"states: expected shape \(T, 4\).*got \(5, 3\)"),
    (lambda ep: ep.update(states=ep["states"][:0], actions=ep["actions"][:0]), r"states: .*T >= 1.*got \(0, 4\)"),
    (lambda ep: ep.update(actions=ep["actions"][:4]), r"actions: expected shape \(5, 3\).*got \(4, 3\)"),
    (lambda ep: ep.update(images={}), r"images: expected keys \['observation.images.top'\], got \[\]"),
    (lambda ep: ep["images"].update({CAM: ep["images"][CAM][:, :5]}),
     r"images\['observation.images.top'\]: expected uint8 of shape \(5, 6, 8, 3\), got uint8 of shape \(5, 5, 8, 3\)"),
    (lambda ep: ep["images"].update({CAM: ep["images"][CAM].astype(np.float32)}), r"expected uint8.*got float32"),
    (lambda ep: ep.update(task=""), r"task: expected a non-empty string"),
])
def test_add_episode_validates_shapes(tmp_path, change, message):
    ep = _episodes()[0]
    change(ep)
    writer = _writer(tmp_path)
    with pytest.raises(ValueError, match=message):
        writer.add_episode(ep["states"], ep["actions"], ep["task"], ep["images"])
    assert not (tmp_path / "data").exists()


def test_reads_video_feature(tmp_path):
    """A "video" camera (not a parquet column): frames decoded from the mp4 at the parquet's timestamps."""
    ep = _episodes()[0]
    writer = _writer(tmp_path, image_keys=())
    writer.add_episode(ep["states"], ep["actions"], ep["task"])
    writer.finalize()
    key, (H, W) = "observation.images.wrist", (32, 48)
    template = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

    def add_video(info: dict) -> None:
        info["features"][key] = {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channel"]}
        info.update(video_path=template, total_videos=1)

    _edit_info(tmp_path, add_video)
    colours = np.array([[40 * i, 200 - 30 * i, 100] for i in range(LENGTHS[0])], dtype=np.uint8)  # RGB
    path = tmp_path / template.format(episode_chunk=0, video_key=key, episode_index=0)
    path.parent.mkdir(parents=True)
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for rgb in colours:
        video.write(np.full((H, W, 3), rgb[::-1], dtype=np.uint8))
    video.release()
    frames = LeRobotDataset(tmp_path).episode(0, (key,))[key]
    assert frames.shape == (LENGTHS[0], H, W, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames.mean((1, 2)), colours, atol=6)  # lossy codec, flat colours

    path.write_bytes(b"not an mp4")
    with pytest.raises(ValueError, match=rf"{path}: OpenCV decoded 0 frames.*Re-encode"):
        LeRobotDataset(tmp_path).episode(0, (key,))
