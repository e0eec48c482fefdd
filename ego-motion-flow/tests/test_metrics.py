"""Flow and motion-segmentation metrics against cases worked by hand."""

import math

import pytest
import torch

from ego_motion_flow.metrics import FlowMetrics, MotionSegMetrics, _make_colorwheel, flow_errors, flow_to_color


def flow_batch(gt_uv: list[list[tuple[float, float]]], err_u: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """B x 2 x 1 x W ground truth from (u, v) per pixel, and a prediction off by err_u pixels along u."""
    gt = torch.tensor(gt_uv, dtype=torch.float32).permute(0, 2, 1)[:, :, None, :]
    pred = gt.clone()
    pred[:, 0, 0, :] += torch.tensor(err_u)
    return pred, gt


def test_flow_errors_outlier_definition() -> None:
    # pixel: (gt magnitude, EPE) -> outlier iff EPE > 3 and EPE > 0.05 |gt|
    gt_uv = [[(0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 100.0), (0.0, 50.0), (0.0, 0.0)]]
    err = [[2.9, 3.0, 3.5, 4.0, 4.0, 100.0]]
    pred, gt = flow_batch(gt_uv, err)
    valid = torch.tensor([[[True, True, True, True, True, False]]])
    epe, outlier = flow_errors(pred, gt, valid)
    torch.testing.assert_close(epe, torch.tensor([[[2.9, 3.0, 3.5, 4.0, 4.0, 0.0]]]))
    # 3.0 is not > 3; 4 < 0.05 * 100 = 5; 4 > 0.05 * 50 = 2.5; invalid pixels are never outliers
    assert outlier.tolist() == [[[False, False, True, False, True, False]]]


def test_flow_errors_checks_shapes() -> None:
    with pytest.raises(ValueError, match="B x 2 x H x W"):
        flow_errors(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.ones(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="valid"):
        flow_errors(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), torch.ones(2, 2, dtype=torch.bool))


def two_images() -> dict[str, torch.Tensor]:
    """Image 1: four valid pixels with EPE 1, 1, 1, 5 (the 5 on a 200 px flow: 5 < 10, not an outlier);
    image 2: one valid pixel with EPE 10 on zero flow (an outlier), three invalid pixels with big errors.

    Foreground: image 1 pixel 3 (EPE 5); image 1 pixel 2 has unknown foreground; image 2 is all background.
    By hand:
      epe    = mean(mean(1, 1, 1, 5), mean(10)) = mean(2, 10) = 6  (pooled would be 18 / 5 = 3.6)
      fl_all = 1 outlier / 5 valid = 20 %                            (per-image would be mean(0, 100) = 50 %)
      bg: image 1 pixels 0, 1 (EPE 1, 1), image 2 pixel 0 (EPE 10, outlier)
      epe_bg = mean(1, 10) = 5.5, fl_bg = 1 / 3
      fg: image 1 pixel 3 only: epe_fg = 5 (image 2 has no foreground pixel, it is skipped), fl_fg = 0
    """
    pred, gt = flow_batch(
        [[(0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 200.0)], [(0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)]],
        [[1.0, 1.0, 1.0, 5.0], [10.0, 50.0, 50.0, 50.0]],
    )
    return {
        "pred": pred,
        "gt": gt,
        "valid": torch.tensor([[[True, True, True, True]], [[True, False, False, False]]]),
        "foreground": torch.tensor([[[False, False, True, True]], [[False, False, True, True]]]),
        "foreground_valid": torch.tensor([[[True, True, False, True]], [[True, True, True, True]]]),
    }


EXPECTED = {"epe": 6.0, "fl_all": 20.0, "epe_bg": 5.5, "fl_bg": 100 / 3, "epe_fg": 5.0, "fl_fg": 0.0}


def test_flow_metrics_two_images_by_hand() -> None:
    metric = FlowMetrics()
    metric.update(**two_images())
    assert metric.compute() == pytest.approx(EXPECTED)


def test_flow_metrics_accumulate_over_batches_and_skip_images_without_valid_pixels() -> None:
    batch = two_images()
    metric = FlowMetrics()
    for b in range(2):
        metric.update(**{k: v[b : b + 1] for k, v in batch.items()})
    empty = {k: v[:1].clone() for k, v in batch.items()}
    empty["valid"][:] = False
    metric.update(**empty)  # no valid pixel: counts for neither the EPE means nor Fl
    assert metric.compute() == pytest.approx(EXPECTED)
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' warning; nothing to measure
        assert all(math.isnan(v) for v in metric.compute().values())


def test_flow_metrics_without_foreground_have_nan_splits() -> None:
    batch = two_images()
    metric = FlowMetrics()
    metric.update(batch["pred"], batch["gt"], batch["valid"])
    result = metric.compute()
    assert (result["epe"], result["fl_all"]) == pytest.approx((6.0, 20.0))
    assert all(math.isnan(result[k]) for k in ("epe_bg", "epe_fg", "fl_bg", "fl_fg"))


def test_motion_seg_metrics_pooled_by_hand() -> None:
    """Image 1: TP 1 (pixel 0), FP 1 (pixel 1), FN 1 (pixel 2). Image 2: TP 4, and a wrong pixel where the
    truth is unknown (ignored). Pooled: TP 5, FP 1, FN 1 -> IoU 5/7, F1 10/12 (per-image IoU would be
    mean(1/3, 1) = 2/3)."""
    pred = torch.tensor([[[1, 1, 0, 0, 0]], [[1, 1, 1, 1, 1]]], dtype=torch.bool)
    target = torch.tensor([[[1, 0, 1, 0, 0]], [[1, 1, 1, 1, 0]]], dtype=torch.bool)
    known = torch.tensor([[[1, 1, 1, 1, 1]], [[1, 1, 1, 1, 0]]], dtype=torch.bool)
    metric = MotionSegMetrics()
    metric.update(pred, target, known)
    assert metric.compute() == pytest.approx({"moving_iou": 5 / 7, "moving_f1": 10 / 12})
    metric.reset()
    metric.update(pred[:1], target[:1], torch.zeros_like(known[:1]))
    assert all(math.isnan(v) for v in metric.compute().values())
    with pytest.raises(ValueError, match="same shape"):
        metric.update(pred, target[:1], known)


def test_colorwheel_segments() -> None:
    wheel = _make_colorwheel()
    assert wheel.shape == (55, 3)
    # the first entry of each segment: red, yellow, green, cyan, blue, magenta
    firsts = {0: (255, 0, 0), 15: (255, 255, 0), 21: (0, 255, 0), 25: (0, 255, 255), 36: (0, 0, 255), 49: (255, 0, 255)}
    for index, rgb in firsts.items():
        assert wheel[index].tolist() == list(rgb)
    assert wheel[1].tolist() == [255, 17, 0]  # floor(255 / 15)
    assert wheel[54].tolist() == [255, 0, 43]  # MR: blue = 255 - floor(255 * 5 / 6) = 255 - 212


def test_flow_to_color_by_hand() -> None:
    # (u, v) at max_magnitude 1, one pixel each
    cases = {
        (0.0, 0.0): (255, 255, 255),  # no motion: white
        (1.0, 0.0): (255, 0, 0),  # right: wheel[0], red
        (0.5, 0.0): (255, 127, 127),  # half magnitude: 1 - 0.5 (1 - colour)
        (-1.0, 0.0): (0, 209, 255),  # left: fk = 27, wheel[27] = (0, 255 - floor(255 * 2 / 11), 255)
        (0.0, 1.0): (255, 229, 0),  # down: fk = 13.5, mean of wheel[13] and wheel[14] green 221, 238
        (2.0, 0.0): (191, 0, 0),  # beyond max_magnitude: colour x 0.75
    }
    flow = torch.tensor(list(cases)).T[:, None, :]  # 2 x 1 x 6
    image = flow_to_color(flow, max_magnitude=1.0)
    assert image.dtype == torch.uint8 and image.shape == (3, 1, 6)
    assert image[:, 0, :].T.tolist() == [list(rgb) for rgb in cases.values()]


def test_flow_to_color_default_scale_is_the_largest_magnitude() -> None:
    flow = torch.tensor([[[4.0, 2.0]], [[0.0, 0.0]]])
    image = flow_to_color(flow)
    assert image[:, 0, 0].tolist() == [255, 0, 0]  # the largest vector is fully saturated
    assert image[:, 0, 1].tolist() == [255, 127, 127]  # half of it is half saturated
