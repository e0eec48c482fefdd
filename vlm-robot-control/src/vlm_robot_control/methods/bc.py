"""Behaviour cloning on state (language-conditioned MLP), the default method.

Loss: mean squared error on the displacement and binary cross-entropy on the gripper command
(open/close is a decision, not a quantity), over the predicted action chunk; plus, weighted by
``pointer_weight``, cross-entropy of the model's language pointers (models/state_mlp.py) against
the demo's hindsight object labels (the block it moved, the object it put it by). Without that
auxiliary loss the pointers learn from the BC loss alone, too slowly for a few hundred demos.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vlm_robot_control.methods.base import PolicyModule
from vlm_robot_control.models.state_mlp import StateMLP


def bc_loss(pred: Tensor, target: Tensor) -> Tensor:
    """MSE on the displacement plus BCE on the gripper logit (target: close when the action's 4th entry > 0)."""
    if pred.shape != target.shape:
        raise ValueError(f"predicted actions {tuple(pred.shape)} vs demonstrated {tuple(target.shape)}: "
                         "model.chunk_size must equal data.chunk_size")
    return F.mse_loss(pred[..., :3], target[..., :3]) + F.binary_cross_entropy_with_logits(
        pred[..., 3], (target[..., 3] > 0).float())


def to_action(pred: Tensor) -> Tensor:
    """Network output -> executable action: clamp the displacement, threshold the gripper logit."""
    return torch.cat([pred[..., :3].clamp(-1, 1), torch.where(pred[..., 3:] > 0, 1.0, -1.0)], -1)


class StateBC(PolicyModule):
    def __init__(self, hidden: int = 512, layers: int = 3, dropout: float = 0.1, chunk_size: int = 1,
                 pointer_weight: float = 1.0, full_state: bool = False, lr: float = 1e-3, weight_decay: float = 1e-4,
                 n_action_steps: int = 1, log_videos: int = 4) -> None:
        super().__init__(lr, weight_decay, n_action_steps, log_videos)
        self.save_hyperparameters()
        self.pointer_weight = pointer_weight
        self.model = StateMLP(hidden=hidden, layers=layers, dropout=dropout, chunk_size=chunk_size,
                              full_state=full_state)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        loss = bc_loss(self.model(batch["state"], batch["environment_state"], batch["lang"]), batch["action"])
        if self.pointer_weight:
            weights = self.model.slot_weights(batch["environment_state"], batch["lang"]).clamp_min(1e-8)
            labels = torch.stack([batch["pick_slot"], batch["place_slot"]], 1)
            loss = loss + self.pointer_weight * F.nll_loss(weights.log().flatten(0, 1), labels.flatten())
        return loss

    def predict_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        return to_action(self.model(batch["state"], batch["environment_state"], batch["lang"]))
