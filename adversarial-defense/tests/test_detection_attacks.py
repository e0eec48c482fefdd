"""Detection attacks on a small CenterNet (pretrained Lite0, untrained heads, 64 x 64 scenes): the conventions
of every attack, each attack moving its own objective the way its paper says, TOG's success definitions and
mislabeling targets on hand-made cases, the NMS candidates and their NMS against hand-built outputs and brute
force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from adversarial_defense.attacks._common import EpsUnitError
from adversarial_defense.attacks.detection import (
    TOG_KINDS,
    _as_targets,
    _relabel,
    clean_detections,
    nms_candidates,
    nms_load,
    sponge,
    tog,
    tog_success,
    tog_universal,
)
from adversarial_defense.data.scenes import render
from shared_utils.boxes import batched_nms, box_iou
from shared_utils.detection import CenterNet

EPS = 8 / 255



@pytest.fixture(scope="module")
def detector() -> CenterNet:
    torch.manual_seed(0)
    return CenterNet(num_classes=3)  # the wheel's ImageNet Lite0: its heatmap depends on the image


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    scenes = [render(np.random.default_rng([7, i]), 64)[0] for i in range(2)]
    return torch.stack([torch.from_numpy(s).permute(2, 0, 1).float() / 255 for s in scenes])


def scores(detector: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return detector(x)["heatmap"].sigmoid()


ATTACKS = {
    **{f"tog_{kind}": (lambda d, x, kind=kind: tog(d, x, kind, eps=EPS, n_iter=3, score_threshold=0.12,
                                                 generator=torch.Generator().manual_seed(0))) for kind in TOG_KINDS},
    "sponge": lambda d, x: sponge(d, x, eps=EPS, steps=3, score_threshold=0.12),
    "tog_universal": lambda d, x: (x + tog_universal(d, [x[:1], x[1:]], eps=EPS, epochs=1)).clamp(0, 1),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_keeps_the_conventions(detector: CenterNet, images: torch.Tensor, name: str):
    detector.train()
    detector.backbone.eval()  # a part frozen in eval mode on purpose stays so
    modes = [m.training for m in detector.modules()]
    x = images.clone()
    with torch.inference_mode():  # as in a Lightning test step
        adv = ATTACKS[name](detector, x)
    assert torch.equal(x, images)
    assert not adv.requires_grad and adv.shape == x.shape and adv.dtype == x.dtype
    assert (adv - x).abs().max() <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert not torch.equal(adv, x)
    assert [m.training for m in detector.modules()] == modes
    detector.eval()


def test_eps_in_the_wrong_unit_is_refused(detector: CenterNet, images: torch.Tensor):
    with pytest.raises(EpsUnitError):
        tog(detector, images, eps=8)
    with pytest.raises(EpsUnitError):
        sponge(detector, images, alpha=2)
    with pytest.raises(TypeError, match="not an iterator"):
        tog_universal(detector, iter([images]), epochs=1)


def test_vanishing_lowers_and_fabrication_raises_the_objectness(detector: CenterNet, images: torch.Tensor):
    clean = scores(detector, images)
    vanished = scores(detector, tog(detector, images, "vanishing", generator=torch.Generator().manual_seed(0)))
    assert (vanished.amax(dim=(1, 2, 3)) < clean.amax(dim=(1, 2, 3))).all()
    # An untrained head scores ~0.1 everywhere: count the (class, position) pairs above the clean 90th percentile.
    threshold = clean.flatten().quantile(0.9)
    fabricated = scores(detector, tog(detector, images, "fabrication", generator=torch.Generator().manual_seed(0)))
    assert ((fabricated > threshold).flatten(1).sum(1) > (clean > threshold).flatten(1).sum(1)).all()


def test_untargeted_raises_and_mislabeling_lowers_the_detection_loss(detector: CenterNet, images: torch.Tensor):
    found = clean_detections(detector, images, score_threshold=0.12)
    assert all(len(d["scores"]) for d in found)

    def loss(x: torch.Tensor, labels: str) -> float:
        with torch.no_grad():
            return detector.loss(detector(x), _as_targets(found, labels, (64, 64)))["loss"].item()

    untargeted = tog(detector, images, "untargeted", score_threshold=0.12, generator=torch.Generator().manual_seed(0))
    assert loss(untargeted, "labels") > loss(images, "labels")
    mislabeled = tog(detector, images, "mislabeling", score_threshold=0.12, generator=torch.Generator().manual_seed(0))
    assert loss(mislabeled, "target_labels") < loss(images, "target_labels")


def test_universal_perturbation_lowers_the_objectness_of_its_training_images(detector: CenterNet,
                                                                              images: torch.Tensor):
    delta = tog_universal(detector, [images[:1], (images[1:], "labels ignored")], eps=EPS, eps_iter=2 / 255,
                          epochs=3, generator=torch.Generator().manual_seed(0))
    assert delta.shape == (1, 3, 64, 64) and delta.abs().max() <= EPS + 1e-6
    before, after = scores(detector, images), scores(detector, (images + delta).clamp(0, 1))
    assert after.sum() < before.sum()


def test_sponge_raises_the_candidate_count(detector: CenterNet, images: torch.Tensor):
    threshold = scores(detector, images).flatten().quantile(0.9).item()
    adv = sponge(detector, images, score_threshold=threshold)
    clean_load, adv_load = nms_load(detector, images, threshold), nms_load(detector, adv, threshold)
    assert adv_load["candidates"] > 1.2 * clean_load["candidates"] and adv_load["nms_ms"] > 0


# ------------------------------------------------------------------------------------------------ hand-made cases
def outputs_of(heatmap: torch.Tensor, wh: torch.Tensor, offset: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"heatmap": heatmap, "wh": wh, "offset": offset, "features": torch.zeros(heatmap.shape[0], 1,
                                                                                   *heatmap.shape[-2:])}


class Fixed(nn.Module):
    """A "detector" whose outputs are given: nms_load is then checked against hand-counted candidates."""

    def __init__(self, outputs: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.outputs


def test_nms_candidates_of_a_hand_built_output():
    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    heatmap = torch.full((2, 2, 2, 3), logit(0.01))  # B 2, C 2, h 2, w 3
    heatmap[0, 1, 0, 2] = logit(0.5)  # image 0: class 1 at row 0, column 2
    heatmap[0, 0, 1, 0] = logit(0.06)  # just above 0.05
    heatmap[0, 1, 1, 0] = logit(0.04)  # just below
    heatmap[1, 0, 0, 0] = logit(0.9)  # image 1: one candidate
    wh = torch.zeros(2, 2, 2, 3)
    wh[0, :, 0, 2] = torch.tensor([2.0, 4.0])  # w 2, h 4 (stride units)
    offset = torch.zeros(2, 2, 2, 3)
    offset[0, :, 0, 2] = torch.tensor([0.5, 0.25])
    found = nms_candidates(outputs_of(heatmap, wh, offset), score_threshold=0.05)
    assert found[0]["labels"].tolist() == [0, 1] and found[1]["labels"].tolist() == [0]
    # class 1 at (x 2, y 0): centre (2.5, 0.25), box (1.5, -1.75, 3.5, 2.25) x stride 4
    assert torch.allclose(found[0]["boxes"][1], torch.tensor([6.0, -7.0, 14.0, 9.0]))
    assert torch.allclose(found[0]["scores"], torch.tensor([0.06, 0.5]))
    load = nms_load(Fixed(outputs_of(heatmap, wh, offset)), torch.zeros(2, 3, 8, 12), score_threshold=0.05)
    assert load["candidates"] == 1.5


def brute_force_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float) -> set:
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i].item()):
        if all(labels[i] != labels[j] or box_iou(boxes[i:i + 1], boxes[j:j + 1]).item() <= iou_threshold for j in kept):
            kept.append(i)
    return set(kept)


def test_nms_over_the_candidates_keeps_what_brute_force_keeps():
    generator = torch.Generator().manual_seed(0)
    heatmap = torch.randn(1, 3, 8, 8, generator=generator)
    wh = 1 + 3 * torch.rand(1, 2, 8, 8, generator=generator)  # boxes of 1-4 cells: neighbours overlap
    offset = torch.rand(1, 2, 8, 8, generator=generator)
    found = nms_candidates(outputs_of(heatmap, wh, offset), score_threshold=0.3)[0]
    assert len(found["scores"]) > 50
    kept = batched_nms(found["boxes"], found["scores"], found["labels"], 0.5)
    assert 0 < len(kept) < len(found["scores"])
    assert set(kept.tolist()) == brute_force_nms(found["boxes"], found["scores"], found["labels"], 0.5)


def dets(boxes, labels, scores=None, target_labels=None) -> dict[str, torch.Tensor]:
    d = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels).long(),
         "scores": torch.tensor(scores if scores is not None else [0.9] * len(labels))}
    if target_labels is not None:
        d["target_labels"] = torch.tensor(target_labels).long()
    return d


A, B = [0, 0, 10, 10], [20, 20, 40, 40]
A_MOVED = [0, 0, 10, 20]  # IoU 0.5 with A: still found again
A_GONE = [0, 0, 10, 21]  # IoU < 0.5


@pytest.mark.parametrize(
    ("kind", "clean", "adv", "expected"),
    [
        ("vanishing", dets([A], [0]), dets([], []), True),
        ("vanishing", dets([A], [0]), dets([A], [0], [0.29]), True),  # below the threshold: not a detection
        ("vanishing", dets([A], [0]), dets([B], [1]), False),
        ("fabrication", dets([A], [0]), dets([A, B], [0, 0]), True),
        ("fabrication", dets([A], [0]), dets([B], [1]), False),
        ("mislabeling", dets([A, B], [0, 1], target_labels=[2, 0]), dets([A_MOVED, B], [2, 0]), True),
        ("mislabeling", dets([A, B], [0, 1], target_labels=[2, 0]), dets([A, B], [2, 1]), False),
        ("mislabeling", dets([A, B], [0, 1], target_labels=[2, 0]), dets([A_GONE, B], [2, 0]), False),
        ("mislabeling", dets([], [], target_labels=[]), dets([], []), False),  # nothing to mislabel
        ("untargeted", dets([A, B], [0, 1]), dets([B, A_MOVED], [1, 0]), False),
        ("untargeted", dets([A, B], [0, 1]), dets([A, B], [0, 2]), True),  # relabelled
        ("untargeted", dets([A, B], [0, 1]), dets([A_GONE, B], [0, 1]), True),  # moved
        ("untargeted", dets([A], [0]), dets([A, B], [0, 1]), True),  # fabricated
        ("untargeted", dets([A, B], [0, 1]), dets([A], [0]), True),  # vanished
    ],
)
def test_tog_success_definitions(kind: str, clean: dict, adv: dict, expected: bool):
    assert tog_success([clean], [adv], kind, score_threshold=0.3).tolist() == [expected]


def test_tog_success_needs_the_mislabeling_targets():
    with pytest.raises(KeyError, match="clean_detections"):
        tog_success([dets([A], [0])], [dets([A], [1])], "mislabeling")


def test_mislabeling_targets_least_likely_most_likely_or_given():
    # Two detections (labels 0 and 2) over 4 classes; sigmoid(0) = 0.5 is above the 0.3 threshold.
    logits = torch.tensor([[3.0, -4.0, 0.0, -1.0], [-5.0, -2.0, 2.0, -3.0]])
    labels = torch.tensor([0, 2])
    assert _relabel(logits, labels, 0.3, None).tolist() == [1, 0]  # least likely
    assert _relabel(logits, labels, 0.3, "ll").tolist() == [1, 0]
    assert _relabel(logits, labels, 0.3, "ml").tolist() == [3, 1]  # class 2 of detection 0 is detected (0.5)
    assert _relabel(logits, labels, 0.3, 3).tolist() == [3, 3]
    with pytest.raises(ValueError, match="least likely"):
        _relabel(logits, labels, 0.3, "random")
    with pytest.raises(ValueError, match="not a class index"):
        _relabel(logits, labels, 0.3, 4)
