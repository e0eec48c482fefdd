"""`make bench PROJECT=shared-utils`: speed of the compute kernels, as ratios measured in one run.

bev_pool on a Lift-Splat-Shoot nuScenes-sized splat (6 cameras x 41 depth bins x 8 x 22
feature pixels per sample, 64 channels, a 200 x 200 BEV grid):
- the vectorised PyTorch reference (the CPU path) against a naive Python loop over points;
- on a CUDA GPU, where there is one, the Triton kernel against the reference on the same GPU.
Prints a Markdown table and writes it to RESULTS.md beside this file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared_utils.bench import markdown_table, median_seconds, parse_args, results_header, write_results
from shared_utils.ops import bev_pool_reference, bev_pool_triton

BATCH, CAMS, DEPTH, FH, FW, CHANNELS = 2, 6, 41, 8, 22, 64
GRID = (1, 200, 200)


def lss_points(device: str, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Frustum-point features and voxel coordinates; about 10% of the points fall outside the grid."""
    g = torch.Generator().manual_seed(0)
    n = BATCH * CAMS * DEPTH * FH * FW
    feats = torch.randn(n, CHANNELS, generator=g, dtype=dtype)
    batch = torch.arange(BATCH).repeat_interleave(n // BATCH)
    yx = torch.randint(-10, 210, (n, 2), generator=g)
    coords = torch.cat([batch[:, None], torch.zeros(n, 1, dtype=torch.long), yx], dim=1)
    return feats.to(device), coords.to(device)


def naive_loop(feats: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """What one writes first: a Python loop adding each point to its cell."""
    out = torch.zeros(BATCH, *GRID, CHANNELS, dtype=feats.dtype)
    for f, (b, z, y, x) in zip(feats, coords.tolist()):
        if 0 <= y < GRID[1] and 0 <= x < GRID[2]:
            out[b, z, y, x] += f
    return out.permute(0, 4, 1, 2, 3)


def forward(op, feats: torch.Tensor, coords: torch.Tensor):
    return lambda: op(feats, coords, BATCH, GRID)


def forward_backward(op, feats: torch.Tensor, coords: torch.Tensor):
    leaf = feats.detach().requires_grad_(True)

    def run() -> None:
        op(leaf, coords, BATCH, GRID).sum().backward()

    return run


def main() -> None:
    args = parse_args([], description=__doc__.splitlines()[0])
    rows = []
    feats, coords = lss_points("cpu")
    ref = median_seconds(forward(bev_pool_reference, feats, coords), repeats=20)
    naive = median_seconds(lambda: naive_loop(feats, coords), repeats=1)
    torch.testing.assert_close(naive_loop(feats, coords), bev_pool_reference(feats, coords, BATCH, GRID))
    rows.append(("CPU forward", "naive Python loop", naive, "PyTorch reference", ref))
    ref_fb = median_seconds(forward_backward(bev_pool_reference, feats, coords), repeats=10)
    rows.append(("CPU forward+backward", "—", None, "PyTorch reference", ref_fb))

    if torch.cuda.is_available():
        for dtype in (torch.float32, torch.float16):
            feats, coords = lss_points("cuda", dtype)
            name = str(dtype).removeprefix("torch.")
            ref = median_seconds(forward(bev_pool_reference, feats, coords), repeats=50)
            tri = median_seconds(forward(bev_pool_triton, feats, coords), repeats=50)
            rows.append((f"GPU forward {name}", "PyTorch reference", ref, "Triton kernel", tri))
            ref = median_seconds(forward_backward(bev_pool_reference, feats, coords), repeats=50)
            tri = median_seconds(forward_backward(bev_pool_triton, feats, coords), repeats=50)
            rows.append((f"GPU forward+backward {name}", "PyTorch reference", ref, "Triton kernel", tri))

    n = BATCH * CAMS * DEPTH * FH * FW
    notes = (f"bev_pool: {n:,} frustum points ({BATCH} samples x {CAMS} cameras x {DEPTH} depth bins x {FH}x{FW}), "
             f"{CHANNELS} channels, grid {GRID[1]}x{GRID[2]}. Median wall time"
             + ("." if torch.cuda.is_available() else "; no CUDA GPU here, so the GPU rows are absent."))
    table = markdown_table(
        ["case", "baseline", "baseline ms", "candidate", "candidate ms", "speed-up"],
        [[case, base, f"{t_base * 1e3:.2f}" if t_base else "—", cand, f"{t_cand * 1e3:.2f}",
          f"{t_base / t_cand:.1f}x" if t_base else "—"] for case, base, t_base, cand, t_cand in rows])
    write_results(Path(__file__).parent / "RESULTS.md",
                  results_header("shared-utils", "shared-utils kernel benchmark", args, notes=notes) + table)


if __name__ == "__main__":
    main()
