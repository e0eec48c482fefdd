"""Attacks on object detection, on the collection's detector (``shared_utils.detection.CenterNet``): TOG's four
objectness-gradient attacks and its universal perturbation, and the Phantom Sponge NMS overload.

TOG (Chow, Liu, Loper, Bae, Gursoy, Truex, Wei, Wu, "Adversarial Objectness Gradient Attacks in Real-time
Object Detection Systems", IEEE TPS-ISA 2020; reference code github.com/git-disl/TOG, ``tog/attacks.py`` and
``models/yolov3.py``). Every TOG attack is the same loop, the reference's, with its defaults (eps 8/255,
eps_iter 2/255, 10 iterations): a uniform random start in the eps ball, then ``x <- x - eps_iter *
sign(grad L(x))``, projected back to the eps ball and [0, 1]. Only the loss ``L`` and its target differ:

- vanishing: the detector's loss towards an empty target (nothing anywhere), descended;
- fabrication: the objectness loss towards "an object everywhere" (every objectness target set to 1),
  descended (the reference's ``compute_object_fabrication_gradient``: the vanishing loss with target 1);
- mislabeling: the detector's full training loss towards the clean detections (score >= the threshold, TOG's
  ``confidence_thresh_default``, 0.20 for its YOLOv3, 0.3 here by default) with new labels, descended. TOG's
  ``generate_attack_targets`` offers two relabellings, "ll" (least likely: each detection gets the class with
  the lowest score at its position) and "ml" (most likely: the highest-scored class among those not already
  detected there, i.e. below the threshold); both keep the box. ``target_class`` None or "ll" is the first,
  "ml" the second (TOG has no default: its demos run both), an int relabels every detection with that class;
- untargeted: the detector's full training loss towards the clean detections, ascended (the reference descends
  its negative).

Objectness on CenterNet. TOG's YOLOv3 has an objectness logit per anchor and cell, apart from the class
scores, and its vanishing / fabrication losses are the binary cross-entropy of objectness alone; SSD and
Faster R-CNN have a background class in its place. CenterNet has neither: an object is the peak of its class's
heatmap, and a detection's score is that heatmap's sigmoid. The objectness of a (class, position) pair is
therefore its heatmap value, and the objectness loss is CenterNet's own heatmap loss (the penalty-reduced focal
loss, Zhou et al. Eq. 1), as YOLO's objectness loss is YOLO's own: vanishing descends ``detector.loss`` towards
no objects (its size and offset terms are then 0, its heatmap term pushes every pair towards 0, as TOG's
empty-target BCE pushes every anchor's objectness); fabrication descends the focal loss with every (class,
position) a positive (TOG sets every anchor's objectness target to 1; a CenterNet target is per class). For
mislabeling and untargeted, ``detector.loss`` on the detections as boxes is the counterpart of YOLO's
training loss on its encoded detections (box, objectness and class terms alike).

TOG-universal (same paper, the reference's ``demo_universal.ipynb``): one perturbation for every image, trained
over training images with the vanishing loss: a uniform random start, then for each batch ``eta <- clip(eta -
eps_iter * sign(grad), -eps, eps)`` with the gradient taken at ``clip(x + eta, 0, 1)`` (the reference steps
image by image; a batch takes one step on the sign of its summed gradient). Reference defaults: eps 8/255,
eps_iter 1e-4, 50 epochs.

Success (``tog_success``, per image, detections with score >= the threshold, boxes matched at IoU >= 0.5):
vanishing: no detection is left; fabrication: more detections than on the clean image; mislabeling: every clean
detection is found again, with its target label, by an adversarial detection; untargeted: the detections are
not the clean ones, i.e. a clean detection is not found again with its label (it vanished, moved or changed
label) or an adversarial detection matches no clean one (it was fabricated): the untargeted attack has no
effect of its own, any of the three targeted ones counts.

Phantom Sponge (Shapira, Zolfi, Demetrio, Biggio, Shabtai, "Phantom Sponges: Exploiting Non-Maximum Suppression
to Attack Deep Object Detectors", WACV 2023; reference code github.com/AvishagS422/PhantomSponges). A detector
that keeps every candidate scoring above a threshold and then runs NMS over them (YOLO's pipeline) spends time
in NMS that grows with the number of candidates (quadratic in the worst case). The attack minimises

    L = lambda_1 l_max_objects + lambda_2 l_bboxes_area + lambda_3 l_IoU

- ``l_max_objects``: the mean over all candidates of ``max(T - score, 0)``: candidates below the
  threshold ``T`` are pushed up to it (not beyond: one above ``T`` already reaches NMS);
- ``l_bboxes_area``: the mean area of the candidates above ``T``, as a fraction of the image: small boxes
  overlap less, so fewer are suppressed and NMS keeps comparing;
- ``l_IoU``: one minus the mean, over the clean detections, of the best IoU of a same-class adversarial
  candidate (score > 0.001, the reference's): the original objects stay detected, so the attack stays hidden.

The reference trains a universal L2 perturbation on YOLOv5 at 640 px, with T = 0.25, lambda_3 = 1 - lambda_1
and lambda_1 = 0.75, lambda_2 = 0 (its class defaults) or lambda_1 = 1, lambda_2 = 10 (its notebook). Here the
attack is per image in the Linf ball, the loop of every other attack of the package (signed steps, no random
start: the reference starts from zero), with the paper's T and three separate weights, re-tuned for CenterNet:
in signed steps the box-area and IoU terms, averaged over a few boxes, outweigh the max-objects term, averaged
over every (class, position), and with the reference's lambda_2 = 10 the attack shrinks the detections below T
instead of adding candidates. On a small CenterNet trained on ``data.scenes`` (64 px, eps 8/255, 10 steps of
2/255) lambdas (1, 0.1, 0.01) took the candidates above T from 4 to 9 per image and kept every clean detection,
with boxes a quarter smaller than those of (1, 0, 0) (11 candidates); (1, 10, 0) left 1.5 candidates and none of
the clean detections.

CenterNet needs no NMS (its peaks are 3 x 3 local maxima), so the sponge targets a pipeline that does apply NMS
to thresholded candidates, as YOLO does: every (class, position) of the heatmap whose score is above the
threshold is a candidate, its box read from ``wh`` / ``offset`` at that position as ``CenterNet.decode`` reads a
peak's (``nms_candidates``). ``nms_load`` reports that pipeline's cost: candidates per image and the time of
``shared_utils.boxes.batched_nms`` (class-wise NMS) over them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adversarial_defense.attacks._common import attacking, check_eps, eval_mode, private_images
from shared_utils.boxes import batched_nms, box_iou
from shared_utils.detection import STRIDE, CenterNet, focal_loss

__all__ = [
    "TOG_KINDS",
    "candidate_boxes",
    "clean_detections",
    "nms_candidates",
    "nms_load",
    "sponge",
    "tog",
    "tog_success",
    "tog_universal",
]

TOG_KINDS = ("vanishing", "fabrication", "mislabeling", "untargeted")
TOP_K = 100  # peaks decoded per image (CenterNet's k)
MATCH_IOU = 0.5  # a detection is "found again" at this IoU (VOC's)
SPONGE_LAMBDAS = (1.0, 0.1, 0.01)  # max objects, box area, IoU with the clean detections (module docstring)
SPONGE_MIN_SCORE = 0.001  # the reference's score floor for the adversarial candidates of the IoU term

Detections = list[dict[str, Tensor]]




def _uniform_start(images: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    """TOG's random start, ``uniform(-eps, eps)``, from ``generator`` (on its device) or the global RNG."""
    device = generator.device if generator is not None else images.device
    noise = torch.rand(images.shape, generator=generator, device=device, dtype=images.dtype).to(images.device)
    return (2 * noise - 1) * eps


