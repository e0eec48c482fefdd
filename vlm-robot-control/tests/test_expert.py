"""The scripted expert: success rates on fixed evaluation seeds, and DART noise injection."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_robot_control.env.expert import ScriptedExpert
from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.evaluation import EVAL_SEED_OFFSET


def run_expert(family: str, seeds, split: str = "seen") -> list[bool]:
    """One episode per seed, the expert's clean actions executed; success = terminated with reward 1."""
    env = TabletopEnv(family, split)
    expert = ScriptedExpert(env)
    outcomes = []
    for seed in seeds:
        env.reset(seed=int(seed))
        expert.reset()
        while True:
            _, reward, terminated, truncated, info = env.step(expert.act())
            if terminated or truncated:
                break
        assert terminated == info["is_success"] == (reward == 1.0)
        assert (info["subgoals_done"] == info["subgoals_total"]) == terminated
        outcomes.append(terminated)
    env.close()
    return outcomes


@pytest.mark.parametrize("family", ["pick_place", "stack", "push"])
def test_expert_solves_single_step_tasks(family):
    # Measured on these 40 seeds: pick_place 39/40, stack 40/40, push 40/40 (over 200 seeds: 97%, 100%, 99%;
    # pick_place's failures are fingers landing on a bowl wall, see test_env's bowl-ring test).
    outcomes = run_expert(family, EVAL_SEED_OFFSET + np.arange(40))
    assert np.mean(outcomes) >= 0.95, [s for s, ok in enumerate(outcomes) if not ok]


@pytest.mark.parametrize("family", ["put_all", "sort"])
def test_expert_completes_multi_step_tasks(family):
    # Measured on these 10 seeds: put_all 10/10, sort 9/10 (over 200 seeds: 93%, 94.5%).
    outcomes = run_expert(family, EVAL_SEED_OFFSET + np.arange(10))
    assert np.mean(outcomes) >= 0.8, [s for s, ok in enumerate(outcomes) if not ok]


def test_dart_noise_perturbs_only_the_executed_motion():
    env = TabletopEnv("pick_place")
    noisy = ScriptedExpert(env, noise=0.15, seed=3)
    clean = ScriptedExpert(env)          # reads the same states: its action is the label to record
    env.reset(seed=5)
    noisy.reset()
    clean.reset()
    differ = 0
    for _ in range(60):
        label = noisy.act()
        np.testing.assert_array_equal(label, clean.act())
        executed = noisy.noisy(label)
        assert executed.shape == (4,) and np.all(np.abs(executed) <= 1.0)
        assert executed[3] == label[3]                                   # the gripper command is kept
        differ += not np.array_equal(executed[:3], label[:3])
        env.step(executed)
    assert differ >= 55                  # Gaussian noise on xyz (equal only where both clip at +-1)


def test_noise_free_expert_executes_its_own_action():
    env = TabletopEnv("push")
    expert = ScriptedExpert(env)
    env.reset(seed=0)
    action = expert.act()
    assert expert.noisy(action) is action


def test_dart_noise_is_seeded():
    env = TabletopEnv("pick_place")
    env.reset(seed=0)
    action = ScriptedExpert(env).act()
    a = [ScriptedExpert(env, noise=0.15, seed=1).noisy(action) for _ in range(2)]
    b = ScriptedExpert(env, noise=0.15, seed=2).noisy(action)
    np.testing.assert_array_equal(a[0], a[1])
    assert not np.array_equal(a[0], b)
