"""Expert demonstrations recorded into LeRobot v2.1 and served by ``TabletopDataModule``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from shared_utils.datasets import DatasetFormatError

# Imported before any EGL rendering: it loads triton, which crashes the process when loaded after Mesa's EGL.
from vlm_robot_control.data import datamodule as datamodule_module
from vlm_robot_control.data.datamodule import VAL_SEED_OFFSET, TabletopDataModule
from vlm_robot_control.data.lerobot import LeRobotDataset
from vlm_robot_control.data.recording import (
    ACTION_NAMES,
    ENV_STATE_NAMES,
    FPS,
    IMAGE_KEY,
    STATE_NAMES,
    record_demos,
)
from vlm_robot_control.env.expert import ScriptedExpert
from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.env.tasks import SLOTS, SPLITS, load_phrasings
from vlm_robot_control.evaluation import EVAL_SEED_OFFSET
from vlm_robot_control.language import EMBED_DIM, SentenceEncoder

NOISE = 0.15


@pytest.fixture(scope="module", params=[False, True], ids=["state", "images"])
def recorded(request, tmp_path_factory) -> tuple[Path, dict, bool]:
    root = tmp_path_factory.mktemp("demos") / "pick_place"
    return root, record_demos(root, ["pick_place"], 2, noise=NOISE, seed=0, images=request.param), request.param


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for every datamodule of this file: demos per setting and the embeddings file."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    """The real MiniLM model (loaded once per process), without a disk cache."""
    return SentenceEncoder()


FIT_ARGS = {"tasks": ["pick_place", "stack"], "train_episodes": 3, "chunk_size": 3, "batch_size": 16,
            "val_fraction": 0.34, "record_seed": 0}


@pytest.fixture(scope="module")
def fitted(cache_dir) -> TabletopDataModule:
    dm = TabletopDataModule(**FIT_ARGS, cache_dir=str(cache_dir))
    dm.setup("fit")
    return dm


# -- recording -------------------------------------------------------------------------------------

def replay(n_kept: int, images: bool) -> list[dict]:
    """Re-runs the recording procedure by hand: expert with DART noise (noise rng seed 0), seeds 0, 1, ...
    of family 0, clean actions recorded with the observation they were taken in, failures skipped."""
    env = TabletopEnv("pick_place", observation_image=images)
    expert = ScriptedExpert(env, noise=NOISE, seed=0)
    episodes, seed = [], 0
    while len(episodes) < n_kept:
        obs, info = env.reset(seed=seed)
        expert.reset()
        seed += 1
        frames: dict[str, list] = {"state": [], "environment_state": [], "action": [], "image": []}
        while True:
            action = expert.act()
            for key in ("state", "environment_state", *(("image",) if images else ())):
                frames[key].append(obs[key])
            frames["action"].append(action)
            obs, reward, terminated, truncated, _ = env.step(expert.noisy(action))
            if terminated or truncated:
                break
        if terminated:
            episodes.append({"task": info["instruction"], "seed": seed - 1,
                             **{k: np.array(v) for k, v in frames.items() if v}})
    return episodes


def test_record_demos_writes_a_lerobot_dataset(recorded):
    root, summary, images = recorded
    assert summary["pick_place"]["kept"] == 2
    attempts = summary["pick_place"]["attempts"]
    assert summary == {"pick_place": {"kept": 2, "attempts": attempts, "expert_success": 2 / attempts}}
    assert json.loads((root / "meta" / "recording.json").read_text()) == summary
    dataset = LeRobotDataset(root)
    features = dataset.info["features"]
    assert features["observation.state"] == {"dtype": "float32", "shape": [4], "names": STATE_NAMES}
    assert features["observation.environment_state"] == {"dtype": "float32", "shape": [len(SLOTS) * 4],
                                                         "names": ENV_STATE_NAMES}
    assert len(SLOTS) * 4 == 120 and len(set(ENV_STATE_NAMES)) == 120
    assert features["action"] == {"dtype": "float32", "shape": [4], "names": ACTION_NAMES}
    assert (IMAGE_KEY in features) == images
    if images:
        assert features[IMAGE_KEY]["dtype"] == "image" and features[IMAGE_KEY]["shape"] == [96, 96, 3]
    assert dataset.fps == FPS and dataset.info["total_episodes"] == 2

    expected = replay(2, images)
    assert sorted(dataset.tasks.values()) == sorted({e["task"] for e in expected})
    for e, (row, want) in enumerate(zip(dataset.episodes, expected)):
        got = dataset.episode(e, [IMAGE_KEY] if images else [])
        T = len(want["action"])
        assert row["length"] == T and row["tasks"] == [want["task"]] and got["task"] == want["task"]
        np.testing.assert_array_equal(got["observation.state"], want["state"])
        np.testing.assert_array_equal(got["observation.environment_state"], want["environment_state"])
        np.testing.assert_array_equal(got["action"], want["action"])      # the clean labels, not the noisy ones
        np.testing.assert_array_equal(got["frame_index"], np.arange(T))
        np.testing.assert_allclose(got["timestamp"], np.arange(T) / FPS, atol=1e-6)
        if images:
            np.testing.assert_array_equal(got[IMAGE_KEY], want["image"])  # PNG is lossless


def test_images_do_not_change_what_is_recorded(recorded, tmp_path):
    root, _, images = recorded
    other = tmp_path / "other"
    record_demos(other, ["pick_place"], 2, noise=NOISE, seed=0, images=not images)
    a, b = LeRobotDataset(root).frames(), LeRobotDataset(other).frames()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_record_demos_refuses_to_overwrite(recorded):
    root, summary, images = recorded
    before = (root / "meta" / "info.json").read_text()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        record_demos(root, ["pick_place"], 1, images=images)
    assert (root / "meta" / "info.json").read_text() == before
    assert json.loads((root / "meta" / "recording.json").read_text()) == summary


# -- datamodule: fit -------------------------------------------------------------------------------

def test_batches_have_the_documented_keys_shapes_and_dtypes(fitted):
    batch = next(iter(fitted.train_dataloader()))
    assert set(batch) == {"state", "environment_state", "lang", "action", "episode_index", "pick_slot", "place_slot",
                          "grasp_xy", "release_xy"}
    B = 16
    for key in ("episode_index", "pick_slot", "place_slot"):
        assert batch[key].shape == (B,) and batch[key].dtype == torch.int64, key
    for key in ("grasp_xy", "release_xy"):   # pick_place and stack demos: every episode grasps and releases
        assert batch[key].shape == (B, 2) and batch[key].dtype == torch.float32 and torch.isfinite(batch[key]).all()
    assert batch["state"].shape == (B, 4) and batch["state"].dtype == torch.float32
    assert batch["environment_state"].shape == (B, 120) and batch["environment_state"].dtype == torch.float32
    assert batch["lang"].shape == (B, EMBED_DIM) and batch["lang"].dtype == torch.float32
    assert batch["action"].shape == (B, 3, 4) and batch["action"].dtype == torch.float32
    torch.testing.assert_close(batch["lang"].norm(dim=1), torch.ones(B))
    frames, jobs = fitted.val_dataloader()   # val/loss on the demo frames, then the success rollouts
    val = next(iter(frames))
    assert set(val) == set(batch) and val["action"].shape[1:] == (3, 4)
    assert list(jobs) == fitted.val_jobs()


def test_samples_match_the_raw_frames(fitted, encoder):
    """Every sample against the recorded episodes: state, environment state, the instruction's
    embedding, and the next chunk_size actions with the episode's last action repeated."""
    dataset = LeRobotDataset(fitted.dataset_path())
    assert dataset.info["total_episodes"] == 6
    where = {}                  # global frame index -> (episode, frame)
    episodes = {}
    for row in dataset.episodes:
        ep = dataset.episode(row["episode_index"])
        episodes[row["episode_index"]] = ep
        where.update({int(i): (row["episode_index"], t) for t, i in enumerate(ep["index"])})
    lang = dict(zip(dataset.tasks.values(), encoder.encode(list(dataset.tasks.values()))))
    chunk = FIT_ARGS["chunk_size"]
    n_clamped = 0
    for subset in (fitted.train_set, fitted.val_set):
        for i in range(len(subset)):
            sample = subset[i]
            e, t = where[int(subset.rows[i])]
            ep = episodes[e]
            T = len(ep["action"])
            assert int(sample["episode_index"]) == e
            np.testing.assert_array_equal(sample["state"].numpy(), ep["observation.state"][t])
            np.testing.assert_array_equal(sample["environment_state"].numpy(), ep["observation.environment_state"][t])
            want = np.stack([ep["action"][min(t + k, T - 1)] for k in range(chunk)])
            np.testing.assert_array_equal(sample["action"].numpy(), want)
            n_clamped += t + chunk > T
            torch.testing.assert_close(sample["lang"], lang[ep["task"]], atol=1e-5, rtol=0)
    assert n_clamped == 6 * (chunk - 1)       # the last chunk-1 frames of each episode were padded


