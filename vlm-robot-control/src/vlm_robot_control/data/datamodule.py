"""``TabletopDataModule``: expert demos (LeRobot v2.1 on disk) for training, rollout jobs for testing.

fit: the demos of ``root`` (any LeRobot v2.x dataset with our state/action layout), or, by
default, demos recorded by the scripted expert once per setting into ``cache_dir`` (the folder is
keyed by every recording argument, so a change re-records and nothing is overwritten). Each sample
is one frame: ``state`` (4), ``environment_state`` (120), ``lang`` (384, the instruction's
MiniLM embedding), ``action`` (chunk_size, 4) (the next actions, the last repeated past the end),
``image`` (3, H, W) uint8 and ``first_image``, its episode's first image, when ``images`` is on, and
hindsight labels read off the demo itself (so any dataset with our state/action layout has them):
``pick_slot`` / ``place_slot`` (long), the slot of the block the episode moved most and of the object
nearest to where that block ended; ``grasp_xy`` / ``release_xy`` (2,), the hand's xy where the episode
first closed the gripper and where it opened it next (NaN in episodes without such a pair: push).

test: one job per (family, split, batch of seeds), run by the policy module as closed-loop rollouts.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from shared_utils.cache import generate_once
from shared_utils.datasets import DatasetFormatError
from vlm_robot_control.data.lerobot import LeRobotDataset
from vlm_robot_control.data.recording import IMAGE_KEY, record_demos
from vlm_robot_control.env.tasks import FAMILIES, SPLITS, load_phrasings
from vlm_robot_control.evaluation import EVAL_SEED_OFFSET
from vlm_robot_control.language import CACHE_DIR, SentenceEncoder

RECORDING_VERSION = 3   # bump when the env or expert changes what gets recorded
VAL_SEED_OFFSET = 20_000_000


def hindsight_slots(environment_state: torch.Tensor, episode: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame: the slot of the block its episode moved most, and of the present object (other than
    that block) nearest to the block's final xy: which object the demo picked and where it put it."""
    slots = environment_state.view(len(environment_state), -1, 4)
    pick = torch.zeros(len(slots), dtype=torch.long)
    place = torch.zeros(len(slots), dtype=torch.long)
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], len(episode)]):
        first, last = slots[a], slots[b - 1]
        moved = int((last[:, :3] - first[:, :3]).norm(dim=-1).argmax())
        dist = (first[:, :2] - last[moved, :2]).norm(dim=-1).masked_fill(first[:, 3] == 0, float("inf"))
        dist[moved] = float("inf")
        pick[a:b], place[a:b] = moved, int(dist.argmin())
    return pick, place


