"""The grid detector's geometry: ideal heatmaps decode to the exact sub-pixel keypoints (so an image equal to the
render, read perfectly, scores zero reprojection error), and its loss is smallest at the true positions."""

from __future__ import annotations

import torch

from sports_image_gen.models.detectors import STRIDE, GridDetector


def _ideal_heatmaps(points: torch.Tensor, h: int, w: int, sigma: float = 0.7) -> torch.Tensor:
    cells = (points - 0.5) / STRIDE
    ys, xs = torch.arange(h // STRIDE).float(), torch.arange(w // STRIDE).float()
    d2 = (xs[None, None, None] - cells[..., 0, None, None]) ** 2 \
        + (ys[None, None, :, None] - cells[..., 1, None, None]) ** 2
    return -d2 / (2 * sigma ** 2)


def test_ideal_heatmaps_decode_to_the_keypoints():
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(2, 91, 2, generator=gen) * torch.tensor([54.0, 26.0]) + 5  # away from the borders
    heat = _ideal_heatmaps(points, 36, 64)
    decoded, found = GridDetector.decode(heat, torch.full((2, 91), 5.0))
    assert found.all()
    assert (decoded - points).norm(dim=-1).max() < 0.05


def test_loss_is_lowest_at_the_true_keypoints():
    points = torch.tensor([[[20.3, 10.7]] * 91])
    visible = torch.ones(1, 91, dtype=torch.bool)
    vis_logits = torch.full((1, 91), 8.0)
    right = GridDetector.loss(_ideal_heatmaps(points, 36, 64, 1.0), vis_logits, points, visible)
    wrong = GridDetector.loss(_ideal_heatmaps(points + 4, 36, 64, 1.0), vis_logits, points, visible)
    assert right < wrong


def test_output_shapes():
    heat, vis = GridDetector(8)(torch.rand(2, 3, 36, 64))
    assert heat.shape == (2, 91, 18, 32) and vis.shape == (2, 91)
