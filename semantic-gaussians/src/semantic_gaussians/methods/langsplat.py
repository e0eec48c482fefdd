"""LangSplat (Qin et al., "LangSplat: 3D Language Gaussian Splatting", CVPR 2024): a scene-specific autoencoder
compresses the 2D language features to a 3-d latent, and the Gaussians learn one latent field per level.

- Autoencoder (their ``autoencoder/model.py``): encoder Linear layers 384 -> 256 -> 128 -> 64 -> 32 -> 3 and decoder
  3 -> 16 -> 32 -> 64 -> 128 -> 256 -> 256 -> 384 (their dims, with our 384-d teacher for CLIP's 512), BatchNorm +
  ReLU between layers, both outputs L2-normalised; trained on the training views' features of every level with
  their loss ``L2 + 0.001 (1 - cos)`` before the Gaussians (here ``ae_steps`` Adam steps on random pixels).
- Language field: a 3-d latent per Gaussian and level, rendered by the rasterizer; L1 against the encoded teacher
  map at the teacher's resolution. At query time the rendered latent is decoded back to 384-d.

Departures from the paper, for a CPU budget: the levels share one model (LangSplat trains one 3DGS per SAM level,
with geometry and colour frozen from a pretrained RGB 3DGS; here geometry, colour and both latents train jointly)
and the levels are the proxy's object and part features, not SAM's whole / part / subpart masks with CLIP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semantic_gaussians.methods.splatting import GaussianSplatting


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(dims[0], dims[1])]
    for a, b in zip(dims[1:], dims[2:]):
        layers += [nn.BatchNorm1d(a), nn.ReLU(), nn.Linear(a, b)]
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """LangSplat's scene autoencoder (module docstring); ``encode`` / ``decode`` work on (..., D) rows."""

    def __init__(self, dim: int = 384, latent: int = 3) -> None:
        super().__init__()
        self.encoder = _mlp([dim, 256, 128, 64, 32, latent])
        self.decoder = _mlp([latent, 16, 32, 64, 128, 256, 256, dim])

    def encode(self, x: Tensor) -> Tensor:
        return F.normalize(self.encoder(x), dim=-1)

    def decode(self, z: Tensor) -> Tensor:
        return F.normalize(self.decoder(z), dim=-1)


class LangSplatGaussians(GaussianSplatting):
    """3DGS + one 3-d language latent per level (module docstring)."""

    def __init__(self, levels: tuple[str, ...] = ("object", "part"), latent_dim: int = 3, teacher_dim: int = 384,
                 ae_steps: int = 1500, ae_batch: int = 2048, feature_weight: float = 1.0, **kwargs) -> None:
        self.level_names, self.latent_dim = tuple(levels), latent_dim
        super().__init__(**kwargs)
        self.autoencoder = Autoencoder(teacher_dim, latent_dim)

    def extra_dim(self) -> int:
        return self.latent_dim * len(self.level_names)

    def network_lr(self) -> float:
        return 0.0  # the autoencoder is fitted before the Gaussians and then fixed

    def init_from_data(self, datamodule) -> None:
        """Fit the autoencoder on the training views' features (all levels), as LangSplat does first."""
        rows = torch.cat([view["features"][level].flatten(1).T for view in datamodule.sets["train"]
                          for level in self.level_names])
        opt = torch.optim.Adam(self.autoencoder.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(0)
        self.autoencoder.train()
        for _ in range(self.hparams.ae_steps):
            x = rows[torch.randint(len(rows), (self.hparams.ae_batch,), generator=gen)].to(self.device)
            x = F.normalize(x, dim=-1)
            y = self.autoencoder.decode(self.autoencoder.encode(x))
            loss = F.mse_loss(y, x) + 1e-3 * (1 - F.cosine_similarity(y, x, dim=-1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.autoencoder.eval()
        for p in self.autoencoder.parameters():
            p.requires_grad_(False)

    def _encoded(self, target: Tensor) -> Tensor:
        with torch.no_grad():
            flat = F.normalize(target.flatten(1).T, dim=-1)
            return self.autoencoder.encode(flat).T.reshape(self.latent_dim, *target.shape[1:])

    def extra_loss(self, extra: Tensor, batch: dict) -> Tensor:
        loss = extra.new_zeros(())
        for i, level in enumerate(self.level_names):
            target = self._encoded(batch["features"][level])
            latent = extra[i * self.latent_dim:(i + 1) * self.latent_dim]
            low = F.interpolate(latent[None], size=target.shape[1:], mode="bilinear", align_corners=True)[0]
            loss = loss + self.hparams.feature_weight * F.l1_loss(low, target)
        return loss

    def level_features(self, extra: Tensor) -> dict[str, Tensor]:
        out = {}
        for i, level in enumerate(self.level_names):
            latent = extra[i * self.latent_dim:(i + 1) * self.latent_dim]
            decoded = self.autoencoder.decode(latent.flatten(1).T)
            out[level] = decoded.T.reshape(-1, *latent.shape[1:])
        return out
