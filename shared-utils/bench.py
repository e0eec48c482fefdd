"""`make bench PROJECT=shared-utils`: speed of the compute kernels, as ratios measured in one run.

bev_pool on a Lift-Splat-Shoot nuScenes-sized splat (6 cameras x 41 depth bins x 8 x 22
feature pixels per sample, 64 channels, a 200 x 200 BEV grid):
- the vectorised PyTorch reference (the CPU path) against a naive Python loop over points;
- on a CUDA GPU, where there is one, the Triton kernel against the reference on the same GPU.
Detection pieces: ``boxes.nms`` against a pure-Python greedy NMS on the same candidates (1,000, the number a
detector typically hands over), ``nms`` alone on 5,000 and 20,000 (the scale an NMS "sponge" attack aims at),
and the CenterNet forward pass + decoding at 128 px.
Prints a Markdown table and writes it to RESULTS.md beside this file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared_utils.bench import markdown_table, median_seconds, parse_args, results_header, write_results
from shared_utils.boxes import nms
from shared_utils.detection import CenterNet
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


def candidates(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random boxes on a 512 x 512 image (sides 8 to 128 px, many overlaps) and their scores."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * 448
    wh = 8 + torch.rand(n, 2, generator=g) * 120
    return torch.cat([xy, xy + wh], dim=1), torch.rand(n, generator=g)


def python_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """What one writes first: greedy NMS with a Python IoU per pair."""
    b, kept = boxes.tolist(), []
    for i in sorted(range(len(b)), key=lambda i: -float(scores[i])):
        x1, y1, x2, y2 = b[i]
        for k in kept:
            u1, v1, u2, v2 = b[k]
            inter = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
            if inter / ((x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter) > threshold:
                break
        else:
            kept.append(i)
    return kept


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

    boxes, scores = candidates(1000)
    assert nms(boxes, scores, 0.5).tolist() == python_nms(boxes, scores, 0.5)
    rows.append(("NMS, 1,000 boxes, IoU 0.5", "Python greedy", median_seconds(lambda: python_nms(boxes, scores, 0.5),
                                                                              repeats=3),
                 "boxes.nms", median_seconds(lambda: nms(boxes, scores, 0.5), repeats=10)))
    for n in (5000, 20000):
        boxes, scores = candidates(n)
        rows.append((f"NMS, {n:,} boxes, IoU 0.5", "—", None, "boxes.nms",
                     median_seconds(lambda b=boxes, s=scores: nms(b, s, 0.5), repeats=3)))
    detector = CenterNet(num_classes=12).eval()
    for batch in (1, 16):
        images = torch.rand(batch, 3, 128, 128)
        with torch.no_grad():
            seconds = median_seconds(lambda x=images: detector.decode(detector(x)), repeats=10)
        rows.append((f"CenterNet forward + decode, batch {batch}, 128 px", "—", None, "Lite0 CenterNet", seconds))

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
