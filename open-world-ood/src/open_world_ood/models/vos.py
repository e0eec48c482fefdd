"""VOS: Learning What You Don't Know by Virtual Outlier Synthesis (Du, Wang, Cai, Li, ICLR 2022).

Class-conditional Gaussians with a tied covariance are fitted to the known objects' embeddings (the class
head's penultimate features, kept in per-class queues of 1,000, Sec. 3.1); virtual outliers are sampled
from the low-likelihood region: 10,000 samples per class, keep the ``select`` = 1 of lowest likelihood
(Eq. 3, the epsilon-likelihood set). The last layer of the class head maps them to logits, and the
uncertainty loss (Eq. 5) is a logistic regression on the energy that separates the objects (label 1) from
the outliers (label 0), written as the reference code writes it: a 2-way cross-entropy on ``phi(-E)``,
with the learnable energy of the reference code, ``-E(z) = log sum_c relu(w_c) exp(z_c)``, and ``phi`` a
linear map (the code's ``nn.Linear(1, 2)``). Weight 0.1; it starts after ``start`` = 2/3 of training (the
paper's 12k of 18k iterations on VOC), once every queue is full. At test the unknown score is the
(learned) energy, thresholded at 95 % TPR on the known validation objects, as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from open_world_ood.models.open_set import Candidates, ClassQueues, OpenSetMethod


class VOS(OpenSetMethod):
    """Args: tpr; queue_size (1000); samples (10000 per class); select (1); weight (0.1); start (2/3)."""

    def __init__(self, tpr: float = 0.95, queue_size: int = 1000, samples: int = 10000, select: int = 1,
                 weight: float = 0.1, start: float = 2 / 3) -> None:
        super().__init__(tpr)
        self.queue_size, self.samples, self.select, self.weight, self.start = queue_size, samples, select, weight, start
        self.logistic_regression = nn.Linear(1, 2)

    def setup(self, num_known: int, embedding_dim: int) -> None:
        super().setup(num_known, embedding_dim)
        self.queues = ClassQueues(num_known, embedding_dim, self.queue_size)
        self.weight_energy = nn.Parameter(torch.ones(num_known))  # the code's weight_energy, init uniform 1

    def negative_energy(self, logits: Tensor) -> Tensor:
        """``log sum_c relu(w_c) exp(z_c)`` (stable): high on known objects."""
        top = logits.amax(1, keepdim=True)
        return top[:, 0] + torch.log((F.relu(self.weight_energy) * (logits - top).exp()).sum(1) + 1e-12)

    def observe(self, embedding: Tensor, logits: Tensor, labels: Tensor) -> None:
        self.queues.push(embedding, labels)

    def virtual_outliers(self) -> Tensor:
        means, covariance = self.queues.gaussians()
        outliers = []
        for mean in means:
            gaussian = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance)
            samples = gaussian.rsample((self.samples,))
            outliers.append(samples[(-gaussian.log_prob(samples)).topk(self.select).indices])
        return torch.cat(outliers)

    def training_loss(self, outputs: dict[str, Tensor], embedding: Tensor, labels: Tensor, classifier,
                      progress: float) -> dict[str, Tensor]:
        embedding = embedding[labels < self.num_known]
        if progress < self.start or not len(embedding) or not bool((self.queues.count >= self.queue_size).all()):
            return {}
        outliers = self.virtual_outliers().detach()
        known = self.negative_energy(classifier(embedding)[:, :self.num_known])
        virtual = self.negative_energy(classifier(outliers)[:, :self.num_known])
        inputs = torch.cat([known, virtual])[:, None]
        target = torch.cat([torch.ones(len(known)), torch.zeros(len(virtual))]).long().to(inputs.device)
        return {"uncertainty": self.weight * F.cross_entropy(self.logistic_regression(inputs), target)}

    def unknown_score(self, candidates: Candidates) -> Tensor:
        return -self.negative_energy(self.known_logits(candidates))
