"""Axis-aligned boxes in plain torch: format conversions, areas, IoU, GIoU and (batched) non-maximum
suppression, with torchvision.ops' semantics so that numbers compare with detection code built on it
(detectron2, mmdet's torchvision path, OW-DETR, PROB), without torchvision.

Conventions (torchvision's):
- ``xyxy``: (x1, y1, x2, y2), corners; ``xywh``: (x1, y1, width, height) (COCO); ``cxcywh``: (centre x,
  centre y, width, height) (DETR). Continuous coordinates: area = (x2 - x1) (y2 - y1), no "+1" pixel
  (the VOC devkit's +1 is a convention of its evaluation, not of these boxes).
- IoU of two empty boxes is 0 (not NaN); GIoU follows Rezatofighi et al., "Generalized Intersection over
  Union", CVPR 2019: ``GIoU = IoU - |C \\ (A u B)| / |C|`` with C the smallest enclosing box.
- NMS is greedy, in decreasing score order: a box is dropped when its IoU with an already kept box is
  strictly above ``iou_threshold``; it returns the kept indices in decreasing score order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FORMATS = ("xyxy", "xywh", "cxcywh")


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """``(..., 4)`` boxes from ``in_fmt`` to ``out_fmt`` (each one of ``FORMATS``)."""
    for fmt in (in_fmt, out_fmt):
        if fmt not in FORMATS:
            raise ValueError(f"box format {fmt!r}: expected one of {FORMATS}")
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    # (a, b, c, d) is now xyxy
    if out_fmt == "xywh":
        return torch.stack([a, b, c - a, d - b], dim=-1)
    if out_fmt == "cxcywh":
        return torch.stack([(a + c) / 2, (b + d) / 2, c - a, d - b], dim=-1)
    return torch.stack([a, b, c, d], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Areas of ``(..., 4)`` xyxy boxes (a box with x2 < x1 or y2 < y1 is not clamped, as torchvision)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersection_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    return inter, box_area(a)[:, None] + box_area(b)[None, :] - inter


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU ``(N, M)`` of xyxy boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)``; 0 where the union is 0."""
    inter, union = _intersection_union(a, b)
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise GIoU ``(N, M)`` in [-1, 1] of xyxy boxes (Rezatofighi et al. 2019, Eq. in Alg. 1)."""
    inter, union = _intersection_union(a, b)
    iou = torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))
    enclosing = (torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2]))
    enclosing = enclosing.clamp(min=0).prod(dim=-1)
    gap = torch.where(enclosing > 0, (enclosing - union) / enclosing.clamp(min=torch.finfo(union.dtype).tiny),
                      torch.zeros_like(enclosing))
    return iou - gap


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: the indices (int64) of the kept xyxy ``boxes`` ``(N, 4)``, in decreasing ``scores`` order.

    Walks down the score order; each kept box suppresses, in one vectorised step, the lower-scored boxes
    that overlap it: O(kept x N) work and O(N) memory (no N x N matrix, so a flood of candidates, the
    target of NMS "sponge" attacks, costs time, not memory). The walk runs in NumPy on the CPU, where a
    step costs about a microsecond against ten for the same torch ops; the IoU is computed as ``box_iou``
    computes it, operation for operation, so both agree exactly at the threshold.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms expects boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and "
                         f"{tuple(scores.shape)}")
    order = torch.argsort(scores, descending=True, stable=True)
    if order.numel() == 0:
        return order
    x1, y1, x2, y2 = boxes[order].detach().cpu().numpy().T
    area = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(order), dtype=bool)
    kept = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(i)
        rest = slice(i + 1, None)
        inter = (np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
                 * np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None))
        union = area[i] + area[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / union, 0.0)
        suppressed[rest] |= iou > iou_threshold
    return order[torch.tensor(kept, device=order.device)]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category ``idxs`` ``(N,)`` independently (torchvision's coordinate trick: boxes of
    different categories are shifted apart so that they never overlap), kept indices in decreasing score."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)
