"""PROB: Probabilistic Objectness for Open World Object Detection (Zohar, Wang, Yeung, CVPR 2023), on the
shared CenterNet.

PROB separates objectness from classification: ``p(o | q) = exp(-tau / D * d(q))`` with ``d`` the squared
Mahalanobis distance of an embedding to the distribution of embeddings, estimated as in the reference code
by a BatchNorm without affine parameters (running mean and variance, so a diagonal covariance) followed by
the squared norm; the objectness loss pulls the embeddings of matched objects towards the mean,
``sum clamp(d, min = -D log 0.9) / N`` with weight 8e-4, and never pushes unmatched ones away, so unknown
objects are not learnt as background. The class head has one more channel, trained positive on unmatched
positions with weight 0.1 (the code's ``empty_weight``), read as ``unknown`` at test. Scores are
``p(o) * sigmoid(z_c)`` over the known classes and the unknown channel (tau = ``obj_temp`` 1.3).

Differences: the embeddings are the class head's penultimate features at every heatmap position (PROB:
the decoder queries); candidate positions come from the shared objectness heatmap, and each candidate
gets one label, its best score (PROB's top-100 over queries x classes may give a query two labels); no
exemplar selection (incremental tasks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from open_world_ood.models.open_set import Candidates, OpenSetMethod


class PROB(OpenSetMethod):
    """Args: obj_temp (1.3); obj_weight (8e-4); empty_weight (0.1)."""

    unknown_channel = True

    def __init__(self, obj_temp: float = 1.3, obj_weight: float = 8e-4, empty_weight: float = 0.1) -> None:
        super().__init__()
        self.obj_temp, self.obj_weight, self.empty_weight = obj_temp, obj_weight, empty_weight

    def setup(self, num_known: int, embedding_dim: int) -> None:
        super().setup(num_known, embedding_dim)
        self.dim = embedding_dim
        self.objectness_bn = nn.BatchNorm1d(embedding_dim, affine=False)

    def distance(self, embedding: Tensor) -> Tensor:
        return self.objectness_bn(embedding).pow(2).sum(-1)

    def training_loss(self, outputs: dict[str, Tensor], embedding: Tensor, labels: Tensor, classifier,
                      progress: float) -> dict[str, Tensor]:
        everywhere = outputs["embedding"].permute(0, 2, 3, 1).flatten(0, 2)
        self.objectness_bn(everywhere.detach())  # the running statistics of all positions, as PROB's queries
        losses = {}
        if len(embedding):
            self.objectness_bn.eval()  # the loss reads the current statistics without updating them twice
            distance = self.distance(embedding)
            self.objectness_bn.train()
            minimum = -self.dim * math.log(0.9)
            losses["objectness_likelihood"] = self.obj_weight * distance.clamp(min=minimum).sum() / len(embedding)
        unknown_logits = outputs["heatmap"][:, self.num_known]
        empty = outputs["target_heatmap"][:, :self.num_known].amax(1) < 1e-2
        losses["unknown_channel"] = self.empty_weight * F.binary_cross_entropy_with_logits(unknown_logits,
                                                                                           empty.float())
        return losses

    def scores(self, candidates: Candidates) -> Tensor:
        objectness = torch.exp(-self.obj_temp / self.dim * self.distance(candidates["embedding"]))
        return objectness[:, None] * candidates["logits"].sigmoid()

    def calibrate(self, scores: Tensor, predicted: Tensor) -> None:
        """PROB labels by its scores: nothing is calibrated on validation."""

    def unknown_score(self, candidates: Candidates) -> Tensor:
        scores = self.scores(candidates)
        return scores[:, self.num_known] - scores[:, :self.num_known].amax(1)

    def decide(self, candidates: Candidates) -> tuple[Tensor, Tensor]:
        best, labels = self.scores(candidates).max(1)
        return torch.where(labels == self.num_known, -1, labels), best
