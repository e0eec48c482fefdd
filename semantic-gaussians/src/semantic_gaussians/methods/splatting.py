"""Vanilla 3D Gaussian Splatting (Kerbl et al., SIGGRAPH 2023) as a LightningModule, and the base of every method.

Training follows the paper's code (``train.py``): one random training view per step, loss ``(1 - 0.2) L1 + 0.2
(1 - SSIM)``, Adam (eps 1e-15) with its learning rates (means 1.6e-4 -> 1.6e-6 times the scene extent,
exponential decay over the run; SH DC 2.5e-3, higher bands / 20; opacity 0.025; scales 5e-3; rotations 1e-3), one
more SH band every ``sh_every`` steps up to ``sh_degree``, and the adaptive density control of
``models.gaussians.Densifier``. Its 30 000-step schedule is compressed for the proxy (2 000 steps: densify every
100 from step 100 to 1 000, opacity reset at 500; chosen on the validation views: val PSNR 28.5 against 27.7 for
1 500 steps with the reset at 600); real scenes on a GPU should use the paper's 30 000 (``trainer.max_steps``,
and the densification steps x 15).

A method subclass adds per-Gaussian values rendered with the colour (``extra_values``), a loss on them
(``extra_loss``) and, for the query metrics, per-level text-aligned feature maps (``level_features``). Evaluation
is shared (``_evaluate``): PSNR and SSIM (torchmetrics, per view, averaged as 3DGS's ``metrics.py`` does), render
FPS, the number of Gaussians, peak memory, train seconds, and where the data has labels and the method features:
``miou`` (classes of the object-level features: nearest class-name embedding), LangSplat's ``loc_acc`` and
``query_miou`` over object and part queries, ``part_acc`` / ``part_miou`` over part queries (``metrics.py``).
"""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from semantic_gaussians.metrics import ConfusionIoU, boxes_of, evaluate_query, relevancy
from semantic_gaussians.models.gaussians import Densifier, GaussianModel, exponential_lr
from semantic_gaussians.visualize import colour_labels, depth_colour, panel, relevancy_colour
from shared_utils.logging import log_image
from shared_utils.ops import GaussianRender

# Query vocabulary: object queries are class names; part queries are the parts that are not a whole object.
PART_QUERIES = ("lane marking", "wall", "window", "car window", "wheel", "trunk", "foliage")
MIN_QUERY_PIXELS = 10  # a query counts in an image where its ground truth has at least this many pixels
PICTURE_QUERIES = ("car", "wheel")


