"""Closed-loop evaluation: a batch of environments stepped in lockstep, one batched policy call per step.

Any object with ``observation_image`` (bool), ``begin(envs)`` and ``act(obs, ids) -> (B, 4)`` is a
policy (``methods.base.PolicyModule`` and the scripted baselines are). Evaluation seeds are
``EVAL_SEED_OFFSET + i``, never used to record demonstrations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.metrics import EpisodeResult

EVAL_SEED_OFFSET = 10_000_000


class Policy(Protocol):
    observation_image: bool

    def begin(self, envs: Sequence[TabletopEnv]) -> None: ...

    def act(self, obs: Sequence[dict], ids: Sequence[int]) -> np.ndarray: ...


def rollout(policy: Policy, family: str, split: str, seeds: Sequence[int], phrasings: Sequence[str] | None = None,
            image_size: int = 96, keep_frames: int = 0) -> tuple[list[EpisodeResult], list[tuple]]:
    """Runs one episode per seed; returns the results and, for the first ``keep_frames`` episodes,
    ``(frames (T, H, W, 3), instruction, success)`` for rollout videos."""
    envs = [TabletopEnv(family, split, observation_image=policy.observation_image, image_size=image_size,
                        render_mode="rgb_array", phrasings=phrasings) for _ in seeds]
    obs, infos = zip(*(env.reset(seed=int(seed)) for env, seed in zip(envs, seeds)))
    obs, infos = list(obs), list(infos)
    policy.begin(envs)
    frames: list[list[np.ndarray]] = [[] for _ in range(min(keep_frames, len(envs)))]
    active = list(range(len(envs)))
    while active:
        for i in active:
            if i < len(frames):
                frames[i].append(obs[i]["image"] if "image" in obs[i] else envs[i].render())
        actions = policy.act([obs[i] for i in active], active)
        still = []
        for action, i in zip(actions, active):
            obs[i], _, terminated, truncated, infos[i] = envs[i].step(action)
            if not (terminated or truncated):
                still.append(i)
        active = still
    results = [EpisodeResult(family, split, int(seed), env.task.instruction, bool(info["is_success"]), env.steps,
                             int(info["subgoals_done"]), int(info["subgoals_total"]))
               for env, seed, info in zip(envs, seeds, infos)]
    videos = [(np.stack(f), r.instruction, r.success) for f, r in zip(frames, results)]
    for env in envs:
        env.close()
    return results, videos
