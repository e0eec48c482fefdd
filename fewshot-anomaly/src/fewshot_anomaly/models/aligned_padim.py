"""Aligned PaDiM: PaDiM on images registered to a normal reference first (this project's method).

PaDiM's statistics are per position (i, j): they assume the object sits at the same place in
every image. When parts move or rotate between images (a board placed by hand, a screw on a
conveyor), the Gaussian of a position mixes background and part, its covariance inflates and
small defects drown in it, while a normal but shifted object lights up. Registration removes
the pose before the statistics are taken:

1. the first normal training image is the reference R;
2. every image I (training and test) is registered to R with a Euclidean warp W (rotation +
   translation) that maximises the ECC criterion of Evangelidis & Psarakis (TPAMI 2008,
   ``cv2.findTransformECC``) on blurred grey images at ``align_size`` pixels, from the
   identity (measured on the synthetic objects, +-15 degrees and +-8% shifts: mean rotation
   error 0.1-0.2 degrees; a phase-correlation start was worse, 13 degrees);
3. PaDiM fits and scores the warped image I(W x), borders filled by reflection;
4. the anomaly map is warped back with W^-1 to the frame of the input image, so that it
   overlays the input and its ground-truth mask.

Geometry (the warp) is estimated by classical image alignment; appearance (the per-position
Gaussians on ImageNet features) by deep features: the coupling the topic asks for. When ECC
does not converge the image is used as it is (identity warp). On stationary textures
alignment has nothing to remove and the method reduces to PaDiM on shifted crops.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot_anomaly.models.padim import PaDiM


def warp_images(images: Tensor, warps: Tensor, padding_mode: str = "reflection") -> Tensor:
    """Resample (B, C, H, W) images at W [x, y, 1] for every output pixel (x, y): the warps are
    (B, 2, 3) pixel-coordinate affine maps from the output frame to the input frame."""
    b, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=images.dtype, device=images.device),
                            torch.arange(w, dtype=images.dtype, device=images.device), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, -1, 3)  # (1, HW, 3)
    mapped = points @ warps.to(images).transpose(1, 2)  # (B, HW, 2) input pixel coordinates
    grid = torch.stack([(2 * mapped[..., 0] + 1) / w - 1, (2 * mapped[..., 1] + 1) / h - 1], dim=-1)
    return F.grid_sample(images, grid.view(b, h, w, 2), mode="bilinear", padding_mode=padding_mode,
                         align_corners=False)


def invert_warps(warps: Tensor) -> Tensor:
    """Inverse of (B, 2, 3) affine maps."""
    full = torch.cat([warps, warps.new_tensor([0, 0, 1]).expand(len(warps), 1, 3)], dim=1)
    return torch.linalg.inv(full)[:, :2]


class AlignedPaDiM(PaDiM):
    """PaDiM after registration to a normal reference image.

    Args (besides PaDiM's):
        align_size: side of the grey images the warp is estimated on.
        iterations, eps: ECC stopping criteria.
    """

    fitted_buffers = (*PaDiM.fitted_buffers, "reference")

    def __init__(self, backbone: str = "efficientnet_lite0", weights: str | None = "imagenet",
                 strides: Sequence[int] = (4, 8, 16), d: int = 100, epsilon: float = 0.01, sigma: float = 4.0,
                 seed: int = 0, align_size: int = 64, iterations: int = 100, eps: float = 1e-5) -> None:
        super().__init__(backbone, weights, strides, d, epsilon, sigma, seed)
        self.align_size, self.iterations, self.eps = align_size, iterations, eps
        self.register_buffer("reference", torch.empty(0))

    def _grey(self, images: Tensor) -> np.ndarray:
        """(B, 3, H, W) -> (B, s, s) blurred float32 grey images for alignment."""
        grey = F.interpolate(images.mean(dim=1, keepdim=True).float(), size=(self.align_size,) * 2,
                             mode="area")[:, 0].cpu().numpy()
        return np.stack([cv2.GaussianBlur(g, (5, 5), 1.0) for g in grey])

    def register(self, images: Tensor) -> Tensor:
        """(B, 2, 3) warps from the reference frame to each image, in the images' pixel units."""
        reference = self.reference.cpu().numpy()
        scale = images.shape[-1] / self.align_size
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, self.iterations, self.eps)
        warps = []
        for grey in self._grey(images):
            warp = np.eye(2, 3, dtype=np.float32)
            try:
                _, warp = cv2.findTransformECC(reference, grey, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 1)
            except cv2.error:
                warp = np.eye(2, 3, dtype=np.float32)  # no convergence: leave the image as it is
            # Pixel centres: x_full + 0.5 = scale * (x_small + 0.5), for input and output alike, so
            # t_full = scale * (t - A 1/2 + 1/2) + A 1/2 - 1/2 (A the 2x2 part, 1/2 a vector of halves).
            half = 0.5 * warp[:, :2].sum(axis=1)
            full = warp.astype(np.float64)
            full[:, 2] = scale * (warp[:, 2] - half + 0.5) + half - 0.5
            warps.append(full)
        return torch.tensor(np.stack(warps), dtype=images.dtype, device=images.device)

    @torch.no_grad()
    def update(self, images: Tensor) -> None:
        if self.reference.numel() == 0:
            self.reference = torch.from_numpy(self._grey(images[:1])[0]).to(images.device)
        super().update(warp_images(images, self.register(images)))

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if self.reference.numel() == 0:
            raise RuntimeError("AlignedPaDiM is not fitted: call update() on normal images and finalize() first")
        warps = self.register(images)
        maps, _ = super().forward(warp_images(images, warps))
        # Back to the input's frame; outside the reference frame the nearest value is repeated.
        maps = warp_images(maps[:, None], invert_warps(warps), padding_mode="border")[:, 0]
        return maps, maps.flatten(1).amax(dim=1)
