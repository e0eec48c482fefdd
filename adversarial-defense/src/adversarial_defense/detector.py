"""The Lightning layer for object detection: the shared CenterNet (``shared_utils.detection``, on the pretrained
Lite0) trained on the generated shape scenes (or a VOC root), tested under TOG and sponge attacks.

- fit: CenterNet's losses; AdamW with a cosine schedule. ``val/map50`` picks the best checkpoint.
  The project's new method, NMS-load-aware adversarial training (``load_penalty`` > 0 with
  ``adversarial_eps`` > 0, ``nms_aware_at.yaml``): each batch is also attacked by a few sponge steps, the
  detector is trained on the attacked batch with the true boxes (adversarial training, Madry et al.'s
  min-max applied to the detection loss), and the soft count of candidates above the score threshold on the
  attacked batch is penalised: ``L = L_det(x) + L_det(x_sponge) + load_penalty * mean_images sum_positions
  relu(sigmoid(heatmap) - threshold)``, the quantity a sponge maximises and the NMS pays for.
- test: ``test/map50`` (VOC AP at IoU 0.5, ``detection_metrics.map50``) clean and under each TOG attack
  (``test/map50_tog_<kind>``) with TOG's success rate per kind (``test/tog_success_<kind>``, percent of images);
  the universal TOG perturbation (vanishing, fitted on training images): ``test/map50_tog_universal``; the
  sponge: ``test/candidates`` and ``test/nms_ms`` on clean images and ``test/candidates_sponge``,
  ``test/nms_ms_sponge`` under attack (the candidates above ``score_threshold`` that reach NMS, and the
  milliseconds ``shared_utils.boxes.batched_nms`` takes on them per image).
  TensorBoard: clean | attacked | amplified perturbation with the detections, per attack.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from adversarial_defense.attacks import detection as det_attacks
from adversarial_defense.attacks._common import amplified, from_255
from adversarial_defense.detection_metrics import map50
from shared_utils.detection import CenterNet
from shared_utils.logging import image_grid, log_image

TOG_KINDS = ("vanishing", "fabrication", "mislabeling", "untargeted")


class DetectorModule(LightningModule):
    """Args:
        num_classes: linked from the data.
        weights, head_channels: the CenterNet's (``weights=null``: random-init backbone, for tests).
        lr, weight_decay: AdamW's.
        score_threshold: detections kept for mAP drawing and TOG success (TOG's 0.20 is for YOLO
            objectness x class; CenterNet's peak scores are calibrated differently, 0.3 is its usual cut).
        eps, eps_iter, n_iter: the TOG attacks' (1/255 units; TOG's defaults 8, 2, 10).
        tog_kinds: which TOG attacks the test runs; universal_epochs: TOG-universal's passes over the training
            batches (0: not run); universal_batches: how many training batches it sees.
        sponge_steps, sponge_alpha: the sponge attack at test (0 steps: not run); nms_threshold: its
            candidates' score threshold; nms_iou: the NMS IoU.
        adversarial_eps, adversarial_steps, load_penalty: the NMS-load-aware adversarial training (0: off).
    """

    # evaluation-only settings: a test of a checkpoint takes them from the config (shared_utils.cli)
    test_time_hparams = ("score_threshold", "eps", "eps_iter", "n_iter", "tog_kinds", "universal_epochs",
                         "universal_batches", "sponge_steps", "sponge_alpha", "nms_threshold", "nms_iou",
                         "num_visualized")
    monitor = "val/map50"
    monitor_mode = "max"

    def __init__(self, num_classes: int = 5, weights: str | None = "imagenet", head_channels: int = 64,
                 lr: float = 1e-3, weight_decay: float = 1e-4, score_threshold: float = 0.3, eps: float = 8,
                 eps_iter: float = 2, n_iter: int = 10, tog_kinds: list[str] = TOG_KINDS,
                 universal_epochs: int = 2, universal_batches: int = 8, sponge_steps: int = 20,
                 sponge_alpha: float = 2, nms_threshold: float = 0.05, nms_iou: float = 0.5,
                 adversarial_eps: float = 0, adversarial_steps: int = 3, load_penalty: float = 0.0,
                 num_visualized: int = 4) -> None:
        super().__init__()
        unknown = sorted(set(tog_kinds) - set(TOG_KINDS))
        if unknown:
            raise ValueError(f"tog_kinds {unknown} unknown; TOG's kinds are {TOG_KINDS}")
        self.save_hyperparameters()
        self.detector = CenterNet(num_classes, weights=weights, head_channels=head_channels)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.detector(images)

    def detect(self, images: Tensor) -> list[dict[str, Tensor]]:
        with torch.no_grad():
            return CenterNet.decode(self.detector(images), k=100)

    # fit ----------------------------------------------------------------------------------------------
    def soft_load(self, outputs: dict[str, Tensor]) -> Tensor:
        """Mean over images of sum_positions relu(score - threshold): candidates reaching NMS, softly."""
        scores = outputs["heatmap"].sigmoid()
        return torch.relu(scores - self.hparams.nms_threshold).flatten(1).sum(1).mean()

    def training_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.detector.loss(self.detector(images), targets)
        loss = losses["loss"]
        if self.hparams.adversarial_eps:
            eps = from_255(self.hparams.adversarial_eps)
            adv = det_attacks.sponge(self.detector, images, eps=eps, alpha=eps / 2,
                                     steps=self.hparams.adversarial_steps,
                                     score_threshold=self.hparams.nms_threshold)
            outputs = self.detector(adv)
            adv_loss = self.detector.loss(outputs, targets)["loss"]
            load = self.soft_load(outputs)
            loss = loss + adv_loss + self.hparams.load_penalty * load
            self.log("train/adv_loss", adv_loss)
            self.log("train/load", load)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        for name in ("heatmap", "size", "offset"):
            self.log(f"train/{name}", losses[name], batch_size=len(images))
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.detector.parameters(), lr=self.hparams.lr,
                                      weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.max_epochs or 1)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_validation_epoch_start(self) -> None:
        self._val = ([], [])

    def validation_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        images, targets = batch
        self._val[0].extend(self.detect(images))
        self._val[1].extend(targets)

    def on_validation_epoch_end(self) -> None:
        self.log("val/map50", map50(*self._val, self.hparams.num_classes), prog_bar=True)

    # test ---------------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._targets: list[dict] = []
        self._detections: dict[str, list[dict]] = {}
        self._success: dict[str, list[float]] = {}
        self._load: dict[str, list[float]] = {}
        self._universal = None
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.hparams.universal_epochs and datamodule is not None and "train" in datamodule.splits:
            batches = []
            for i, (images, _) in enumerate(datamodule.train_dataloader()):
                if i == self.hparams.universal_batches:
                    break
                batches.append(images.to(self.device))
            with torch.inference_mode(False), torch.enable_grad():
                self._universal = det_attacks.tog_universal(
                    self.detector, [b.clone() for b in batches], eps=from_255(self.hparams.eps),
                    eps_iter=from_255(self.hparams.eps_iter, "eps_iter"), epochs=self.hparams.universal_epochs)

    def _add(self, name: str, detections: list[dict]) -> None:
        self._detections.setdefault(name, []).extend({k: v.cpu() for k, v in d.items()} for d in detections)

    def test_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        images, targets = batch
        with torch.inference_mode(False):
            images = images.clone()
        self._targets.extend({k: v.cpu() for k, v in t.items()} for t in targets)
        clean = self.detect(images)
        self._add("clean", clean)
        # TOG's "detections_query": the clean detections above the threshold, with mislabeling's target labels
        reference = det_attacks.clean_detections(self.detector, images, score_threshold=self.hparams.score_threshold)
        drawn = [("clean", images, clean)]
        eps, eps_iter = from_255(self.hparams.eps), from_255(self.hparams.eps_iter, "eps_iter")
        threshold = self.hparams.score_threshold
        with torch.enable_grad():
            for kind in self.hparams.tog_kinds:
                adv = det_attacks.tog(self.detector, images, kind=kind, eps=eps, eps_iter=eps_iter,
                                      n_iter=self.hparams.n_iter, score_threshold=threshold)
                detections = self.detect(adv)
                self._add(f"tog_{kind}", detections)
                success = det_attacks.tog_success(reference, detections, kind, score_threshold=threshold)
                self._success.setdefault(kind, []).extend(float(s) for s in success)
                drawn.append((f"tog_{kind}", adv, detections))
            sponge = None
            if self.hparams.sponge_steps:
                sponge = det_attacks.sponge(self.detector, images, eps=eps,
                                            alpha=from_255(self.hparams.sponge_alpha, "alpha"),
                                            steps=self.hparams.sponge_steps,
                                            score_threshold=self.hparams.nms_threshold)
                drawn.append(("sponge", sponge, self.detect(sponge)))
        if self._universal is not None:
            universal = (images + self._universal).clamp(0, 1)
            self._add("tog_universal", self.detect(universal))
            drawn.append(("tog_universal", universal, self.detect(universal)))
        if sponge is not None:
            for name, x in (("", images), ("_sponge", sponge)):
                load = det_attacks.nms_load(self.detector, x, score_threshold=self.hparams.nms_threshold,
                                            iou_threshold=self.hparams.nms_iou)
                self._load.setdefault(f"candidates{name}", []).append(load["candidates"])
                self._load.setdefault(f"nms_ms{name}", []).append(load["nms_ms"])
        if batch_idx == 0:
            self._visualize(images, drawn)

    def on_test_epoch_end(self) -> None:
        metrics = {}
        for name, detections in self._detections.items():
            key = "map50" if name == "clean" else f"map50_{name}"
            metrics[key] = map50(detections, self._targets, self.hparams.num_classes)
        for kind, success in self._success.items():
            metrics[f"tog_success_{kind}"] = 100 * float(np.mean(success))
        for name, values in self._load.items():
            metrics[name] = float(np.mean(values))
        for name, value in metrics.items():
            self.log(f"test/{name}", value)

    def _visualize(self, images: Tensor, drawn: list[tuple[str, Tensor, list[dict]]]) -> None:
        n = min(self.hparams.num_visualized, len(images))
        for name, x, detections in drawn:
            perturbation = amplified(images[:n], x[:n])
            tiles = [_draw(images[i], detections[i], self.hparams.score_threshold) if name == "clean"
                     else _draw(x[i], detections[i], self.hparams.score_threshold) for i in range(n)]
            tiles += list(perturbation)
            log_image(self.logger, f"test/{name}", image_grid(torch.stack(tiles).cpu(), nrow=n))


def _draw(image: Tensor, detections: dict[str, Tensor], threshold: float) -> Tensor:
    canvas = np.ascontiguousarray((image.permute(1, 2, 0).detach().cpu().numpy() * 255).astype(np.uint8))
    keep = detections["scores"] >= threshold
    for box, label in zip(detections["boxes"][keep].tolist(), detections["labels"][keep].tolist()):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (255, 0, 255), 1)
        cv2.putText(canvas, str(label), (x0, max(y0 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 0, 255), 1)
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255
