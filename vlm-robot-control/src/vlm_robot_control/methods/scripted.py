"""The bounds of every table: a random policy (lower) and the scripted expert acting as a policy (upper).

Neither learns; ``fit`` runs one epoch without optimiser steps so that ``make train`` (fit, then
test the best checkpoint) works for them like for every other config.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vlm_robot_control.env.expert import ScriptedExpert
from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.language import CACHE_DIR
from vlm_robot_control.methods.base import PolicyModule


class _NoTraining(PolicyModule):
    def __init__(self, seed: int = 0, log_videos: int = 4, cache_dir: str | None = CACHE_DIR) -> None:
        super().__init__(log_videos=log_videos, cache_dir=cache_dir)
        self.save_hyperparameters()
        self.seed = seed

    def loss(self, batch: dict) -> torch.Tensor:
        return torch.zeros((), device=self.device)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        return None

    def configure_optimizers(self) -> None:
        return None


class RandomPolicy(_NoTraining):
    """Uniform random actions: the chance level of each task."""

    def begin(self, envs: Sequence[TabletopEnv]) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: Sequence[dict], ids: Sequence[int]) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=(len(ids), 4)).astype(np.float32)


class OraclePolicy(_NoTraining):
    """The scripted expert with privileged state and no noise: the upper bound."""

    def begin(self, envs: Sequence[TabletopEnv]) -> None:
        self.experts = [ScriptedExpert(env) for env in envs]

    def act(self, obs: Sequence[dict], ids: Sequence[int]) -> np.ndarray:
        return np.stack([self.experts[i].act() for i in ids])
