"""Monodepth2 (Godard et al., "Digging Into Self-Supervised Monocular Depth Estimation", ICCV 2019), scaled down.

Self-supervised depth and ego-motion: a depth network predicts the disparity of the target frame, a pose network
the camera motion to each source frame; the source frames are warped into the target through the predicted depth
and pose, and the photometric reconstruction error trains both. Following the paper and its trainer.py/layers.py:

- ``DepthNet``: ResNet-like encoder (strides 2..32) and U-Net decoder with skip connections (3x3 reflection-padded
  convs + ELU, nearest upsampling), sigmoid disparities at scales 0..3 (full, 1/2, 1/4, 1/8 resolution);
- ``PoseNet``: the same encoder on two stacked frames, Monodepth2's ``PoseDecoder`` (squeeze 1x1, two 3x3, 1x1 to 6,
  spatial mean, x 0.01) giving axis-angle + translation;
- loss (``monodepth2_loss``): per-pixel minimum of the photometric error ``0.85 (1 - SSIM) / 2 + 0.15 L1`` over the
  source frames (handles occlusion, paper Sec. 3.3), auto-masking of pixels that an unwarped source already explains
  better (static camera, objects moving with the camera), edge-aware smoothness of the mean-normalised disparity
  (weight 1e-3, divided by 2^scale), multi-scale with every disparity upsampled to full resolution before warping
  (the paper's "full-res multi-scale").

Scaled down for 64 x 192 images on a CPU: one residual block per stage with widths 16/16/32/64/128 (ResNet18: two
blocks, 64/64/128/256/512), decoder widths 8/8/16/32/64 (Monodepth2: 16/32/64/128/256), pose decoder width 64 (256).
No ImageNet initialisation (nothing is downloaded). Image sides must be multiples of 32 and at least 64 (the
decoder's reflection padding needs 2 x 2 cells at 1/32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_motion_flow.geometry import pixel_grid, rigid_flow, warp

ENCODER_WIDTHS = (16, 16, 32, 64, 128)  # strides 2, 4, 8, 16, 32
DECODER_WIDTHS = (8, 8, 16, 32, 64)     # at strides 1, 2, 4, 8, 16
NUM_SCALES = 4


class BasicBlock(nn.Module):
    """ResNet basic block (He et al., CVPR 2016): two 3x3 conv + BN, identity or 1x1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """ResNet layout (7x7/2 conv, 3x3/2 max-pool, four stages) with one block per stage.
    Returns the five feature maps at strides 2, 4, 8, 16, 32 (Monodepth2's ``ResnetEncoder``)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = ENCODER_WIDTHS) -> None:
        super().__init__()
        self.widths = widths
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU())
        self.stages = nn.ModuleList([nn.Sequential(nn.MaxPool2d(3, 2, 1), BasicBlock(widths[0], widths[1], 1))] +
                                    [BasicBlock(widths[i - 1], widths[i], 2) for i in range(2, 5)])

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


def conv3x3(c_in: int, c_out: int) -> nn.Sequential:
    """Monodepth2's ``Conv3x3``: reflection padding (fewer border artefacts than zeros) + 3x3 conv."""
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3))


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Monodepth2's ``ConvBlock``: ``conv3x3`` + ELU."""
    return nn.Sequential(conv3x3(c_in, c_out), nn.ELU())


class DepthDecoder(nn.Module):
    """Monodepth2's ``DepthDecoder`` with ``out_channels`` raw outputs (no activation) at scales 0..3.

    From stride 32 up: conv block, nearest x2 upsampling, concatenation with the encoder feature of the same stride
    (none at full resolution), conv block; an output conv at strides 8, 4, 2, 1. Returns a list indexed by scale
    (0 = full resolution).
    """

    def __init__(self, encoder_widths: tuple[int, ...], out_channels: int,
                 widths: tuple[int, ...] = DECODER_WIDTHS) -> None:
        super().__init__()
        self.up0 = nn.ModuleList()
        self.up1 = nn.ModuleList()
        for i in range(4, -1, -1):
            c_in = encoder_widths[-1] if i == 4 else widths[i + 1]
            self.up0.append(conv_block(c_in, widths[i]))
            self.up1.append(conv_block(widths[i] + (encoder_widths[i - 1] if i > 0 else 0), widths[i]))
        self.heads = nn.ModuleList([conv3x3(widths[s], out_channels) for s in range(NUM_SCALES)])

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        x = features[-1]
        outputs = {}
        for up0, up1, i in zip(self.up0, self.up1, range(4, -1, -1)):
            x = F.interpolate(up0(x), scale_factor=2, mode="nearest")
            x = up1(torch.cat([x, features[i - 1]], 1) if i > 0 else x)
            if i < NUM_SCALES:
                outputs[i] = self.heads[i](x)
        return [outputs[s] for s in range(NUM_SCALES)]


