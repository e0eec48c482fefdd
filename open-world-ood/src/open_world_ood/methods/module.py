"""The Lightning layer: one module trains and evaluates the shared detector (``models/detector.py``) with any
open-set method (``models/open_set.py`` and its siblings), chosen by the config's ``method`` class.

- fit: CenterNet's losses plus the objectness head's, with the method's hooks (pseudo-labels, random
  negatives, statistics of the known objects' embeddings, extra losses); AdamW with a cosine schedule.
- validate: the method fits its statistics, then the validation candidates that match a known object
  (IoU > 0.5) calibrate its threshold; ``val/map50`` (closed-set labels: the detector's quality) picks the
  best checkpoint, whose buffers hold the threshold calibrated with its own weights.
- test: per context (the datamodule's test loaders, linked as ``contexts``), the OWOD metrics of
  ``open_world_ood.evaluation.evaluate`` plus ``false_unknown_rate`` (the fraction of candidates on known
  objects labelled unknown, what the conformal method guarantees); the first context logs
  ``test/<metric>``, the others ``test/<context>/<metric>``; tasks > 1 add ``map50_prev`` / ``map50_cur``;
  ``discovery_points`` / ``discovery_clusters`` / ``discovery_purity``: how many confident unknowns were
  clustered into candidate new classes (``open_world_ood.discovery``), into how many, and how purely.
  TensorBoard gets images with known boxes (green) and unknown boxes (magenta).
- predict: ``detections.json`` in the run directory: COCO results (``image_id`` as the data's,
  ``category_id`` = 1 + the index in ``known_classes``, -1 for ``unknown``, ``bbox`` xywh in original
  pixels, ``score``) with the ``category`` name and the image's ``file_name`` added.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from open_world_ood.discovery import discover, purity
from open_world_ood.evaluation import coco_map, evaluate
from open_world_ood.models.detector import OpenWorldCenterNet
from open_world_ood.models.open_set import OpenSetMethod
from shared_utils.boxes import box_iou
from shared_utils.logging import image_grid, log_image

UNKNOWN = "unknown"


class OpenWorldModule(LightningModule):
    """Args:
        method: the open-set method (``ClosedSet``, ``MSP``, ``Energy``, ``Mahalanobis``, ``VOS``, ``ORE``,
            ``PROB``, ``RandBox``, ``Conformal``).
        known_classes: linked from the data (``data.known_classes``); the detector's classes.
        num_previous: how many of them earlier tasks introduced (linked; 0 in task 1).
        contexts: names of the test loaders (linked from ``data.contexts``).
        backbone, weights, freeze, head_channels: the detector's (``OpenWorldCenterNet``).
        lr, weight_decay: AdamW's; max_detections, min_objectness: the candidates kept per image.
        num_visualized: test images drawn to TensorBoard per context.
        coco_metrics: also log COCO's ``coco_map`` (AP@[.5:.95]) and ``coco_map50`` over the known classes,
            through pycocotools (``evaluation.coco_map``; ``coco.yaml`` sets it).
        init_from: a checkpoint of an earlier task whose detector starts this fit (incremental tasks: the
            rows of its known classes, and of its unknown channel, are copied into the larger class head;
            the new classes' rows start fresh; the method's statistics are re-estimated).
    """

    monitor = "val/map50"
    monitor_mode = "max"
    test_time_hparams = ("contexts", "max_detections", "min_objectness", "num_visualized", "coco_metrics")

    def __init__(self, method: OpenSetMethod, known_classes: list[str] | None = None, num_previous: int = 0,
                 contexts: list[str] | None = None, backbone: str = "efficientnet_lite0",
                 weights: str | None = "imagenet", freeze: str = "batchnorm", head_channels: int = 64,
                 lr: float = 1e-3, weight_decay: float = 1e-4,
                 max_detections: int = 100, min_objectness: float = 0.05, num_visualized: int = 8,
                 coco_metrics: bool = False, init_from: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.known_classes = list(known_classes or [])
        self.contexts = list(contexts or ["test"])
        self._build(method)
        self._outputs: dict[int, dict[str, list]] = {}

    def _build(self, method: OpenSetMethod) -> None:
        h = self.hparams
        self.detector = OpenWorldCenterNet(len(self.known_classes), method.unknown_channel, h.backbone, h.weights,
                                           h.freeze, h.head_channels)
        self.method = method
        self.method.setup(len(self.known_classes), h.head_channels)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A test-only datamodule (deepforest) knows no classes: the checkpoint's are the model's.
        known = list(checkpoint["hyper_parameters"].get("known_classes") or [])
        if known != self.known_classes:
            self.known_classes = known
            self._build(self.method)

    # --- training -------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # a resumed fit (--ckpt_path) keeps its own weights; test/predict never read init_from
        if self.hparams.init_from is not None and self.trainer.ckpt_path is None:
            self.init_detector_from(self.hparams.init_from)

    def init_detector_from(self, path: str) -> None:
        """The detector of an earlier task's checkpoint, its class head grown to this task's classes."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"model.init_args.init_from={path}: no such checkpoint file")
        state = torch.load(path, map_location="cpu", weights_only=False)
        weights = {k.removeprefix("detector."): v for k, v in state["state_dict"].items() if k.startswith("detector.")}
        previous = state["hyper_parameters"].get("known_classes") or []
        if previous != self.known_classes[:len(previous)]:
            raise ValueError(f"model.init_args.init_from={path}: its known classes {previous} are not the first "
                             f"of this task's {self.known_classes}")
        own = self.detector.state_dict()
        for name, value in weights.items():
            if name.startswith("heatmap.") and name in own and value.shape[0] != own[name].shape[0]:
                grown = own[name].clone()
                grown[:len(previous)] = value[:len(previous)]
                if self.detector.unknown_channel and value.shape[0] > len(previous):
                    grown[-1] = value[-1]  # the unknown channel stays the last row
                weights[name] = grown
        self.detector.load_state_dict(weights)

    def training_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        outputs = self.detector(images)
        plain = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        plain = self.method.training_targets(outputs, plain)
        encoded = self.detector.encode(plain, tuple(outputs["heatmap"].shape[-2:]))
        outputs["target_heatmap"] = torch.stack([e["heatmap"] for e in encoded]).to(images)
        losses = self.detector.detection_loss(outputs, encoded, self.method.negatives(outputs))
        embedding, logits, labels = _at_centres(outputs, encoded, plain)
        self.method.observe(embedding.detach(), logits.detach(), labels)
        progress = self.global_step / max(self.trainer.estimated_stepping_batches, 1)
        extra = self.method.training_loss(outputs, embedding, labels, self.detector.classifier, progress)
        loss = losses.pop("loss") + sum(extra.values())
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        for name, value in {**losses, **extra}.items():
            self.log(f"train/{name}", value, batch_size=len(images))
        return loss

    def configure_optimizers(self):
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- shared inference -----------------------------------------------------------------------------------
    def detect(self, images: Tensor, targets: list[dict]) -> list[dict[str, Tensor]]:
        """Candidates per image in original pixels, with the method's labels and scores."""
        outputs = self.detector(images)
        candidates = self.detector.candidates(outputs, self.hparams.max_detections, self.hparams.min_objectness)
        for candidate, target in zip(candidates, targets):
            sx, sy = target["scale"].tolist()
            candidate["boxes"] = candidate["boxes"] / candidate["boxes"].new_tensor([sx, sy, sx, sy])
            candidate["label"], candidate["score"] = self.method.decide(candidate)
            candidate["unknown_score"] = self.method.unknown_score(candidate)
            known = self.method.known_logits(candidate).sigmoid()
            candidate["closed_score"], candidate["predicted"] = known.max(1)
            candidate["closed_score"] = candidate["closed_score"] * candidate["objectness"]
        return candidates

    def _collect(self, dataloader_idx: int, candidates: list[dict], targets: list[dict], closed_set: bool) -> None:
        store = self._outputs.setdefault(dataloader_idx, {"images": [], "annotations": [], "detections": [],
                                                          "known_hits": [], "candidates": []})
        for candidate, target in zip(candidates, targets):
            image_id = len(store["images"]) + 1
            store["images"].append({**target["image"], "id": image_id})
            for a in target["annotations"]:
                store["annotations"].append({**a, "image_id": image_id})
            boxes = candidate["boxes"].cpu()
            labels, scores = ((candidate["predicted"], candidate["closed_score"]) if closed_set
                              else (candidate["label"], candidate["score"]))
            for box, label, score, unknown_score in zip(boxes.tolist(), labels.tolist(), scores.tolist(),
                                                        candidate["unknown_score"].tolist()):
                name = UNKNOWN if label < 0 else self.known_classes[label]
                store["detections"].append({"image_id": image_id, "name": name, "score": score,
                                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                                            "unknown_score": unknown_score})
            store["known_hits"].append(self._on_known(candidate, target))
            store["candidates"].append((image_id, candidate, target))

    @staticmethod
    def _matched_objects(candidate: dict, target: dict) -> list[dict | None]:
        """The non-difficult, non-crowd object each candidate falls on (best IoU > 0.5), else None."""
        objects = [a for a in target["annotations"] if not a.get("difficult", 0) and not a.get("iscrowd", 0)]
        if not objects or not len(candidate["boxes"]):
            return [None] * len(candidate["boxes"])
        boxes = torch.tensor([a["bbox"] for a in objects], dtype=torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        best, which = box_iou(candidate["boxes"].cpu().float(), boxes).max(1)
        return [objects[w] if b > 0.5 else None for b, w in zip(best.tolist(), which.tolist())]

    def _on_known(self, candidate: dict, target: dict) -> Tensor:
        """Which candidates fall on a known object."""
        return torch.tensor([o is not None and o["name"] in self.known_classes
                             for o in self._matched_objects(candidate, target)], dtype=torch.bool)

    def _coco(self, gt: dict, detections: list[dict]) -> dict[str, float]:
        """pycocotools' mAP over the known classes (their objects and their detections only)."""
        known = {c["id"] for c in gt["categories"] if c["name"] in self.known_classes}
        known_gt = {**gt, "categories": [c for c in gt["categories"] if c["id"] in known],
                    "annotations": [a for a in gt["annotations"] if a["category_id"] in known]}
        result = coco_map(known_gt, [d for d in detections if d["category_id"] in known])
        return {"coco_map": result["map"], "coco_map50": result["map50"]}

    def _discovery(self, store: dict) -> dict[str, float]:
        """Clusters of the confident unknown detections (objectness >= 0.5, ``discovery.py``) and their
        purity against the classes of the objects they fall on."""
        embeddings, names = [], []
        for _, candidate, target in store["candidates"]:
            chosen = ((candidate["label"] < 0) & (candidate["objectness"] >= 0.5)).cpu()
            if chosen.any():
                embeddings.append(candidate["embedding"].cpu()[chosen])
                names += [o["name"] if o is not None else "background"
                          for o, c in zip(self._matched_objects(candidate, target), chosen.tolist()) if c]
        if len(names) < 3:
            return {"discovery_points": float(len(names)), "discovery_clusters": float("nan"),
                    "discovery_purity": float("nan")}
        assignment = discover(torch.cat(embeddings).double().numpy())
        return {"discovery_points": float(len(names)), "discovery_clusters": float(len(np.unique(assignment))),
                "discovery_purity": 100.0 * purity(assignment, names)}

    def _gt_and_detections(self, store: dict) -> tuple[dict, list[dict]]:
        names = list(self.known_classes)
        for a in store["annotations"]:
            if a["name"] not in names:
                names.append(a["name"])
        if UNKNOWN not in names:
            names.append(UNKNOWN)
        ids = {name: i + 1 for i, name in enumerate(names)}
        gt = {"images": store["images"], "categories": [{"id": ids[n], "name": n} for n in names],
              "annotations": [{**a, "id": i + 1, "category_id": ids[a["name"]]}
                              for i, a in enumerate(store["annotations"])]}
        detections = [{"image_id": d["image_id"], "category_id": ids[d["name"]], "bbox": d["bbox"],
                       "score": d["score"], "unknown_score": d["unknown_score"]} for d in store["detections"]]
        return gt, detections

    # --- validation -----------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.method.fit()
        self._outputs = {}

    def validation_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> None:
        images, targets = batch
        self._collect(0, self.detect(images, targets), targets, closed_set=True)

    def on_validation_epoch_end(self) -> None:
        store = self._outputs.get(0)
        if store is None:
            return
        scores = torch.cat([c["unknown_score"].cpu()[hit] for (_, c, _), hit in
                            zip(store["candidates"], store["known_hits"])])
        predicted = torch.cat([c["predicted"].cpu()[hit] for (_, c, _), hit in
                               zip(store["candidates"], store["known_hits"])])
        self.method.calibrate(scores.to(self.device), predicted.to(self.device))
        gt, detections = self._gt_and_detections(store)
        metrics = evaluate(gt, detections, self.known_classes)
        self.log("val/map50", metrics["map50"], prog_bar=True)
        self._outputs = {}

    # --- test -----------------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._outputs = {}

    def test_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int, dataloader_idx: int = 0) -> None:
        images, targets = batch
        candidates = self.detect(images, targets)
        self._collect(dataloader_idx, candidates, targets, closed_set=False)
        if batch_idx == 0:
            self._visualize(dataloader_idx, images, candidates, targets)

    def on_test_epoch_end(self) -> None:
        for index, store in sorted(self._outputs.items()):
            context = self.contexts[index] if index < len(self.contexts) else f"context{index}"
            prefix = "test/" if index == 0 else f"test/{context}/"
            gt, detections = self._gt_and_detections(store)
            metrics = evaluate(gt, detections, self.known_classes)
            hits = torch.cat(store["known_hits"])
            labels = torch.cat([c["label"].cpu() for _, c, _ in store["candidates"]])
            metrics["false_unknown_rate"] = 100.0 * float((labels[hits] < 0).float().mean()) if hits.any() \
                else float("nan")
            metrics.update(self._discovery(store))
            if self.hparams.coco_metrics:
                metrics.update(self._coco(gt, detections))
            previous = self.hparams.num_previous
            if previous:
                ap = [metrics[f"ap50/{name}"] for name in self.known_classes]
                metrics["map50_prev"] = float(np.mean(ap[:previous]))
                metrics["map50_cur"] = float(np.mean(ap[previous:]))
            for name, value in metrics.items():
                self.log(prefix + name, float(value), add_dataloader_idx=False)
        self._outputs = {}

    def _visualize(self, index: int, images: Tensor, candidates: list[dict], targets: list[dict]) -> None:
        drawn = []
        for image, candidate, target in zip(images[:self.hparams.num_visualized], candidates, targets):
            canvas = np.ascontiguousarray((image.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8))
            sx, sy = target["scale"].tolist()
            for box, label, score in zip(candidate["boxes"].tolist(), candidate["label"].tolist(),
                                         candidate["score"].tolist()):
                if score < 0.3:
                    continue
                colour = (255, 0, 255) if label < 0 else (0, 200, 0)
                p1, p2 = (int(box[0] * sx), int(box[1] * sy)), (int(box[2] * sx), int(box[3] * sy))
                cv2.rectangle(canvas, p1, p2, colour, 1)
            drawn.append(torch.from_numpy(canvas).permute(2, 0, 1).float() / 255)
        if drawn and all(d.shape == drawn[0].shape for d in drawn):
            context = self.contexts[index] if index < len(self.contexts) else f"context{index}"
            log_image(self.logger, f"test/{context}/detections", image_grid(torch.stack(drawn), nrow=4))

    # --- predict --------------------------------------------------------------------------------------------
    def on_predict_epoch_start(self) -> None:
        self._outputs = {}

    def predict_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int, dataloader_idx: int = 0) -> None:
        images, targets = batch
        candidates = self.detect(images, targets)
        store = self._outputs.setdefault(dataloader_idx, {"detections": []})
        for candidate, target in zip(candidates, targets):
            for box, label, score in zip(candidate["boxes"].tolist(), candidate["label"].tolist(),
                                         candidate["score"].tolist()):
                store["detections"].append({"image_id": target["image"]["id"],
                                            "category_id": label + 1 if label >= 0 else -1,
                                            "category": UNKNOWN if label < 0 else self.known_classes[label],
                                            "file_name": target["image"]["file_name"],
                                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                                            "score": score})

    def on_predict_epoch_end(self) -> None:
        out = Path(self.trainer.log_dir or ".")
        for index, store in sorted(self._outputs.items()):
            context = self.contexts[index] if index < len(self.contexts) else f"context{index}"
            name = "detections.json" if index == 0 else f"detections_{context}.json"
            (out / name).write_text(json.dumps(store["detections"]))


def _at_centres(outputs: dict[str, Tensor], encoded: list[dict], targets: list[dict]) -> tuple[Tensor, Tensor, Tensor]:
    """Embeddings (n, D), logits (n, C') and labels (n,) at every target object's centre in the batch."""
    embedding, logits, labels = [], [], []
    for b, (e, t) in enumerate(zip(encoded, targets)):
        index = e["index"].to(outputs["embedding"].device)
        embedding.append(outputs["embedding"][b].flatten(1)[:, index].T)
        logits.append(outputs["heatmap"][b].flatten(1)[:, index].T)
        labels.append(t["labels"].to(index.device))
    return torch.cat(embedding), torch.cat(logits), torch.cat(labels)
