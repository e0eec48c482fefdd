"""The Lightning layer over the plain-torch models of ``fewshot_anomaly.models`` (anomalib's
torch_model / lightning_model split): one wrapper serves every method.

A run may cover several categories (the default covers all four synthetic ones): like anomalib,
each category gets its own model, a copy of the configured one, and batches are routed by
their ``category`` field. The model interface (see models/):

- ``update(images)`` / ``finalize()``: accumulate and fit the statistics on normal images
  (PaDiM's Gaussians, PatchCore's memory bank, CutPaste's density, CFLOW's likelihood range);
- ``loss(images)`` for the models that train (``trainable = True``);
- ``forward(images) -> (maps (B, H, W), scores (B,))``, higher is more anomalous.

Training-free models accumulate in ``training_step`` (one epoch); trained models are refitted
with one pass over the training images before each validation. Validation uses held-out
normal images plus synthetic defects (never the test set); the best checkpoint follows
``val/image_auroc``. Test logs ``test/<metric>`` (mean over categories) and
``test/<category>/<metric>``; predict writes each anomaly map as float32 ``.npy`` and
``predictions.csv`` (image_path, score, label) into the run directory.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from fewshot_anomaly.metrics import AnomalyMetrics
from shared_utils.logging import heatmap_overlay, image_grid, log_image

METRICS = ("image_auroc", "pixel_auroc", "aupro", "image_f1max", "pixel_f1max")


class AnomalyModule(LightningModule):
    """Fits, evaluates and predicts one anomaly model per category.

    Args:
        model: the plain-torch model (its config is the method: PaDiM, PatchCore, ...).
        lr: Adam learning rate of trainable models.
        weight_decay: Adam weight decay of trainable models.
        num_visualized: test images drawn to TensorBoard (input, mask, overlay, thresholded).
    """

    monitor = "val/image_auroc"
    monitor_mode = "max"

    def __init__(self, model: nn.Module, lr: float = 1e-4, weight_decay: float = 1e-5,
                 num_visualized: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        # The configured model is a template copied once per category in setup(); kept out of
        # the module tree so that it is neither trained nor saved.
        self.__dict__["template"] = model
        self.models = nn.ModuleDict()
        self.trainable = bool(getattr(model, "trainable", False))
        self._metrics: dict[str, AnomalyMetrics] = {}
        self._thresholds: dict[str, float] = {}  # F1-optimal pixel threshold per category, from validation
        self._shown: dict[str, int] = {}  # test images drawn so far, per category and label
        self._picture = 0  # TensorBoard step of the next picture
        self._predictions: list[list] = []

    # -- categories ----------------------------------------------------------------------

    def add_categories(self, categories: list[str]) -> None:
        for category in categories:
            if category not in self.models:
                self.models[category] = copy.deepcopy(self.template)

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.datamodule is not None:
            self.add_categories(self.trainer.datamodule.categories)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pixel_thresholds"] = self._thresholds

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # load_model() outside a Trainer: create the category models the checkpoint holds.
        names = {k.split(".")[1] for k in checkpoint["state_dict"] if k.startswith("models.")}
        self.add_categories(sorted(names))
        self._thresholds = checkpoint.get("pixel_thresholds", {})

    def _by_category(self, batch: dict) -> list[tuple[str, Tensor]]:
        """(category, index tensor) groups of a batch, in first-appearance order."""
        categories = batch["category"]
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(categories):
            groups.setdefault(c, []).append(i)
        return [(c, torch.tensor(idx, device=batch["image"].device)) for c, idx in groups.items()]

    # -- fitting -------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        if not self.trainable:
            with torch.no_grad():
                for category, idx in self._by_category(batch):
                    self.models[category].update(batch["image"][idx])
            return None
        losses = [self.models[c].loss(batch["image"][idx]) * len(idx) for c, idx in self._by_category(batch)]
        loss = torch.stack(losses).sum() / len(batch["image"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def configure_optimizers(self):
        if not self.trainable:
            return None  # statistics are fitted in one pass, without gradients
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    @torch.no_grad()
    def _refit(self) -> None:
        """Fit every category's statistics; trained models first see the training images again."""
        if self.trainable:
            self.eval()
            for batch in self.trainer.datamodule.fit_dataloader():
                for category, idx in self._by_category(batch):
                    self.models[category].update(batch["image"][idx].to(self.device))
        for model in self.models.values():
            model.finalize()

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self._refit()

    # -- evaluation ----------------------------------------------------------------------

    def _evaluate(self, batch: dict, stage: str) -> None:
        for category, idx in self._by_category(batch):
            maps, scores = self.models[category](batch["image"][idx])
            metric = self._metrics.setdefault(category, AnomalyMetrics())
            metric.update(maps.cpu(), scores.cpu(), batch["mask"][idx].cpu(), batch["label"][idx].cpu())
            if stage == "test":
                self._visualize(batch, idx, maps, category)

    def _log_metrics(self, stage: str) -> None:
        per_category = {c: m.compute() for c, m in sorted(self._metrics.items())}
        logged = {}
        for name in METRICS:
            values = [v[name] for v in per_category.values()]
            logged[f"{stage}/{name}"] = float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")
            if len(per_category) > 1:
                logged.update({f"{stage}/{c}/{name}": v[name] for c, v in per_category.items()})
        self.log_dict(logged)
        if stage == "val":
            # A threshold per category for the pictures: the F1-optimal one on validation.
            self._thresholds = {c: m.f1_threshold() for c, m in self._metrics.items()}
        self._metrics = {}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _visualize(self, batch: dict, idx: Tensor, maps: Tensor, category: str) -> None:
        """TensorBoard rows of input | ground truth | heat-map overlay | thresholded map, for the
        first num_visualized/2 normal and num_visualized/2 defective test images of a category.
        With a validation threshold t the colour scale is [0, 2t] (t mid-scale), the same for all."""
        threshold = self._thresholds.get(category)
        rows = []
        for k, i in enumerate(idx.tolist()):
            key = f"{category}/{int(batch['label'][i])}"
            if self._shown.get(key, 0) >= self.hparams.num_visualized // 2:
                continue
            self._shown[key] = self._shown.get(key, 0) + 1
            image, mask, heat = batch["image"][i].cpu(), batch["mask"][i].cpu(), maps[k].cpu()
            if threshold is None:
                overlay, binary = heatmap_overlay(image, heat), torch.zeros_like(heat)
            else:
                overlay = heatmap_overlay(image, heat, vmin=0.0, vmax=2 * threshold)
                binary = (heat >= threshold).float()
            rows += [image, mask.expand(3, -1, -1), overlay, binary.expand(3, -1, -1)]
        if rows:
            self._picture += 1
            grid = image_grid(torch.stack(rows), nrow=4)
            log_image(self.logger, f"test/{category}/input_mask_overlay_threshold", grid, self._picture)

    def on_test_epoch_start(self) -> None:
        self._shown, self._picture = {}, 0

    # -- predict: maps and scores to disk ----------------------------------------------------

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        out_dir = Path(self.trainer.log_dir or ".") / "predictions"
        for category, idx in self._by_category(batch):
            maps, scores = self.models[category](batch["image"][idx])
            for k, i in enumerate(idx.tolist()):
                path = Path(batch["path"][i])
                target = out_dir / category / batch["defect"][i] / f"{path.stem}.npy"
                target.parent.mkdir(parents=True, exist_ok=True)
                np.save(target, maps[k].cpu().numpy().astype(np.float32))
                self._predictions.append([str(path), float(scores[k]), int(batch["label"][i])])

    def on_predict_epoch_end(self) -> None:
        out = Path(self.trainer.log_dir or ".") / "predictions.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_path", "score", "label"])
            writer.writerows(self._predictions)
        self._predictions = []
