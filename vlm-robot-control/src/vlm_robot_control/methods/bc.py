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
from torch import Tensor, nn

from vlm_robot_control.language import CACHE_DIR
from vlm_robot_control.methods.base import PolicyModule


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
    def __init__(self, net: nn.Module, pointer_weight: float = 1.0, lr: float = 1e-3, weight_decay: float = 1e-4,
                 n_action_steps: int = 1, log_videos: int = 4, cache_dir: str | None = CACHE_DIR) -> None:
        """``net``: the policy network, ``net(state, environment_state, lang) -> (B, chunk_size, 4)``
        (``models.state_mlp.StateMLP``; with ``pointer_weight`` > 0 also ``net.slot_weights``)."""
        super().__init__(lr, weight_decay, n_action_steps, log_videos, cache_dir)
        self.save_hyperparameters()   # under the CLI, net is recorded as its class_path and init_args
        self.pointer_weight = pointer_weight
        self.net = net

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        loss = bc_loss(self.net(batch["state"], batch["environment_state"], batch["lang"]), batch["action"])
        if self.pointer_weight:
            weights = self.net.slot_weights(batch["environment_state"], batch["lang"]).clamp_min(1e-8)
            labels = torch.stack([batch["pick_slot"], batch["place_slot"]], 1)
            loss = loss + self.pointer_weight * F.nll_loss(weights.log().flatten(0, 1), labels.flatten())
        return loss

    def predict_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        return to_action(self.net(batch["state"], batch["environment_state"], batch["lang"]))
