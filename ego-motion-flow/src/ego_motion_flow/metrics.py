"""Optical-flow and motion-segmentation metrics, accumulated over a test epoch.

Flow: the KITTI 2015 scene-flow benchmark's outlier rate Fl (Menze & Geiger, "Object scene flow for autonomous
vehicles", CVPR 2015; devkit `io_flow.h`, `flowErrorsOutlier`) and the end-point error EPE as RAFT reports it on
KITTI (Teed & Deng, ECCV 2020, `evaluate.py`, `validate_kitti`). Motion segmentation: IoU and F1 of the
moving-object mask. The classes are `torchmetrics.Metric`s whose states are sums, so that DDP processes add up
exactly; `compute()` returns a dict whose keys are the logged names without the `test/` prefix.
"""

import math

import torch
from torch import Tensor
from torchmetrics import Metric

FL_ABS_THRESHOLD = 3.0  # px, KITTI 2015 devkit ABS_THRESH
FL_REL_THRESHOLD = 0.05  # of the ground-truth magnitude, KITTI 2015 devkit REL_THRESH
ALL, BG, FG = 0, 1, 2  # regions of FlowMetrics' states


def flow_errors(pred: Tensor, gt: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel end-point error and KITTI 2015 outlier flag.

    An outlier has EPE > 3 px AND EPE > 5 % of the ground-truth flow magnitude (KITTI 2015 devkit; RAFT's
    `out = (epe > 3.0) & ((epe / mag) > 0.05)`, written here without the division so that mag = 0 needs no care).

    Args:
        pred, gt: B x 2 x H x W flow (u, v) in pixels.
        valid: B x H x W bool, where the ground truth is known.

    Returns:
        (epe B x H x W float32, outlier B x H x W bool), both zero / False outside `valid`.
    """
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(f"pred and gt must both be B x 2 x H x W, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    if valid.shape != (pred.shape[0], *pred.shape[2:]):
        raise ValueError(f"valid must be B x H x W = {(pred.shape[0], *pred.shape[2:])}, got {tuple(valid.shape)}")
    valid = valid.bool()
    epe = torch.linalg.vector_norm(pred.float() - gt.float(), dim=1)
    mag = torch.linalg.vector_norm(gt.float(), dim=1)
    outlier = (epe > FL_ABS_THRESHOLD) & (epe > FL_REL_THRESHOLD * mag) & valid
    return torch.where(valid, epe, torch.zeros_like(epe)), outlier


def _ratio(numerator: Tensor, denominator: Tensor, scale: float = 1.0) -> float:
    """numerator / denominator * scale as a float; NaN when there is nothing to measure (denominator 0)."""
    return float(numerator / denominator * scale) if denominator > 0 else math.nan


class FlowMetrics(Metric):
    """EPE and Fl over a test set, overall and split into static background and moving foreground.

    Keys of `compute()`:

    - epe: mean EPE over the valid pixels of each image, averaged over images (RAFT's KITTI protocol:
      `epe_list.append(epe[val].mean())`, then the mean of the list). Each image counts the same whatever its
      number of valid pixels.
    - fl_all: percentage of outliers (`flow_errors`) among all valid pixels of all images, pooled (KITTI 2015
      devkit Fl-all; RAFT concatenates `out[val]` over images and takes the mean x 100). A large image weighs
      more than a small one: the two aggregations differ on purpose, as in the papers.
    - fl_bg, fl_fg: the same pooled percentage over valid background / foreground pixels (devkit Fl-bg, Fl-fg;
      foreground = the object map `obj_map` in KITTI 2015, here the `foreground` mask, e.g. moving objects).
    - epe_bg, epe_fg: per-image mean EPE over valid background / foreground pixels, averaged over the images that
      have such pixels. The KITTI 2015 devkit reports no EPE split (only Fl); these follow `epe`'s per-image
      convention.

    Images with no valid pixel are skipped by the EPE means. A key is NaN when there is nothing to measure (no
    valid pixel; for the splits, no `foreground` given or no pixel of that class).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        # indexed by ALL, BG, FG: the sum of per-image mean EPEs, the number of images that had pixels of
        # the region, and the pooled outlier and pixel counts
        self.add_state("epe_sum", torch.zeros(3, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros(3, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("outliers", torch.zeros(3, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("pixels", torch.zeros(3, dtype=torch.int64), dist_reduce_fx="sum")

    def _accumulate(self, region: int, epe: Tensor, outlier: Tensor, mask: Tensor) -> None:
        pixels = mask.flatten(1).sum(1)
        epe_sum = torch.where(mask, epe, torch.zeros_like(epe)).flatten(1).double().sum(1)
        has_pixels = pixels > 0
        self.epe_sum[region] += (epe_sum[has_pixels] / pixels[has_pixels]).sum()
        self.images[region] += has_pixels.sum()
        self.outliers[region] += (outlier & mask).sum()
        self.pixels[region] += pixels.sum()

    def update(
        self,
        pred: Tensor,
        gt: Tensor,
        valid: Tensor,
        foreground: Tensor | None = None,
        foreground_valid: Tensor | None = None,
    ) -> None:
        """Add a batch.

        Args:
            pred, gt: B x 2 x H x W flow.
            valid: B x H x W bool, where the ground-truth flow is known.
            foreground: B x H x W bool, True on foreground (moving-object) pixels; None: no bg/fg split.
            foreground_valid: B x H x W bool, where `foreground` is known (e.g. `moving_valid`); None: everywhere.
        """
        epe, outlier = flow_errors(pred, gt, valid)
        valid = valid.bool()
        self._accumulate(ALL, epe, outlier, valid)
        if foreground is None:
            return
        known = valid if foreground_valid is None else valid & foreground_valid.bool()
        self._accumulate(FG, epe, outlier, known & foreground.bool())
        self._accumulate(BG, epe, outlier, known & ~foreground.bool())

    def compute(self) -> dict[str, float]:
        return {
            "epe": _ratio(self.epe_sum[ALL], self.images[ALL]),
            "epe_bg": _ratio(self.epe_sum[BG], self.images[BG]),
            "epe_fg": _ratio(self.epe_sum[FG], self.images[FG]),
            "fl_all": _ratio(self.outliers[ALL], self.pixels[ALL], 100.0),
            "fl_bg": _ratio(self.outliers[BG], self.pixels[BG], 100.0),
            "fl_fg": _ratio(self.outliers[FG], self.pixels[FG], 100.0),
        }


class MotionSegMetrics(Metric):
    """IoU and F1 of the predicted moving-object mask, pooled over all known pixels of the test set.

    TP, FP and FN are counted over every pixel where `moving_valid` is True, in all images, and combined once:
    moving_iou = TP / (TP + FP + FN) (Jaccard index of the moving class), moving_f1 = 2 TP / (2 TP + FP + FN)
    (Dice). Pooling weighs images by their number of known pixels and is defined even for images without moving
    pixels. The alternative some papers use is a per-image (per-frame) score averaged over images, e.g. the
    region similarity J of the DAVIS benchmark (Perazzi et al., CVPR 2016), used by video motion-segmentation
    work; it weighs small objects more and needs a convention for images where prediction and truth are both
    empty. The two are not comparable. NaN when TP + FP + FN = 0 (nothing moving, nothing predicted).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, moving_valid: Tensor) -> None:
        """Add a batch of B x H x W bool masks: predicted moving, ground-truth moving, where the truth is known."""
        if not pred.shape == target.shape == moving_valid.shape:
            raise ValueError(
                "pred, target and moving_valid must have the same shape, got "
                f"{tuple(pred.shape)}, {tuple(target.shape)} and {tuple(moving_valid.shape)}"
            )
        pred, target, known = pred.bool(), target.bool(), moving_valid.bool()
        self.tp += (pred & target & known).sum()
        self.fp += (pred & ~target & known).sum()
        self.fn += (~pred & target & known).sum()

    def compute(self) -> dict[str, float]:
        return {
            "moving_iou": _ratio(self.tp, self.tp + self.fp + self.fn),
            "moving_f1": _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
        }


def _make_colorwheel() -> Tensor:
    """The 55 x 3 Middlebury colour wheel (0..255): red-yellow 15, yellow-green 6, green-cyan 4, cyan-blue 11,
    blue-magenta 13, magenta-red 6 steps (Baker et al., "A database and evaluation methodology for optical flow",
    IJCV 2011; D. Scharstein's C++ `colorcode.cpp`, RAFT's `flow_viz.make_colorwheel`)."""
    # (steps, channel held at 255, channel that ramps, ramps up?) with channels 0, 1, 2 = R, G, B
    segments = (
        (15, 0, 1, True),  # RY: red, green rises
        (6, 1, 0, False),  # YG: green, red falls
        (4, 1, 2, True),  # GC: green, blue rises
        (11, 2, 1, False),  # CB: blue, green falls
        (13, 2, 0, True),  # BM: blue, red rises
        (6, 0, 2, False),  # MR: red, blue falls
    )
    rows = []
    for n, full, ramp, rising in segments:
        # channel `full` stays at 255 while `ramp` rises 0 -> 255 or falls 255 -> 0 in floor(255 k / n) steps
        block = torch.zeros(n, 3, dtype=torch.float64)
        steps = torch.floor(255 * torch.arange(n, dtype=torch.float64) / n)
        block[:, full] = 255
        block[:, ramp] = steps if rising else 255 - steps
        rows.append(block)
    return torch.cat(rows)


def flow_to_color(flow: Tensor, max_magnitude: float | None = None) -> Tensor:
    """Middlebury colour coding of a flow field, for TensorBoard: hue = direction, saturation = magnitude.

    Same as RAFT's `flow_viz.flow_to_image` (RGB): the flow is divided by `max_magnitude` (default: the largest
    magnitude in the field + 1e-5), the direction atan2(-v, -u) picks a colour on the wheel (linear between its
    55 entries), the colour is blended towards white as 1 - r (1 - colour) for normalised magnitude r <= 1 (zero
    flow is white) and darkened by 0.75 beyond (only with a fixed `max_magnitude`).

    Args:
        flow: 2 x H x W (u, v).
        max_magnitude: magnitude shown fully saturated; fix it to compare images.

    Returns:
        3 x H x W uint8 RGB.
    """
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be 2 x H x W, got {tuple(flow.shape)}")
    flow = flow.detach().double().cpu()
    if max_magnitude is None:
        max_magnitude = float(torch.linalg.vector_norm(flow, dim=0).max()) + 1e-5
    u, v = flow[0] / max_magnitude, flow[1] / max_magnitude
    wheel = _make_colorwheel()
    n_colors = len(wheel)
    rad = torch.sqrt(u**2 + v**2)
    fk = (torch.atan2(-v, -u) / math.pi + 1) / 2 * (n_colors - 1)
    k0 = torch.floor(fk).long()
    k1 = torch.where(k0 + 1 == n_colors, 0, k0 + 1)
    f = (fk - k0)[None]
    col = ((1 - f) * wheel[k0].permute(2, 0, 1) + f * wheel[k1].permute(2, 0, 1)) / 255.0
    inside = (rad <= 1)[None]
    col = torch.where(inside, 1 - rad[None] * (1 - col), col * 0.75)
    return torch.floor(255 * col).to(torch.uint8)
