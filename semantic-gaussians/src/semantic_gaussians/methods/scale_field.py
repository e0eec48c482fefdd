"""Ours: one scale-conditioned feature field, where the query chooses the level (object or part).

The scale problem: a query for "car" wants the whole car, one for "wheel" a part of it, and one feature per point
cannot be both. LangSplat learns a separate field per level (3 x a 3-d latent and a scene autoencoder), Gaussian
Grouping one identity per object (no parts), Feature 3DGS one field at one level. Here each Gaussian carries a
single ``feature_dim``-d feature; the decoder takes the rendered feature *and a scale s* (0: object, 1: part,
GARField's idea of a scale-conditioned affinity, Kim et al. CVPR 2024, applied to distilled language features):
``D(f, s) = W2 relu(W1 [f; s] + b1) + b2`` per pixel (1 x 1 convolutions), trained with an L1 loss at both scales
every step (one render, two cheap decodes). A query is answered at both scales and the scale with the highest
relevancy wins (LangSplat's level choice), so one field, with no per-scene autoencoder, serves objects and parts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_gaussians.methods.splatting import GaussianSplatting


class ScaleConditionedGaussians(GaussianSplatting):
    """3DGS + one feature field decoded at a chosen scale (module docstring)."""

    def __init__(self, feature_dim: int = 16, hidden: int = 64, teacher_dim: int = 384,
                 levels: tuple[str, ...] = ("object", "part"), feature_weight: float = 1.0, **kwargs) -> None:
        self.feature_dim_, self.level_names = feature_dim, tuple(levels)
        super().__init__(**kwargs)
        self.decoder = nn.Sequential(nn.Conv2d(feature_dim + 1, hidden, 1), nn.ReLU(),
                                     nn.Conv2d(hidden, teacher_dim, 1))

    def extra_dim(self) -> int:
        return self.feature_dim_

    def decode(self, feature: Tensor, level: int) -> Tensor:
        """(D, h, w) decoded feature map of a rendered (F, h, w) map at scale ``level / (levels - 1)``."""
        s = level / max(len(self.level_names) - 1, 1)
        x = torch.cat([feature, feature.new_full((1, *feature.shape[1:]), s)])
        return self.decoder(x[None])[0]

    def extra_loss(self, extra: Tensor, batch: dict) -> Tensor:
        loss = extra.new_zeros(())
        for i, level in enumerate(self.level_names):
            target = batch["features"][level]
            low = F.interpolate(extra[None], size=target.shape[1:], mode="bilinear", align_corners=True)[0]
            loss = loss + self.hparams.feature_weight * F.l1_loss(self.decode(low, i), target)
        return loss

    def level_features(self, extra: Tensor) -> dict[str, Tensor]:
        return {level: F.normalize(self.decode(extra, i), dim=0) for i, level in enumerate(self.level_names)}