def test_hindsight_slots_name_the_goal_objects(fitted):
    """pick_slot / place_slot against the tasks the episodes were recorded from (found by replaying
    the recording seeds and matching each episode's first environment state)."""
    dataset = LeRobotDataset(fitted.dataset_path())
    summary = json.loads((fitted.dataset_path() / "meta" / "recording.json").read_text())
    starts = {}
    for f, family in enumerate(FIT_ARGS["tasks"]):
        env = TabletopEnv(family)
        for attempt in range(summary[family]["attempts"]):
            obs, _ = env.reset(seed=f * 100_003 + attempt)
            starts[obs["environment_state"].tobytes()] = env.task
    tensors = fitted.train_set.tensors
    for row in dataset.episodes:
        ep = dataset.episode(row["episode_index"])
        task = starts[ep["observation.environment_state"][0].tobytes()]
        block, target = task.goals[0]
        rows = torch.from_numpy(ep["index"].copy())
        assert set(tensors["pick_slot"][rows].tolist()) == {task.slots()[block]}, task.instruction
        assert set(tensors["place_slot"][rows].tolist()) == {task.slots()[target]}, task.instruction


def test_train_and_val_split_by_episode(fitted):
    train = set(fitted.train_set.tensors["episode_index"][fitted.train_set.rows].tolist())
    val = set(fitted.val_set.tensors["episode_index"][fitted.val_set.rows].tolist())
    assert not train & val and train | val == set(range(6)) and len(val) == round(0.34 * 6)
    n_frames = len(LeRobotDataset(fitted.dataset_path()))
    assert len(fitted.train_set) + len(fitted.val_set) == n_frames
    assert sorted([*fitted.train_set.rows.tolist(), *fitted.val_set.rows.tolist()]) == list(range(n_frames))


