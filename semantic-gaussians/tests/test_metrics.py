"""LangSplat's query protocol and the semantic mIoU on hand-worked maps."""

import numpy as np
import pytest
import torch

from semantic_gaussians.metrics import (
    ConfusionIoU,
    boxes_of,
    evaluate_query,
    majority_smooth,
    relevancy,
    window_sizes,
)


def test_relevancy_is_the_min_over_negatives_of_the_pairwise_softmax():
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(8, 5, 3, generator=g), dim=0)
    pos = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=1)
    neg = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    rel = relevancy(feats, pos, neg)
    # LERF's formula written out: softmax(10 [f.q, f.n])_0, minimum over the negatives.
    f = feats.reshape(8, -1).T
    for q in range(2):
        pairs = torch.stack([(f @ pos[q])[:, None].expand(-1, 4), f @ neg.T], -1)
        expected = torch.softmax(10 * pairs, -1)[..., 0].min(1).values.reshape(5, 3)
        torch.testing.assert_close(rel[q], expected)


def test_window_sizes_scale_langsplats_constants_with_the_width():
    assert window_sizes(1264) == (30, 3)
    assert window_sizes(128) == (3, 1)
    assert window_sizes(16) == (1, 1)


def test_majority_smooth_keeps_langsplats_window_bounds():
    """Their window stops at h - 1 / w - 1: the last row and column never vote."""
    mask = np.zeros((5, 5), np.uint8)
    mask[4, :] = 1  # the last row: excluded from every window
    assert majority_smooth(mask, 1).sum() == 0
    mask = np.zeros((5, 5), np.uint8)
    mask[1:3, 1:3] = 1
    out = majority_smooth(mask, 1)
    # pixel (1, 1): window rows 0-2, cols 0-2 -> 4 ones of 9 (no majority); pixel (2, 2): rows 1-3, cols 1-3: 4 of 9
    assert out[1, 1] == 0 and out[2, 2] == 0
    mask[1:4, 1:4] = 1
    assert majority_smooth(mask, 1)[2, 2] == 1  # 9 of 9


def test_query_localised_inside_a_box_and_mask_iou():
    h, w = 20, 30
    gt = np.zeros((h, w), bool)
    gt[5:10, 10:20] = True
    boxes = np.array([[10, 5, 19, 9]])
    rel = np.full((1, h, w), 0.2, np.float32)
    rel[0, 5:10, 10:20] = 0.9
    res = evaluate_query(rel, gt, boxes)
    assert res.localized and res.level == 0
    assert res.iou > 0.7
    elsewhere = np.full((1, h, w), 0.2, np.float32)
    elsewhere[0, 14:19, 1:6] = 0.9
    assert not evaluate_query(elsewhere, gt, boxes).localized
    assert evaluate_query(elsewhere, gt, boxes).iou == 0.0


def test_the_level_with_the_highest_relevancy_is_chosen():
    h, w = 16, 16
    gt = np.zeros((h, w), bool)
    gt[2:6, 2:6] = True
    low = np.full((h, w), 0.1, np.float32)
    low[10:14, 10:14] = 0.6  # a weak wrong answer
    high = np.full((h, w), 0.1, np.float32)
    high[2:6, 2:6] = 0.95
    res = evaluate_query(np.stack([low, high]), gt, np.array([[2, 2, 5, 5]]))
    assert res.level == 1 and res.localized and res.iou > 0.5


def test_boxes_are_per_instance_inclusive():
    inst = np.zeros((6, 8), int)
    inst[1:3, 1:4] = 5
    inst[4:6, 6:8] = 9
    mask = inst > 0
    assert boxes_of(mask, inst).tolist() == [[1, 1, 3, 2], [6, 4, 7, 5]]


def test_confusion_miou():
    m = ConfusionIoU(3)
    m.update(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    # class 0: tp 1, union 2; class 1: tp 2, union 3; class 2 absent
    assert m.compute() == pytest.approx((1 / 2 + 2 / 3) / 2)
