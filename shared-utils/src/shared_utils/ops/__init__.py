"""Compute kernels: each op has a vectorised PyTorch path (the CPU path) and a GPU path used
automatically for CUDA tensors: Triton for bev_pool (compiled on the user's GPU at first call,
shipped with PyTorch's CUDA wheels: no nvcc/ninja build step), gsplat's CUDA kernels for
gaussian_rasterize (the optional [cuda] extra; without it CUDA tensors take the PyTorch path)."""

from shared_utils.ops.bev_pool import bev_pool, bev_pool_reference, bev_pool_triton
from shared_utils.ops.gaussian_rasterize import (
    GaussianRender,
    gaussian_rasterize,
    gaussian_rasterize_gsplat,
    gaussian_rasterize_reference,
    gaussian_rasterize_torch,
    project_gaussians,
    quat_to_rotmat,
)

__all__ = ["bev_pool", "bev_pool_reference", "bev_pool_triton", "GaussianRender", "gaussian_rasterize",
           "gaussian_rasterize_gsplat", "gaussian_rasterize_reference", "gaussian_rasterize_torch",
           "project_gaussians", "quat_to_rotmat"]
