"""GeoNet's ResFlowNet stage (Yin & Shi, "GeoNet: Unsupervised Learning of Dense Depth, Optical Flow and Camera
Pose", CVPR 2018), scaled down.

GeoNet explains the flow in two stages: the rigid flow of the static scene (from DepthNet's depth and PoseNet's camera
motion, here ``monodepth.DepthNet`` / ``PoseNet`` and ``geometry.rigid_flow``), then ResFlowNet, which predicts the
residual flow of what the rigid model misses (moving objects, depth errors). Full flow = rigid flow + residual, and
the residual is where the object motion shows. ResFlowNet sees frame 1, frame 2, the rigid flow, frame 2 warped by
the rigid flow and the photometric error of that warp, so it knows where the rigid explanation fails (paper Sec. 3.3).

Architecture: the encoder-decoder of ``monodepth`` (ResNet-like encoder, skip-connected U-Net decoder) on the 12
input channels, 2 linear output channels at scales 0..3. As in GeoNet's ``get_flow`` the outputs are flows in units
of the image size times 0.1 (FLOW_SCALING), so they start small and mean the same at every scale.

Loss (``geonet_flow_loss``), GeoNet's ``train_flow`` mode for the forward direction: photometric error
``0.85 (1 - SSIM) / 2 + 0.15 L1`` of frame 2 warped by the full flow, plus edge-aware smoothness of the full flow
weighted ``0.2 / 2^(s+1)``, summed over scales. Deviations: every scale's residual is upsampled to full resolution
and the loss computed there (Monodepth2's multi-scale, as this project's ``monodepth2_loss``; GeoNet computes each
scale at its own resolution); SSIM with reflection padding (Monodepth2's) rather than GeoNet's zero 'SAME' padding;
the error input is the channel mean of the photometric error (GeoNet: its L2 norm over channels); the rigid flow
input is in units of the image size, as the output (GeoNet: pixels). GeoNet's forward-backward consistency check
(occlusion mask + consistency loss, optional in GeoNet, weight ``flow_consistency_weight``) is skipped: it needs the
backward flow, i.e. a second pass on every pair.

GeoNet trains this stage with DepthNet and PoseNet frozen: pass a detached ``rigid_flow``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_motion_flow.models.monodepth import (
    DepthDecoder,
    ResNetEncoder,
    get_smooth_loss,
    normalise,
    photometric_error,
    warp_border,
)

FLOW_SCALING = 0.1  # GeoNet's get_flow: the output is 0.1 x conv, in units of the image width / height


class ResFlowNet(nn.Module):
    """``forward(image1, image2, rigid_flow) -> [residual_0, ..., residual_3]``, each B x 2 x H x W in pixels
    (scale s predicted at 1/2^s resolution, upsampled bilinearly). Full flow: ``rigid_flow + residual_0``.
    H and W: multiples of 32, at least 64."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(12)
        self.decoder = DepthDecoder(self.encoder.widths, 2)

    def forward(self, image1: Tensor, image2: Tensor, rigid_flow: Tensor) -> list[Tensor]:
        H, W = image1.shape[-2:]
        size = torch.tensor([W, H], dtype=image1.dtype, device=image1.device).view(1, 2, 1, 1)
        warped = warp_border(image2, rigid_flow)
        x = torch.cat([normalise(image1), normalise(image2), rigid_flow / size, normalise(warped),
                       photometric_error(warped, image1)], 1)
        return [FLOW_SCALING * size * F.interpolate(out, (H, W), mode="bilinear", align_corners=False)
                for out in self.decoder(self.encoder(x))]


def geonet_flow_loss(image1: Tensor, image2: Tensor, rigid_flow: Tensor, residual_flows: list[Tensor],
                     smoothness_weight: float = 0.2) -> tuple[Tensor, dict[str, Tensor]]:
    """GeoNet's flow loss (forward direction): sum over scales s of ``mean photometric_error(warp(image2, F_s),
    image1) + smoothness_weight / 2^(s+1) * get_smooth_loss(F_s, image1)`` with F_s = rigid_flow + residual_s.

    Returns (loss, {"photometric", "smoothness"}), the two sums (they add up to the loss).
    """
    photometric, smoothness = image1.new_zeros(()), image1.new_zeros(())
    for scale, residual in enumerate(residual_flows):
        flow = rigid_flow + residual
        photometric = photometric + photometric_error(warp_border(image2, flow), image1).mean()
        smoothness = smoothness + smoothness_weight / 2 ** (scale + 1) * get_smooth_loss(flow, image1)
    return photometric + smoothness, {"photometric": photometric.detach(), "smoothness": smoothness.detach()}
