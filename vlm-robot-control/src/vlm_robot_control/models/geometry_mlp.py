"""Grounded BC's policy network: actions from geometry only, never the sentence (methods/grounded_bc.py).

Input: the gripper state, the grounded pick and place objects' slot features (absolute and
gripper-relative positions, see ``state_mlp.per_slot_features``) and the family as a one-hot. The
instruction reaches it only through the grounding (which objects, which family), so distractors and
unseen colour pairs leave its input distribution unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlm_robot_control.env.tasks import SINGLE_STEP, SLOTS
from vlm_robot_control.models.state_mlp import mlp_trunk, per_slot_features, state_features


class GeometryMLP(nn.Module):
    """Actions from [proprio, grounded pick slot, grounded place slot, family one-hot]."""

    def __init__(self, hidden: int = 256, layers: int = 3, chunk_size: int = 1, n_families: int = 3) -> None:
        super().__init__()
        self.chunk_size = chunk_size
        dims = [4 + 2 * 7 + n_families] + [hidden] * layers
        self.trunk = mlp_trunk(dims)
        self.head = nn.Linear(hidden, chunk_size * 4)

    def forward(self, state: Tensor, environment_state: Tensor, grounding: Tensor) -> Tensor:
        """``grounding`` (B, 3) long: family, pick slot, place slot -> (B, chunk_size, 4)."""
        features = state_features(state, environment_state)
        per_slot = per_slot_features(features, len(SLOTS))
        rows = torch.arange(len(state), device=state.device)
        family = nn.functional.one_hot(grounding[:, 0], len(SINGLE_STEP)).float()
        x = torch.cat([features[:, :4], per_slot[rows, grounding[:, 1]], per_slot[rows, grounding[:, 2]], family], 1)
        return self.head(self.trunk(x)).view(len(x), self.chunk_size, 4)
