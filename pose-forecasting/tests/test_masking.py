"""Observation masks and the interpolation mask-unaware models see."""

from __future__ import annotations

import torch

from pose_forecasting.data.masking import fill_missing, last_observed, random_mask, tail_mask, training_mask


def test_fill_missing_interpolates_and_holds_the_ends():
    history = torch.arange(6.0).view(1, 6, 1).repeat(2, 1, 3)
    mask = torch.tensor([[1, 0, 0, 1, 0, 0], [0, 1, 1, 0, 1, 0]], dtype=torch.bool)
    filled = fill_missing(history * mask[..., None], mask)[..., 0]
    torch.testing.assert_close(filled, torch.tensor([[0.0, 1, 2, 3, 3, 3], [1.0, 1, 2, 3, 4, 4]]))
    assert last_observed(mask).tolist() == [3, 4]


def test_masks_drop_what_they_say():
    assert (~random_mask(8, 50, 0.4)).sum(1).tolist() == [20] * 8
    mask = tail_mask(2, 50, 8)
    assert mask[:, :42].all() and not mask[:, 42:].any()
    train = training_mask(500, 50, 0.6, 8)
    assert train.sum(1).min() >= 2 and 0.1 < 1 - train.float().mean() < 0.5
