"""The detector every method shares: the collection's CenterNet (``shared_utils.detection``, Zhou et al.
2019) with a class-agnostic objectness heatmap, decoded into class-agnostic candidates.

Why objectness: a closed-set CenterNet only fires where a known class's heatmap fires, so an object of an
unseen class is either missed or labelled as the known class it resembles. Open-world detectors need a
proposal stage that generalises beyond the known classes (the RPN of ORE's Faster R-CNN, the queries of
OW-DETR / PROB, OLN's localisation-only objectness, Kim et al. 2022). Here it is one more CenterNet head,
trained with the same penalty-reduced focal loss on the union of the known classes' Gaussians (the target
is their element-wise max). Every method decodes the same way:

1. candidates are the 3 x 3 peaks of the objectness heatmap (top ``k``, objectness >= ``min_objectness``,
   the RPN-like post-processing that decides what the evaluator sees; nothing else is cut);
2. each carries its box (size and offset heads at the peak), its objectness, the class logits at the peak
   (``C`` known classes, plus one ``unknown`` channel for the methods that train one: ORE, PROB) and the
   class head's penultimate activation (the ``embedding``: the feature VOS samples outliers in and
   Mahalanobis / PROB model, since the last 1 x 1 conv of the class head maps it to the logits).

The open-set method (``open_world_ood.models.open_set``) then labels each candidate as a known class or
``unknown``. The closed-set baseline labels every candidate with its arg-max known class, which is how a
two-stage closed-set detector turns unknown objects into known-class false positives (ORE Fig. 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from shared_utils.detection import STRIDE, CenterNet, _head, centernet_targets, focal_loss, regression_losses


class OpenWorldCenterNet(CenterNet):
    """CenterNet with an objectness head and an optional ``unknown`` class channel.

    ``forward(images) -> {"heatmap": class logits (B, C[+1], H/4, W/4), "objectness": (B, 1, H/4, W/4),
    "wh", "offset", "features" (the neck), "embedding": the class head's penultimate map (B, D, H/4, W/4)}``.

    Args:
        num_classes: known classes ``C`` (the CLI links them from the data).
        unknown_channel: one more class channel for ``unknown`` (set by the method, see ``OpenSetMethod``).
        backbone, weights, freeze, head_channels: as ``shared_utils.detection.CenterNet``.
    """

    def __init__(self, num_classes: int, unknown_channel: bool = False, backbone: str = "efficientnet_lite0",
                 weights: str | None = "imagenet", freeze: str = "batchnorm", head_channels: int = 64) -> None:
        super().__init__(num_classes + int(unknown_channel), backbone, weights, freeze, head_channels)
        self.num_known, self.unknown_channel = num_classes, unknown_channel
        self.objectness = _head(head_channels, 1, bias=-2.19)

    def classifier(self, embedding: Tensor) -> Tensor:
        """The class head's last layer (a 1 x 1 conv) as a linear map on ``(..., D)`` embeddings (VOS)."""
        conv = self.heatmap[-1]
        return embedding @ conv.weight.flatten(1).T + conv.bias

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.neck(images)
        embedding = self.heatmap[:-1](features)
        return {"heatmap": self.heatmap[-1](embedding), "objectness": self.objectness(features),
                "wh": self.wh(features), "offset": self.offset(features), "features": features,
                "embedding": embedding}

    def encode(self, targets: list[dict[str, Tensor]], size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """CenterNet targets of each image (``centernet_targets``) for all class channels."""
        return [centernet_targets(t["boxes"], t["labels"], self.num_classes, size) for t in targets]

    def detection_loss(self, outputs: dict[str, Tensor], encoded: list[dict[str, Tensor]],
                       negatives: Tensor | None = None) -> dict[str, Tensor]:
        """CenterNet's loss (focal heatmap + 0.1 size L1 + offset L1) plus the same focal loss on the
        objectness map against the max over the class targets. ``negatives`` (B, 1, h, w), when given,
        masks the negative terms of both focal losses (RandBox's random proposals)."""
        heatmap = outputs["heatmap"]
        target = torch.stack([e["heatmap"] for e in encoded]).to(heatmap)
        num_objects = max(sum(len(e["index"]) for e in encoded), 1)
        objectness_target = target[:, :self.num_known].amax(1, keepdim=True) if self.num_known else target[:, :0]
        if negatives is None:
            heat = focal_loss(heatmap, target) / num_objects
            objectness = focal_loss(outputs["objectness"], objectness_target) / num_objects
        else:
            heat = _masked_focal(heatmap, target, negatives) / num_objects
            objectness = _masked_focal(outputs["objectness"], objectness_target, negatives) / num_objects
        size_loss, offset_loss = regression_losses(outputs, encoded)
        total = heat + objectness + self.size_weight * size_loss + self.offset_weight * offset_loss
        return {"loss": total, "heatmap": heat.detach(), "objectness": objectness.detach(),
                "size": size_loss.detach(), "offset": offset_loss.detach()}

    @staticmethod
    @torch.no_grad()
    def candidates(outputs: dict[str, Tensor], k: int = 100, min_objectness: float = 0.05) -> list[dict[str, Tensor]]:
        """Per image, the objectness peaks (3 x 3 max-pool) with objectness >= ``min_objectness``, at most
        ``k``, in decreasing objectness: ``boxes`` (n, 4) xyxy input pixels, ``objectness`` (n,),
        ``logits`` (n, C[+1]), ``embedding`` (n, D)."""
        heat = outputs["objectness"].sigmoid()[:, 0]
        batch, h, w = heat.shape
        peaks = heat * (F.max_pool2d(heat[:, None], 3, stride=1, padding=1)[:, 0] == heat)
        scores, position = peaks.flatten(1).topk(min(k, h * w))
        result = []
        for b in range(batch):
            keep = scores[b] >= min_objectness
            p = position[b][keep]
            wh = outputs["wh"][b].flatten(1)[:, p].T
            offset = outputs["offset"][b].flatten(1)[:, p].T
            centre = torch.stack([p % w, p // w], dim=1).to(wh) + offset
            result.append({"boxes": torch.cat([centre - wh / 2, centre + wh / 2], dim=1) * STRIDE,
                           "objectness": scores[b][keep], "logits": outputs["heatmap"][b].flatten(1)[:, p].T,
                           "embedding": outputs["embedding"][b].flatten(1)[:, p].T})
        return result


def _masked_focal(logits: Tensor, target: Tensor, negatives: Tensor) -> Tensor:
    """``focal_loss`` whose negative terms only count where ``negatives`` is 1 (positives always count)."""
    prediction = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    positive_loss = torch.log(prediction) * (1 - prediction) ** 2 * positive
    negative_loss = torch.log(1 - prediction) * prediction ** 2 * (1 - target) ** 4 * (1 - positive) * negatives
    return -(positive_loss.sum() + negative_loss.sum())
