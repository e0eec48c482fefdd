"""The one LightningModule of the project: any forecaster of :mod:`pose_forecasting.models` plugged in.

The model is injected (``model: class_path ...`` in the YAML); the module owns what is common:

- training: the model's own paper loss (``model.loss``), its paper's optimiser (Adam or AdamW) with
  optional MultiStepLR, optional random frame
  masking (``train_missing`` / ``train_missing_tail``) for models trained to be robust to it;
- evaluation: MPJPE per future frame with the Human3.6M protocol (22 predicted joints written into the
  32-joint ground truth) or a plain mean over the predicted joints (AMASS), per action, and the
  robustness sweep: the same windows with 20/40/60 % of the observed frames missing at random and with
  the last 2/4/8 observed frames missing (masks seeded by batch index: every method sees the same ones);
- 2D models (:class:`~pose_forecasting.models.interfaces.Lifter2D`, the DSTformer) lift ``keypoints_2d``
  to 3D: their estimate is scored with MPJPE / P-MPJPE on root-relative camera-frame joints, their
  forecast is rotated back to the world frame and scored like every other forecast;
- models with uncertainty (:class:`~pose_forecasting.models.interfaces.UncertainForecaster`) are also
  scored on the 95 % coverage of their predicted per-joint Gaussian;
- ``weights``: an official checkpoint for the wrapped model (siMLPe's released ``.pth``, current or old
  key names), loaded before fitting or testing;
- ``init_from``: a checkpoint of this project whose model weights start a fit (fine-tuning, e.g. the
  real-clip runs of ``make bench ARGS="--real"`` from the proxy-trained weights).

What the module asks of a model comes from its type (``models/interfaces.py``). Mask-unaware forecasters
get the history with missing frames filled by linear interpolation (:func:`data.masking.fill_missing`);
mask-aware ones (``UncertainForecaster``) get the raw history with missing frames zeroed, so they cannot
read what was not observed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from pose_forecasting.data.masking import fill_missing, random_mask, tail_mask, training_mask
from pose_forecasting.metrics import FrameError, horizon_frame, horizon_metrics, mpjpe, mpjpe_h36m, p_mpjpe
from pose_forecasting.models.dstformer import mask_inputs
from pose_forecasting.models.interfaces import Lifter2D, PoseModel, UncertainForecaster
from pose_forecasting.visualize import error_curve, skeleton_strip
from shared_utils.logging import log_image

ROBUSTNESS = {"random20": ("random", 0.2), "random40": ("random", 0.4), "random60": ("random", 0.6),
              "last2": ("tail", 2), "last4": ("tail", 4), "last8": ("tail", 8)}
# siMLPe and STS-GCN train with Adam (coupled L2 weight decay), MotionBERT with AdamW (decoupled).
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
CHI3_95 = math.sqrt(7.814727903251178)  # 95 % quantile of the norm of a 3D standard Gaussian


class ForecastModule(LightningModule):
    """Trains and evaluates one forecaster (see the module docstring)."""

    monitor = "val/mpjpe_avg"
    monitor_mode = "min"
    # Test-time settings: `test --config x.yaml --ckpt_path y.ckpt` takes them from the config, not from the
    # checkpoint (the shared CLI). The robustness sweep changes what is measured, not what was learned.
    test_time_hparams: tuple[str, ...] = ("robustness",)

    def __init__(self, model: PoseModel, lr: float = 3e-4, weight_decay: float = 1e-4,
                 milestones: list[int] | None = None, gamma: float = 0.1, train_missing: float = 0.0,
                 train_missing_tail: int = 0, robustness: bool = True, weights: str | None = None,
                 optimizer: str = "adam", init_from: str | None = None) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"model.init_args.optimizer={optimizer!r}: expected one of {sorted(OPTIMIZERS)}")
        self.save_hyperparameters()  # under LightningCLI the model is recorded as its class_path + init_args
        self.model = model
        if weights is not None:  # `--model.init_args.weights <official .pth>` (siMLPe's released checkpoints)
            model.load_weights(weights)  # models without an official format refuse, naming --ckpt_path
        self.frame_error = nn.ModuleDict({stage: FrameError(model.output_frames) for stage in ("val", "test")})
        self.robust_error = nn.ModuleDict({name: FrameError(model.output_frames) for name in ROBUSTNESS})
        self.action_error: dict[str, FrameError] = {}
        self._estimate: list[Tensor] = []
        self._coverage: list[Tensor] = []
        self._predictions: list[dict] = []

    def on_fit_start(self) -> None:
        # Fine-tuning: `init_from` (a .ckpt of this project, e.g. proxy-trained) sets the starting weights of a
        # new fit; a resumed fit (--ckpt_path) keeps its own, and test/predict never read the file.
        if self.hparams.init_from is not None and self.trainer.ckpt_path is None:
            self.init_model_from(self.hparams.init_from)

    def init_model_from(self, path: str) -> None:
        """Load the wrapped model's weights from a checkpoint of this project (errors name the file)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"model.init_args.init_from={path}: no such checkpoint file")
        state = torch.load(path, map_location="cpu", weights_only=False).get("state_dict", {})
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if missing or unexpected or not weights:
            raise ValueError(f"model.init_args.init_from={path}: its model does not fit {type(self.model).__name__} "
                             f"as configured (missing {missing[:5]}, unexpected {unexpected[:5]}): fine-tune from a "
                             "checkpoint of the same method and settings")
        print(f"init_from: {type(self.model).__name__} weights from {path}")

    # -- forward with masks -------------------------------------------------------------------------

    def forecast(self, batch: dict, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(forecast in world frame, estimate in camera frame or None, sigma or None)``."""
        if isinstance(self.model, Lifter2D):
            kp, conf = batch["keypoints_2d"], batch["confidence"]
            if mask is not None:
                kp, conf = kp * mask[..., None, None], conf * mask[..., None]
            estimate, forecast_cam = self.model(kp, conf, mask)
            # x_cam = R x_world (column vectors) -> x_world (rows) = x_cam (rows) @ R
            return forecast_cam @ batch["camera_R"][:, None], estimate, None
        history = batch["history"]
        if isinstance(self.model, UncertainForecaster):
            if mask is not None:
                history = history * mask[:, :, None, None]
            mean, sigma = self.model.forward_with_uncertainty(history, mask)
            return mean, None, sigma
        return self.model(fill_missing(history, mask), mask), None, None

    # -- training -----------------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        if not any(p.requires_grad for p in self.model.parameters()):
            return None  # zero / constant velocity: nothing to train
        history = batch["history"]
        mask = None
        if self.hparams.train_missing > 0 or self.hparams.train_missing_tail > 0:
            mask = training_mask(history.shape[0], history.shape[1], self.hparams.train_missing,
                                 self.hparams.train_missing_tail, device=history.device)
        if isinstance(self.model, Lifter2D):
            kp, conf = mask_inputs(batch["keypoints_2d"], batch["confidence"])  # MotionBERT's masking
            if mask is not None:
                kp, conf = kp * mask[..., None, None], conf * mask[..., None]
            # Targets in the camera frame: x_cam (rows) = x_world (rows) @ R^T
            R_t = batch["camera_R"].transpose(1, 2)[:, None]
            loss = self.model.loss(kp, conf, mask, history @ R_t, batch["future"] @ R_t)
        elif isinstance(self.model, UncertainForecaster):
            masked = history if mask is None else history * mask[:, :, None, None]
            loss = self.model.loss(masked, batch["future"], mask)
        else:
            loss = self.model.loss(fill_missing(history, mask), batch["future"], mask)
        self.log("train/loss", loss, prog_bar=True, batch_size=history.shape[0])
        return loss

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            return None
        optimizer = OPTIMIZERS[self.hparams.optimizer](params, lr=self.hparams.lr,
                                                       weight_decay=self.hparams.weight_decay)
        if not self.hparams.milestones:
            return optimizer
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, self.hparams.milestones, self.hparams.gamma)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # -- evaluation ---------------------------------------------------------------------------------

    def frame_errors(self, batch: dict, prediction: Tensor) -> Tensor:
        """``(B, T_out)`` MPJPE in mm: the Human3.6M protocol when the 32-joint truth is there."""
        if "future_full" in batch:
            return mpjpe_h36m(prediction, batch["future_full"])
        return mpjpe(prediction * 1000, batch["future"] * 1000)

    def _evaluate(self, batch: dict, batch_idx: int, stage: str) -> None:
        prediction, estimate, sigma = self.forecast(batch)
        errors = self.frame_errors(batch, prediction)
        self.frame_error[stage].update(errors)
        if stage != "test":
            return
        for action in sorted(set(batch["action"])):
            rows = torch.tensor([a == action for a in batch["action"]], device=errors.device)
            if action not in self.action_error:
                self.action_error[action] = FrameError(errors.shape[1]).to(errors.device)
            self.action_error[action].update(errors[rows])
        if estimate is not None:
            R_t = batch["camera_R"].transpose(1, 2)[:, None]
            target = batch["history"] @ R_t
            self._estimate.append(torch.stack([mpjpe(estimate, target).flatten(),
                                               p_mpjpe(estimate, target).flatten()]) * 1000)
        if sigma is not None:
            distance = (prediction - batch["future"]).norm(dim=-1)
            self._coverage.append((distance <= CHI3_95 * sigma).float().flatten())
        if self.hparams.robustness:
            B, T = batch["history"].shape[:2]
            generator = torch.Generator().manual_seed(10_007 * batch_idx + 17)
            for name, (kind, amount) in ROBUSTNESS.items():
                mask = (random_mask(B, T, amount, generator) if kind == "random" else tail_mask(B, T, amount))
                masked, _, _ = self.forecast(batch, mask.to(self.device))
                self.robust_error[name].update(self.frame_errors(batch, masked))
        if batch_idx == 0:
            self._visualize(batch, prediction)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_errors("val")

    def on_test_epoch_end(self) -> None:
        self._log_errors("test")

    def _log_errors(self, stage: str) -> None:
        per_frame = self.frame_error[stage].compute()
        self.frame_error[stage].reset()
        metrics = horizon_metrics(per_frame, stage)
        if stage == "test":
            for action, metric in sorted(self.action_error.items()):
                metrics.update(horizon_metrics(metric.compute(), f"test_action/{action}"))
            self.action_error = {}
            if self.hparams.robustness:
                for name, metric in self.robust_error.items():
                    frames = metric.compute()
                    metric.reset()
                    for ms in (400, 1000):
                        if horizon_frame(ms) < len(frames):
                            metrics[f"test/robust_{name}_mpjpe_{ms}ms"] = float(frames[horizon_frame(ms)])
            if self._estimate:
                est = torch.cat(self._estimate, dim=1).mean(dim=1)
                metrics["test/mpjpe"], metrics["test/p_mpjpe"] = float(est[0]), float(est[1])
                self._estimate = []
            if self._coverage:
                metrics["test/coverage_95"] = float(torch.cat(self._coverage).mean())
                self._coverage = []
            if self.logger is not None:
                log_image(self.logger, "test/error_curve", error_curve(per_frame.cpu().numpy()), self.global_step)
        self.log_dict(metrics, sync_dist=False)

    # -- pictures and predictions ------------------------------------------------------------------

    def _visualize(self, batch: dict, prediction: Tensor) -> None:
        if self.logger is None or self.trainer.sanity_checking:
            return
        stage = "test" if self.trainer.testing else "val"
        image = skeleton_strip(batch["history"][0].cpu().numpy(), batch["future"][0].cpu().numpy(),
                               prediction[0].detach().cpu().numpy(),
                               title=f"{batch['action'][0]}: grey observed, green truth, red forecast")
        log_image(self.logger, f"{stage}/skeletons", image, self.global_step)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        prediction, _, sigma = self.forecast(batch)
        out = {"forecast": prediction.cpu().numpy(), "action": np.asarray(batch["action"]),
               "subject": np.asarray(batch["subject"]), "start": batch["start"].cpu().numpy()}
        if sigma is not None:
            out["sigma"] = sigma.cpu().numpy()
        self._predictions.append(out)
        return out

    def on_predict_epoch_end(self) -> None:
        if not self._predictions or self.trainer.log_dir is None:
            return
        merged = {k: np.concatenate([p[k] for p in self._predictions]) for k in self._predictions[0]}
        path = Path(self.trainer.log_dir) / "predictions.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **merged)
        print(f"predictions: {path} ({len(merged['forecast'])} windows: forecast (N, T_out, J, 3) metres)")
        self._predictions = []
