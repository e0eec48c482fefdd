"""Deep ensemble (Lakshminarayanan et al., NeurIPS 2017), trained in one command.

M copies of the network, each with its own random initialisation of everything but the pretrained
image backbone (members share the ImageNet start, as fine-tuned ensembles do), are trained side by
side on the same batches, each by its own loss (the sum of independent losses has independent
gradients). The predictive probability is the mean of the members'; its entropy is the total
uncertainty and the mutual information (disagreement) the epistemic part used for OOD.
Costs M times the training and inference of one network.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from bev_uncertainty.methods.base import BEVSegmentation, binary_entropy
from bev_uncertainty.models.lss import LiftSplat


class DeepEnsemble(BEVSegmentation):
    def __init__(self, model: LiftSplat, members: int = 3, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {members}")
        others = []
        for _ in range(members - 1):
            member = copy.deepcopy(model)
            member.init_head_weights()  # a fresh draw from the global RNG: seeded, different per member
            others.append(member)
        self.others = nn.ModuleList(others)

    def networks(self) -> list[LiftSplat]:
        return [self.model, *self.others]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        losses, segs, depths = [], [], []
        for net in self.networks():
            out = net(batch["images"], batch["intrinsics"], batch["cam_to_ego"])
            seg, depth = self.segmentation_loss(out, batch), self.depth_loss(out, batch, net)
            losses.append(self.combine_losses(seg, depth))
            segs.append(seg)
            depths.append(depth)
        loss = torch.stack(losses).sum()
        self.log_dict({"train/loss": loss / len(losses), "train/seg_loss": torch.stack(segs).mean(),
                       "train/depth_loss": torch.stack(depths).mean()}, prog_bar=True, batch_size=len(batch["images"]))
        return loss

    def predict(self, batch: dict) -> dict[str, Tensor]:
        probs = torch.stack([net(batch["images"], batch["intrinsics"], batch["cam_to_ego"])["logits"][:, :2]
                             .softmax(1)[:, 1] for net in self.networks()])
        prob = probs.mean(0)
        entropy = binary_entropy(prob)
        return {"prob": prob, "uncertainty": entropy, "ood_score": entropy - binary_entropy(probs).mean(0)}
