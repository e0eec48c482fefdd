"""The scripted expert: waypoints plus grasp logic, reading the privileged state (Ravens' oracle).

For each unfinished sub-goal in order it runs a small phase machine:

- pick-and-place / stack: above the block -> down -> close -> lift -> above the target -> lower ->
  open -> up; a block that slips out sends it back to the start;
- push: above a point behind the block (on the line block -> zone centre) -> down, fingers closed ->
  push through towards the zone centre; drifting off the line lifts and re-approaches.

Noise injection (DART, Laskey et al. 2017): ``act`` returns the expert's clean action (the label to
record) and ``noisy`` a perturbed copy to execute, so demonstrations visit the states a learned
policy drifts into and show how to recover from them.
"""

from __future__ import annotations

import numpy as np

from vlm_robot_control.env.scene import BLOCK_HALF
from vlm_robot_control.env.tabletop import MAX_DELTA, TabletopEnv
from vlm_robot_control.env.tasks import goal_reached

SAFE_Z = 0.09       # travel height with a block in the fingers (bowl walls are 2.4 cm high)
TOL = 0.004         # waypoint reached (m)
OPEN, CLOSE = -1.0, 1.0


class ScriptedExpert:
    def __init__(self, env: TabletopEnv, noise: float = 0.0, seed: int | None = None) -> None:
        self.env = env
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """Call after ``env.reset``."""
        self.goal: int | None = None
        self.phase = "approach"
        self.timer = 0

    def noisy(self, action: np.ndarray) -> np.ndarray:
        """The action to execute: Gaussian noise on the motion, the gripper command kept."""
        if self.noise <= 0:
            return action
        out = action.copy()
        out[:3] = np.clip(out[:3] + self.rng.normal(0.0, self.noise, size=3), -1.0, 1.0)
        return out

    # -- goal bookkeeping ---------------------------------------------------------------------
    def _target(self, t: int) -> tuple[str, np.ndarray]:
        env = self.env
        n_blocks = len(env.block_positions())
        if t < n_blocks:
            return "block", env.block_positions()[t]
        return env.task.objects[t][0], env.target_positions()[t - n_blocks]

    def _done(self, b: int, t: int) -> bool:
        block = self.env.block_positions()[b]
        kind, target = self._target(t)
        return goal_reached(kind, block, target, self.env.held(block))

    def act(self) -> np.ndarray:
        """The clean expert action for the current state."""
        goals = self.env.task.goals
        if self.goal is None or self._done(*goals[self.goal]):
            pending = [g for g in range(len(goals)) if not self._done(*goals[g])]
            if not pending:
                return self._move(self.env.hand_position() + [0, 0, 0.02], OPEN)   # all done: back off
            if pending[0] != self.goal:
                self.goal, self.phase, self.timer = pending[0], "approach", 0
        b, t = goals[self.goal]
        kind, target = self._target(t)
        if kind == "zone":
            return self._push(self.env.block_positions()[b].copy(), target)
        return self._pick_place(b, kind, target)

    # -- skills -------------------------------------------------------------------------------
    def _move(self, waypoint: np.ndarray, grip: float) -> np.ndarray:
        delta = (waypoint - self.env.hand_position()) / MAX_DELTA
        return np.r_[np.clip(delta, -1.0, 1.0), grip].astype(np.float32)

    def _at(self, waypoint: np.ndarray, tol: float = TOL) -> bool:
        return bool(np.all(np.abs(waypoint - self.env.hand_position()) < tol))

    def _pick_place(self, b: int, kind: str, target: np.ndarray) -> np.ndarray:
        env = self.env
        block = env.block_positions()[b]
        # Release 6 mm above the support (bowl floor or a block resting on the table).
        place_z = 0.045 if kind == "bowl" else 3 * BLOCK_HALF + 0.006
        above_block = np.r_[block[:2], 0.07]
        grasp = np.r_[block[:2], max(block[2], 0.013)]
        lifted = np.r_[block[:2], SAFE_Z]
        spot = self._free_spot(b, target) if kind == "bowl" else target[:2]
        above_target = np.r_[spot, SAFE_Z]
        lowered = np.r_[spot, place_z]
        if self.phase in ("lift", "carry", "lower") and not env.held(block):
            self.phase = "approach"            # slipped: start over
        p = self.phase
        if p == "approach":
            if env.finger_opening() > 0.9 and self._at(above_block, 0.008):
                self.phase = "descend"
            return self._move(above_block, OPEN)
        if p == "descend":
            if np.hypot(*(block[:2] - env.hand_position()[:2])) > 0.015:
                self.phase = "approach"        # the block moved (bumped): re-align from above
                return self._move(above_block, OPEN)
            if not self._at(grasp):
                return self._move(grasp, OPEN)
            self.phase, self.timer = "grasp", 0   # close in this very step: a clean state -> action rule
        if self.phase == "grasp":
            self.timer += 1
            if self.timer >= 3 and env.finger_opening() < 0.7:
                self.phase = "lift"
            return self._move(grasp, CLOSE)
        if p == "lift":
            if self._at(lifted, 0.01):
                self.phase = "carry"
            return self._move(lifted, CLOSE)
        if p == "carry":
            if self._at(above_target, 0.006):
                self.phase = "lower"
            return self._move(above_target, CLOSE)
        if p == "lower":
            if not self._at(lowered, 0.005):
                return self._move(lowered, CLOSE)
            self.phase, self.timer = "release", 0   # open in this very step
        if self.phase == "release":
            self.timer += 1
            if self.timer >= 3:
                self.phase = "retreat"
            return self._move(lowered, OPEN)
        # retreat: up and open; the goal check moves on, a missed placement starts over.
        if self._at(np.r_[lowered[:2], SAFE_Z], 0.01):
            self.phase = "approach"
        return self._move(np.r_[lowered[:2], SAFE_Z], OPEN)

    def _free_spot(self, b: int, bowl: np.ndarray) -> np.ndarray:
        """Where in a bowl to drop: the centre or a point 2.2 cm off it, farthest from blocks already there."""
        others = np.delete(self.env.block_positions(), b, axis=0)[:, :2]
        angles = np.arange(6) * np.pi / 3
        spots = np.r_[[bowl[:2]], bowl[:2] + 0.022 * np.c_[np.cos(angles), np.sin(angles)]]
        if len(others) == 0:
            return spots[0]
        clearance = np.linalg.norm(spots[:, None] - others[None], axis=2).min(axis=1)
        # Prefer the centre unless a block is within 4 cm of it (a small bias keeps the choice stable).
        return spots[0] if clearance[0] > 0.04 else spots[np.argmax(clearance)]

    def _push(self, block: np.ndarray, zone: np.ndarray) -> np.ndarray:
        hand = self.env.hand_position()
        to_zone = zone[:2] - block[:2]
        direction = to_zone / max(np.linalg.norm(to_zone), 1e-6)
        offset = BLOCK_HALF + 0.02                         # finger half width + margin behind the block
        behind = block[:2] - direction * offset
        # The hand's position relative to the block along and across the push line.
        rel = hand[:2] - block[:2]
        along, across = rel @ direction, rel @ np.array([-direction[1], direction[0]])
        low = 0.015
        if self.phase == "push" and (abs(across) > 0.012 or along > -BLOCK_HALF or hand[2] > low + 0.01):
            self.phase = "approach"            # lost the block: lift and line up again
        if self.phase == "approach":
            waypoint = np.r_[behind, 0.05]
            if self._at(waypoint, 0.006):
                self.phase = "down"
            # Lift first when low near the block, so re-approaching never sweeps it sideways.
            if hand[2] < 0.04 and not self._at(waypoint, 0.02):
                return self._move(np.r_[hand[:2], 0.05], CLOSE)
            return self._move(waypoint, CLOSE)
        if self.phase == "down":
            waypoint = np.r_[behind, low]
            if self._at(waypoint, 0.004):
                self.phase = "push"
            return self._move(waypoint, CLOSE)
        # push: aim the hand so the block's centre ends on the zone's centre.
        goal = zone[:2] - direction * offset
        waypoint = np.r_[goal + direction * 0.01, low]
        return self._move(waypoint, CLOSE)
