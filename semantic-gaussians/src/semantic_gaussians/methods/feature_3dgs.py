"""Feature 3DGS (Zhou et al., "Feature 3DGS: Supercharging 3D Gaussian Splatting to Enable Distilled Feature
Fields", CVPR 2024): distil a 2D foundation model's features into the Gaussians.

Each Gaussian carries a ``feature_dim``-d feature, composited by the same rasterizer as the colour (one pass: the
colour and the feature are channels of one render). The paper's "speed-up module": the rendered low-dimensional
map is decoded to the teacher's dimension by a 1 x 1 convolution, and the loss is the L1 distance to the teacher's
feature map at the teacher's resolution (the rendered map is bilinearly resized to it, ``align_corners=True`` as in
their code), weight 1, added to 3DGS's colour loss; geometry receives gradients from both. One level of features
(``level``: "object" on the proxy, "image" for Lite0 features or a plain .npy layout): a part query can only use
the object-level field, which is the scale problem this project studies.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from semantic_gaussians.methods.splatting import GaussianSplatting


class FeatureGaussians(GaussianSplatting):
    """3DGS + a distilled feature field (module docstring); other arguments: ``GaussianSplatting``."""

    def __init__(self, feature_dim: int = 16, teacher_dim: int = 384, level: str = "object",
                 feature_weight: float = 1.0, **kwargs) -> None:
        self.feature_dim_, self.level = feature_dim, level
        super().__init__(**kwargs)
        self.decoder = nn.Conv2d(feature_dim, teacher_dim, kernel_size=1)

    def extra_dim(self) -> int:
        return self.feature_dim_

    def extra_loss(self, extra: Tensor, batch: dict) -> Tensor:
        target = batch["features"][self.level]
        low = F.interpolate(extra[None], size=target.shape[1:], mode="bilinear", align_corners=True)
        return self.hparams.feature_weight * F.l1_loss(self.decoder(low)[0], target)

    def level_features(self, extra: Tensor) -> dict[str, Tensor]:
        if self.level == "image":  # image features (Lite0, a plain .npy layout) are not text-aligned: no queries
            return {}
        return {self.level: F.normalize(self.decoder(extra[None])[0], dim=0)}