def normalise(image: Tensor) -> Tensor:
    """Monodepth2's input normalisation of [0, 1] images (ImageNet-like mean 0.45, std 0.225)."""
    return (image - 0.45) / 0.225


class DepthNet(nn.Module):
    """``forward(image) -> [disp_0, ..., disp_3]``: sigmoid disparities B x 1 x H/2^s x W/2^s, s = 0..3.
    Map them to depth with :func:`disp_to_depth`."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(3)
        self.decoder = DepthDecoder(self.encoder.widths, 1)

    def forward(self, image: Tensor) -> list[Tensor]:
        return [torch.sigmoid(d) for d in self.decoder(self.encoder(normalise(image)))]


class PoseNet(nn.Module):
    """``forward(image_a, image_b) -> B x 6`` (axis-angle, translation), Monodepth2's separate ResNet pose network.

    ``geometry.pose_vec_to_mat`` of the output is the transform T with X_b = T @ X_a: fed ``(image1, image2)`` it
    predicts INTERFACE.md's T_21. Monodepth2 always feeds a pair in temporal order and inverts the result for past
    source frames (``invert=(frame_id < 0)``); do the same (``torch.linalg.inv``) for a source that precedes the
    target. The decoder output is scaled by 0.01 so that the initial motion is small (Monodepth2's PoseDecoder).
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(6)
        self.decoder = nn.Sequential(nn.Conv2d(self.encoder.widths[-1], width, 1), nn.ReLU(),
                                     nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
                                     nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
                                     nn.Conv2d(width, 6, 1))

    def forward(self, image_a: Tensor, image_b: Tensor) -> Tensor:
        features = self.encoder(normalise(torch.cat([image_a, image_b], 1)))[-1]
        return 0.01 * self.decoder(features).mean((2, 3))


def disp_to_depth(disp: Tensor, min_depth: float = 0.1, max_depth: float = 100.0) -> tuple[Tensor, Tensor]:
    """Sigmoid output -> (scaled disparity, depth), depth in [min_depth, max_depth] (Monodepth2's layers.py)."""
    min_disp = 1 / max_depth
    max_disp = 1 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    depth = 1 / scaled_disp
    return scaled_disp, depth


class SSIM(nn.Module):
    """Per-pixel structural similarity (Wang et al., TIP 2004) as Monodepth2 computes it: 3x3 mean filter over a
    reflection-padded image, C1 = 0.01^2, C2 = 0.03^2. Returns the SSIM map (1 for identical images); Monodepth2's
    class returns the dissimilarity ``clamp((1 - SSIM) / 2, 0, 1)``, computed here in :func:`photometric_error`."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Sequential(nn.ReflectionPad2d(1), nn.AvgPool2d(3, 1))
        self.C1 = 0.01 ** 2
        self.C2 = 0.03 ** 2

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        mu_x, mu_y = self.pool(x), self.pool(y)
        sigma_x = self.pool(x ** 2) - mu_x ** 2
        sigma_y = self.pool(y ** 2) - mu_y ** 2
        sigma_xy = self.pool(x * y) - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + self.C1) * (2 * sigma_xy + self.C2)
        denominator = (mu_x ** 2 + mu_y ** 2 + self.C1) * (sigma_x + sigma_y + self.C2)
        return numerator / denominator


_ssim = SSIM()


def photometric_error(pred: Tensor, target: Tensor) -> Tensor:
    """Monodepth2's ``compute_reprojection_loss``: ``0.85 (1 - SSIM) / 2 + 0.15 |pred - target|``, each averaged
    over the colour channels; B x 1 x H x W."""
    l1 = (pred - target).abs().mean(1, keepdim=True)
    dssim = ((1 - _ssim(pred, target)) / 2).clamp(0, 1).mean(1, keepdim=True)
    return 0.85 * dssim + 0.15 * l1


def get_smooth_loss(disp: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness (Monodepth2's layers.py, from Godard et al. CVPR 2017): first differences of ``disp``,
    down-weighted by ``exp(-|image gradient|)`` so that depth may jump at image edges. Averaged over all channels of
    ``disp`` (GeoNet's flow smoothness is this with the two flow channels)."""
    grad_disp_x = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    grad_disp_y = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    grad_img_x = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    grad_img_y = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()


def warp_border(image: Tensor, flow: Tensor) -> Tensor:
    """``geometry.warp`` with the correspondences clamped to the image: ``grid_sample(padding_mode="border")``, which
    Monodepth2 and GeoNet use, instead of zeros (a black border would dominate the error under forward motion)."""
    _, _, H, W = image.shape
    target = pixel_grid(H, W, flow.device, flow.dtype) + flow
    clamped = torch.stack([target[:, 0].clamp(0, W - 1), target[:, 1].clamp(0, H - 1)], 1)
    return warp(image, flow + (clamped - target))[0]


def monodepth2_loss(target: Tensor, sources: Sequence[Tensor], disps: Sequence[Tensor], poses: Sequence[Tensor],
                    K: Tensor, min_depth: float = 0.1, max_depth: float = 100.0,
                    smoothness_weight: float = 1e-3) -> tuple[Tensor, dict[str, Tensor]]:
    """Monodepth2's self-supervised loss for one target frame (trainer.py ``compute_losses``).

    target: B x 3 x H x W; sources: list of B x 3 x H x W frames (Monodepth2: frames -1 and +1); disps: DepthNet's
    sigmoid disparities of the target, scales 0..3; K: B x 3 x 3 at full resolution.
    poses[j]: B x 4 x 4, the motion from the target camera to source j, X_source = poses[j] @ X_target (Monodepth2's
    ``cam_T_cam``). In INTERFACE.md's terms, with frame 1 = target and frame 2 = source: poses[j] = T_21. For a pair
    (image1, image2) with target image1, pass T_21; for the reverse pair (target image2, source image1), pass
    inv(T_21) with the disparities of image2.

    Per scale s: the disparity is upsampled to H x W, turned into depth (:func:`disp_to_depth`), each source is
    warped into the target by the rigid flow; per pixel, the minimum over [identity errors of the unwarped sources
    (+ N(0, 1e-5) noise to break ties), reprojection errors] is averaged; plus ``smoothness_weight / 2^s`` times the
    smoothness of the mean-normalised disparity against the target downsampled to that scale (area interpolation).
    The loss is the mean over scales.

    Returns (loss, parts): ``photometric`` and ``smoothness`` (scale-averaged, weighted: they sum to the loss) and
    ``automask`` (B x H x W bool at scale 0: True where a reprojection beat every identity error, i.e. the pixel
    trains depth and pose; Monodepth2's ``identity_selection``).
    """
    H, W = target.shape[-2:]
    identity = torch.cat([photometric_error(source, target) for source in sources], 1)
    photometric, smoothness = target.new_zeros(()), target.new_zeros(())
    automask = None
    for scale, disp in enumerate(disps):
        _, depth = disp_to_depth(F.interpolate(disp, (H, W), mode="bilinear", align_corners=False),
                                 min_depth, max_depth)
        reprojection = [photometric_error(warp_border(source, rigid_flow(depth, K, pose)[0]), target)
                        for source, pose in zip(sources, poses)]
        combined = torch.cat([identity + torch.randn_like(identity) * 1e-5, *reprojection], 1)
        to_optimise, index = combined.min(1)
        photometric = photometric + to_optimise.mean()
        if scale == 0:
            automask = index >= identity.shape[1]

        color = target if disp.shape[-2:] == (H, W) else F.interpolate(target, disp.shape[-2:], mode="area")
        norm_disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
        smoothness = smoothness + smoothness_weight * get_smooth_loss(norm_disp, color) / 2 ** scale
    photometric, smoothness = photometric / len(disps), smoothness / len(disps)
    return photometric + smoothness, {"photometric": photometric.detach(), "smoothness": smoothness.detach(),
                                      "automask": automask}
