"""An RT-1-style pixel policy: a FiLM-conditioned image encoder, pooled, plus proprioception -> action chunk.

image (B, 3, H, W) uint8 --encoder, FiLM(instruction)--> feature map --spatial softmax or average--> features
[features, proprioception] --MLP--> ``chunk_size`` actions, each a displacement (3, regressed) and a
gripper logit, the output convention of ``StateMLP``.

The instruction enters only through FiLM (as in RT-1, Brohan et al. 2022, whose FiLM-EfficientNet
sees the instruction from its first block): the policy has to find *which* block to go to in the
pixels, with no privileged object state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlm_robot_control.models.state_mlp import POSITION_SCALE, mlp_trunk
from vlm_robot_control.models.vision import FiLMGenerator, Lite0Encoder, SmallCNN

BACKBONES = ("small_cnn", "lite0")
POOLINGS = ("spatial_softmax", "average")


class SpatialSoftmax(nn.Module):
    """Feature map -> the expected image coordinates of ``keypoints`` learned feature points.

    Levine, Finn et al., "End-to-End Training of Deep Visuomotor Policies" (JMLR 2016): a softmax over
    the pixels of each (1x1-projected) channel and its expected (x, y) in [-1, 1]. Positions are what
    a reaching policy needs, and average pooling throws them away.
    """

    def __init__(self, channels: int, keypoints: int = 32) -> None:
        super().__init__()
        self.project = nn.Conv2d(channels, keypoints, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, 2 * keypoints): all x coordinates, then all y coordinates."""
        h, w = x.shape[-2:]
        attention = self.project(x).flatten(2).softmax(-1)                     # (B, K, h * w)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device),
                                torch.linspace(-1, 1, w, device=x.device), indexing="ij")
        return torch.cat([attention @ xs.flatten(), attention @ ys.flatten()], 1)


class FiLMPolicy(nn.Module):
    def __init__(self, backbone: str = "small_cnn", pooling: str = "spatial_softmax", lite0_stride: int = 8,
                 freeze_backbone: bool = False, lang_dim: int = 384, keypoints: int = 32, hidden: int = 256,
                 layers: int = 2, chunk_size: int = 4) -> None:
        """``lite0_stride`` (8 or 16) and ``freeze_backbone`` apply to ``backbone="lite0"`` only."""
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone {backbone!r}: expected one of {BACKBONES}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r}: expected one of {POOLINGS}")
        self.chunk_size = chunk_size
        self.encoder = SmallCNN() if backbone == "small_cnn" else Lite0Encoder(lite0_stride, freeze_backbone)
        self.film = FiLMGenerator(lang_dim, self.encoder.film_channels)
        channels = self.encoder.out_channels
        if pooling == "spatial_softmax":
            self.pool, features = SpatialSoftmax(channels, keypoints), 2 * keypoints
        else:
            self.pool, features = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), channels
        dims = [features + 4] + [hidden] * layers
        self.trunk = mlp_trunk(dims)
        self.head = nn.Linear(hidden, chunk_size * 4)

    def forward(self, image: Tensor, state: Tensor, lang: Tensor) -> Tensor:
        """(B, chunk_size, 4): xyz displacement (unbounded; clamp to [-1, 1] to act) and gripper logit."""
        features = self.pool(self.encoder(image, self.film(lang)))
        proprio = torch.cat([state[:, :3] / POSITION_SCALE, state[:, 3:]], 1)
        x = self.trunk(torch.cat([features, proprio], 1))
        return self.head(x).view(len(x), self.chunk_size, 4)