def hindsight_grasp(state: np.ndarray, action: np.ndarray, episode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame (N, 2) each: the hand's xy (``state[:, :2]``) at its episode's first frame whose action
    closes the gripper (``action[:, 3] > 0``), and at the first frame after it whose action opens it
    again: where the demo picked and where it placed. NaN for an episode without such a pair."""
    grasp = np.full((len(state), 2), np.nan, dtype=state.dtype)
    release = np.full((len(state), 2), np.nan, dtype=state.dtype)
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], len(episode)]):
        close = action[a:b, 3] > 0
        first_close = int(np.argmax(close))
        opened = np.flatnonzero(~close[first_close:])
        if close[first_close] and len(opened):
            grasp[a:b] = state[a + first_close, :2]
            release[a:b] = state[a + first_close + opened[0], :2]
    return grasp, release


class DemoFrames(Dataset):
    """Frames ``rows`` of the demo table ``tensors``; with images, each frame also brings its episode's
    first image (indexed, not copied: ``first_row`` is the table row of each frame's episode start)."""

    def __init__(self, tensors: dict[str, torch.Tensor], rows: np.ndarray, first_row: np.ndarray) -> None:
        self.tensors, self.rows, self.first_row = tensors, torch.as_tensor(rows), torch.as_tensor(first_row)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.rows[i]
        sample = {key: value[row] for key, value in self.tensors.items()}
        if "image" in self.tensors:
            sample["first_image"] = self.tensors["image"][self.first_row[row]]
        return sample


class TabletopDataModule(LightningDataModule):
    def __init__(self, tasks: Sequence[str] = ("pick_place",), train_episodes: int = 200, expert_noise: float = 0.15,
                 images: bool = False, image_size: int = 96, root: str | None = None,
                 cache_dir: str = CACHE_DIR, record_seed: int = 0, chunk_size: int = 1,
                 batch_size: int = 256, val_fraction: float = 0.1, val_episodes: int = 20,
                 eval_tasks: Sequence[str] | None = None, eval_splits: Sequence[str] = SPLITS,
                 eval_episodes: int = 50, eval_batch: int = 25, paraphrase_file: str | None = None,
                 num_workers: int = 0, dataset_root: str | None = None) -> None:
        """``root``: a LeRobot v2.x dataset to train on instead of recording demos (None: record them
        into ``cache_dir``); ``val_episodes``: seen-split rollouts after every epoch (the success curve,
        and the best checkpoint); ``eval_episodes`` per (family, split) at test, seeds
        ``EVAL_SEED_OFFSET + i``; ``paraphrase_file``: held-out instruction templates ({pick}/{place})
        for ``unseen_phrasing``. ``dataset_root``: the old name of ``root``, deprecated (it warns; to be
        removed in the next release): every project of the collection calls its dataset folder ``root``."""
        super().__init__()
        if dataset_root is not None:
            if root is not None and root != dataset_root:
                raise ValueError(f"data.init_args.root={root!r} and its deprecated alias dataset_root={dataset_root!r} "
                                 "disagree: give root only")
            warnings.warn("data.init_args.dataset_root is deprecated and will be removed in the next release: "
                          "use data.init_args.root", FutureWarning, stacklevel=2)
            root = dataset_root
        for family in [*tasks, *(eval_tasks or [])]:
            if family not in FAMILIES:
                raise ValueError(f"data.tasks / eval_tasks: {family!r} is not a task family {FAMILIES}")
        for split in eval_splits:
            if split not in SPLITS:
                raise ValueError(f"data.eval_splits: {split!r} is not a split {SPLITS}")
        self.save_hyperparameters(ignore=["dataset_root"])
        self.hparams.root = root   # the alias resolved: hparams name the folder once, as root
        self.tasks, self.eval_tasks = list(tasks), list(eval_tasks or tasks)
        self.phrasings = load_phrasings(paraphrase_file) if paraphrase_file else None
        self.encoder = SentenceEncoder(cache_dir=Path(cache_dir) / "embeddings")

    def embed(self, sentences: list[str]) -> torch.Tensor:
        return self.encoder.encode(sentences)

    # -- demonstrations -------------------------------------------------------------------------
    def dataset_path(self) -> Path:
        h = self.hparams
        if h.root:
            return Path(h.root)
        record = {"version": RECORDING_VERSION, "tasks": self.tasks, "episodes": h.train_episodes,
                  "noise": h.expert_noise, "seed": h.record_seed, "images": h.images, "image_size": h.image_size}
        return generate_once(Path(h.cache_dir) / "demos", record,
                             lambda folder: record_demos(folder, self.tasks, h.train_episodes, h.expert_noise,
                                                         h.record_seed, h.images, h.image_size))

    def setup(self, stage: str) -> None:
        if stage != "fit" or hasattr(self, "train_set"):
            return
        h = self.hparams
        dataset = LeRobotDataset(self.dataset_path())
        frames = dataset.frames()
        for key in ("observation.state", "observation.environment_state", "action"):
            if key not in frames:
                raise DatasetFormatError(f"{dataset.root}/meta/info.json: field 'features' lacks {key!r} "
                                         f"(expected the layout of data/recording.py; found {sorted(frames)})")
        task_ids = sorted(dataset.tasks)
        lang = self.embed([dataset.tasks[i] for i in task_ids])
        lang_row = {t: n for n, t in enumerate(task_ids)}
        episode = frames["episode_index"]
        # Action chunks: the next chunk_size actions of the same episode, the last one repeated.
        n = len(episode)
        ahead = np.minimum(np.arange(n)[:, None] + np.arange(h.chunk_size)[None], n - 1)
        last_of_episode = np.searchsorted(episode, episode, side="right") - 1
        ahead = np.minimum(ahead, last_of_episode[:, None])
        tensors = {
            "state": torch.as_tensor(frames["observation.state"]),
            "environment_state": torch.as_tensor(frames["observation.environment_state"]),
            "action": torch.as_tensor(frames["action"][ahead]),
            "lang": lang[[lang_row[int(t)] for t in frames["task_index"]]],
            "episode_index": torch.as_tensor(episode),
        }
        if h.images:
            if IMAGE_KEY not in dataset.info["features"]:
                raise DatasetFormatError(f"{dataset.root}/meta/info.json: field 'features' has no {IMAGE_KEY!r} "
                                         f"(data.images is on; found {sorted(dataset.info['features'])})")
            images = [dataset.episode(int(e["episode_index"]), [IMAGE_KEY])[IMAGE_KEY] for e in dataset.episodes]
            tensors["image"] = torch.as_tensor(np.concatenate(images)).permute(0, 3, 1, 2).contiguous()
        tensors["pick_slot"], tensors["place_slot"] = hindsight_slots(tensors["environment_state"], episode)
        grasp, release = hindsight_grasp(frames["observation.state"], frames["action"], episode)
        tensors["grasp_xy"], tensors["release_xy"] = torch.as_tensor(grasp), torch.as_tensor(release)
        first_row = np.searchsorted(episode, episode, side="left")
        episodes = np.unique(episode)
        rng = np.random.default_rng(h.record_seed)
        n_val = min(len(episodes) - 1, max(int(h.val_fraction > 0), int(round(h.val_fraction * len(episodes)))))
        if n_val < 1 and h.val_fraction > 0:
            raise DatasetFormatError(f"{dataset.root}: {len(episodes)} episode(s) cannot be split into train and val "
                                     "(expected at least 2: record more, or set data.val_fraction: 0)")
        val = rng.choice(episodes, size=n_val, replace=False)
        is_val = np.isin(episode, val)
        self.train_set = DemoFrames(tensors, np.flatnonzero(~is_val), first_row)
        self.val_set = DemoFrames(tensors, np.flatnonzero(is_val), first_row)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True,
                          num_workers=self.hparams.num_workers, drop_last=len(self.train_set) > self.hparams.batch_size)

    def val_dataloader(self) -> list[DataLoader]:
        """Two loaders: the validation demo frames (``val/loss``), then the seen-split rollout jobs
        (``val/success_rate``; dataloader_idx ``ROLLOUTS``). ``trainer.limit_val_batches`` limits both."""
        frames = DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)
        # Its own generator: every pass over a loader draws a seed from the generator (the global one by
        # default), which would shift the training shuffles and PPO's action samples of later epochs.
        jobs = DataLoader(self.val_jobs(), batch_size=None, collate_fn=_job, generator=torch.Generator())
        return [frames, jobs]

    # -- rollouts ---------------------------------------------------------------------------------
    def val_jobs(self) -> list[dict]:
        """The per-epoch success check: seen split, the training families, fixed seeds."""
        return self._jobs(self.tasks, ["seen"], self.hparams.val_episodes, VAL_SEED_OFFSET)

    def test_jobs(self) -> list[dict]:
        return self._jobs(self.eval_tasks, self.hparams.eval_splits, self.hparams.eval_episodes, EVAL_SEED_OFFSET)

    def _jobs(self, families: list[str], splits: list[str], episodes: int, offset: int) -> list[dict]:
        jobs = []
        for family in families:
            for split in splits:
                phrasings = self.phrasings if split == "unseen_phrasing" else None
                for start in range(0, episodes, self.hparams.eval_batch):
                    seeds = list(range(offset + start, offset + min(episodes, start + self.hparams.eval_batch)))
                    jobs.append({"family": family, "split": split, "seeds": seeds, "phrasings": phrasings})
        return jobs

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_jobs(), batch_size=None, collate_fn=_job)


def _job(job: dict) -> dict:
    """A rollout job as is: its seeds stay a list (the default collate would make a tensor of them)."""
    return job
