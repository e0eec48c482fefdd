"""Record scripted-expert demonstrations into a LeRobot v2.1 dataset.

Episodes run the expert with DART noise (executed actions perturbed, clean actions recorded); only
successful episodes are kept, as in Ravens/CLIPort's oracle demonstrations. Seeds are
``seed * 1_000_003 + attempt``, disjoint from evaluation seeds (``evaluation.EVAL_SEED_OFFSET``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vlm_robot_control.data.lerobot import LeRobotWriter
from vlm_robot_control.env.expert import ScriptedExpert
from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.env.tasks import SLOTS

FPS = 25
IMAGE_KEY = "observation.images.top"
STATE_NAMES = ["hand_x", "hand_y", "hand_z", "finger_opening"]
ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "close"]
ENV_STATE_NAMES = [f"{kind}_{colour}_{i}.{f}" for kind, colour, i in SLOTS for f in ("x", "y", "z", "present")]


def record_demos(root: str | Path, families: list[str], episodes: int, noise: float = 0.15,
                 seed: int = 0, images: bool = False, image_size: int = 96) -> dict:
    """Write ``episodes`` successful expert demos per family (seen split) to ``root``; returns a summary."""
    writer = LeRobotWriter(root, FPS, "vlm_tabletop_cartesian_gripper", STATE_NAMES, ACTION_NAMES,
                           image_keys=(IMAGE_KEY,) if images else (), image_shape=(image_size, image_size, 3),
                           vector_names={"observation.environment_state": ENV_STATE_NAMES})
    summary = {}
    for f, family in enumerate(families):
        env = TabletopEnv(task=family, split="seen", observation_image=images, image_size=image_size)
        expert = ScriptedExpert(env, noise=noise, seed=seed * 7919 + f)
        kept = attempts = 0
        while kept < episodes:
            if attempts > 3 * episodes + 20:
                raise RuntimeError(f"expert succeeded in only {kept}/{attempts} {family} episodes")
            obs, info = env.reset(seed=seed * 1_000_003 + f * 100_003 + attempts)
            expert.reset()
            attempts += 1
            states, env_states, actions, frames = [], [], [], []
            while True:
                action = expert.act()
                states.append(obs["state"])
                env_states.append(obs["environment_state"])
                actions.append(action)
                if images:
                    frames.append(obs["image"])
                obs, _, terminated, truncated, step_info = env.step(expert.noisy(action))
                if terminated or truncated:
                    break
            if not terminated:
                continue
            writer.add_episode(np.array(states), np.array(actions), info["instruction"],
                               images={IMAGE_KEY: np.array(frames)} if images else None,
                               vectors={"observation.environment_state": np.array(env_states)})
            kept += 1
        env.close()
        summary[family] = {"kept": kept, "attempts": attempts, "expert_success": kept / attempts}
    writer.finalize()
    (Path(root) / "meta" / "recording.json").write_text(json.dumps(summary, indent=2))
    return summary