def _project(x: Tensor, images: Tensor, eps: float) -> Tensor:
    return (images + (x - images).clamp(-eps, eps)).clamp(0, 1)


# ---------------------------------------------------------------------------------------------------------------
# Detections and their targets
# ---------------------------------------------------------------------------------------------------------------

def _keep(detections: dict[str, Tensor], score_threshold: float) -> dict[str, Tensor]:
    keep = detections["scores"] >= score_threshold
    return {k: v[keep] for k, v in detections.items() if k != "features"}


def _relabel(class_logits: Tensor, labels: Tensor, score_threshold: float, target_class: int | str | None) -> Tensor:
    """TOG's mislabeling targets (``attack_utils/target_utils.py``) from each detection's class logits (N, C)
    at its peak: "ll" the least likely class, "ml" the most likely class not detected there (score below the
    threshold; the detected class is always excluded), an int that class for every detection."""
    if isinstance(target_class, int):
        if not 0 <= target_class < class_logits.shape[1]:
            raise ValueError(f"target_class={target_class} is not a class index of a {class_logits.shape[1]}-class "
                             f"detector")
        return torch.full_like(labels, target_class)
    mode = "ll" if target_class is None else target_class
    if mode not in ("ll", "ml"):
        raise ValueError(f"target_class={target_class!r}: expected None or 'll' (least likely), 'ml' (most likely) "
                         f"or a class index")
    own = F.one_hot(labels, class_logits.shape[1]).bool()
    if mode == "ll":
        return class_logits.masked_fill(own, float("inf")).argmin(dim=1)
    excluded = own | (class_logits.sigmoid() >= score_threshold)
    excluded = torch.where(excluded.all(dim=1, keepdim=True), own, excluded)  # every class detected: any other one
    return class_logits.masked_fill(excluded, float("-inf")).argmax(dim=1)


