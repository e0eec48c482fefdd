"""``TabletopEnv``: the gymnasium environment (registered as ``VLMTabletop-v0``).

Action (4,) in [-1, 1]: the gripper's Cartesian displacement (x, y, z, times ``MAX_DELTA`` per
control step) and the fingers (> 0 closes, <= 0 opens). Control runs at 25 Hz (``N_SUBSTEPS``
physics steps of 8 ms). Observation (a dict):

- ``state`` (4,): proprioception, the gripper position (m) and finger opening (0 closed, 1 open);
- ``environment_state`` (len(SLOTS) * 4,): privileged object state, per (kind, colour, instance)
  slot the position and a present flag (0 for absent objects), for state policies and debugging;
- ``image`` (H, W, 3) uint8: the top camera, when ``observation_image`` is on.

The instruction is in ``info["instruction"]`` (reset) and ``env.unwrapped.task``. Reward is sparse:
1 when every sub-goal holds (the episode then terminates), else 0; ``info`` carries
``subgoals_done`` / ``subgoals_total`` (``test/multistep_completed``) and ``is_success``.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import mujoco
import numpy as np

from vlm_robot_control.env import scene
from vlm_robot_control.env.tasks import (
    COLOURS,
    MAX_STEPS_PER_GOAL,
    SLOTS,
    Task,
    goal_reached,
    heldout_phrasings,
    sample_task,
)

MAX_DELTA = 0.015          # m per control step at |action| = 1 (0.375 m/s)
HAND_HOME = np.array([0.0, 0.0, 0.12])
_CTRL_LOW = (scene.HAND_XY_RANGE[0], scene.HAND_XY_RANGE[0], scene.HAND_Z_RANGE[0])   # per axis x, y, z
_CTRL_HIGH = (scene.HAND_XY_RANGE[1], scene.HAND_XY_RANGE[1], scene.HAND_Z_RANGE[1])


class TabletopEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, task: str = "pick_place", split: str = "seen", render_mode: str | None = None,
                 observation_image: bool = False, image_size: int = 96,
                 phrasings: Sequence[str] | None = None) -> None:
        """``phrasings`` (templates with {pick}/{place}) replace the held-out ones of ``unseen_phrasing``."""
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r}: expected None or 'rgb_array'")
        self.family, self.split = task, split
        self.render_mode = render_mode
        self.observation_image = observation_image
        self.image_size = image_size
        self.phrasings = tuple(phrasings) if phrasings else (
            heldout_phrasings(task) if split == "unseen_phrasing" else None)
        sample_task(task, split, np.random.default_rng(0), self.phrasings)   # validates task and split
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        spaces = {
            "state": gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32),
            "environment_state": gym.spaces.Box(-1.0, 1.0, shape=(len(SLOTS) * 4,), dtype=np.float32),
        }
        if observation_image:
            spaces["image"] = gym.spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self._sims: dict[tuple[int, int, int], tuple] = {}   # model, data, renderer per object count
        self.task: Task | None = None

    # -- simulation --------------------------------------------------------------------------
    def _sim(self, counts: tuple[int, int, int]) -> tuple:
        if counts not in self._sims:
            model = scene.build_model(*counts)
            data = mujoco.MjData(model)
            blocks = [model.body(f"block{i}").id for i in range(counts[0])]
            qadr = [int(model.jnt_qposadr[model.body_jntadr[b]]) for b in blocks]
            targets = [model.body(f"{k}{i}").id for k, n in (("bowl", counts[1]), ("zone", counts[2]))
                       for i in range(n)]
            geoms = {b: np.flatnonzero(model.geom_bodyid == b) for b in blocks + targets}
            default = (model.cam_pos.copy(), model.cam_quat.copy(), model.vis.headlight.ambient.copy(),
                       model.vis.headlight.diffuse.copy(), model.geom_rgba[0].copy())
            self._sims[counts] = (model, data, None, blocks, qadr, targets, geoms, default)
        return self._sims[counts]

    def _renderer(self) -> mujoco.Renderer:
        sim = self._sims[self._counts]
        if sim[2] is None:
            sim = (*sim[:2], scene.fast_renderer(sim[0], self.image_size, self.image_size), *sim[3:])
            self._sims[self._counts] = sim
        return sim[2]

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        rng = self.np_random
        self.task = task = sample_task(self.family, self.split, rng, self.phrasings)
        self._counts = task.counts()
        model, data, _, blocks, qadr, targets, geoms, default = self._sim(self._counts)
        for obj, body in zip(task.objects, blocks + targets):
            model.geom_rgba[geoms[body], :3] = COLOURS[obj[1]]
        hand = HAND_HOME + np.r_[rng.uniform(-0.05, 0.05, size=2), 0.0]
        self._perturb(model, default, rng)   # after every other draw: perturbed episodes match seen ones
        # Reset after the model edits: with sleeping on, MuJoCo computes the static bodies' and the
        # world camera's poses in mj_resetData, not in mj_forward (a moved camera would lag an episode).
        mujoco.mj_resetData(model, data)
        n_blocks = len(blocks)
        for i, adr in enumerate(qadr):
            yaw = task.yaws[i]
            data.qpos[adr:adr + 7] = [*task.positions[i], scene.BLOCK_HALF, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        for j in range(len(targets)):
            data.mocap_pos[j] = [*task.positions[n_blocks + j], 0.0]
        data.qpos[:3] = hand
        data.qpos[3:5] = scene.FINGER_OPEN
        data.ctrl[:] = [*hand, scene.FINGER_OPEN]
        data.act[:] = [*hand, scene.FINGER_OPEN]   # the actuators' low-pass filter states
        mujoco.mj_forward(model, data)
        self._model, self._data, self._blocks = model, data, blocks
        self._block_slice = slice(blocks[0], blocks[0] + len(blocks)) if blocks else slice(0, 0)
        assert blocks == list(range(blocks[0], blocks[0] + len(blocks)))   # bodies in XML order
        self._targets = np.array(data.xpos[targets]) if targets else np.zeros((0, 3))   # static per episode
        self._target_xyz = self._targets.tolist()   # the same as floats, for the per-step success check
        self._target_kinds = [k for k, _ in task.objects[n_blocks:]]
        slots = np.array(task.slots())
        self._block_rows = slots[:n_blocks]
        self._env_state_template = np.zeros((len(SLOTS), 4), dtype=np.float32)
        self._env_state_template[slots[n_blocks:], :3] = self._targets
        self._env_state_template[slots, 3] = 1.0
        self.steps = 0
        self.max_steps = MAX_STEPS_PER_GOAL * len(task.goals)
        done, total = self._progress()
        return self.observation(), {"instruction": task.instruction, "family": task.family, "split": self.split,
                             "subgoals_done": done, "subgoals_total": total, "is_success": done == total}

    def _perturb(self, model: mujoco.MjModel, default: tuple, rng: np.random.Generator) -> None:
        """The ``perturbed`` split: camera moved by a few cm and tilted, light and table colour changed."""
        cam_pos, cam_quat, ambient, diffuse, table_rgba = default
        model.cam_pos[:], model.cam_quat[:] = cam_pos, cam_quat
        model.vis.headlight.ambient[:], model.vis.headlight.diffuse[:] = ambient, diffuse
        model.geom_rgba[0] = table_rgba
        if self.split != "perturbed":
            return
        model.cam_pos[0] += rng.uniform([-0.04, -0.04, -0.06], [0.04, 0.04, 0.06])
        tilt = rng.uniform(-0.08, 0.08, size=2)                    # rad about x and y
        quat = np.zeros(4)
        mujoco.mju_euler2Quat(quat, np.r_[tilt, rng.uniform(-0.1, 0.1)], "xyz")
        mujoco.mju_mulQuat(model.cam_quat[0], cam_quat[0], quat)
        model.vis.headlight.ambient[:] = ambient * rng.uniform(0.5, 1.3)
        model.vis.headlight.diffuse[:] = diffuse * rng.uniform(0.5, 1.3)
        model.geom_rgba[0, :3] = np.clip(table_rgba[:3] + rng.uniform(-0.15, 0.15, size=3), 0, 1)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        # Plain float arithmetic on lists: numpy scalar operations would cost as much as the physics.
        data = self._data
        *motion, grip = np.asarray(action, dtype=np.float64).tolist()
        hand, ctrl = data.qpos[:3].tolist(), data.ctrl[:3].tolist()
        targets = []
        for a, h, c, low, high in zip(motion, hand, ctrl, _CTRL_LOW, _CTRL_HIGH):
            # The target moves from the previous one but never runs ahead of a blocked hand.
            target = c + MAX_DELTA * min(max(a, -1.0), 1.0)
            target = min(max(target, h - 3 * MAX_DELTA), h + 3 * MAX_DELTA)
            targets.append(min(max(target, low), high))
        data.ctrl[:3] = targets
        data.ctrl[3] = 0.0 if grip > 0 else scene.FINGER_OPEN
        mujoco.mj_step(self._model, data, scene.N_SUBSTEPS)
        self.steps += 1
        done, total = self._progress()
        success = done == total
        truncated = not success and self.steps >= self.max_steps
        info = {"subgoals_done": done, "subgoals_total": total, "is_success": success}
        return self.observation(), float(success), success, truncated, info

    # -- state ----------------------------------------------------------------------------------
    def block_positions(self) -> np.ndarray:
        return self._data.xpos[self._block_slice]

    def target_positions(self) -> np.ndarray:
        return self._targets

    def finger_opening(self) -> float:
        return float(self._data.qpos[3] / scene.FINGER_OPEN)

    def hand_position(self) -> np.ndarray:
        return self._data.qpos[:3].copy()

    def held(self, block) -> bool:
        """A block between closed fingers (not yet released)."""
        x, y, z, finger = self._data.qpos[:4].tolist()
        return (finger < 0.6 * scene.FINGER_OPEN and abs(block[0] - x) < 0.02 and abs(block[1] - y) < 0.02
                and abs(block[2] - z) < 0.03)

    def _progress(self) -> tuple[int, int]:
        blocks = self.block_positions().tolist()   # floats: this runs every control step
        n_blocks = len(blocks)
        done = 0
        for b, t in self.task.goals:
            if t < n_blocks:
                kind, target = "block", blocks[t]
            else:
                kind, target = self._target_kinds[t - n_blocks], self._target_xyz[t - n_blocks]
            done += goal_reached(kind, blocks[b], target, self.held(blocks[b]))
        return done, len(self.task.goals)

    def observation(self) -> dict:
        state = self._data.qpos[:4].astype(np.float32)
        state[3] /= scene.FINGER_OPEN
        env_state = self._env_state_template.copy()     # targets and present flags are fixed per episode
        env_state[self._block_rows, :3] = self.block_positions()
        # No clipping needed: the hand's joint ranges and the table keep every object within 0.3 m of
        # the centre (tests check the observation space holds on random rollouts).
        obs = {"state": state, "environment_state": env_state.ravel()}
        if self.observation_image:
            obs["image"] = self._render_top()
        return obs

    def _render_top(self) -> np.ndarray:
        renderer = self._renderer()
        renderer.update_scene(self._data, camera="top")
        return renderer.render()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render_top()

    def close(self) -> None:
        for sim in self._sims.values():
            if sim[2] is not None:
                sim[2].close()
        self._sims.clear()
