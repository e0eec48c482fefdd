"""The Lightning layer over the plain-torch models of ``fewshot_anomaly.models`` (anomalib's
torch_model / lightning_model split): one wrapper serves every method.

A run may cover several categories (the default covers all four synthetic ones): like anomalib,
each category gets its own model, a copy of the configured one, and batches are routed by
their ``category`` field. The categories are an argument (``categories``), which the CLI links
from the datamodule (``data.categories``, resolved on disk for ``category: all``); the checkpoint
records them. The model interface (see models/):

- ``update(images)`` / ``finalize()``: accumulate and fit the statistics on normal images
  (PaDiM's Gaussians, PatchCore's memory bank, CutPaste's density, CFLOW's likelihood range);
- ``loss(images)`` for the models that train (``trainable = True``);
- ``forward(images) -> (maps (B, H, W), scores (B,))``, higher is more anomalous.

Training-free models accumulate in ``training_step`` (one epoch); trained models are refitted
with one pass over the training images before each validation: the datamodule's first
validation loader (``STATISTICS_LOADER``) holds those images, in order, and the second the
validation set; the statistics are finalised before the first validation batch is scored. The
module reaches into neither trainer nor datamodule for data. Validation uses held-out
normal images plus synthetic defects (never the test set); the best checkpoint follows
``val/image_auroc``. Test logs ``test/<metric>`` (mean over categories) and
``test/<category>/<metric>``, plus, where the data has uncertain images (label -1, ELPV), their image
AUROC against the normal ones (``image_auroc_uncertain`` and one per uncertain kind); predict writes each
anomaly map as float32 ``.npy`` and
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

from fewshot_anomaly.metrics import AnomalyMetrics, auroc
from shared_utils.logging import heatmap_overlay, image_grid, log_image

METRICS = ("image_auroc", "pixel_auroc", "aupro", "image_f1max", "pixel_f1max")
# Index of the validation loader that holds the training images (statistics of trained models).
STATISTICS_LOADER = 0


class AnomalyModule(LightningModule):
    """Fits, evaluates and predicts one anomaly model per category.

    Args:
        model: the plain-torch model (its config is the method: PaDiM, PatchCore, ...).
        categories: the categories of the data, one model each; the CLI links ``data.categories``
            here (a loaded checkpoint adds its own, see ``on_load_checkpoint``).
        lr: Adam learning rate of trainable models.
        weight_decay: Adam weight decay of trainable models.
        num_visualized: test images drawn to TensorBoard (input, mask, overlay, thresholded).
    """

    monitor = "val/image_auroc"
    monitor_mode = "max"
    # Settings that only change how a fitted model is evaluated: `test --config c.yaml --ckpt_path x`
    # takes them from the config instead of the checkpoint (shared_utils.cli).
    test_time_hparams = ("num_visualized",)

    def __init__(self, model: nn.Module, categories: list[str] | None = None, lr: float = 1e-4,
                 weight_decay: float = 1e-5, num_visualized: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        # The configured model is a template copied once per category; kept out of the module
        # tree so that it is neither trained nor saved.
        self.__dict__["template"] = model
        self.models = nn.ModuleDict()
        self.trainable = bool(getattr(model, "trainable", False))
        self._accumulated = False  # statistics updated since the last finalize()
        if categories is not None:
            self.add_categories(categories)
        self._metrics: dict[str, AnomalyMetrics] = {}
        self._uncertain: dict[str, list[tuple[str, float]]] = {}  # (defect, image score) of label -1 images
        self._thresholds: dict[str, float] = {}  # F1-optimal pixel threshold per category, from validation
        self._shown: dict[str, int] = {}  # test images drawn so far, per category and label
        self._picture = 0  # TensorBoard step of the next picture
        self._predictions: list[list] = []

    # -- categories ----------------------------------------------------------------------

    def add_categories(self, categories: list[str]) -> None:
        for category in categories:
            if category not in self.models:
                self.models[category] = copy.deepcopy(self.template)
        # Recorded with the hyperparameters, so that a checkpoint rebuilds the same category models.
        self.hparams["categories"] = list(self.models)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pixel_thresholds"] = self._thresholds

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # The CLI builds the module with the categories of the data it is given (one of a checkpoint's
        # four, say): add the checkpoint's own before Lightning loads their weights.
        self.add_categories(checkpoint.get("hyper_parameters", {}).get("categories") or [])
        self._thresholds = checkpoint.get("pixel_thresholds", {})

    def _by_category(self, batch: dict) -> list[tuple[str, Tensor]]:
        """(category, index tensor) groups of a batch, in first-appearance order."""
        categories = batch["category"]
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(categories):
            groups.setdefault(c, []).append(i)
        unknown = [c for c in groups if c not in self.models]
        if unknown:
            raise ValueError(f"batch of category {unknown[0]!r}, but the model has one per category "
                             f"{list(self.models)} (model.init_args.categories): fit it on that category first")
        return [(c, torch.tensor(idx, device=batch["image"].device)) for c, idx in groups.items()]

    # -- fitting -------------------------------------------------------------------------

    def _update(self, batch: dict) -> None:
        """Accumulate the statistics of each category's model on a batch of normal images."""
        for category, idx in self._by_category(batch):
            self.models[category].update(batch["image"][idx])
        self._accumulated = True

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        if not self.trainable:
            with torch.no_grad():
                self._update(batch)
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
    def _finalize(self) -> None:
        """Fit every category's statistics from what was accumulated since the last finalize()."""
        if self._accumulated:
            for model in self.models.values():
                model.finalize()
            self._accumulated = False

    # -- evaluation ----------------------------------------------------------------------

    def _evaluate(self, batch: dict, stage: str) -> None:
        for category, idx in self._by_category(batch):
            maps, scores = self.models[category](batch["image"][idx])
            labels = batch["label"][idx]
            certain = labels >= 0
            # Label -1 (ELPV's uncertain cells): scored, kept apart, out of the metrics of the 0/1 labels.
            for k in torch.nonzero(~certain).flatten().tolist():
                self._uncertain.setdefault(category, []).append((batch["defect"][int(idx[k])], float(scores[k])))
            metric = self._metrics.setdefault(category, AnomalyMetrics())
            metric.update(maps[certain].cpu(), scores[certain].cpu(), batch["mask"][idx][certain].cpu(),
                          labels[certain].cpu())
            if stage == "test":
                self._visualize(batch, idx, maps, category)

    def _uncertain_auroc(self, category: str) -> dict[str, float]:
        """Image AUROC of the category's normal images against its uncertain ones: all of them
        (``image_auroc_uncertain``) and each uncertain kind (``image_auroc_<defect>``)."""
        metric, uncertain = self._metrics[category], self._uncertain.get(category, [])
        normal = torch.cat(metric.scores)[~torch.cat(metric.labels)].numpy()
        if not uncertain or not len(normal):
            return {}
        groups = {"uncertain": [s for _, s in uncertain]}
        for defect, score in uncertain:
            groups.setdefault(defect, []).append(score)
        return {f"image_auroc_{name}": auroc(np.r_[normal, scores], np.r_[np.zeros(len(normal)), np.ones(len(scores))])
                for name, scores in groups.items()}

    def _log_metrics(self, stage: str) -> None:
        per_category = {c: {**m.compute(), **self._uncertain_auroc(c)} for c, m in sorted(self._metrics.items())}
        logged = {}
        names = list(dict.fromkeys(n for values in per_category.values() for n in values))
        for name in names:
            values = [v.get(name, float("nan")) for v in per_category.values()]
            logged[f"{stage}/{name}"] = float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")
            if len(per_category) > 1:
                logged.update({f"{stage}/{c}/{name}": v[name] for c, v in per_category.items() if name in v})
        self.log_dict(logged)
        if stage == "val":
            # A threshold per category for the pictures: the F1-optimal one on validation.
            self._thresholds = {c: m.f1_threshold() for c, m in self._metrics.items()}
        self._metrics, self._uncertain = {}, {}

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 1) -> None:
        if dataloader_idx == STATISTICS_LOADER:
            # The training images in order, in eval mode: trained models refit their statistics with
            # the weights of this epoch. Training-free ones accumulated theirs in training_step.
            if self.trainable:
                self._update(batch)
            return
        self._finalize()
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