def _decode(outputs: dict[str, Tensor]) -> Detections:
    return CenterNet.decode({k: v.detach() for k, v in outputs.items()}, TOP_K)


def _detect(outputs: dict[str, Tensor], score_threshold: float, target_class: int | str | None) -> Detections:
    """The decoded peaks with score >= ``score_threshold``, each with its TOG mislabeling target."""
    heatmap = outputs["heatmap"].detach()
    decoded = _decode(outputs)
    # The peaks' positions, found as CenterNet.decode finds them (same tensor, same top-k, same order).
    heat = heatmap.sigmoid()
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    position = peaks.flatten(1).topk(min(TOP_K, peaks[0].numel())).indices % heatmap[0, 0].numel()
    detections = []
    for b, found in enumerate(decoded):
        class_logits = heatmap[b].flatten(1)[:, position[b]].T
        if heatmap.shape[1] > 1:
            found["target_labels"] = _relabel(class_logits, found["labels"], score_threshold, target_class)
        else:
            found["target_labels"] = found["labels"].clone()  # one class: nothing to relabel to
        detections.append(_keep(found, score_threshold))
    return detections


def clean_detections(detector: nn.Module, images: Tensor, score_threshold: float = 0.3,
                     target_class: int | str | None = None) -> Detections:
    """The detector's detections of ``images`` with score >= ``score_threshold`` (TOG's "detections_query"):
    per image ``boxes`` (N, 4) xyxy pixels, ``scores``, ``labels`` and ``target_labels``, the label TOG-
    mislabeling moves each detection to (``target_class``: None or "ll", "ml", or a class index; see the
    module docstring). ``tog_success(..., "mislabeling")`` reads ``target_labels``."""
    with eval_mode(detector), torch.no_grad():
        return _detect(detector(images), score_threshold, target_class)


def _as_targets(detections: Detections, labels: str, size: tuple[int, int]) -> list[dict[str, Tensor]]:
    """Detections as ``CenterNet.loss`` targets: boxes ordered, inside the image and at least a pixel wide (a
    detector regresses any size, even negative, and the target's Gaussian radius needs a positive one)."""
    limit = torch.tensor([size[1], size[0]], dtype=torch.float32)
    targets = []
    for d in detections:
        boxes = d["boxes"].detach().float().cpu()
        low = torch.minimum(torch.minimum(boxes[:, :2], boxes[:, 2:]).clamp(min=0), limit - 1)
        high = torch.minimum(torch.maximum(torch.maximum(boxes[:, :2], boxes[:, 2:]), low + 1), limit)
        targets.append({"boxes": torch.cat([low, high], dim=1), "labels": d[labels].detach().cpu()})
    return targets


