"""How a method turns the shared detector's candidates into known-class and ``unknown`` detections.

An ``OpenSetMethod`` is a plain ``nn.Module`` (its statistics are buffers, saved in checkpoints) with the
hooks the Lightning module calls (``open_world_ood.methods.module``):

- training: ``training_targets`` (ORE adds pseudo-labelled unknowns), ``negatives`` (RandBox), ``observe``
  (the known objects' embeddings and logits at their centres, for class statistics), ``training_loss``
  (VOS's uncertainty loss, PROB's objectness likelihood);
- before each validation: ``fit()`` (Gaussians, Weibull fits from what was observed);
- ``unknown_score(candidates)``: higher = more unknown, the score AUROC / FPR95 rank;
- ``calibrate(scores, predicted)``: the threshold from the unknown scores of validation candidates that matched a
  known object (no labelled unknowns: the validation split labels known classes only), by default the
  one that keeps a fraction ``tpr`` of them known (the OOD literature's 95 % TPR operating point);
- ``decide(candidates) -> (labels, scores)``: the class index, or -1 for ``unknown``, and the score handed
  to the evaluator.

This file holds the closed-set baseline and the post-hoc scores, computed on the trained closed-set
detector: maximum softmax probability (Hendrycks & Gimpel, ICLR 2017), energy (Liu et al., NeurIPS 2020:
``E(z) = -T logsumexp(z / T)``, T = 1) and Mahalanobis (Lee et al., NeurIPS 2018: class means and one
tied covariance of the known objects' embeddings; score = the smallest Mahalanobis distance). Training
methods live beside it: ``vos.py``, ``ore.py``, ``prob.py``, ``randbox.py``, ``conformal.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

Candidates = dict[str, Tensor]


class OpenSetMethod(nn.Module):
    """Base: the closed-set rule (every candidate gets its arg-max known class; nothing is unknown).

    Args:
        tpr: fraction of validation candidates on known objects that ``calibrate`` keeps known.
    """

    unknown_channel = False  # the detector gets an extra `unknown` class channel (ORE, PROB)

    def __init__(self, tpr: float = 0.95) -> None:
        super().__init__()
        self.tpr = tpr
        self.num_known = 0
        self.register_buffer("threshold", torch.tensor(float("inf")))

    def setup(self, num_known: int, embedding_dim: int) -> None:
        """Called once the detector is built, before training or loading a checkpoint."""
        self.num_known = num_known

    # --- training hooks -------------------------------------------------------------------------------------
    def training_targets(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        return targets

    def negatives(self, outputs: dict[str, Tensor]) -> Tensor | None:
        return None

    def observe(self, embedding: Tensor, logits: Tensor, labels: Tensor) -> None:
        """The objects of a training batch: embeddings (n, D) and logits (n, C[+1]) at their centres, and
        their labels (``C`` marks ORE's pseudo-labelled unknowns)."""

    def training_loss(self, outputs: dict[str, Tensor], embedding: Tensor, labels: Tensor, classifier,
                      progress: float) -> dict[str, Tensor]:
        """Extra loss terms (each already weighted); ``progress`` is the fraction of training done."""
        return {}

    def fit(self) -> None:
        """Fit the statistics from what ``observe`` saw (before each validation)."""

    # --- inference ------------------------------------------------------------------------------------------
    def known_logits(self, candidates: Candidates) -> Tensor:
        return candidates["logits"][:, :self.num_known]

    def unknown_score(self, candidates: Candidates) -> Tensor:
        return torch.zeros(len(candidates["objectness"]), device=candidates["objectness"].device)

    def calibrate(self, scores: Tensor, predicted: Tensor) -> None:
        """``scores``: unknown scores of the validation candidates on known objects; ``predicted``: their
        arg-max known class."""
        if len(scores):
            self.threshold.fill_(torch.quantile(scores.float(), self.tpr).item())

    def decide(self, candidates: Candidates) -> tuple[Tensor, Tensor]:
        """Known class index or -1 (unknown) per candidate, and its score: for a known label the class
        probability times the objectness; for unknown the objectness."""
        probability = self.known_logits(candidates).sigmoid()
        known_score, labels = probability.max(1)
        score = known_score * candidates["objectness"]
        unknown = self.unknown_score(candidates) > self.threshold
        return torch.where(unknown, -1, labels), torch.where(unknown, candidates["objectness"], score)


class ClosedSet(OpenSetMethod):
    """The closed-set detector: never ``unknown`` (its unknown score is constant)."""


class MSP(OpenSetMethod):
    """Maximum softmax probability over the known classes' logits; unknown score = -max softmax."""

    def unknown_score(self, candidates: Candidates) -> Tensor:
        return -self.known_logits(candidates).softmax(1).amax(1)


class Energy(OpenSetMethod):
    """Free energy of the known classes' logits, ``E = -T logsumexp(z / T)``; unknown score = E."""

    def __init__(self, tpr: float = 0.95, temperature: float = 1.0) -> None:
        super().__init__(tpr)
        self.temperature = temperature

    def unknown_score(self, candidates: Candidates) -> Tensor:
        return -self.temperature * torch.logsumexp(self.known_logits(candidates) / self.temperature, 1)


class ClassQueues(nn.Module):
    """The last ``size`` embeddings of each known class (VOS's per-class queues, 1,000 in the paper), as
    buffers; ``gaussians()`` gives the class means and the tied covariance (+ ``eps`` I)."""

    def __init__(self, num_classes: int, dim: int, size: int = 1000) -> None:
        super().__init__()
        self.register_buffer("queue", torch.zeros(num_classes, size, dim))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))

    def push(self, embedding: Tensor, labels: Tensor) -> None:
        """Adds the embeddings of known labels (a label >= the number of queues, e.g. ORE's pseudo
        unknowns, is not a known class and is left out)."""
        size = self.queue.shape[1]
        for c in labels[labels < self.queue.shape[0]].unique().tolist():
            new = embedding[labels == c].detach()
            self.queue[c] = torch.cat([self.queue[c], new[-size:].to(self.queue)])[-size:]
            self.count[c] += len(new)

    def ready(self) -> bool:
        return bool((self.count >= 2).all())

    def gaussians(self, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
        size = self.queue.shape[1]
        means, centred = [], []
        for c in range(self.queue.shape[0]):
            samples = self.queue[c, size - min(int(self.count[c]), size):]
            means.append(samples.mean(0))
            centred.append(samples - means[-1])
        centred = torch.cat(centred)
        covariance = centred.T @ centred / len(centred) + eps * torch.eye(centred.shape[1], device=centred.device)
        return torch.stack(means), covariance


class Mahalanobis(OpenSetMethod):
    """Lee et al. 2018: class-conditional Gaussians with a tied covariance on the known objects'
    embeddings (kept in per-class queues during the last training steps); unknown score = the smallest
    Mahalanobis distance to a class mean. (No input pre-processing or layer ensemble: the paper's
    feature-ensemble needs held-out OOD data to weight the layers.)"""

    def __init__(self, tpr: float = 0.95, queue_size: int = 1000) -> None:
        super().__init__(tpr)
        self.queue_size = queue_size

    def setup(self, num_known: int, embedding_dim: int) -> None:
        super().setup(num_known, embedding_dim)
        self.queues = ClassQueues(num_known, embedding_dim, self.queue_size)
        self.register_buffer("means", torch.zeros(num_known, embedding_dim))
        self.register_buffer("precision", torch.eye(embedding_dim))

    def observe(self, embedding: Tensor, logits: Tensor, labels: Tensor) -> None:
        self.queues.push(embedding, labels)

    def fit(self) -> None:
        if self.queues.ready():
            means, covariance = self.queues.gaussians()
            self.means.copy_(means)
            self.precision.copy_(torch.linalg.inv(covariance))

    def distances(self, embedding: Tensor) -> Tensor:
        """(n, C) squared Mahalanobis distances to the class means."""
        delta = embedding[:, None, :] - self.means[None]
        return torch.einsum("ncd,de,nce->nc", delta, self.precision, delta)

    def unknown_score(self, candidates: Candidates) -> Tensor:
        return self.distances(candidates["embedding"]).amin(1)
