"""Heteroscedastic aleatoric logits (Kendall & Gal, "What Uncertainties Do We Need in Bayesian Deep Learning
for Computer Vision?", NeurIPS 2017, section 3.3).

The head predicts, per cell and class, a logit f_c and a log variance s_c. Training corrupts the
logits with Gaussian noise, x_t = f + exp(s / 2) * eps_t, t = 1..T, and minimises eq. 12:

    L = -log (1/T) sum_t softmax(x_t)[y]

(class-weighted as the baseline). At test the predictive probability is the mean softmax over T
noise draws, and its entropy is the uncertainty (misclassification, AUSE and OOD). Kendall & Gal
use T = 50 for training; 25 here keeps the CPU step cheap (the loss changes little beyond ~20).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bev_uncertainty.methods.base import BEVSegmentation, binary_entropy
from bev_uncertainty.models.lss import LiftSplat


class AleatoricLogits(BEVSegmentation):
    # The noise draws of the prediction; a checkpoint can be evaluated with more (or fewer) than it trained with.
    test_time_hparams = ("samples",)

    def __init__(self, model: LiftSplat, samples: int = 25, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if model.bev_encoder.head.out_channels != 4:
            raise ValueError("AleatoricLogits needs model.init_args.out_channels: 4 (2 logits + 2 log variances)")
        self.samples = samples

    def sample_logits(self, logits: Tensor) -> Tensor:
        """(B, 4, H, W) -> (T, B, 2, H, W) noisy logits."""
        mean, log_var = logits[:, :2], logits[:, 2:4].clamp(-10, 10)
        noise = torch.randn(self.samples, *mean.shape, device=mean.device, dtype=mean.dtype)
        return mean + (log_var / 2).exp() * noise

    def segmentation_loss(self, out: dict[str, Tensor], batch: dict) -> Tensor:
        log_prob = self.sample_logits(out["logits"]).log_softmax(2)  # (T, B, 2, H, W)
        log_mean = torch.logsumexp(log_prob, 0) - math.log(self.samples)
        target = self.target(batch)
        nll = -log_mean.gather(1, target[:, None])[:, 0]
        return self.masked_mean(nll * self.class_weight[target], batch["valid"]) / self.masked_mean(
            self.class_weight[target], batch["valid"])

    def predict(self, batch: dict) -> dict[str, Tensor]:
        prob = self.sample_logits(self(batch)["logits"]).softmax(2)[:, :, 1].mean(0)
        entropy = binary_entropy(prob)
        return {"prob": prob, "uncertainty": entropy, "ood_score": entropy}
