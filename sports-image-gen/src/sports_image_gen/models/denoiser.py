"""The noise predictor of every method: diffusers' UNet2DConditionModel, with a ControlNet branch and GLIGEN grounding
tokens when a method asks for them. Everything is built from a config (``from_pretrained`` is never called: nothing
downloads).

- Text (DDPM + classifier-free guidance, Ho & Salimans 2022): the prompt's 384-d sentence embedding is projected
  and added to the timestep embedding (diffusers' ``class_embed_type="projection"``, as Imagen adds its pooled
  text embedding), and, in UNets with attention levels, it is also the one cross-attention token; a zero vector is
  the unconditional prompt. Attention levels default to 0: on 2 CPU cores the attention layers of even the
  lowest level (16 x 9) took a quarter of a training step (measured with the profiler; PyTorch's CPU attention
  backward is slow at these sizes), and one sentence token gives cross-attention nothing that the added embedding
  does not. The GLIGEN config and the GPU config have attention.
- Channel concatenation (the baseline of camera conditioning): the condition maps are stacked on the noisy image at
  the UNet's input (``in_channels`` grows).
- ControlNet (Zhang, Rao & Agrawala, "Adding Conditional Control to Text-to-Image Diffusion Models", ICCV 2023):
  diffusers' ``ControlNetModel.from_unet``, a trainable copy of the UNet's encoder and middle block whose outputs
  enter the UNet's skip connections through zero-initialised 1 x 1 convolutions, and whose condition enters through
  a small convolutional embedding with a zero-initialised output. Its default embedding downsamples the condition 8x
  (512 px images -> 64 px latents); in pixel space at 64 x 36 the condition must keep the image's resolution, so the
  embedding gets one stage (``conditioning_embedding_out_channels=(16,)``: conv, SiLU, zero conv, no stride), and
  for latents one stride-2 stage per factor 2 of the autoencoder.
- GLIGEN (Li et al., "GLIGEN: Open-Set Grounded Text-to-Image Generation", CVPR 2023): diffusers' gated
  self-attention (``attention_type="gated"``: a tanh gate initialised at 0 on attention over visual + grounding
  tokens) and its grounding-token MLP over a Fourier embedding of each entity's box (8 frequencies). Our entity is a
  player: its "box" is its pitch position (x, y) normalised to [0, 1] and written twice (x, y, x, y); its phrase
  embedding, GLIGEN's CLIP text of the entity, is here a learned linear map of its jersey colour and role.
"""

from __future__ import annotations

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from torch import Tensor, nn

TEXT_DIM = 384  # all-MiniLM-L6-v2


def build_unet(sample_size: tuple[int, int], in_channels: int, out_channels: int,
               block_out_channels: tuple[int, ...], attention_levels: int, gated: bool) -> UNet2DConditionModel:
    """A UNet with (cross-)attention on the ``attention_levels`` lowest resolutions only (0: none), the text added to
    the timestep embedding. With attention at 32 x 18 its backward took half of a CPU training step (measured)."""
    levels = len(block_out_channels)
    down = tuple("CrossAttnDownBlock2D" if i >= levels - attention_levels else "DownBlock2D" for i in range(levels))
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=out_channels, layers_per_block=1,
        block_out_channels=tuple(block_out_channels), down_block_types=down, up_block_types=up,
        cross_attention_dim=TEXT_DIM, attention_head_dim=32, norm_num_groups=8,
        attention_type="gated" if gated else "default", class_embed_type="projection",
        projection_class_embeddings_input_dim=TEXT_DIM)


class Denoiser(nn.Module):
    """``forward(x_t, t, text, concat, control, entities) -> predicted noise``.

    Args:
        sample_size: (height, width) of what is denoised (the image, or the autoencoder's latent).
        channels: channels of what is denoised (3 for RGB, the latent's channels otherwise).
        concat_channels: condition channels stacked at the input (0: none).
        control_channels: condition channels of the ControlNet branch (0: no branch).
        control_downsample: how much smaller than the condition maps ``x_t`` is (1 in pixel space).
        grounding: GLIGEN tokens from ``entities`` (a dict of ``xy`` (B, N, 2) in [0, 1], ``attributes``
            (B, N, A), ``mask`` (B, N)).
        entity_dim: A, the attributes of an entity (jersey RGB + role one-hot).
    """

    def __init__(self, sample_size: tuple[int, int] = (36, 64), channels: int = 3, concat_channels: int = 0,
                 control_channels: int = 0, control_downsample: int = 1, grounding: bool = False,
                 entity_dim: int = 6, block_out_channels: tuple[int, ...] = (32, 48, 64),
                 attention_levels: int = 0) -> None:
        super().__init__()
        self.unet = build_unet(tuple(sample_size), channels + concat_channels, channels, tuple(block_out_channels),
                               attention_levels, grounding)
        self.controlnet = None
        if control_channels:
            stages = (16, 32, 64, 128)[: int(control_downsample).bit_length()]
            source = self.unet
            if grounding:  # the branch copies the encoder without GLIGEN's gated layers (from_unet cannot map them)
                source = build_unet(tuple(sample_size), channels + concat_channels, channels,
                                    tuple(block_out_channels), attention_levels, gated=False)
                source.load_state_dict(self.unet.state_dict(), strict=False)
            self.controlnet = ControlNetModel.from_unet(source, conditioning_embedding_out_channels=stages,
                                                        conditioning_channels=control_channels)
        self.entity_embed = nn.Linear(entity_dim, TEXT_DIM) if grounding else None

    def forward(self, x_t: Tensor, t: Tensor, text: Tensor, concat: Tensor | None = None,
                control: Tensor | None = None, entities: dict[str, Tensor] | None = None) -> Tensor:
        tokens = text[:, None, :]
        if concat is not None:
            x_in = torch.cat([x_t, concat], 1)
        else:
            x_in = x_t
        kwargs = {}
        if self.controlnet is not None:
            down, mid = self.controlnet(x_t, t, tokens, controlnet_cond=control, class_labels=text, return_dict=False)
            kwargs = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        if self.entity_embed is not None:
            xy = entities["xy"]
            kwargs["cross_attention_kwargs"] = {"gligen": {
                "boxes": torch.cat([xy, xy], -1), "masks": entities["mask"].to(xy),
                "positive_embeddings": self.entity_embed(entities["attributes"])}}
        return self.unet(x_in, t, tokens, class_labels=text, **kwargs).sample
