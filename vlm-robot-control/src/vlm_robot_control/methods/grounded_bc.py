"""Grounded BC (this project's method): ground the instruction by sentence matching, then act on geometry.

The state BC baseline learns the map "sentence embedding -> which object" from the demos, so it can
only be as general as the colour pairs, phrasings and scenes it was trained on. Here that map is
not learned at all:

1. **Grounding by matching** (zero-shot, CLIP-style retrieval with a sentence encoder): from the
   objects present, generate every canonical instruction the scene allows, one per family template
   and (block, target) pair ("pick the red block and place it in the blue bowl", "stack the red
   block on the green block", ...), embed them with the same MiniLM encoder and take the one most
   similar (cosine) to the given instruction. This is the SayCan scoring idea (Ahn et al. 2022:
   score candidate skills by the language model) applied to the task's arguments instead of skills.
2. **Geometry-only BC**: an MLP sees the gripper state, the grounded pick and place objects
   (absolute and gripper-relative positions) and the family, never the sentence or the other
   objects. Distractors and unseen colour pairs therefore do not change its input distribution;
   paraphrases only matter through the matching step.

Trained on the same demos as state BC (grounding each demo's instruction the same way: each demo
episode is grounded once, the first time a batch holds one of its frames; an episode's objects are
fixed, so any frame gives the same candidates), so the comparison isolates the grounding.
``test/grounding_accuracy`` reports how often the matched (pick, place) equals the task's true goal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.env.tasks import SINGLE_STEP, SLOTS
from vlm_robot_control.language import CACHE_DIR
from vlm_robot_control.methods.base import PolicyModule
from vlm_robot_control.methods.bc import bc_loss, to_action

# family -> (pick kind, place kind, canonical phrasing)
CANONICAL = {
    "pick_place": ("block", "bowl", "pick the {pick} and place it in the {place}"),
    "stack": ("block", "block", "stack the {pick} on the {place}"),
    "push": ("block", "zone", "push the {pick} to the {place}"),
}


def candidates(present: Sequence[int]) -> list[tuple[int, int, int, str]]:
    """(family index, pick slot, place slot, canonical instruction) for every pair the scene allows."""
    out = []
    for f, family in enumerate(SINGLE_STEP):
        pick_kind, place_kind, template = CANONICAL[family]
        for p in present:
            for q in present:
                (kp, cp, ip), (kq, cq, iq) = SLOTS[p], SLOTS[q]
                if p != q and kp == pick_kind and kq == place_kind and ip == 0 and iq == 0:
                    out.append((f, p, q, template.format(pick=f"{cp} {kp}", place=f"{cq} {kq}")))
    return out


class GroundedBC(PolicyModule):
    def __init__(self, net: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4, n_action_steps: int = 1,
                 log_videos: int = 4, cache_dir: str | None = CACHE_DIR) -> None:
        """``net``: ``net(state, environment_state, grounding) -> (B, chunk_size, 4)`` with ``grounding``
        (B, 3) = (family, pick slot, place slot) (``models.geometry_mlp.GeometryMLP``)."""
        super().__init__(lr, weight_decay, n_action_steps, log_videos, cache_dir)
        self.save_hyperparameters()   # under the CLI, net is recorded as its class_path and init_args
        self.net = net
        self._grounded = {"right": 0, "total": 0}
        self._episode_grounding: dict[int, Tensor] = {}

    def ground(self, lang: Tensor, environment_state: Tensor) -> Tensor:
        """(B, 3) long: the best-matching (family, pick slot, place slot) per instruction and scene."""
        present = environment_state.view(len(lang), -1, 4)[..., 3] > 0
        out = []
        for emb, mask in zip(lang, present):
            cands = candidates(torch.nonzero(mask).flatten().tolist())
            if not cands:
                raise ValueError("grounding: the scene has no (block, target) pair of a single-step family")
            sims = self.embed([c[3] for c in cands]) @ emb
            out.append(cands[int(sims.argmax())][:3])
        return torch.tensor(out, device=lang.device)

    def on_fit_start(self) -> None:
        self._episode_grounding = {}   # episode numbers name other demos in another fit

    def episode_grounding(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, 3) the grounding of each frame's demo episode, computed once per episode (from the first
        of its frames seen: its instruction and its objects, which stay the same for the whole episode)."""
        episodes = batch["episode_index"].tolist()
        new: dict[int, int] = {}
        for row, e in enumerate(episodes):
            if e not in self._episode_grounding:
                new.setdefault(e, row)
        if new:
            rows = list(new.values())
            grounding = self.ground(batch["lang"][rows], batch["environment_state"][rows])
            self._episode_grounding.update(zip(new, grounding))
        return torch.stack([self._episode_grounding[e] for e in episodes])

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        grounding = self.episode_grounding(batch)
        return bc_loss(self.net(batch["state"], batch["environment_state"], grounding), batch["action"])

    def begin(self, envs: Sequence[TabletopEnv]) -> None:
        super().begin(envs)
        env_state = np.stack([env.observation()["environment_state"] for env in envs])
        env_state = torch.as_tensor(env_state, device=self.device)
        self._grounding = self.ground(self._lang, env_state)
        for env, (family, pick, place) in zip(envs, self._grounding.tolist()):
            slots, goal = env.task.slots(), env.task.goals[0]
            right = (SINGLE_STEP[family] == env.task.family and slots[goal[0]] == pick and slots[goal[1]] == place)
            self._grounded["right"] += right
            self._grounded["total"] += 1

    def observation_batch(self, obs: Sequence[dict], ids: Sequence[int]) -> dict[str, Tensor]:
        batch = super().observation_batch(obs, ids)
        batch["grounding"] = self._grounding[list(ids)]
        return batch

    def predict_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        return to_action(self.net(batch["state"], batch["environment_state"], batch["grounding"]))

    def on_test_epoch_start(self) -> None:
        self._grounded = {"right": 0, "total": 0}   # count test rollouts only, not validation ones

    def on_test_epoch_end(self) -> None:
        if self._grounded["total"]:
            self.log("test/grounding_accuracy", self._grounded["right"] / self._grounded["total"])
        self._grounded = {"right": 0, "total": 0}
        super().on_test_epoch_end()
