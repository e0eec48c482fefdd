"""The networks under attack. Each takes RGB images in [0, 1] and normalises them itself, so an attack's eps
is always measured in pixel units (the classic silent bug is an eps applied to normalised images).

- ``PreActResNet``: a narrow pre-activation ResNet (He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual
  Networks", ECCV 2016), the architecture family of the adversarial-training literature on 32 x 32 images
  (Madry et al. 2018 used a WRN, Wong et al. 2020 and Rice et al. 2020 a PreAct ResNet-18); one block per
  stage and ``width`` channels at the first stage, so that PGD training runs in minutes on a CPU.
- ``Lite0Classifier``: the shared pretrained EfficientNet-Lite0 (``shared_utils.backbones``) with its real
  ImageNet head (``num_classes=1000``), or a new linear head on its pooled features.
- ``ReIDNet``: an embedding network for re-identification in the "bag of tricks" form (Luo et al., "Bag of
  Tricks and a Strong Baseline for Deep Person Re-identification", CVPRW 2019): a CNN, global average
  pooling, a BatchNorm "BNNeck" whose output is the retrieval embedding, and an identity classifier used only
  in training (cross-entropy on the BNNeck output, triplet loss on the pooled features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared_utils.backbones import create_backbone


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, inside the model (its statistics are the training set's)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv with an identity (or 1 x 1 projection) shortcut (He et al. 2016, Fig. 4e)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Args:
        num_classes: outputs.
        width: channels of the first stage (doubled at each of the 4 stages; 64 is PreAct ResNet-18's).
        blocks: blocks per stage (2 is ResNet-18's).
        mean, std: the input statistics (default: the shape-texture set's, measured on its training split).
    """

    def __init__(self, num_classes: int = 10, width: int = 16, blocks: int = 1,
                 mean: tuple[float, ...] = (0.5, 0.5, 0.5), std: tuple[float, ...] = (0.25, 0.25, 0.25)) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        layers, c_in = [], width
        for stage in range(4):
            c_out = width * 2 ** stage
            for block in range(blocks):
                layers.append(PreActBlock(c_in, c_out, 2 if stage > 0 and block == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Pooled penultimate features (B, C)."""
        out = self.layers(self.stem(self.normalize(x)))
        return F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


class Lite0Classifier(nn.Module):
    """The shared EfficientNet-Lite0 as a classifier; ``num_classes=1000`` keeps its real ImageNet head."""

    def __init__(self, num_classes: int = 1000, weights: str | None = "imagenet") -> None:
        super().__init__()
        self.backbone = create_backbone("efficientnet_lite0", weights=weights, strides=(32,))
        self.fc = None if num_classes == 1000 else nn.Linear(self.backbone.channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.fc is None:
            return self.backbone.logits(x)
        return self.fc(F.adaptive_avg_pool2d(self.backbone(x)[-1], 1).flatten(1))


class ReIDNet(nn.Module):
    """Args:
        num_ids: training identities (the classifier's outputs).
        width: channels of the first of three conv stages.
        dim: embedding size.

    ``forward`` returns the retrieval embedding (BNNeck output, BoT's inference feature); ``train_outputs``
    returns what the training losses need.
    """

    def __init__(self, num_ids: int, width: int = 32, dim: int = 128) -> None:
        super().__init__()
        self.normalize = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        layers, c_in = [], 3
        for stage in range(4):
            c_out = min(width * 2 ** stage, dim)
            layers += [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if stage < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Conv2d(c_in, dim, 1, bias=False))
        self.neck = nn.BatchNorm1d(dim)
        self.neck.bias.requires_grad_(False)  # BoT: the BNNeck has no shift
        self.classifier = nn.Linear(dim, num_ids, bias=False)

    def pooled(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(self.body(self.normalize(x)), 1).flatten(1)

    def train_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(pooled features for the triplet loss, identity logits for the cross-entropy)."""
        pooled = self.pooled(x)
        return pooled, self.classifier(self.neck(pooled))

    def forward(self, x: Tensor) -> Tensor:
        return self.neck(self.pooled(x))
