"""The Lightning layer shared by every uncertainty method: losses, steps, metrics, TensorBoard images.

A method is a subclass that changes at most three things:

- ``segmentation_loss(out, batch)``: how the BEV head is trained (default: LSS's weighted cross-entropy);
- ``combine_losses(seg, depth)``: how the segmentation and depth losses add up (default: BEVDepth's fixed weight);
- ``predict(batch)``: the per-cell vehicle probability and the uncertainty scores (default: softmax entropy).

``predict`` returns ``prob`` (B, H, W) vehicle probability, ``uncertainty`` (B, H, W) the score of a
likely-wrong cell (misclassification metrics and AUSE) and ``ood_score`` (B, H, W) the score of an
out-of-distribution cell (OOD metrics). For most methods the two scores are the same predictive
entropy; methods with an epistemic term use it for OOD (mutual information, Dirichlet vacuity). An
optional ``unseen_score`` scores cells no sensor saw (``test/auroc_unobserved``; default: ``ood_score``), and
optional ``ood_candidates`` ({name: (B, H, W)}) are alternative OOD scores a method compares (``val/auroc_ood/<name>``
and ``test/auroc_ood/<name>``): its ``ood_score`` is chosen among them on the validation split, whose synthetic
scenes hold OOD objects of other kinds than the test split's.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from bev_uncertainty.data.grid import BEVGrid
from bev_uncertainty.metrics import auroc_aupr, reliability_bins, segmentation_metrics, sparsification
from bev_uncertainty.models.lss import LiftSplat
from bev_uncertainty.visualize import bev_panel, camera_panel
from shared_utils.logging import line_plot, log_image


def binary_entropy(prob: Tensor) -> Tensor:
    """Entropy (nats) of the 2-class distribution (1 - p, p)."""
    p = prob.clamp(1e-7, 1 - 1e-7)
    return -(p * p.log() + (1 - p) * (1 - p).log())


class BEVSegmentation(LightningModule):
    """Lift-Splat vehicle segmentation with the softmax-entropy baseline (Hendrycks & Gimpel, ICLR 2017).

    Args:
        model: the network (``models.lss.LiftSplat``).
        lr, weight_decay: Adam, as LSS (1e-3, 1e-7).
        depth_weight: BEVDepth's depth loss factor (3.0).
        pos_weight: weight of the vehicle class in the cross-entropy (LSS: 2.13).
    """

    monitor = "val/iou"
    monitor_mode = "max"
    # __init__ arguments that only change how a trained network is evaluated (sample counts...):
    # `test --config c.yaml --ckpt_path x.ckpt` takes them from the config, everything else from the checkpoint
    # (shared_utils.cli.checkpoint_hparams). The baseline has none.
    test_time_hparams: tuple[str, ...] = ()

    def __init__(self, model: LiftSplat, lr: float = 1e-3, weight_decay: float = 1e-7, depth_weight: float = 3.0,
                 pos_weight: float = 2.13) -> None:
        super().__init__()
        self.save_hyperparameters()  # under LightningCLI the model is recorded as its class_path + init_args
        self.model = model
        self.register_buffer("class_weight", torch.tensor([1.0, pos_weight]), persistent=False)
        self._test: dict[str, list[Tensor]] = {}
        self._val: dict[str, list[Tensor]] = {}

    # ------------------------------------------------------------------ geometry from the data

    def networks(self) -> list[LiftSplat]:
        """The Lift-Splat networks of the method (several for an ensemble)."""
        return [self.model]

    def set_geometry(self, grid: BEVGrid, image_size: tuple[int, int]) -> None:
        for net in self.networks():
            net.set_geometry(grid, image_size)

    def setup(self, stage: str) -> None:
        """The BEV grid and image size come from the datamodule, so a data config alone sets them."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None:
            self.set_geometry(datamodule.grid, datamodule.image_size)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        net = self.networks()[0]
        checkpoint["bev_geometry"] = {"grid": dataclasses.asdict(net.grid), "image_size": list(net.image_size)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "bev_geometry" in checkpoint:
            geometry = checkpoint["bev_geometry"]
            self.set_geometry(BEVGrid(**geometry["grid"]), tuple(geometry["image_size"]))

    # ------------------------------------------------------------------ training

    def forward(self, batch: dict) -> dict[str, Tensor]:
        return self.model(batch["images"], batch["intrinsics"], batch["cam_to_ego"])

    @staticmethod
    def target(batch: dict) -> Tensor:
        """(B, H, W) class index: 1 vehicle, 0 anything else."""
        return (batch["bev"][:, 0] > 0.5).long()

    def segmentation_loss(self, out: dict[str, Tensor], batch: dict) -> Tensor:
        """Cross-entropy over the valid cells, vehicles weighted by ``pos_weight`` (LSS's SimpleLoss)."""
        loss = F.cross_entropy(out["logits"][:, :2], self.target(batch), weight=self.class_weight, reduction="none")
        return self.masked_mean(loss, batch["valid"])

    def masked_mean(self, per_cell: Tensor, valid: Tensor) -> Tensor:
        """Mean over valid cells, each weighted as in the class-weighted cross-entropy."""
        return (per_cell * valid).sum() / valid.sum().clamp_min(1)

    def depth_loss(self, out: dict[str, Tensor], batch: dict, net: LiftSplat | None = None) -> Tensor:
        """Cross-entropy of the depth distribution against the LiDAR depth bin (BEVDepth), pixels with a point only."""
        index, valid = (net or self.model).depth_targets(batch["depth"])
        logits = out["depth_logits"].movedim(2, -1)[valid]
        if len(logits) == 0:
            return out["depth_logits"].sum() * 0
        return F.cross_entropy(logits, index[valid])

    def combine_losses(self, seg: Tensor, depth: Tensor) -> Tensor:
        return seg + self.hparams.depth_weight * depth

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        out = self(batch)
        seg, depth = self.segmentation_loss(out, batch), self.depth_loss(out, batch)
        loss = self.combine_losses(seg, depth)
        self.log_dict({"train/loss": loss, "train/seg_loss": seg, "train/depth_loss": depth},
                      prog_bar=True, batch_size=len(batch["images"]))
        return loss

    def configure_optimizers(self):
        """Adam (LSS), the learning rate annealed to 0 on a cosine over the run's steps (LSS keeps it constant
        over 1e5+ GPU steps; a CPU budget of a few hundred steps ends better with a decay)."""
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        steps = max(self.trainer.estimated_stepping_batches, 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------------ prediction

    def predict(self, batch: dict) -> dict[str, Tensor]:
        prob = self(batch)["logits"][:, :2].softmax(1)[:, 1]
        entropy = binary_entropy(prob)
        return {"prob": prob, "uncertainty": entropy, "ood_score": entropy}

    @staticmethod
    def candidates(pred: dict[str, Tensor]) -> dict[str, Tensor]:
        """The alternative OOD scores of ``pred`` as cells ``ood_score/<name>`` (their metric: ``auroc_ood/<name>``)."""
        return {f"ood_score/{name}": score for name, score in pred.get("ood_candidates", {}).items()}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        pred = self.predict(batch)
        valid, target = batch["valid"], self.target(batch).bool()
        hit = (pred["prob"] >= 0.5) & valid
        self._val.setdefault("iou", []).append(torch.stack([(hit & target).sum(), (hit | (target & valid)).sum()]))
        if "ood_candidates" in pred:
            # A method choosing among OOD scores does it on the validation split's OOD objects (the synthetic
            # world's are of other kinds than the test split's), never on the test split.
            cells = {"ood": batch["bev"][:, 2] > 0.5, "ood_score": pred["ood_score"], **self.candidates(pred)}
            for key, value in cells.items():
                self._val.setdefault(key, []).append(value[valid].detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if self._val:
            inter, union = torch.stack(self._val.pop("iou")).sum(0).tolist()
            self.log("val/iou", inter / max(union, 1))
            cells = {k: torch.cat(v) for k, v in self._val.items()}
            ood = cells.pop("ood", None)
            if ood is not None and ood.any():
                self.log_dict({"val/auroc_ood" + key.removeprefix("ood_score"): auroc_aupr(score, ood)[0]
                               for key, score in cells.items()})
        self._val = {}

    def on_test_epoch_start(self) -> None:
        self._test = {k: [] for k in ("prob", "target", "uncertainty", "ood_score", "ood")}
        self._test_seconds, self._test_samples = 0.0, 0

    def test_step(self, batch: dict, batch_idx: int) -> None:
        start = time.perf_counter()
        pred = self.predict(batch)
        self._test_seconds += time.perf_counter() - start
        self._test_samples += len(batch["images"])
        valid = batch["valid"]
        cells = {"prob": pred["prob"], "target": self.target(batch), "uncertainty": pred["uncertainty"],
                 "ood_score": pred["ood_score"], "ood": batch["bev"][:, 2] > 0.5}
        cells |= self.candidates(pred)
        if "observed" in batch:  # cells no LiDAR ray reached at vehicle height (occluded, see data/nuscenes.py)
            cells["unobserved"] = ~batch["observed"]
            cells["unseen_score"] = pred.get("unseen_score", pred["ood_score"])
        for key, value in cells.items():
            self._test.setdefault(key, []).append(value[valid].detach().cpu())
        if batch_idx == 0:
            self.log_panels(batch, pred)

    def on_test_epoch_end(self) -> None:
        cells = {k: torch.cat(v) for k, v in self._test.items()}
        metrics = segmentation_metrics(cells["prob"], cells["target"], cells["uncertainty"], cells["ood_score"],
                                       cells["ood"])
        if "unobserved" in cells:
            unseen, unobserved = cells["unseen_score"], cells["unobserved"]
            metrics["auroc_unobserved"] = auroc_aupr(unseen, unobserved)[0]
            metrics["unseen_score_unobserved_over_observed"] = float(unseen[unobserved].mean()
                                                                     / unseen[~unobserved].mean())
        for key in [k for k in cells if k.startswith("ood_score/")]:  # reported, never used to choose (val does)
            metrics["auroc_ood" + key.removeprefix("ood_score")] = auroc_aupr(cells[key], cells["ood"])[0]
        self.log_dict({f"test/{k}": v for k, v in metrics.items() if not math.isnan(v)})
        self.log("test/seconds_per_sample", self._test_seconds / max(self._test_samples, 1))
        self.log_curves(cells)

    # ------------------------------------------------------------------ TensorBoard

    def log_panels(self, batch: dict, pred: dict[str, Tensor]) -> None:
        """The 6 cameras, then BEV ground truth | prediction | uncertainty | OOD score side by side."""
        logger = self.logger
        log_image(logger, "test/cameras", camera_panel(batch["images"][0]))
        log_image(logger, "test/bev", bev_panel(batch["bev"][0], batch["valid"][0], pred["prob"][0],
                                                pred["uncertainty"][0], pred["ood_score"][0]))

    def log_curves(self, cells: dict[str, Tensor]) -> None:
        """Reliability diagram and sparsification curves (Poggi et al.) as images."""
        conf, acc, count = reliability_bins(cells["prob"], cells["target"])
        seen = count > 0
        log_image(self.logger, "test/reliability", line_plot(
            {"model": (conf[seen].tolist(), acc[seen].tolist()), "ideal": ([0.5, 1.0], [0.5, 1.0])},
            title="reliability", xlabel="confidence", ylabel="accuracy"))
        p, y = cells["prob"], cells["target"].float()
        brier = 2 * (p - y) ** 2
        fractions, curve, oracle, _ = sparsification(brier, cells["uncertainty"])
        log_image(self.logger, "test/sparsification", line_plot(
            {"uncertainty": (fractions.tolist(), curve.tolist()), "oracle": (fractions.tolist(), oracle.tolist())},
            title="sparsification", xlabel="fraction removed", ylabel="mean Brier"))
