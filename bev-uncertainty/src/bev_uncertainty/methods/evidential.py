"""Evidential (Dirichlet) BEV segmentation with the UCE loss.

The head outputs non-negative evidence e_c = softplus(z_c) per class; alpha = e + 1 parametrises a
Dirichlet over the cell's class probabilities (Sensoy et al., NeurIPS 2018). Training minimises the
uncertainty-aware cross-entropy, the expected cross-entropy under the Dirichlet (Bilos et al. 2019;
Charpentier et al., Posterior Network, NeurIPS 2020), used for BEV by Yu et al. (ICLR 2025):

    UCE = sum_c y_c (digamma(S) - digamma(alpha_c)),  S = sum_c alpha_c

minus ``entropy_weight`` times the Dirichlet's entropy (PostNet's regulariser, against
overconfident evidence). The optional OOD regulariser (``ood_weight`` > 0) pushes the evidence of
pseudo-OOD cells (the BEV channel ``pseudo_ood_channel``, default 1 = pedestrians, stand-ins for
objects that are not vehicles) towards none, with the KL to the prior Dirichlet (Sensoy et al. eq. 5).

Prior: alpha = e + 1, the flat Dirichlet of Sensoy et al. (the default, as Yu et al.). With
``vehicle_prior`` = pi the K = 2 prior pseudo-counts are split by the class base rate,
alpha = e + 2 (1 - pi, pi), as Posterior Networks' class-count prior (Charpentier et al. 2020): a cell
with no evidence then predicts the base rate (mostly background) instead of 50 / 50, while its vacuity
K / S is still 1.

Scores: ``prob`` = alpha_vehicle / S; ``uncertainty`` = entropy of that expected distribution (aleatoric
plus epistemic, for misclassification); ``ood_score`` = vacuity K / S (lack of evidence, for OOD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bev_uncertainty.methods.base import BEVSegmentation, binary_entropy
from bev_uncertainty.models.lss import LiftSplat


def dirichlet_entropy(alpha: Tensor, dim: int = 1) -> Tensor:
    """Differential entropy of Dir(alpha) along ``dim``."""
    s = alpha.sum(dim)
    k = alpha.shape[dim]
    log_beta = torch.lgamma(alpha).sum(dim) - torch.lgamma(s)
    return log_beta + (s - k) * torch.digamma(s) - ((alpha - 1) * torch.digamma(alpha)).sum(dim)


def kl_dirichlet(alpha: Tensor, beta: Tensor, dim: int = 1) -> Tensor:
    """KL(Dir(alpha) || Dir(beta)) along ``dim`` (Sensoy et al. 2018 use beta = 1, eq. 5's regulariser)."""
    beta = beta.expand_as(alpha)
    s_alpha, s_beta = alpha.sum(dim), beta.sum(dim)
    return (torch.lgamma(s_alpha) - torch.lgamma(s_beta) - (torch.lgamma(alpha) - torch.lgamma(beta)).sum(dim)
            + ((alpha - beta) * (torch.digamma(alpha) - torch.digamma(s_alpha).unsqueeze(dim))).sum(dim))


class Evidential(BEVSegmentation):
    def __init__(self, model: LiftSplat, entropy_weight: float = 1e-5, ood_weight: float = 0.0,
                 pseudo_ood_channel: int = 1, vehicle_prior: float | None = None, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.entropy_weight, self.ood_weight, self.pseudo_ood_channel = entropy_weight, ood_weight, pseudo_ood_channel
        if vehicle_prior is not None and not 0 < vehicle_prior < 1:
            raise ValueError(f"vehicle_prior must be in (0, 1) (the vehicle base rate), got {vehicle_prior}")
        prior = [1.0, 1.0] if vehicle_prior is None else [2 * (1 - vehicle_prior), 2 * vehicle_prior]
        self.register_buffer("prior", torch.tensor(prior).view(1, 2, 1, 1), persistent=False)

    def alpha(self, out: dict[str, Tensor]) -> Tensor:
        """(B, 2, H, W) Dirichlet parameters: evidence plus the prior pseudo-counts."""
        return F.softplus(out["logits"][:, :2]) + self.prior

    def segmentation_loss(self, out: dict[str, Tensor], batch: dict) -> Tensor:
        alpha = self.alpha(out)
        target = self.target(batch)
        uce = torch.digamma(alpha.sum(1)) - torch.digamma(alpha.gather(1, target[:, None])[:, 0])
        weight = self.class_weight[target]
        loss = self.masked_mean(uce * weight, batch["valid"]) / self.masked_mean(weight, batch["valid"])
        loss = loss - self.entropy_weight * self.masked_mean(dirichlet_entropy(alpha), batch["valid"])
        if self.ood_weight > 0:
            pseudo_ood = (batch["bev"][:, self.pseudo_ood_channel] > 0.5) & batch["valid"]
            loss = loss + self.ood_weight * self.masked_mean(kl_dirichlet(alpha, self.prior), pseudo_ood)
        return loss

    def scores(self, alpha: Tensor) -> dict[str, Tensor]:
        s = alpha.sum(1)
        prob = alpha[:, 1] / s
        return {"prob": prob, "uncertainty": binary_entropy(prob), "ood_score": alpha.shape[1] / s}

    def predict(self, batch: dict) -> dict[str, Tensor]:
        return self.scores(self.alpha(self(batch)))