# ---------------------------------------------------------------------------------------------------------------
# TOG
# ---------------------------------------------------------------------------------------------------------------

def _tog_loss(detector: nn.Module, outputs: dict[str, Tensor], kind: str,
              targets: list[dict[str, Tensor]] | None) -> Tensor:
    """The loss TOG descends for ``kind`` (see the module docstring)."""
    if kind == "fabrication":
        heatmap = outputs["heatmap"]
        return focal_loss(heatmap, torch.ones_like(heatmap))
    loss = detector.loss(outputs, targets)["loss"]
    return -loss if kind == "untargeted" else loss


def _check_kind(kind: str) -> None:
    if kind not in TOG_KINDS:
        raise ValueError(f"unknown TOG attack {kind!r}: expected one of {list(TOG_KINDS)}")


def tog(detector: nn.Module, images: Tensor, kind: str = "vanishing", eps: float = 8 / 255,
        eps_iter: float = 2 / 255, n_iter: int = 10, score_threshold: float = 0.3,
        target_class: int | str | None = None, generator: torch.Generator | None = None) -> Tensor:
    """TOG-``kind`` (vanishing, fabrication, mislabeling or untargeted; Chow et al. 2020) on a CenterNet:
    ``n_iter`` signed-gradient steps of ``eps_iter`` from a uniform random start in the Linf ``eps`` ball.
    ``score_threshold`` selects the clean detections that mislabeling and untargeted attack, ``target_class``
    the mislabeling target (None or "ll": least likely, "ml": most likely other, or a class index)."""
    _check_kind(kind)
    eps, eps_iter = check_eps(eps), check_eps(eps_iter, "eps_iter")
    size = tuple(images.shape[-2:])
    with attacking(detector):
        images = private_images(images)
        if kind == "mislabeling" and detector.num_classes < 2:
            raise ValueError("TOG-mislabeling needs at least two classes")
        targets = None
        if kind == "vanishing":
            targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in images]
        elif kind in ("mislabeling", "untargeted"):
            with torch.no_grad():
                found = _detect(detector(images), score_threshold, target_class)
            targets = _as_targets(found, "target_labels" if kind == "mislabeling" else "labels", size)
        x_adv = (images + _uniform_start(images, eps, generator)).clamp(0, 1)
        for _ in range(n_iter):
            x_adv.requires_grad_(True)
            loss = _tog_loss(detector, detector(x_adv), kind, targets)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = _project(x_adv.detach() - eps_iter * grad.sign(), images, eps)
    return x_adv.detach()


def tog_universal(detector: nn.Module, batches: Iterable[Tensor | Sequence], eps: float = 8 / 255,
                  eps_iter: float = 1e-4, epochs: int = 50, generator: torch.Generator | None = None) -> Tensor:
    """TOG-universal (vanishing): one perturbation ``delta`` (1, 3, H, W) for every image, trained over
    ``batches`` (re-iterable: tensors (B, 3, H, W) in [0, 1], or tuples whose first item is one) for
    ``epochs`` epochs; apply it as ``clamp(x + delta, 0, 1)``. Defaults: the reference notebook's."""
    eps, eps_iter = check_eps(eps), check_eps(eps_iter, "eps_iter")
    if iter(batches) is batches:
        raise TypeError("tog_universal reads batches once per epoch: give a list or a DataLoader, not an iterator")
    eta = None
    with attacking(detector):
        for _ in range(epochs):
            for batch in batches:
                images = private_images(batch[0] if isinstance(batch, Sequence) else batch)
                if eta is None:
                    eta = _uniform_start(images[:1], eps, generator)
                empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in images]
                x_adv = (images + eta).clamp(0, 1).requires_grad_(True)
                (grad,) = torch.autograd.grad(_tog_loss(detector, detector(x_adv), "vanishing", empty), x_adv)
                eta = (eta - eps_iter * grad.sum(dim=0, keepdim=True).sign()).clamp(-eps, eps)
    if eta is None:
        raise ValueError("tog_universal: no batches to train on")
    return eta.detach()


