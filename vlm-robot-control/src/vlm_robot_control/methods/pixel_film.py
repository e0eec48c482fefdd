"""Behaviour cloning from pixels with a FiLM-conditioned encoder (RT-1-style, models/film_policy.py).

Observation: the top camera image, proprioception and the instruction; no privileged object state.
Loss: ``bc_loss`` (MSE on the displacement, BCE on the gripper) over the action chunk. Training
images are randomly shifted by up to ``shift`` pixels (DrQ, Kostrikov et al. 2021): with a few
hundred demos a pixel policy overfits to exact pixel positions without it.
"""

from __future__ import annotations

from torch import Tensor

from vlm_robot_control.methods.base import PolicyModule
from vlm_robot_control.methods.bc import bc_loss, to_action
from vlm_robot_control.models.film_policy import FiLMPolicy
from vlm_robot_control.models.vision import random_shift


class PixelFiLM(PolicyModule):
    observation_image = True

    def __init__(self, backbone: str = "small_cnn", pooling: str = "spatial_softmax", lite0_stride: int = 8,
                 freeze_backbone: bool = False, keypoints: int = 32, hidden: int = 256, layers: int = 2,
                 chunk_size: int = 4, shift: int = 4, lr: float = 1e-3, weight_decay: float = 1e-4,
                 n_action_steps: int = 2, log_videos: int = 4) -> None:
        """``backbone``: "small_cnn" (from scratch) or "lite0" (ImageNet EfficientNet-Lite0, FiLM on its
        stage outputs; ``lite0_stride`` 8 or 16, ``freeze_backbone`` trains only FiLM and the head)."""
        super().__init__(lr, weight_decay, n_action_steps, log_videos)
        self.save_hyperparameters()
        self.shift = shift
        self.model = FiLMPolicy(backbone=backbone, pooling=pooling, lite0_stride=lite0_stride,
                                freeze_backbone=freeze_backbone, keypoints=keypoints, hidden=hidden, layers=layers,
                                chunk_size=chunk_size)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        image = batch["image"]
        if self.training and self.shift > 0:
            image, _ = random_shift(image, self.shift)
        return bc_loss(self.model(image, batch["state"], batch["lang"]), batch["action"])

    def predict_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        return to_action(self.model(batch["image"], batch["state"], batch["lang"]))
