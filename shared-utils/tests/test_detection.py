"""CenterNet: targets by hand, an encode/decode round trip, images without objects, and a fit that finds two
objects on a tiny image (the detector learns; quality is measured by the projects that use it)."""

from __future__ import annotations

import math

import pytest
import torch

from shared_utils.boxes import box_iou
from shared_utils.detection import STRIDE, CenterNet, centernet_targets, focal_loss, gaussian_radius

BOXES = torch.tensor([[8.0, 12.0, 40.0, 36.0], [44.0, 40.0, 60.0, 62.0]])
LABELS = torch.tensor([1, 0])


def test_targets_by_hand() -> None:
    t = centernet_targets(BOXES, LABELS, num_classes=2, size=(16, 16))
    # Centre of box 0: (24, 24) px -> (6, 6) at stride 4, offset 0; box 1: (52, 51) -> (13, 12.75).
    assert t["heatmap"][1, 6, 6] == 1 and t["heatmap"][0, 12, 13] == 1
    assert t["index"].tolist() == [6 * 16 + 6, 12 * 16 + 13]
    torch.testing.assert_close(t["wh"], torch.tensor([[8.0, 6.0], [4.0, 5.5]]))
    torch.testing.assert_close(t["offset"], torch.tensor([[0.0, 0.0], [0.0, 0.75]]))
    radius = int(gaussian_radius(6, 8))
    assert t["heatmap"][1, 6, 6 + radius + 1] == 0 and (radius == 0 or t["heatmap"][1, 6, 6 + radius] > 0)
    empty = centernet_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 2, (16, 16))
    assert empty["heatmap"].sum() == 0 and len(empty["index"]) == 0


def test_gaussian_radius_grows_with_the_box() -> None:
    radii = [gaussian_radius(s, s) for s in (4, 8, 16, 32)]
    assert all(a < b for a, b in zip(radii, radii[1:]))
    assert gaussian_radius(10, 10, min_overlap=0.9) < gaussian_radius(10, 10, min_overlap=0.5)


def test_decode_inverts_the_targets() -> None:
    t = centernet_targets(BOXES, LABELS, num_classes=2, size=(16, 16))
    heat = t["heatmap"].clamp(1e-6, 1 - 1e-6)
    wh, offset = torch.zeros(2, 256), torch.zeros(2, 256)
    wh[:, t["index"]], offset[:, t["index"]] = t["wh"].T, t["offset"].T
    outputs = {"heatmap": torch.log(heat / (1 - heat))[None], "wh": wh.view(1, 2, 16, 16),
               "offset": offset.view(1, 2, 16, 16), "features": torch.randn(1, 8, 16, 16)}
    detection = CenterNet.decode(outputs, k=2)[0]  # decode uses no parameters
    order = detection["labels"].argsort(descending=True)  # label 1 (box 0) first
    torch.testing.assert_close(detection["boxes"][order], BOXES)
    assert detection["scores"].tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert detection["features"].shape == (2, 8)


def test_focal_loss_by_hand() -> None:
    target = torch.tensor([1.0, 0.5, 0.0])
    logits = torch.zeros(3)  # p = 0.5 everywhere
    expected = -(math.log(0.5) * 0.25 + math.log(0.5) * 0.25 * 0.5 ** 4 + math.log(0.5) * 0.25)
    assert focal_loss(logits, target).item() == pytest.approx(expected)


@pytest.fixture(scope="module")
def two_squares() -> tuple[torch.Tensor, dict]:
    image = torch.full((3, 64, 64), 0.5)
    image[:, 12:36, 8:40] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]  # box 0, label 1: red
    image[:, 40:62, 44:60] = torch.tensor([0.1, 0.1, 0.9])[:, None, None]  # box 1, label 0: blue
    return image, {"boxes": BOXES, "labels": LABELS}


def test_image_without_objects_trains(two_squares) -> None:
    torch.manual_seed(0)
    model = CenterNet(num_classes=2)
    image, target = two_squares
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model.loss(model(torch.stack([image, image])), [target, empty])
    assert torch.isfinite(losses["loss"]) and losses["size"] > 0
    losses["loss"].backward()
    alone = model.loss(model(image[None]), [empty])
    assert torch.isfinite(alone["loss"]) and alone["size"] == 0 and alone["offset"] == 0


def test_fit_finds_the_two_objects(two_squares) -> None:
    torch.manual_seed(0)
    model = CenterNet(num_classes=2, head_channels=32)
    image, target = two_squares
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    for _ in range(150):
        optimizer.zero_grad()
        model.loss(model(image[None]), [target])["loss"].backward()
        optimizer.step()
    model.eval()
    detection = model.decode(model(image[None]), k=2)[0]
    for box, label in zip(BOXES, LABELS):
        matches = detection["labels"] == label
        assert matches.any(), f"no detection of class {int(label)}"
        assert box_iou(box[None], detection["boxes"][matches]).max() > 0.6
    assert (detection["scores"] > 0.3).all()
    assert STRIDE == 4
