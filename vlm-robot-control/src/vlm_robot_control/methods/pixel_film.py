"""Behaviour cloning from pixels with a FiLM-conditioned encoder (RT-1-style, models/film_policy.py).

Observation: the top camera image, proprioception and the instruction; no privileged object state.
Loss: ``bc_loss`` (MSE on the displacement, BCE on the gripper) over the action chunk. Training
images are randomly shifted by up to ``shift`` pixels (DrQ, Kostrikov et al. 2021): with a few
hundred demos a pixel policy overfits to exact pixel positions without it.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlm_robot_control.language import CACHE_DIR
from vlm_robot_control.methods.base import PolicyModule
from vlm_robot_control.methods.bc import bc_loss, to_action
from vlm_robot_control.models.vision import random_shift


class PixelFiLM(PolicyModule):
    observation_image = True

    def __init__(self, net: nn.Module, shift: int = 4, lr: float = 1e-3, weight_decay: float = 1e-4,
                 n_action_steps: int = 2, log_videos: int = 4, cache_dir: str | None = CACHE_DIR) -> None:
        """``net``: ``net(image uint8 (B, 3, H, W), state, lang) -> (B, chunk_size, 4)``
        (``models.film_policy.FiLMPolicy``: its ``backbone`` is "small_cnn", from scratch, or "lite0", the
        ImageNet EfficientNet-Lite0 with FiLM on its stage outputs, ``freeze_backbone`` to train only FiLM
        and the head)."""
        super().__init__(lr, weight_decay, n_action_steps, log_videos, cache_dir)
        self.save_hyperparameters()   # under the CLI, net is recorded as its class_path and init_args
        self.shift = shift
        self.net = net

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        image = batch["image"]
        if self.training and self.shift > 0:
            image, _ = random_shift(image, self.shift)
        return bc_loss(self.net(image, batch["state"], batch["lang"]), batch["action"])

    def predict_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        return to_action(self.net(batch["image"], batch["state"], batch["lang"]))