class GaussianSplatting(LightningModule):
    """Vanilla 3DGS (module docstring). Renders colour only; ``feature_dim`` > 0 lets subclasses add values."""

    automatic_optimization = False
    monitor = None  # the model after the last step is the result (3DGS evaluates its final iteration)

    def __init__(self, sh_degree: int = 3, sh_every: int = 200, lr_means: float = 1.6e-4,
                 lr_means_final: float = 1.6e-6, lr_sh0: float = 2.5e-3, lr_opacities: float = 0.025,
                 lr_scales: float = 5e-3, lr_quats: float = 1e-3, lambda_dssim: float = 0.2,
                 background: tuple[float, float, float] | None = None, densify_start: int = 100,
                 densify_stop: int = 1000, densify_every: int = 100, reset_every: int = 500,
                 grad_threshold: float = 2e-4, max_gaussians: int = 15_000, video_query: str = "car") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.gaussians = GaussianModel(sh_degree, self.extra_dim())
        self.densifier = Densifier(densify_start, densify_stop, densify_every, reset_every, grad_threshold,
                                   max_gaussians=max_gaussians)
        self.extent = 1.0
        self.background = tuple(background or (0.0, 0.0, 0.0))
        self.train_seconds = 0.0
        self._step_start = 0.0

    # ---- what subclasses change -----------------------------------------------------------------------------
    def extra_dim(self) -> int:
        """Values per Gaussian rendered after the colour (0: colour only)."""
        return 0

    def extra_values(self, batch: dict) -> Tensor | None:
        return self.gaussians.features if self.extra_dim() else None

    def extra_loss(self, extra: Tensor, batch: dict) -> Tensor:
        """Loss on the rendered extra values (E x H x W)."""
        return extra.new_zeros(())

    def level_features(self, extra: Tensor) -> dict[str, Tensor]:
        """Unit text-aligned feature maps (D x H x W) per level, decoded from the rendered extra values."""
        return {}

    # ---- setup and checkpoints -----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # The background: the config's, else the data's (NeRF-synthetic composites on white), else black.
        data_bg = getattr(self.trainer.datamodule, "background", None)
        self.background = tuple(self.hparams.background or data_bg or (0.0, 0.0, 0.0))
        if stage == "fit" and len(self.gaussians) == 0:
            dm = self.trainer.datamodule
            xyz, rgb = dm.points()
            self.gaussians.create_from_points(xyz.float(), rgb.float())
            self.extent = float(dm.extent)
            self.init_from_data(dm)

    def init_from_data(self, datamodule) -> None:
        """Hook for methods that need the training data before the first step (LangSplat's autoencoder)."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["scene"] = {"extent": self.extent, "train_seconds": self.train_seconds}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # The number of Gaussians changed during training: size the parameters like the checkpoint's.
        self.gaussians.resize(checkpoint["state_dict"]["gaussians.means"].shape[0])
        self.extent = checkpoint["scene"]["extent"]
        self.train_seconds = checkpoint["scene"]["train_seconds"]

    def configure_optimizers(self):
        h, e = self.hparams, self.extent
        lrs = {"means": h.lr_means * e, "scales": h.lr_scales, "quats": h.lr_quats, "opacities": h.lr_opacities,
               "sh0": h.lr_sh0, "shN": h.lr_sh0 / 20, "features": self.feature_lr()}
        groups = [{"params": [getattr(self.gaussians, n)], "lr": lrs[n], "name": n} for n in self.gaussians.param_names]
        others = [p for name, p in self.named_parameters() if not name.startswith("gaussians.")]
        if others:
            groups.append({"params": others, "lr": self.network_lr(), "name": "networks"})
        return torch.optim.Adam(groups, lr=0.0, eps=1e-15)

    def feature_lr(self) -> float:
        return 2.5e-3  # Feature-3DGS's feature learning rate (its SH DC rate)

    def network_lr(self) -> float:
        return 1e-3

    # ---- training ------------------------------------------------------------------------------------------
    def render(self, batch: dict, degree: int | None = None) -> GaussianRender:
        h, w = batch["image"].shape[1:]
        degree = self.hparams.sh_degree if degree is None else degree
        bg = torch.tensor(self.background, dtype=torch.float32, device=self.device)
        return self.gaussians.render(batch["world_to_camera"], batch["K"], w, h, degree, bg, self.extra_values(batch))

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        self.train_seconds += time.perf_counter() - self._step_start

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        opt = self.optimizers()
        step = self.global_step + 1
        h = self.hparams
        max_steps = self.trainer.max_steps if self.trainer.max_steps > 0 else 30_000
        for group in opt.optimizer.param_groups:
            if group.get("name") == "means":
                group["lr"] = exponential_lr(step, h.lr_means * self.extent, h.lr_means_final * self.extent, max_steps)
        render = self.render(batch, degree=min(h.sh_degree, step // h.sh_every))
        render.means2d.retain_grad()
        image = render.image.permute(2, 0, 1)
        rgb, target = image[:3], batch["image"]
        loss_rgb = (1 - h.lambda_dssim) * F.l1_loss(rgb, target) + h.lambda_dssim * (
            1 - structural_similarity_index_measure(rgb[None], target[None], data_range=1.0))
        loss_extra = self.extra_loss(image[3:], batch) if self.extra_dim() else rgb.new_zeros(())
        loss = loss_rgb + loss_extra
        opt.zero_grad()
        if not loss.requires_grad:  # nothing of the scene in this view (an early random init): nothing to learn
            return loss.detach()
        self.manual_backward(loss)
        width, height = target.shape[2], target.shape[1]
        self.densifier.after_backward(render, width, height)
        opt.step()
        self.densifier.step(step, self.gaussians, opt.optimizer, self.extent)
        self.log_dict({"train/loss": loss.detach(), "train/loss_rgb": loss_rgb.detach(),
                       "train/loss_extra": loss_extra.detach(), "train/num_gaussians": float(len(self.gaussians))},
                      batch_size=1, prog_bar=False)
        return loss.detach()

    # ---- evaluation ----------------------------------------------------------------------------------------
    def _start(self) -> None:
        self.rows: dict[str, list[float]] = {"psnr": [], "ssim": []}
        self.queries: dict[str, list[float]] = {"loc": [], "iou": [], "part_loc": [], "part_iou": []}
        self.confusion = None
        self.render_seconds = 0.0

    @torch.no_grad()
    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> None:
        start = time.perf_counter()
        render = self.render(batch)
        self.render_seconds += time.perf_counter() - start
        image = render.image.permute(2, 0, 1)
        rgb = image[:3].clamp(0, 1)
        target = batch["image"]
        self.rows["psnr"].append(float(peak_signal_noise_ratio(rgb, target, data_range=1.0)))
        self.rows["ssim"].append(float(structural_similarity_index_measure(rgb[None], target[None], data_range=1.0)))
        vocab = getattr(self.trainer.datamodule, "vocabulary", None)
        levels = self.level_features(image[3:]) if self.extra_dim() else {}
        if vocab is not None and levels and "semantic" in batch:
            self._query_metrics(levels, batch, vocab)
        if batch_idx == 0:
            self._log_pictures(render, batch, levels, vocab, stage)

    def _query_metrics(self, levels: dict[str, Tensor], batch: dict, vocab) -> None:
        object_level = levels.get("object", next(iter(levels.values())))
        sims = torch.einsum("dhw,cd->chw", object_level, vocab.class_embeddings.to(object_level))
        if self.confusion is None:
            self.confusion = ConfusionIoU(len(vocab.classes))
        self.confusion.update(sims.argmax(0).cpu().numpy(), batch["semantic"].cpu().numpy())
        stacked = torch.stack(list(levels.values()))  # (L, D, H, W)
        instances = batch["instance"].cpu().numpy()
        queries = [(name, batch["semantic"] == i, False) for i, name in enumerate(vocab.classes) if name != "sky"]
        queries += [(name, batch["part"] == vocab.parts.index(name), True) for name in PART_QUERIES
                    if name in vocab.parts]
        texts = {name: emb for name, emb in zip(vocab.classes + vocab.parts,
                                                torch.cat([vocab.class_embeddings, vocab.part_embeddings]))}
        negatives = vocab.negatives.to(stacked)
        for name, mask, is_part in queries:
            mask = mask.cpu().numpy()
            if mask.sum() < MIN_QUERY_PIXELS:
                continue
            rel = torch.stack([relevancy(level, texts[name][None].to(stacked), negatives)[0] for level in stacked])
            result = evaluate_query(rel.cpu().numpy(), mask, boxes_of(mask, instances))
            self.queries["loc"].append(float(result.localized))
            self.queries["iou"].append(result.iou)
            if is_part:
                self.queries["part_loc"].append(float(result.localized))
                self.queries["part_iou"].append(result.iou)

    def _finish(self, stage: str) -> None:
        n = len(self.rows["psnr"])
        metrics = {"psnr": float(np.mean(self.rows["psnr"])), "ssim": float(np.mean(self.rows["ssim"])),
                   "num_gaussians": float(len(self.gaussians)), "render_fps": n / max(self.render_seconds, 1e-9),
                   "miou": self.confusion.compute() if self.confusion is not None else math.nan}
        for key, rows in (("loc_acc", "loc"), ("query_miou", "iou"), ("part_acc", "part_loc"),
                          ("part_miou", "part_iou")):
            metrics[key] = float(np.mean(self.queries[rows])) if self.queries[rows] else math.nan
        if stage == "test":
            metrics["train_seconds"] = self.train_seconds
            metrics["peak_memory_mb"] = (torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda"
                                         else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, batch_size=1)

    def _log_pictures(self, render: GaussianRender, batch: dict, levels: dict[str, Tensor], vocab, stage: str) -> None:
        tiles = [render.image[..., :3].permute(2, 0, 1).clamp(0, 1), batch["image"],
                 depth_colour(render.depth, render.alpha)]
        if levels and vocab is not None:
            obj = levels.get("object", next(iter(levels.values())))
            sims = torch.einsum("dhw,cd->chw", obj, vocab.class_embeddings.to(obj))
            tiles.append(colour_labels(sims.argmax(0)))
            negatives = vocab.negatives.to(obj)
            for query in PICTURE_QUERIES:
                text = text_embedding(vocab, query).to(obj)
                rel = torch.stack([relevancy(level, text[None], negatives)[0] for level in levels.values()])
                tiles.append(relevancy_colour(rel.max(0).values, batch["image"]))
        log_image(self.logger, f"{stage}/rendered_gt_depth_semantic_relevancy", panel(tiles), self.global_step)

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

    # ---- predict: a fly-through video ----------------------------------------------------------------------
    def on_predict_epoch_start(self) -> None:
        self.path_views: list[dict] = []

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        self.path_views.append(batch)

    @torch.no_grad()
    def on_predict_epoch_end(self) -> None:
        """Render a fly-through between the predict views (position lerp, rotation slerp, 8 steps per pair) and
        write ``flythrough.mp4`` (RGB | relevancy of ``video_query``) into the run directory."""
        from semantic_gaussians.visualize import interpolate_path

        vocab = getattr(self.trainer.datamodule, "vocabulary", None)
        frames = []
        for view in interpolate_path(self.path_views, steps=8):
            render = self.render(view)
            rgb = render.image[..., :3].permute(2, 0, 1).clamp(0, 1)
            tiles = [rgb]
            if self.extra_dim() and vocab is not None:
                levels = self.level_features(render.image.permute(2, 0, 1)[3:])
                if levels:
                    first = next(iter(levels.values()))
                    text = text_embedding(vocab, self.hparams.video_query).to(first)
                    negatives = vocab.negatives.to(first)
                    rel = torch.stack([relevancy(lv, text[None], negatives)[0] for lv in levels.values()])
                    tiles.append(relevancy_colour(rel.max(0).values, rgb))
            frames.append(panel(tiles))
        out = Path(self.trainer.log_dir or ".") / "flythrough.mp4"
        h, w = frames[0].shape[1:]
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 12, (w, h))
        for frame in frames:
            writer.write(cv2.cvtColor((frame.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8),
                                      cv2.COLOR_RGB2BGR))
        writer.release()
        print(f"fly-through video: {out} ({len(frames)} frames)")


def text_embedding(vocab, text: str) -> Tensor:
    """The embedding of ``text``: the vocabulary's own when it is a class or part name, else encoded now."""
    if text in vocab.classes:
        return vocab.class_embeddings[vocab.classes.index(text)]
    if text in vocab.parts:
        return vocab.part_embeddings[vocab.parts.index(text)]
    from semantic_gaussians.data.datamodule import EMBEDDING_CACHE
    from shared_utils.language import SentenceEncoder

    return SentenceEncoder(cache_dir=EMBEDDING_CACHE).encode([text])[0]