def _found_again(clean: dict[str, Tensor], adv: dict[str, Tensor], labels: Tensor, iou_threshold: float
                 ) -> tuple[Tensor, Tensor]:
    """(per clean detection: an adversarial detection with label ``labels[j]`` at IoU >= the threshold,
    per adversarial detection: it matches a clean detection that way)."""
    if len(clean["boxes"]) == 0 or len(adv["boxes"]) == 0:
        return (torch.zeros(len(clean["boxes"]), dtype=torch.bool), torch.zeros(len(adv["boxes"]), dtype=torch.bool))
    match = box_iou(clean["boxes"].float(), adv["boxes"].float()) >= iou_threshold
    match &= labels[:, None].to(adv["labels"].device) == adv["labels"][None, :]
    return match.any(dim=1), match.any(dim=0)


def tog_success(clean_dets: Detections, adv_dets: Detections, kind: str, score_threshold: float = 0.3,
                iou_threshold: float = MATCH_IOU) -> Tensor:
    """Per image (bool, (B,)), whether TOG-``kind`` succeeded, as the module docstring defines it, from the
    detections of the clean and the adversarial images (``clean_detections`` or ``CenterNet.decode`` dicts;
    only scores >= ``score_threshold`` count). Mislabeling reads the clean detections' ``target_labels``
    (``clean_detections`` with the attack's ``target_class``); an image without clean detections is not a
    mislabeling success (nothing was mislabelled)."""
    _check_kind(kind)
    success = []
    for clean, adv in zip(clean_dets, adv_dets, strict=True):
        clean, adv = _keep(clean, score_threshold), _keep(adv, score_threshold)
        if kind == "vanishing":
            success.append(len(adv["scores"]) == 0)
        elif kind == "fabrication":
            success.append(len(adv["scores"]) > len(clean["scores"]))
        elif kind == "mislabeling":
            if "target_labels" not in clean:
                raise KeyError("tog_success(kind='mislabeling') needs the clean detections' target_labels: "
                               "take them from clean_detections(detector, images, score_threshold, target_class)")
            found, _ = _found_again(clean, adv, clean["target_labels"], iou_threshold)
            success.append(len(found) > 0 and bool(found.all()))
        else:
            found, matched = _found_again(clean, adv, clean["labels"], iou_threshold)
            success.append(not (bool(found.all()) and bool(matched.all())))
    return torch.tensor(success, dtype=torch.bool)


# ---------------------------------------------------------------------------------------------------------------
# Phantom Sponge and the NMS load
# ---------------------------------------------------------------------------------------------------------------

def candidate_boxes(outputs: dict[str, Tensor]) -> Tensor:
    """The box (xyxy input pixels) at every output position, (B, h * w, 4), read from ``wh`` and ``offset`` as
    ``CenterNet.decode`` reads a peak's: centre ``(x + offset_x, y + offset_y)``, size ``wh``, times the stride.
    Differentiable (the sponge's box-area and IoU terms go through it)."""
    wh, offset = outputs["wh"], outputs["offset"]
    h, w = wh.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, device=wh.device, dtype=wh.dtype),
                            torch.arange(w, device=wh.device, dtype=wh.dtype), indexing="ij")
    cx, cy = xs + offset[:, 0], ys + offset[:, 1]
    boxes = torch.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], dim=-1)
    return (boxes * STRIDE).flatten(1, 2)


def nms_candidates(outputs: dict[str, Tensor], score_threshold: float = 0.05) -> Detections:
    """What a YOLO-style pipeline hands to NMS: per image every (class, position) of the heatmap with sigmoid
    score > ``score_threshold``, with its ``boxes`` (``candidate_boxes`` at that position), ``scores`` and
    ``labels``, in (class, row, column) order."""
    heat = outputs["heatmap"].detach().sigmoid()
    boxes = candidate_boxes({k: v.detach() for k, v in outputs.items()})
    candidates = []
    for b in range(heat.shape[0]):
        labels, position = (heat[b].flatten(1) > score_threshold).nonzero(as_tuple=True)
        candidates.append({"boxes": boxes[b, position], "scores": heat[b].flatten(1)[labels, position],
                           "labels": labels})
    return candidates


