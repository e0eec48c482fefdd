"""Compute kernels: each op has a vectorised PyTorch reference (the CPU path) and a Triton
kernel used automatically for CUDA tensors. Triton compiles on the user's GPU at first call
and ships with PyTorch's CUDA wheels: no nvcc/ninja build step."""

from shared_utils.ops.bev_pool import bev_pool, bev_pool_reference, bev_pool_triton

__all__ = ["bev_pool", "bev_pool_reference", "bev_pool_triton"]