def test_a_single_episode_never_leaves_training_empty(cache_dir):
    dm = TabletopDataModule(tasks=["pick_place"], train_episodes=1, val_fraction=0.0, cache_dir=str(cache_dir))
    try:
        dm.setup("fit")
    except ValueError as err:             # refusing, with a message about the episodes, is fine too
        assert "episode" in str(err)
    else:
        assert len(dm.train_set) > 0


def test_recording_happens_once_per_setting(fitted, cache_dir, monkeypatch):
    folder = fitted.dataset_path()
    assert folder.parent == cache_dir / "demos"
    assert json.loads((folder / "meta" / "recording.json").read_text())["stack"]["kept"] == 3

    def must_not_record(*args, **kwargs):
        raise AssertionError("recorded again")

    monkeypatch.setattr(datamodule_module, "record_demos", must_not_record)
    again = TabletopDataModule(**FIT_ARGS, cache_dir=str(cache_dir))
    assert again.dataset_path() == folder
    again.setup("fit")
    assert len(again.train_set) == len(fitted.train_set)
    with pytest.raises(AssertionError, match="recorded again"):   # any other setting records anew
        TabletopDataModule(**{**FIT_ARGS, "expert_noise": 0.1}, cache_dir=str(cache_dir)).dataset_path()
    monkeypatch.undo()
    other = TabletopDataModule(**{**FIT_ARGS, "train_episodes": 1}, cache_dir=str(cache_dir)).dataset_path()
    assert other != folder and other.parent == folder.parent
    assert LeRobotDataset(other).info["total_episodes"] == 2 and LeRobotDataset(folder).info["total_episodes"] == 6


