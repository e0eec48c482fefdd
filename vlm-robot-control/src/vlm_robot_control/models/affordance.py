"""SayCan's affordance function: a value network V(s, skill) = P(executing the skill now succeeds).

One network for all 36 "pick the {c1} block and place it in the {c2} bowl" skills (SayCan's value
functions are likewise one network conditioned on the skill). The skill selects what it looks at:
the three block slots of colour c1 and the bowl slot of colour c2 of the privileged state
(``env/tasks.py:SLOTS``), each block with its position relative to that bowl, its height above the
table and its distance to the nearest bowl of any colour (the scripted skill seldom gets a block out
of another bowl: 10% success against 81% from the table in the collected tries). The weights are
shared by every colour pair, so a pair seldom sampled in the experience is as well served as any,
and "is a c1 block outside the c2 bowl, free to grasp, and is there such a bowl?" becomes a function
of distances that a small MLP learns from a thousand labelled tries.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlm_robot_control.env.scene import BLOCK_HALF
from vlm_robot_control.env.tasks import COLOUR_NAMES, INSTANCES, SLOT_INDEX
from vlm_robot_control.models.state_mlp import POSITION_SCALE

BLOCK_FEATURES = 9   # present, xyz, xyz relative to the bowl, height above the table, distance to the nearest bowl
BOWL_FEATURES = 4    # present, xyz


class AffordanceValue(nn.Module):
    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        blocks = [[SLOT_INDEX[("block", c, i)] for i in range(INSTANCES["block"])] for c in COLOUR_NAMES]
        self.register_buffer("block_slots", torch.tensor(blocks), persistent=False)            # (colours, 3)
        self.register_buffer("bowl_slots", torch.tensor([SLOT_INDEX[("bowl", c, 0)] for c in COLOUR_NAMES]),
                             persistent=False)                                                 # (colours,)
        n_in = INSTANCES["block"] * BLOCK_FEATURES + BOWL_FEATURES
        self.mlp = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def features(self, environment_state: Tensor, pick: Tensor, place: Tensor) -> Tensor:
        """(B, 31): the c1 block slots (present, xyz, xyz - bowl, height, nearest bowl) and the c2 bowl
        slot (present, xyz); positions in POSITION_SCALE units, heights in half block sides.

        ``pick`` / ``place``: (B,) colour indices into ``COLOUR_NAMES``. Absent objects are zeros.
        """
        slots = environment_state.view(len(environment_state), -1, 4)
        rows = torch.arange(len(slots), device=slots.device)
        blocks = slots[rows[:, None], self.block_slots[pick]]                  # (B, 3, 4)
        bowl = slots[rows, self.bowl_slots[place]]                             # (B, 4)
        bowls = slots[:, self.bowl_slots]                                      # (B, colours, 4)
        present = blocks[..., 3:]
        relative = (blocks[..., :3] - bowl[:, None, :3]) * present * bowl[:, None, 3:] / POSITION_SCALE
        height = (blocks[..., 2:3] - BLOCK_HALF) / BLOCK_HALF * present
        distance = torch.cdist(blocks[..., :2], bowls[..., :2]).masked_fill(bowls[:, None, :, 3] == 0, 1.0)
        nearest = (distance.min(-1).values[..., None] / POSITION_SCALE).clamp(max=2.0) * present
        block_feats = torch.cat([present, blocks[..., :3] / POSITION_SCALE, relative, height, nearest], -1)
        return torch.cat([block_feats.flatten(1), bowl[:, 3:], bowl[:, :3] / POSITION_SCALE], 1)

    def forward(self, environment_state: Tensor, pick: Tensor, place: Tensor) -> Tensor:
        """(B,) success logits; ``sigmoid`` gives V in [0, 1]."""
        return self.mlp(self.features(environment_state, pick, place)).squeeze(-1)
