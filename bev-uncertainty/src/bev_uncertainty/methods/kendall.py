"""Learned task weighting by homoscedastic uncertainty (Kendall, Gal & Cipolla, CVPR 2018).

The depth and segmentation losses are weighted by learned task variances. With s_i = log sigma_i^2,
their eq. 10 for classification losses gives

    L = exp(-s_seg) L_seg + s_seg / 2 + exp(-s_depth) L_depth + s_depth / 2

replacing BEVDepth's hand-set depth factor. The per-cell uncertainty at test is the softmax
entropy, as the baseline: what changes is the training balance between depth and segmentation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bev_uncertainty.methods.base import BEVSegmentation


class KendallWeighting(BEVSegmentation):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log_var = nn.Parameter(torch.zeros(2))  # (segmentation, depth)

    def combine_losses(self, seg: Tensor, depth: Tensor) -> Tensor:
        s_seg, s_depth = self.log_var
        return (-s_seg).exp() * seg + s_seg / 2 + (-s_depth).exp() * depth + s_depth / 2

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = super().training_step(batch, batch_idx)
        sigma2 = self.log_var.detach().exp()
        self.log_dict({"train/sigma2_seg": sigma2[0], "train/sigma2_depth": sigma2[1]})
        return loss
