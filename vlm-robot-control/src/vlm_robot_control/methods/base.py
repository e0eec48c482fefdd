"""``PolicyModule``: the Lightning layer every method shares.

- fit: ``loss(batch)`` on demonstration frames; every validation epoch, ``val/loss`` on the validation
  frames (the first validation loader), then closed-loop rollouts of the second loader's jobs (seen split)
  give ``val/success_rate`` (the success curve, and what picks the best checkpoint);
- test: the test loader's rollout jobs (family x split x seeds), aggregated into
  ``test/success_rate_<split>`` with Wilson 95% intervals, per family, ``test/episode_length`` and
  ``test/multistep_completed``; rollout GIFs and strips (instruction written on them) go to TensorBoard.

Acting: ``begin(envs)`` embeds the instructions with the module's own sentence encoder (its embedding
cache is ``cache_dir``/embeddings, the datamodule's: the CLI links ``data.init_args.cache_dir`` to
``model.init_args.cache_dir``); ``act(obs, ids)`` returns one action per active env. Learned policies
implement ``predict_chunk(batch) -> (B, k, 4)`` and execute the first ``n_action_steps`` actions of each
chunk before predicting again (action chunking, ACT / LeRobot).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.evaluation import rollout
from vlm_robot_control.language import CACHE_DIR, SentenceEncoder
from vlm_robot_control.metrics import EpisodeResult, rollout_metrics
from vlm_robot_control.visualize import log_rollouts

ROLLOUTS = 1   # dataloader_idx of the validation rollout jobs (TabletopDataModule.val_dataloader)


class PolicyModule(LightningModule):
    observation_image = False
    monitor, monitor_mode = "val/success_rate", "max"
    # Init arguments that only change how a trained policy is evaluated, not what it learned:
    # `test --config c.yaml --ckpt_path x.ckpt` takes them from the config, the rest from the checkpoint
    # (shared_utils.cli): how many actions of each predicted chunk run before predicting again, how many
    # rollout videos go to TensorBoard, where the instruction embeddings are cached. (Episodes, splits,
    # families, the paraphrase file are data settings: always from the config.)
    test_time_hparams: tuple[str, ...] = ("n_action_steps", "log_videos", "cache_dir")

    def __init__(self, lr: float = 1e-3, weight_decay: float = 1e-4, n_action_steps: int = 1,
                 log_videos: int = 4, cache_dir: str | None = CACHE_DIR) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.n_action_steps, self.log_videos = n_action_steps, log_videos
        self.encoder = SentenceEncoder(cache_dir=Path(cache_dir) / "embeddings" if cache_dir is not None else None)
        self._results: list[EpisodeResult] = []
        self._videos: list[tuple] = []

    # -- to implement --------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def predict_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, k, 4) actions in [-1, 1] for the observations in ``batch``."""
        raise NotImplementedError

    # -- acting ----------------------------------------------------------------------------------
    def embed(self, sentences: list[str]) -> Tensor:
        """(N, EMBED_DIM) sentence embeddings on the module's device (the demo batches bring their own)."""
        return self.encoder.encode(sentences).to(self.device)

    def begin(self, envs: Sequence[TabletopEnv]) -> None:
        self._lang = self.embed([env.task.instruction for env in envs])
        self._queues = [deque() for _ in envs]

    def observation_batch(self, obs: Sequence[dict], ids: Sequence[int]) -> dict[str, Tensor]:
        batch = {key: torch.as_tensor(np.stack([o[key] for o in obs]), device=self.device)
                 for key in ("state", "environment_state")}
        batch["lang"] = self._lang[list(ids)]
        if self.observation_image:
            images = np.stack([o["image"] for o in obs])
            batch["image"] = torch.as_tensor(images, device=self.device).permute(0, 3, 1, 2)
        return batch

    @torch.no_grad()
    def act(self, obs: Sequence[dict], ids: Sequence[int]) -> np.ndarray:
        need = [n for n, i in enumerate(ids) if not self._queues[i]]
        if need:
            was_training = self.training
            self.eval()
            chunk = self.predict_chunk(self.observation_batch([obs[n] for n in need], [ids[n] for n in need]))
            self.train(was_training)
            for n, actions in zip(need, chunk[:, : self.n_action_steps].cpu().numpy()):
                self._queues[ids[n]].extend(actions)
        return np.stack([self._queues[i].popleft() for i in ids])

    # -- Lightning --------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["state"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Demo frames (loader 0): ``val/loss``; rollout jobs (loader ``ROLLOUTS``): closed-loop episodes,
        not run in Lightning's sanity check (a few seconds each, and the check only tests the code path)."""
        if dataloader_idx == ROLLOUTS:
            if not self.trainer.sanity_checking:
                self._val_results += rollout(self, batch["family"], batch["split"], batch["seeds"])[0]
            return
        self.log("val/loss", self.loss(batch), batch_size=len(batch["state"]), add_dataloader_idx=False)

    def on_validation_epoch_start(self) -> None:
        self._val_results: list[EpisodeResult] = []

    def on_validation_epoch_end(self) -> None:
        results, self._val_results = self._val_results, []
        if results:
            self.log("val/success_rate", sum(r.success for r in results) / len(results), prog_bar=True)

    def test_step(self, job: dict, batch_idx: int) -> None:
        keep = max(0, self.log_videos - sum(1 for v in self._videos if v[3] == job["split"]))
        results, videos = rollout(self, job["family"], job["split"], job["seeds"], job["phrasings"],
                                  keep_frames=keep)
        self._results += results
        self._videos += [(*v, job["split"]) for v in videos]

    def on_test_epoch_end(self) -> None:
        self.log_dict(rollout_metrics(self._results))
        experiment = getattr(self.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_image"):
            for split in dict.fromkeys(v[3] for v in self._videos):
                log_rollouts(experiment, f"rollouts/{split}", [v[:3] for v in self._videos if v[3] == split],
                             self.global_step)
        self.test_results = self._results
        self._results, self._videos = [], []

    def configure_optimizers(self) -> dict:
        """AdamW with cosine decay to 0 over the run: without the decay, closed-loop success of the
        state BC swung between 15% and 90% from one epoch to the next."""
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = max(1, self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
