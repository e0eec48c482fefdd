"""Boxes: conversions round-trip, IoU / GIoU / NMS against brute-force Python on random boxes, hand cases."""

from __future__ import annotations

import itertools

import pytest
import torch

from shared_utils.boxes import FORMATS, batched_nms, box_area, box_convert, box_iou, generalized_box_iou, nms


def random_boxes(n: int, generator: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size / 3
    return torch.cat([xy, xy + wh], dim=1)


def iou_by_hand(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def giou_by_hand(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return iou_by_hand(a, b) - (hull - union) / hull


def nms_by_hand(boxes, scores, threshold) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(iou_by_hand(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("in_fmt, out_fmt", list(itertools.permutations(FORMATS, 2)))
def test_conversions_round_trip(in_fmt: str, out_fmt: str) -> None:
    boxes = random_boxes(20, torch.Generator().manual_seed(0))
    there = box_convert(box_convert(boxes, "xyxy", in_fmt), in_fmt, out_fmt)
    torch.testing.assert_close(box_convert(there, out_fmt, "xyxy"), boxes)


def test_conversions_by_hand() -> None:
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert box_convert(xyxy, "xyxy", "xywh").tolist() == [[10, 20, 20, 40]]
    assert box_convert(xyxy, "xyxy", "cxcywh").tolist() == [[20, 40, 20, 40]]
    assert box_area(xyxy).tolist() == [800]  # no +1 pixel
    with pytest.raises(ValueError, match="box format 'yxyx'"):
        box_convert(xyxy, "yxyx", "xyxy")


def test_iou_and_giou_against_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = random_boxes(30, g), random_boxes(25, g)
    a[0] = b[0]  # an identical pair
    a[1] = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # an empty box
    iou, giou = box_iou(a, b), generalized_box_iou(a, b)
    for i, j in itertools.product(range(len(a)), range(len(b))):
        assert iou[i, j].item() == pytest.approx(iou_by_hand(a[i].tolist(), b[j].tolist()), abs=1e-12)
        assert giou[i, j].item() == pytest.approx(giou_by_hand(a[i].tolist(), b[j].tolist()), abs=1e-12)
    assert iou[0, 0] == 1 and giou[0, 0] == 1
    assert ((giou >= -1) & (giou <= iou)).all()


def test_giou_of_distant_boxes_tends_to_minus_one() -> None:
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1000.0, 1000.0, 1001.0, 1001.0]])
    assert box_iou(a, b).item() == 0 and generalized_box_iou(a, b).item() == pytest.approx(-1, abs=1e-5)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_against_brute_force(threshold: float) -> None:
    g = torch.Generator().manual_seed(2)
    boxes = random_boxes(200, g, size=60.0)  # crowded: many overlaps
    scores = torch.rand(200, generator=g, dtype=torch.float64)
    kept = nms(boxes, scores, threshold)
    assert kept.dtype == torch.int64
    assert kept.tolist() == nms_by_hand(boxes.tolist(), scores.tolist(), threshold)


def test_nms_edge_cases() -> None:
    empty = torch.zeros(0, 4)
    assert nms(empty, torch.zeros(0), 0.5).tolist() == []
    one = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert nms(one, torch.tensor([0.3]), 0.5).tolist() == [0]
    # IoU exactly at the threshold is kept ("strictly above" suppresses): two boxes with IoU 0.5.
    pair = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]])
    assert box_iou(pair, pair)[0, 1].item() == 0.5
    assert nms(pair, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert nms(pair, torch.tensor([0.8, 0.9]), 0.49).tolist() == [1]
    with pytest.raises(ValueError, match="boxes \\(N, 4\\) and scores \\(N,\\)"):
        nms(pair, torch.tensor([0.9]), 0.5)


def test_batched_nms_is_nms_per_category() -> None:
    g = torch.Generator().manual_seed(3)
    boxes = random_boxes(150, g, size=50.0) - 20  # negative coordinates too
    scores = torch.rand(150, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (150,), generator=g)
    kept = batched_nms(boxes, scores, labels, 0.5)
    expected = []
    for c in range(4):
        members = torch.nonzero(labels == c).flatten()
        expected += members[nms(boxes[members], scores[members], 0.5)].tolist()
    assert sorted(kept.tolist()) == sorted(expected)
    assert (scores[kept].diff() <= 0).all()  # decreasing score order across categories
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).tolist() == []