def test_image_batches(cache_dir):
    dm = TabletopDataModule(tasks=["push"], train_episodes=2, images=True, image_size=32, batch_size=8,
                            val_fraction=0.5, cache_dir=str(cache_dir))
    dm.setup("fit")
    sample = dm.train_set[0]
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.uint8
    dataset = LeRobotDataset(dm.dataset_path())
    e = int(sample["episode_index"])
    raw = dataset.episode(e, [IMAGE_KEY])[IMAGE_KEY]
    start = int(dataset.episode(e)["index"][0])
    t = int(dm.train_set.rows[0]) - start
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), raw[t])
    np.testing.assert_array_equal(sample["first_image"].permute(1, 2, 0).numpy(), raw[0])
    assert torch.isnan(sample["grasp_xy"]).all(), "push demos never close the gripper: no grasp label"
    assert next(iter(dm.train_dataloader()))["image"].shape == (8, 3, 32, 32)


# -- datamodule: arguments and test jobs -----------------------------------------------------------

def test_root_trains_on_a_given_dataset(recorded, tmp_path):
    root, _, images = recorded
    dm = TabletopDataModule(tasks=["pick_place"], root=str(root), images=images, cache_dir=str(tmp_path))
    assert dm.dataset_path() == root and dm.hparams.root == str(root)
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == len(LeRobotDataset(root))


def test_dataset_root_is_a_deprecated_alias_of_root(recorded, tmp_path):
    root = str(recorded[0])
    with pytest.warns(FutureWarning, match="dataset_root is deprecated.*use data.init_args.root"):
        dm = TabletopDataModule(dataset_root=root, cache_dir=str(tmp_path))
    assert dm.dataset_path() == Path(root) and dm.hparams.root == root and "dataset_root" not in dm.hparams
    with pytest.raises(ValueError, match="disagree"):
        TabletopDataModule(root=str(tmp_path), dataset_root=root, cache_dir=str(tmp_path))


def test_a_missing_root_stops_in_setup_naming_the_path(tmp_path):
    """Before any training step: the CLI prints a DatasetFormatError as one line."""
    dm = TabletopDataModule(root=str(tmp_path / "no_such_dataset"), cache_dir=str(tmp_path))
    with pytest.raises(DatasetFormatError, match=rf"{tmp_path}/no_such_dataset/meta/info.json: not found.*"
                                                 "found nothing: .*no_such_dataset does not exist"):
        dm.setup("fit")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tasks": ["pick_place", "lift"]}, "data.tasks.*'lift'"),
    ({"eval_tasks": ["stack", "pour"]}, "eval_tasks.*'pour'"),
    ({"eval_splits": ["seen", "unseen"]}, "data.eval_splits.*'unseen'"),
])
def test_bad_arguments_are_named(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TabletopDataModule(**kwargs, cache_dir=str(tmp_path))


def test_test_jobs_cover_every_family_and_split(tmp_path):
    path = tmp_path / "phrasings.txt"
    path.write_text("# held out\nhand the {pick} to the {place}\n")
    dm = TabletopDataModule(tasks=["pick_place"], eval_tasks=["pick_place", "sort"], eval_episodes=5,
                            eval_batch=2, paraphrase_file=str(path), cache_dir=str(tmp_path))
    jobs = dm.test_jobs()
    assert [(j["family"], j["split"]) for j in jobs] == [(f, s) for f in ("pick_place", "sort")
                                                         for s in SPLITS for _ in range(3)]
    for job in jobs:
        assert 1 <= len(job["seeds"]) <= 2
        assert job["phrasings"] == (load_phrasings(path) if job["split"] == "unseen_phrasing" else None)
    for family in ("pick_place", "sort"):
        for split in SPLITS:
            seeds = [s for j in jobs if (j["family"], j["split"]) == (family, split) for s in j["seeds"]]
            assert seeds == [EVAL_SEED_OFFSET + i for i in range(5)]
    assert list(dm.test_dataloader()) == jobs


def test_default_jobs(tmp_path):
    dm = TabletopDataModule(tasks=["stack", "push"], eval_episodes=3, eval_batch=25, val_episodes=4,
                            cache_dir=str(tmp_path))
    jobs = dm.test_jobs()
    assert [(j["family"], j["split"]) for j in jobs] == [(f, s) for f in ("stack", "push") for s in SPLITS]
    assert all(j["seeds"] == [EVAL_SEED_OFFSET + i for i in range(3)] and j["phrasings"] is None for j in jobs)
    assert dm.val_jobs() == [{"family": f, "split": "seen", "seeds": [VAL_SEED_OFFSET + i for i in range(4)],
                              "phrasings": None} for f in ("stack", "push")]
