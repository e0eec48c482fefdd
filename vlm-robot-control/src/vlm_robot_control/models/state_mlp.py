"""A language-conditioned MLP policy on the privileged state (the state-based BC baseline).

Inputs: proprioception (4), the object slots (30 x [xyz, present]) and the same positions relative
to the gripper (egocentric features make "move towards the object" a linear function), plus the
instruction's sentence embedding. Output: ``chunk_size`` actions, each a displacement (3, regressed)
and a gripper logit (classified).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

POSITION_SCALE = 0.2   # m: positions are divided by this (the workspace half side is 0.17 m)


def state_features(state: Tensor, environment_state: Tensor) -> Tensor:
    """(B, 4 + 120 + 90): proprio, object slots, object positions relative to the gripper (0 if absent)."""
    slots = environment_state.view(len(environment_state), -1, 4)
    present = slots[..., 3:]
    hand = state[:, None, :3]
    relative = (slots[..., :3] - hand) * present / POSITION_SCALE
    proprio = torch.cat([state[:, :3] / POSITION_SCALE, state[:, 3:]], 1)
    absolute = torch.cat([slots[..., :3] / POSITION_SCALE, present], -1)
    return torch.cat([proprio, absolute.flatten(1), relative.flatten(1)], 1)


class StateMLP(nn.Module):
    def __init__(self, n_slots: int = 30, lang_dim: int = 384, hidden: int = 512, layers: int = 3,
                 dropout: float = 0.1, chunk_size: int = 1) -> None:
        super().__init__()
        self.chunk_size = chunk_size
        dims = [4 + n_slots * 7 + lang_dim] + [hidden] * layers
        blocks = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.LayerNorm(b), nn.GELU(), nn.Dropout(dropout)]
        self.trunk = nn.Sequential(*blocks)
        self.head = nn.Linear(hidden, chunk_size * 4)

    def forward(self, state: Tensor, environment_state: Tensor, lang: Tensor) -> Tensor:
        """(B, chunk_size, 4): xyz displacement (unbounded; clamp to [-1, 1] to act) and gripper logit."""
        x = torch.cat([state_features(state, environment_state), lang], 1)
        return self.head(self.trunk(x)).view(len(x), self.chunk_size, 4)
