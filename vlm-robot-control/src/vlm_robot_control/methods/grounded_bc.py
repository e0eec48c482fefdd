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

Trained on the same demos as state BC (grounding each demo's instruction the same way), so the
comparison isolates the grounding. ``test/grounding_accuracy`` reports how often the matched
(pick, place) equals the task's true goal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from vlm_robot_control.env.tabletop import TabletopEnv
from vlm_robot_control.env.tasks import SINGLE_STEP, SLOTS
from vlm_robot_control.methods.base import PolicyModule
from vlm_robot_control.methods.bc import bc_loss, to_action
from vlm_robot_control.models.state_mlp import mlp_trunk, per_slot_features, state_features

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


class GeometryMLP(nn.Module):
    """Actions from [proprio, grounded pick slot, grounded place slot, family one-hot]."""

    def __init__(self, hidden: int = 256, layers: int = 3, chunk_size: int = 1, n_families: int = 3) -> None:
        super().__init__()
        self.chunk_size = chunk_size
        dims = [4 + 2 * 7 + n_families] + [hidden] * layers
        self.trunk = mlp_trunk(dims)
        self.head = nn.Linear(hidden, chunk_size * 4)

    def forward(self, state: Tensor, environment_state: Tensor, grounding: Tensor) -> Tensor:
        """``grounding`` (B, 3) long: family, pick slot, place slot."""
        features = state_features(state, environment_state)
        per_slot = per_slot_features(features, len(SLOTS))
        rows = torch.arange(len(state), device=state.device)
        family = nn.functional.one_hot(grounding[:, 0], len(SINGLE_STEP)).float()
        x = torch.cat([features[:, :4], per_slot[rows, grounding[:, 1]], per_slot[rows, grounding[:, 2]], family], 1)
        return self.head(self.trunk(x)).view(len(x), self.chunk_size, 4)


class GroundedBC(PolicyModule):
    def __init__(self, hidden: int = 256, layers: int = 3, chunk_size: int = 1, lr: float = 1e-3,
                 weight_decay: float = 1e-4, n_action_steps: int = 1, log_videos: int = 4) -> None:
        super().__init__(lr, weight_decay, n_action_steps, log_videos)
        self.save_hyperparameters()
        self.model = GeometryMLP(hidden, layers, chunk_size)
        self._grounded = {"right": 0, "total": 0}

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
        """Ground every demo episode once (its instruction and its first frame's objects)."""
        table = {}
        for subset in (self.trainer.datamodule.train_set, self.trainer.datamodule.val_set):
            episodes = subset.tensors["episode_index"][subset.rows]
            first = {}
            for row, e in zip(subset.rows.tolist(), episodes.tolist()):
                first.setdefault(e, row)
            rows = torch.tensor(list(first.values()))
            grounding = self.ground(subset.tensors["lang"][rows].to(self.device),
                                    subset.tensors["environment_state"][rows].to(self.device))
            table.update(zip(first, grounding))
        size = max(table) + 1
        self.episode_grounding = torch.zeros(size, 3, dtype=torch.long, device=self.device)
        for e, g in table.items():
            self.episode_grounding[e] = g

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        grounding = self.episode_grounding[batch["episode_index"]]
        return bc_loss(self.model(batch["state"], batch["environment_state"], grounding), batch["action"])

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
        return to_action(self.model(batch["state"], batch["environment_state"], batch["grounding"]))

    def on_test_epoch_start(self) -> None:
        self._grounded = {"right": 0, "total": 0}   # count test rollouts only, not validation ones

    def on_test_epoch_end(self) -> None:
        if self._grounded["total"]:
            self.log("test/grounding_accuracy", self._grounded["right"] / self._grounded["total"])
        self._grounded = {"right": 0, "total": 0}
        super().on_test_epoch_end()
