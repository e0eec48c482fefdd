"""BEV pooling: sum the features of frustum points into bird's-eye-view voxels.

The "splat" of Lift-Splat-Shoot (Philion & Fidler, ECCV 2020) as BEVFusion (Liu et al.,
ICRA 2023) made it fast: points are sorted by voxel, each run of equal voxels ("interval")
is summed by one GPU program, with no atomics, so the result is the same bit for bit at
every run (float atomics change the summation order from run to run). The backward pass
is a gather: every point receives the gradient of its voxel.

Layout: ``feats`` (N, C) point features, ``coords`` (N, 4) integer (batch, z, y, x) voxel
indices, ``grid_size`` (Z, Y, X). Output (B, C, Z, Y, X); points outside the grid are dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor


def voxel_index(coords: Tensor, batch_size: int, grid_size: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """Flat voxel index ((b*Z + z)*Y + y)*X + x of the points inside the grid, and their mask."""
    if coords.ndim != 2 or coords.shape[1] != 4 or coords.is_floating_point():
        raise ValueError(f"coords must be an integer (N, 4) tensor of (batch, z, y, x), got "
                         f"{tuple(coords.shape)} {coords.dtype}")
    coords = coords.long()
    bounds = coords.new_tensor((batch_size, *grid_size))
    keep = ((coords >= 0) & (coords < bounds)).all(dim=1)
    b, z, y, x = coords[keep].unbind(dim=1)
    Z, Y, X = grid_size
    return ((b * Z + z) * Y + y) * X + x, keep


def _check(feats: Tensor, coords: Tensor) -> None:
    if feats.ndim != 2 or feats.shape[0] != coords.shape[0]:
        raise ValueError(f"feats must be (N, C) with N = len(coords) = {coords.shape[0]}, got {tuple(feats.shape)}")


def bev_pool_reference(feats: Tensor, coords: Tensor, batch_size: int,
                       grid_size: tuple[int, int, int]) -> Tensor:
    """Vectorised PyTorch BEV pooling (``index_add_``; autograd gives the backward)."""
    _check(feats, coords)
    cells, keep = voxel_index(coords, batch_size, grid_size)
    out = feats.new_zeros(batch_size * grid_size[0] * grid_size[1] * grid_size[2], feats.shape[1])
    out = out.index_add(0, cells, feats[keep])
    return out.view(batch_size, *grid_size, -1).permute(0, 4, 1, 2, 3).contiguous()


class _BevPoolTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, cells: Tensor, num_cells: int) -> Tensor:
        from shared_utils.ops import bev_pool_kernels as k

        ctx.save_for_backward(cells)
        return k.interval_sum(feats.contiguous(), cells, num_cells)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None]:
        from shared_utils.ops import bev_pool_kernels as k

        (cells,) = ctx.saved_tensors
        return k.gather_rows(grad_out.contiguous(), cells), None, None


def bev_pool_triton(feats: Tensor, coords: Tensor, batch_size: int,
                    grid_size: tuple[int, int, int]) -> Tensor:
    """BEV pooling with the Triton kernels (CUDA tensors, or CPU under TRITON_INTERPRET=1)."""
    _check(feats, coords)
    cells, keep = voxel_index(coords, batch_size, grid_size)
    num_cells = batch_size * grid_size[0] * grid_size[1] * grid_size[2]
    out = _BevPoolTriton.apply(feats[keep], cells, num_cells)
    return out.view(batch_size, *grid_size, -1).permute(0, 4, 1, 2, 3).contiguous()


def bev_pool(feats: Tensor, coords: Tensor, batch_size: int, grid_size: tuple[int, int, int]) -> Tensor:
    """Sum point features into a (B, C, Z, Y, X) grid: Triton on CUDA, PyTorch elsewhere."""
    if feats.is_cuda:
        return bev_pool_triton(feats, coords, batch_size, grid_size)
    return bev_pool_reference(feats, coords, batch_size, grid_size)
