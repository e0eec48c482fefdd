"""Triton kernels of ``bev_pool`` (imported only when they run: triton is optional on CPU)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _interval_sum_kernel(feats_ptr, order_ptr, starts_ptr, lengths_ptr, cells_ptr, out_ptr, C,
                         BLOCK_C: tl.constexpr, FP64: tl.constexpr):
    # One program sums one interval (the points of one voxel) for BLOCK_C channels,
    # accumulating in float32 (float64 for float64 inputs, as gradcheck needs).
    interval = tl.program_id(0)
    channels = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    in_range = channels < C
    start = tl.load(starts_ptr + interval)
    length = tl.load(lengths_ptr + interval)
    if FP64:
        acc = tl.zeros([BLOCK_C], dtype=tl.float64)
    else:
        acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for i in range(length):
        point = tl.load(order_ptr + start + i)
        acc += tl.load(feats_ptr + point * C + channels, mask=in_range, other=0.0).to(acc.dtype)
    cell = tl.load(cells_ptr + interval)
    tl.store(out_ptr + cell * C + channels, acc.to(out_ptr.dtype.element_ty), mask=in_range)


@triton.jit
def _gather_rows_kernel(src_ptr, rows_ptr, out_ptr, N, C, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    # out[n, c] = src[rows[n], c]: the backward of the sum, every point gets its voxel's gradient.
    points = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    channels = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (points < N)[:, None] & (channels < C)[None, :]
    rows = tl.load(rows_ptr + points, mask=points < N, other=0)
    values = tl.load(src_ptr + rows[:, None] * C + channels[None, :], mask=mask, other=0.0)
    tl.store(out_ptr + points[:, None] * C + channels[None, :], values, mask=mask)


def _block_c(C: int) -> int:
    return min(triton.next_power_of_2(C), 128)


def interval_sum(feats: Tensor, cells: Tensor, num_cells: int) -> Tensor:
    """out[v] = sum of feats[n] over the points n with cells[n] == v; out is (num_cells, C)."""
    out = feats.new_zeros(num_cells, feats.shape[1])
    if cells.numel() == 0:
        return out
    order = torch.argsort(cells, stable=True)
    voxels, lengths = torch.unique_consecutive(cells[order], return_counts=True)
    starts = torch.cumsum(lengths, 0) - lengths
    C = feats.shape[1]
    grid = (voxels.numel(), triton.cdiv(C, _block_c(C)))
    _interval_sum_kernel[grid](feats, order, starts, lengths, voxels, out, C, BLOCK_C=_block_c(C),
                               FP64=feats.dtype == torch.float64)
    return out


def gather_rows(src: Tensor, rows: Tensor) -> Tensor:
    """src[rows] with a Triton kernel: (len(rows), C)."""
    N, C = rows.numel(), src.shape[1]
    out = src.new_empty(N, C)
    if N == 0:
        return out
    BLOCK_N = 64
    grid = (triton.cdiv(N, BLOCK_N), triton.cdiv(C, _block_c(C)))
    _gather_rows_kernel[grid](src, rows, out, N, C, BLOCK_N=BLOCK_N, BLOCK_C=_block_c(C))
    return out