def nms_load(detector: nn.Module, images: Tensor, score_threshold: float = 0.05, iou_threshold: float = 0.5
             ) -> dict[str, float]:
    """The NMS load of ``images``: ``candidates``, the mean number of candidates per image
    (``nms_candidates``), and ``nms_ms``, the median over images of the milliseconds that
    ``shared_utils.boxes.batched_nms`` (class-wise, ``iou_threshold``) takes over one image's candidates."""
    with eval_mode(detector), torch.no_grad():
        candidates = nms_candidates(detector(images), score_threshold)
    milliseconds = []
    for c in candidates:
        start = time.perf_counter()
        batched_nms(c["boxes"], c["scores"], c["labels"], iou_threshold)
        milliseconds.append(1000 * (time.perf_counter() - start))
    return {"candidates": sum(len(c["scores"]) for c in candidates) / len(candidates),
            "nms_ms": statistics.median(milliseconds)}


def _sponge_loss(outputs: dict[str, Tensor], clean: Detections, score_threshold: float, image_area: float,
                 lambdas: tuple[float, float, float]) -> Tensor:
    """Phantom Sponge's ``lambda_1 l_max_objects + lambda_2 l_bboxes_area + lambda_3 l_IoU`` over a batch."""
    scores = outputs["heatmap"].sigmoid()  # (B, C, h, w)
    boxes = candidate_boxes(outputs)  # (B, h * w, 4)
    # l_max_objects: every candidate below T pulled up to T (mean over all candidates of the batch).
    max_objects = (score_threshold - scores).clamp(min=0).mean()
    # l_bboxes_area: mean area of the positions holding a candidate above T, per image, averaged over the images
    # that have one; a regressed negative side counts as an empty box.
    sides = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    area = sides[..., 0] * sides[..., 1] / image_area
    above = scores.flatten(2).amax(dim=1) > score_threshold  # (B, h * w)
    per_image = [area[b][above[b]].mean() for b in range(len(area)) if above[b].any()]
    bboxes_area = torch.stack(per_image).mean() if per_image else area.new_zeros(())
    # l_IoU: each clean detection's best IoU with a same-class adversarial candidate (score > 0.001).
    best = []
    for b, found in enumerate(clean):
        if len(found["boxes"]):
            iou = box_iou(found["boxes"].to(boxes), boxes[b])  # (N, h * w)
            alive = scores[b].flatten(1)[found["labels"]] > SPONGE_MIN_SCORE  # (N, h * w)
            best.append((iou * alive).amax(dim=1))
    iou_loss = 1 - torch.cat(best).mean() if best else area.new_zeros(())
    return lambdas[0] * max_objects + lambdas[1] * bboxes_area + lambdas[2] * iou_loss


def sponge(detector: nn.Module, images: Tensor, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
           score_threshold: float = 0.25, lambdas: tuple[float, float, float] = SPONGE_LAMBDAS) -> Tensor:
    """Phantom Sponge (Shapira et al., WACV 2023) per image in the Linf ``eps`` ball: ``steps`` signed-gradient
    steps of ``alpha`` descending ``lambdas[0] l_max_objects + lambdas[1] l_bboxes_area + lambdas[2] l_IoU``
    (module docstring) with the pipeline's score threshold ``score_threshold`` (the paper's T = 0.25)."""
    eps, alpha = check_eps(eps), check_eps(alpha, "alpha")
    image_area = float(images.shape[-1] * images.shape[-2])
    with attacking(detector):
        images = private_images(images)
        with torch.no_grad():
            clean = [_keep(d, score_threshold) for d in _decode(detector(images))]
        x_adv = images.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = _sponge_loss(detector(x_adv), clean, score_threshold, image_area, lambdas)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = _project(x_adv.detach() - alpha * grad.sign(), images, eps)
    return x_adv.detach()
