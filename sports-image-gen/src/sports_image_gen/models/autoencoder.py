"""The latent variant's autoencoder (Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models",
CVPR 2022): diffusers' ``AutoencoderKL`` built from a config and trained here (nothing pretrained), with the paper's
KL-regularised objective reduced to what a small proxy needs: L1 reconstruction + a small KL weight (the paper adds a
perceptual and a patch-GAN loss for sharp 256 px images; we leave them out and say so in the README).

Each ``block_out_channels`` entry after the first halves the resolution: (32, 64, 64) -> 4x smaller latents
(64 x 36 -> 16 x 9 x ``latent_channels``)."""

from __future__ import annotations

from diffusers import AutoencoderKL


def build_autoencoder(block_out_channels: tuple[int, ...] = (32, 64, 64), latent_channels: int = 4) -> AutoencoderKL:
    levels = len(block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                         up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=tuple(block_out_channels),
                         latent_channels=latent_channels, layers_per_block=1, norm_num_groups=8,
                         sample_size=256)
