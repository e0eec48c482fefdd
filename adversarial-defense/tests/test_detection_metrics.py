"""VOC AP50 against a hand-worked case."""

from __future__ import annotations

import math

import torch

from adversarial_defense.detection_metrics import average_precision, map50


def _d(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}


def test_map50_on_a_hand_worked_case():
    # class 0: two objects in image 0, one in image 1. Detections by score: TP (0.9), duplicate FP (0.8),
    # FP elsewhere (0.7), TP (0.6); the third object is missed.
    targets = [{"boxes": torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32),
                "labels": torch.tensor([0, 0])},
               {"boxes": torch.tensor([[0, 0, 10, 10]], dtype=torch.float32), "labels": torch.tensor([0])}]
    detections = [_d([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], [0.9, 0.8, 0.7], [0, 0, 0]),
                  _d([[0, 0, 10, 9]], [0.6], [0])]
    # precision/recall after each: (1, 1/3), (1/2, 1/3), (1/3, 1/3), (1/2, 2/3); monotone precision: 1 up to
    # recall 1/3, then 1/2 up to 2/3: AP = 1/3 * 1 + 1/3 * 1/2 = 1/2
    assert math.isclose(map50(detections, targets, num_classes=1), 50.0)


def test_a_class_absent_from_the_targets_is_left_out_and_a_missed_class_scores_zero():
    targets = [{"boxes": torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32),
                "labels": torch.tensor([0, 1])}]
    detections = [_d([[0, 0, 10, 10]], [0.9], [0])]
    assert math.isclose(map50(detections, targets, num_classes=3), 50.0)  # class 0: 1, class 1: 0, class 2: out


def test_average_precision_of_a_perfect_ranking_is_one():
    assert average_precision(torch.tensor([0.5, 1.0]).numpy(), torch.tensor([1.0, 1.0]).numpy()) == 1.0
