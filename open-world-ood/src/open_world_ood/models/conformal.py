"""Our method: a conformal unknown threshold (split conformal prediction, Vovk et al. 2005; Angelopoulos &
Bates, "A Gentle Introduction to Conformal Prediction", 2021), class-conditional ("Mondrian").

The nonconformity of a candidate is the Mahalanobis distance of its embedding to the mean of its predicted
known class (tied covariance, the statistics of ``Mahalanobis``). On the validation candidates that match a
known object, grouped by predicted class ``c`` (``n_c`` of them), the threshold of class ``c`` is the
``ceil((n_c + 1)(1 - alpha))``-th smallest score (infinite when that rank exceeds ``n_c``). Then, for a new
candidate on a known object exchangeable with the calibration ones of its predicted class,

    P(flagged unknown) <= alpha,   (and >= alpha - 1 / (n_c + 1)),

a false-unknown rate guaranteed per class in finite samples, where the percentile threshold of the post-hoc
methods only holds it approximately and on average over classes. The guarantee needs exchangeability: a
context shift (road -> aerial) breaks it, and ``test/aerial/false_unknown_rate`` measures by how much.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from open_world_ood.models.open_set import Candidates, Mahalanobis


class Conformal(Mahalanobis):
    """Args: alpha (the guaranteed false-unknown rate, 0.05); queue_size (as Mahalanobis)."""

    def __init__(self, alpha: float = 0.05, queue_size: int = 1000) -> None:
        super().__init__(1 - alpha, queue_size)
        self.alpha = alpha

    def setup(self, num_known: int, embedding_dim: int) -> None:
        super().setup(num_known, embedding_dim)
        self.register_buffer("thresholds", torch.full((num_known,), float("inf")))

    def predicted(self, candidates: Candidates) -> Tensor:
        return self.known_logits(candidates).argmax(1)

    def unknown_score(self, candidates: Candidates) -> Tensor:
        distances = self.distances(candidates["embedding"])
        return distances.gather(1, self.predicted(candidates)[:, None])[:, 0]

    def calibrate(self, scores: Tensor, predicted: Tensor) -> None:
        for c in range(self.num_known):
            group = scores[predicted == c].sort().values
            rank = math.ceil((len(group) + 1) * (1 - self.alpha))
            self.thresholds[c] = group[rank - 1] if rank <= len(group) else float("inf")

    def decide(self, candidates: Candidates) -> tuple[Tensor, Tensor]:
        probability = self.known_logits(candidates).sigmoid()
        known_score, labels = probability.max(1)
        unknown = self.unknown_score(candidates) > self.thresholds[labels]
        score = known_score * candidates["objectness"]
        return torch.where(unknown, -1, labels), torch.where(unknown, candidates["objectness"], score)
