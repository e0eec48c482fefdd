"""What every method shares: the separation output, the metrics of the issue, trajectories and pictures.

A method is a LightningModule whose ``separate(batch)`` returns

- ``flow`` (B x 2 x H x W): its full optical flow (the flow source's for the geometric methods),
- ``rigid_flow`` (B x 2 x H x W) or ``None``: the flow the camera motion alone explains,
- ``moving`` (B x H x W bool) or ``None``: pixels of independently moving objects,
- ``T_21`` (B x 4 x 4) or ``None``: the camera motion it estimated (INTERFACE: X_cam2 = T_21 X_cam1).

Validation and test compute from these, against the sample's ground truth (``metrics.py``):
``epe``, ``fl_all``, ``fl_bg``, ``fl_fg``, ``epe_bg``, ``epe_fg`` of ``flow`` (fg = ground-truth moving pixels),
``epe_rigid_bg``: end-point error of ``rigid_flow`` against the ground-truth flow on static valid pixels
(how well the camera motion is explained, measurable on every dataset with flow), ``moving_iou`` and
``moving_f1``, and per sequence (pairs chained in frame order, ``trajectory.py``) ``ate``, ``rpe_trans``,
``rpe_rot`` (evo's APE/RPE; Umeyama alignment with scale for monocular methods, whose translation has no
scale) and the KITTI odometry ``t_err`` / ``r_err`` where a sequence is 100 m or longer. A metric a
method or dataset cannot give is NaN. TensorBoard gets image | flow | rigid flow | residual | moving mask.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from ego_motion_flow import trajectory
from ego_motion_flow.metrics import FlowMetrics, MotionSegMetrics
from ego_motion_flow.visualize import separation_panel
from shared_utils.logging import log_image

# A residual counts as object motion when it is an outlier in KITTI's sense (> 3 px and > 5 % of the flow):
# the field's standard flow-error threshold, fixed in advance rather than tuned on any split.
RESIDUAL_PX, RESIDUAL_REL = 3.0, 0.05
PICTURE_PAIRS = 4


def residual_moving(residual: Tensor, flow: Tensor, px: float = RESIDUAL_PX, rel: float = RESIDUAL_REL) -> Tensor:
    """Moving where the residual is > ``px`` pixels and > ``rel`` of the flow's magnitude (B x H x W bool)."""
    r, f = residual.norm(dim=1), flow.norm(dim=1)
    return (r > px) & (r > rel * f)


class MotionMethod(LightningModule, ABC):
    """Base of every method: evaluation, trajectories and pictures; subclasses write ``separate``."""

    monitor = "val/epe"
    monitor_mode = "min"
    # True where the estimated translation has no metric scale (essential matrix, monocular self-supervision).
    monocular = False

    @abstractmethod
    def separate(self, batch: dict) -> dict[str, Tensor | None]:
        """The separation of a batch (module docstring)."""

    # ---- evaluation -------------------------------------------------------------------------------------
    def _start(self) -> None:
        self.flow_metrics = FlowMetrics().to(self.device)
        self.rigid_metrics = FlowMetrics().to(self.device)
        self.seg_metrics = MotionSegMetrics().to(self.device)
        self.measured: set[str] = set()  # which of rigid / seg got an update (a method may give neither)
        self.poses: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = defaultdict(list)

    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> None:
        out = self.separate(batch)
        valid = batch["flow_valid"]
        static = valid & batch["moving_valid"] & ~batch["moving"]
        self.flow_metrics.update(out["flow"], batch["flow"], valid, batch["moving"], batch["moving_valid"])
        if out.get("rigid_flow") is not None:
            self.rigid_metrics.update(out["rigid_flow"], batch["flow"], static)
            self.measured.add("rigid")
        if out.get("moving") is not None:
            self.seg_metrics.update(out["moving"], batch["moving"], batch["moving_valid"])
            self.measured.add("seg")
        if out.get("T_21") is not None:
            for i in range(len(batch["frame"])):
                if bool(batch["has_pose"][i]):
                    self.poses[batch["sequence"][i]].append((int(batch["frame"][i]),
                                                             out["T_21"][i].double().cpu().numpy(),
                                                             batch["T_21"][i].double().cpu().numpy()))
        if batch_idx == 0:
            self._log_pictures(batch, out, stage)

    def _finish(self, stage: str) -> None:
        metrics = self.flow_metrics.compute()
        metrics["epe_rigid_bg"] = self.rigid_metrics.compute()["epe"] if "rigid" in self.measured else math.nan
        metrics.update(self.seg_metrics.compute() if "seg" in self.measured
                       else {"moving_iou": math.nan, "moving_f1": math.nan})
        metrics.update(self._trajectory_metrics())
        self.log_dict({f"{stage}/{k}": float(v) for k, v in metrics.items()}, batch_size=1)

    def _trajectory_metrics(self) -> dict[str, float]:
        """evo's APE / RPE and KITTI's odometry errors of each sequence's chained motions, averaged over sequences
        (a sequence whose frames are not consecutive is cut into its consecutive runs)."""
        rows = defaultdict(list)
        for pairs in self.poses.values():
            pairs.sort(key=lambda p: p[0])
            runs, run = [], [pairs[0]]
            for pair in pairs[1:]:
                if pair[0] != run[-1][0] + 1:
                    runs.append(run)
                    run = []
                run.append(pair)
            runs.append(run)
            for run in runs:
                if len(run) < 2:
                    continue
                est = trajectory.chain_relative([p[1] for p in run])
                gt = trajectory.chain_relative([p[2] for p in run])
                try:
                    ate = trajectory.ate(gt, est, align=True, correct_scale=self.monocular)
                    rpe = trajectory.rpe(gt, est, delta=1, align=True, correct_scale=self.monocular)
                except ValueError:  # estimate at one point or on a line: evo refuses to align it; compare as is
                    ate = trajectory.ate(gt, est, align=False, correct_scale=False)
                    rpe = trajectory.rpe(gt, est, delta=1, align=False, correct_scale=False)
                t_err, r_err = trajectory.kitti_odometry_errors(gt, est)
                rows["ate"].append(ate["rmse"])
                rows["rpe_trans"].append(rpe["trans_rmse"])
                rows["rpe_rot"].append(rpe["rot_rmse_deg"])
                rows["t_err"].append(t_err)
                rows["r_err"].append(r_err)
        names = ("ate", "rpe_trans", "rpe_rot", "t_err", "r_err")
        return {k: float(np.nanmean(rows[k])) if rows[k] and not np.all(np.isnan(rows[k])) else math.nan
                for k in names}

    def _log_pictures(self, batch: dict, out: dict, stage: str) -> None:
        rows = []
        for i in range(min(PICTURE_PAIRS, len(batch["image1"]))):
            rigid = out.get("rigid_flow")
            moving = out.get("moving")
            rows.append(separation_panel(batch["image1"][i], out["flow"][i],
                                         None if rigid is None else rigid[i],
                                         None if moving is None else moving[i]))
        log_image(self.logger, f"{stage}/image_flow_rigid_residual_moving", torch.cat(rows, dim=1),
                  self.current_epoch)

    def on_validation_epoch_start(self) -> None:
        self._start()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_start(self) -> None:
        self._start()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return self.separate(batch)
