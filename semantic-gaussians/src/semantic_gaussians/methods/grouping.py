"""Gaussian Grouping (Ye et al., "Gaussian Grouping: Segment and Edit Anything in 3D Scenes", ECCV 2024): each
Gaussian carries a 16-d identity encoding, rendered by the rasterizer, classified per pixel by a linear layer into
mask identities, and supervised by 2D instance masks that are consistent across views.

- Loss (their ``train.py``): 2D identity cross-entropy (weight 1) + the 3D regularisation: every ``reg3d_every``
  steps, for ``reg3d_sample`` random Gaussians, the KL divergence between the identity softmax of each and of its
  ``reg3d_k`` nearest Gaussians (weight 2); classifier of 256 identities (their ``num_classes``).
- Masks: their pipeline associates SAM masks across views with a video tracker (DEVA) and reads ``object_mask/``;
  here the proxy's instance ids (exactly consistent: a best case for the association step), or a COLMAP scene's
  ``object_mask/<image stem>.png``.
- Text queries: Gaussian Grouping selects identities with a text-grounded 2D detector on the render; here each
  identity gets the mean object-level teacher feature of its pixels in the training views (no labels used), and a
  pixel's feature is its identity probabilities times that table. One level: a part query can only find objects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_gaussians.methods.splatting import GaussianSplatting
from shared_utils.cli import ConfigFileError


class GroupingGaussians(GaussianSplatting):
    """3DGS + identity encodings (module docstring)."""

    def __init__(self, identity_dim: int = 16, num_ids: int = 256, teacher_dim: int = 384, level: str = "object",
                 identity_weight: float = 1.0, reg3d_weight: float = 2.0, reg3d_every: int = 2, reg3d_k: int = 5,
                 reg3d_sample: int = 1000, **kwargs) -> None:
        self.identity_dim, self.level = identity_dim, level
        super().__init__(**kwargs)
        self.classifier = nn.Conv2d(identity_dim, num_ids, kernel_size=1)
        self.register_buffer("id_features", torch.zeros(num_ids, teacher_dim))

    def extra_dim(self) -> int:
        return self.identity_dim

    def init_from_data(self, datamodule) -> None:
        """Each identity's text-aligned feature: the mean teacher feature over its training pixels."""
        num_ids, dim = self.id_features.shape
        sums, counts = torch.zeros(num_ids, dim), torch.zeros(num_ids)
        for view in datamodule.sets["train"]:
            if "instance" not in view:
                raise ConfigFileError(f"grouping needs instance masks: view {view['image_name']} has none (the "
                                      "synthetic street has them; a COLMAP scene needs object_mask/<image stem>.png)")
            target = view["features"][self.level]
            ids = F.interpolate(view["instance"][None, None].float(), size=target.shape[1:], mode="nearest")[0, 0]
            ids = ids.long().clamp(max=num_ids - 1).reshape(-1)
            sums.index_add_(0, ids, target.flatten(1).T)
            counts.index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))
        self.id_features.copy_(F.normalize(sums / counts.clamp(min=1)[:, None], dim=-1))

    def extra_loss(self, extra: Tensor, batch: dict) -> Tensor:
        logits = self.classifier(extra[None])
        ids = batch["instance"].clamp(max=self.classifier.out_channels - 1)[None]
        loss = self.hparams.identity_weight * F.cross_entropy(logits, ids)
        if self.global_step % self.hparams.reg3d_every == 0 and len(self.gaussians) > self.hparams.reg3d_k:
            loss = loss + self.hparams.reg3d_weight * self._reg3d()
        return loss

    def _reg3d(self) -> Tensor:
        """KL(p_i || p_j) between a sample of Gaussians and their k nearest neighbours (their ``loss_cls_3d``)."""
        g = self.gaussians
        n = min(self.hparams.reg3d_sample, len(g))
        idx = torch.randperm(len(g), device=g.means.device)[:n]
        means = g.means.detach()
        knn = torch.cdist(means[idx], means).topk(self.hparams.reg3d_k + 1, largest=False).indices[:, 1:]
        w = self.classifier.weight[:, :, 0, 0]
        logp = F.log_softmax(g.features[idx] @ w.T + self.classifier.bias, dim=-1)
        logq = F.log_softmax(g.features[knn] @ w.T + self.classifier.bias, dim=-1)
        return (logp.exp()[:, None] * (logp[:, None] - logq)).sum(-1).mean()

    def level_features(self, extra: Tensor) -> dict[str, Tensor]:
        probs = self.classifier(extra[None])[0].softmax(0)
        return {"object": F.normalize(torch.einsum("khw,kd->dhw", probs, self.id_features), dim=0)}
