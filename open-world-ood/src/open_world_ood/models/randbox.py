"""RandBox-style training (Wang, Yue, Liu et al., "Random Boxes Are Open-world Object Detectors", ICCV 2023)
on the shared CenterNet.

RandBox's argument: learned proposals are biased towards the known classes because every unmatched
proposal is trained as background, so unknown objects learn to be background. It replaces them with random
proposals, and its matching score does not penalise the random proposals that match no known object. On a
dense detector the analogue is to take the negative terms of the focal losses (class and objectness
heatmaps) only at ``num_proposals`` random positions per image and step, instead of at every position:
an unlabelled object is pushed towards background only when a random proposal falls on it. Unknowns are
then told apart by the energy of the known classes' logits (``Energy``, thresholded at 95 % TPR on the
known validation objects). Not here: RandBox's DETR-style decoder and its several random draws at test.
"""

from __future__ import annotations

import torch
from torch import Tensor

from open_world_ood.models.open_set import Energy


class RandBox(Energy):
    """Args: tpr; num_proposals (random negative positions per image per step, 100)."""

    def __init__(self, tpr: float = 0.95, num_proposals: int = 100) -> None:
        super().__init__(tpr)
        self.num_proposals = num_proposals

    def negatives(self, outputs: dict[str, Tensor]) -> Tensor:
        batch, _, h, w = outputs["objectness"].shape
        order = torch.rand(batch, h * w, device=outputs["objectness"].device).argsort(1)
        mask = torch.zeros(batch, h * w, device=order.device)
        mask.scatter_(1, order[:, :self.num_proposals], 1.0)
        return mask.view(batch, 1, h, w)
