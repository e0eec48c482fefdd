"""Every method of the project: one conditional DDPM whose config switches the conditioning on.

DDPM (Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020): T = 1000 steps, the paper's
linear betas 1e-4 .. 0.02, x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and the simple loss, an MSE on the
network's prediction. The paper predicts eps (Eq. 14, ``prediction_type="epsilon"``); we default to the
v-parameterisation of Salimans & Ho ("Progressive Distillation", ICLR 2022), v = sqrt(abar_t) eps - sqrt(1 - abar_t)
x_0, the same model and loss with another target: after the CPU budget of 300 steps, eps-prediction's DDIM samples
were still noise on the validation conditions (x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) multiplies the
prediction's error by up to 150 at the noisiest steps), v-prediction's were pitches (README, "Choices").
Sampling with DDIM (Song, Meng & Ermon, ICLR 2021, eta = 0). Classifier-free guidance (Ho & Salimans 2022): the
text is zeroed with probability ``cfg_dropout`` in training; at sampling
pred = pred(c_uncond) + w (pred(c) - pred(c_uncond)), where only the text is dropped (the maps stay: they are the
condition under test, and the guidance acts on what the prompt adds).

The conditions (``concat`` / ``control`` lists name the maps: ``camera`` (the grid), ``pitch`` (the pitch template),
``players``, ``skeleton``; ``data/conditions.py``):

- ``text2img``: text only; ``latent``: the same in the latent space of an autoencoder trained here first (Rombach et
  al. 2022; ``ae_steps`` of the step budget, then frozen);
- ``camera_concat``: the grid map stacked at the input; ``camera_controlnet``: the grid map through a ControlNet;
  ``camera_pitch`` (the default): the grid and pitch-template maps stacked at the input, predicting x_0 at lr 2e-3;
- ``players_map``: camera + the players' colour map through the ControlNet; ``players_gligen``: camera through the
  ControlNet + GLIGEN grounding tokens of the players' pitch positions and kits;
- ``skeleton``: camera + COCO-17 skeleton maps through the ControlNet;
- ``geometry`` (ours): ``camera_controlnet`` + a geometry-consistency loss against "the condition is ignored": a
  frozen grid-keypoint detector (the judge ``grid_loss``, not the one that scores the test) reads the predicted clean
  image x0_hat (from x_t and the prediction: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) for eps, sqrt(abar_t) x_t -
  sqrt(1 - abar_t) v for v), and its heatmap cross-entropy against the
  conditioning camera's grid, weighted by abar_t (only steps where x0_hat is an image count), is added with weight
  ``geometry_weight``. The gradient reaches the denoiser through x0_hat only.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor

from shared_utils.backbones import create_backbone
from shared_utils.logging import image_grid, log_image
from sports_image_gen.judges import detect_players, load_judge
from sports_image_gen.metrics import (
    camera_counts,
    camera_metrics,
    frechet_distance,
    kernel_distance,
    match_players,
    to_960,
)
from sports_image_gen.models.autoencoder import build_autoencoder
from sports_image_gen.models.denoiser import Denoiser
from sports_image_gen.models.detectors import GridDetector

MAP_CHANNELS = {"camera": 3, "pitch": 3, "players": 4, "skeleton": 3}
GUIDANCE_GRID = (1.0, 2.0, 4.0, 7.0)


class ConditionalDiffusion(L.LightningModule):
    """Args:
        concat: maps stacked at the UNet's input (channel-concatenation baseline).
        control: maps through the ControlNet branch.
        grounding: GLIGEN tokens of the players.
        latent: denoise the latents of an autoencoder trained for the first ``ae_steps`` steps.
        geometry_weight: weight of the geometry-consistency loss (0: off).
        geometry_detector_steps: training steps of its grid detector (cached per dataset like the judges).
        block_out_channels, attention_levels: the UNet (see ``models/denoiser.py``).
        lr: AdamW learning rate (constant after a ``warmup`` of steps).
        cfg_dropout: probability of dropping the text in training.
        height, width: the data's image size (the latent is 4x smaller).
        guidance_scale, sampling_steps: DDIM sampling at test time.
        prediction_type: the network's target, ``epsilon`` (DDPM), ``v_prediction`` or ``sample`` (x_0).
        snr_gamma: loss weight capped at gamma in x_0 space, min(SNR_t + 1, gamma) (``_loss_weight``); None: the
            plain MSE on the target.
        judge_grid_steps, judge_player_steps: training steps of the detectors that judge (cached per dataset in
            ``judge_dir``).
    """

    def __init__(self, concat: list[str] | None = None, control: list[str] | None = None, grounding: bool = False,
                 latent: bool = False, geometry_weight: float = 0.0, geometry_detector_steps: int = 300,
                 block_out_channels: tuple[int, ...] = (32, 48, 64), attention_levels: int = 0,
                 latent_channels: int = 4, ae_steps: int = 300, ae_kl_weight: float = 1e-6,
                 lr: float = 5e-4, warmup: int = 50, cfg_dropout: float = 0.1, guidance_scale: float = 2.0,
                 sampling_steps: int = 25, prediction_type: str = "v_prediction", snr_gamma: float | None = None,
                 judge_grid_steps: int = 600,
                 judge_player_steps: int = 300,
                 height: int = 36, width: int = 64, judge_dir: str = "data/sports-image-gen/judges",
                 log_images: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.concat, self.control = list(concat or []), list(control or [])
        for name in self.concat + self.control:
            if name not in MAP_CHANNELS:
                raise ValueError(f"unknown condition map {name!r}; known: {sorted(MAP_CHANNELS)}")
        if geometry_weight and (latent or "camera" not in self.control + self.concat):
            raise ValueError("geometry_weight needs a pixel-space model conditioned on the camera")
        self.autoencoder = build_autoencoder(latent_channels=latent_channels) if latent else None
        factor = 4 if latent else 1
        self.denoiser = Denoiser(
            sample_size=(height // factor, width // factor), channels=latent_channels if latent else 3,
            concat_channels=sum(MAP_CHANNELS[m] for m in self.concat) if not latent else 0,
            control_channels=sum(MAP_CHANNELS[m] for m in self.control), control_downsample=factor,
            grounding=grounding, block_out_channels=tuple(block_out_channels), attention_levels=attention_levels)
        if latent and self.concat:
            raise ValueError("concat conditioning is pixel-space only; use control with latent=true")
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type must be epsilon, v_prediction or sample, got {prediction_type!r}")
        if snr_gamma is not None and snr_gamma <= 0:
            raise ValueError(f"snr_gamma must be positive (or None), got {snr_gamma}")
        self.ddpm = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                                  prediction_type=prediction_type)
        self.register_buffer("latent_scale", torch.ones(()), persistent=True)
        self._aux: dict = {}  # judges and the Lite0 feature extractor: not part of the checkpoint
        self._test: dict = {}
        self._train_start = None
        self._train_rate = float("nan")

    # ---- conditions -------------------------------------------------------------------------------------------
    def _maps(self, batch: dict, names: list[str]) -> Tensor | None:
        return torch.cat([batch[f"{n}_map"] for n in names], 1) if names else None

    def _text(self, batch: dict, drop: bool) -> Tensor:
        text = batch["text"]
        if drop:
            keep = (torch.rand(len(text), device=text.device) >= self.hparams.cfg_dropout).to(text)
            text = text * keep[:, None]
        return text

    def predict(self, x_t: Tensor, t: Tensor, text: Tensor, batch: dict) -> Tensor:
        """The network's prediction (eps, v or x_0 by ``prediction_type``) for the batch's conditions."""
        return self.denoiser(x_t, t, text, concat=self._maps(batch, self.concat),
                             control=self._maps(batch, self.control),
                             entities=batch["entities"] if self.hparams.grounding else None)

    # ---- training ---------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.0)
        warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / self.hparams.warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": warm, "interval": "step"}}

    def judge(self, name: str):
        """A detector of ``judges.py`` (``grid``, ``grid_loss``, ``players``), trained once per dataset, frozen."""
        if name not in self._aux:
            dm = self.trainer.datamodule
            steps = {"grid": self.hparams.judge_grid_steps, "players": self.hparams.judge_player_steps,
                     "grid_loss": self.hparams.geometry_detector_steps}[name]
            self._aux[name] = load_judge(name, dm.fingerprint(), dm.judge_items(), steps,
                                         self.hparams.judge_dir).to(self.device)
        return self._aux[name]

    def on_fit_start(self) -> None:
        if self.hparams.geometry_weight:
            self.judge("grid_loss")
        self._train_start = time.time()

    def on_train_end(self) -> None:
        self._train_rate = self.global_step / max(time.time() - self._train_start, 1e-9)

    def _encode(self, images: Tensor) -> Tensor:
        """The training target: the image in [-1, 1], or its (scaled) latent."""
        x = images * 2 - 1
        if self.autoencoder is None:
            return x
        with torch.no_grad():
            return self.autoencoder.encode(x).latent_dist.sample() * self.latent_scale

    def _decode(self, z: Tensor) -> Tensor:
        if self.autoencoder is not None:
            z = self.autoencoder.decode(z / self.latent_scale).sample
        return ((z + 1) / 2).clamp(0, 1)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if self.autoencoder is not None and self.global_step < self.hparams.ae_steps:
            return self._autoencoder_step(batch)
        if self.autoencoder is not None and self.global_step == self.hparams.ae_steps:
            self._fix_latent_scale(batch)
        x0 = self._encode(batch["image"])
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.ddpm.config.num_train_timesteps, (len(x0),), device=self.device)
        x_t = self.ddpm.add_noise(x0, noise, t)
        pred = self.predict(x_t, t, self._text(batch, drop=True), batch)
        loss = F.mse_loss(pred, self._target(x0, noise, t), reduction="none").flatten(1).mean(1)
        loss = (self._loss_weight(t) * loss).mean()
        self.log("train/loss", loss, prog_bar=True)
        if self.hparams.geometry_weight:
            abar = self.ddpm.alphas_cumprod.to(self.device)[t]
            x0_hat = self._x0(x_t, pred, abar[:, None, None, None])
            detector = self.judge("grid_loss")
            heat, vis = detector(((x0_hat + 1) / 2).clamp(0, 1))
            geo = GridDetector.loss(heat, vis, batch["grid_keypoints"], batch["grid_visible"], reduce=False)
            geo = (abar * geo).mean()
            self.log("train/geometry", geo)
            loss = loss + self.hparams.geometry_weight * geo
        self.log("train/seconds", time.time() - self._train_start)
        return loss

    def _target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        kind = self.hparams.prediction_type
        if kind == "epsilon":
            return noise
        return self.ddpm.get_velocity(x0, noise, t) if kind == "v_prediction" else x0

    def _loss_weight(self, t: Tensor) -> Tensor:
        """Per-sample weights of the MSE on the target. The MSE on v weighs the error of the clean image x_0_hat by
        SNR_t + 1 (x_0 - x_0_hat = sqrt(1 - abar_t) (v_hat - v), SNR_t = abar_t / (1 - abar_t)), the MSE on eps by
        SNR_t, the MSE on x_0 by 1. Min-SNR-gamma (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting
        Strategy", ICCV 2023) caps eps's weight at gamma, min(SNR_t, gamma); we cap v's, min(SNR_t + 1, gamma), so
        that the noisiest steps, where the layout is decided, keep weight 1 (Min-SNR's goes to 0 there) while the
        nearly clean steps, up to 10^4 under v at t = 0, stop dominating the gradient. gamma = 1 is the MSE on x_0
        through the v (or eps) parameterisation; gamma -> infinity is plain v."""
        if self.hparams.snr_gamma is None:
            return torch.ones_like(t, dtype=torch.float32)
        abar = self.ddpm.alphas_cumprod.to(self.device)[t]
        snr = abar / (1 - abar)
        x0_weight = (snr + 1).clamp(max=self.hparams.snr_gamma)
        own = {"epsilon": snr, "v_prediction": snr + 1, "sample": torch.ones_like(snr)}[self.hparams.prediction_type]
        return x0_weight / own

    def _x0(self, x_t: Tensor, pred: Tensor, abar: Tensor) -> Tensor:
        """The clean image the prediction implies."""
        kind = self.hparams.prediction_type
        if kind == "epsilon":
            return (x_t - (1 - abar).sqrt() * pred) / abar.sqrt()
        return abar.sqrt() * x_t - (1 - abar).sqrt() * pred if kind == "v_prediction" else pred

    def _autoencoder_step(self, batch: dict) -> Tensor:
        x = batch["image"] * 2 - 1
        posterior = self.autoencoder.encode(x).latent_dist
        recon = self.autoencoder.decode(posterior.sample()).sample
        rec = F.l1_loss(recon, x)
        loss = rec + self.hparams.ae_kl_weight * posterior.kl().mean()
        self.log("train/ae_l1", rec, prog_bar=True)
        return loss

    @torch.no_grad()
    def _fix_latent_scale(self, batch: dict) -> None:
        """Latent diffusion's scale factor: 1 / std of the latents, so the diffusion sees unit variance."""
        self.latent_scale.fill_(1.0)
        z = self._encode(batch["image"])
        self.latent_scale.fill_(1.0 / z.std().clamp(min=1e-3).item())

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """The denoising loss at fixed noise and steps (seeded), comparable across checkpoints."""
        if self.autoencoder is not None and self.global_step < self.hparams.ae_steps:
            x = batch["image"] * 2 - 1
            self.log("val/ae_l1", F.l1_loss(self.autoencoder(x).sample, x), batch_size=len(x))
            return
        gen = torch.Generator(device="cpu").manual_seed(batch_idx)
        x0 = self._encode(batch["image"])
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        t = torch.linspace(50, 950, len(x0)).long().to(self.device)
        pred = self.predict(self.ddpm.add_noise(x0, noise, t), t, batch["text"], batch)
        self.log("val/loss", F.mse_loss(pred, self._target(x0, noise, t)), batch_size=len(x0))

    # ---- sampling ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, batch: dict, steps: int | None = None, guidance: float | None = None, seed: int = 0) -> Tensor:
        """DDIM samples (B, 3, H, W) in [0, 1] for the batch's conditions, with classifier-free guidance on text."""
        steps = steps or self.hparams.sampling_steps
        guidance = self.hparams.guidance_scale if guidance is None else guidance
        ddim = DDIMScheduler.from_config(self.ddpm.config)
        ddim.set_timesteps(steps)
        b = len(batch["text"])
        shape = (b, self.denoiser.unet.config.out_channels, *self.denoiser.unet.config.sample_size)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(self.device)
        text = batch["text"]
        for t in ddim.timesteps:
            tt = torch.full((b,), int(t), device=self.device, dtype=torch.long)
            pred = self.predict(x, tt, text, batch)
            if guidance != 1.0:
                uncond = self.predict(x, tt, torch.zeros_like(text), batch)
                pred = uncond + guidance * (pred - uncond)
            x = ddim.step(pred, int(t), x).prev_sample
        return self._decode(x)

    # ---- test -------------------------------------------------------------------------------------------------
    def _lite0(self):
        if "lite0" not in self._aux:
            self._aux["lite0"] = create_backbone("efficientnet_lite0").eval().to(self.device)
        return self._aux["lite0"]

    @torch.no_grad()
    def _features(self, images: Tensor) -> np.ndarray:
        big = F.interpolate(images, size=(126, 224), mode="bilinear", align_corners=False)
        return self._lite0()(big)[-1].mean((2, 3)).cpu().numpy()

    def on_test_start(self) -> None:
        self._test = {"gen": [], "real": [], "ref": [], "vis": [], "det": [], "found": [], "real_counts": [],
                      "players": np.zeros(3), "real_players": np.zeros(3), "feat_gen": [], "feat_real": [],
                      "psnr": [], "seconds": 0.0, "images": 0}

    def test_step(self, batch: dict, batch_idx: int) -> None:
        start = time.time()
        generated = self.sample(batch, seed=batch_idx)
        self._test["seconds"] += time.time() - start
        self._test["images"] += len(generated)
        real = batch["image"]
        ref, vis = batch["camera_960"], batch["visible_960"]
        for key, images in (("gen", generated), ("real", real)):
            heat, logits = self.judge("grid")(images)
            xy, found = GridDetector.decode(heat, logits)
            xy = to_960(xy, batch["offset"], batch["to_960"])
            if key == "gen":
                self._test["det"].append(xy)
                self._test["found"].append(found)
            else:
                self._test["real_counts"].append(camera_counts(xy, found, ref, vis))
            players = match_players(detect_players(self.judge("players"), images), batch["boxes"], batch["labels"])
            self._test["players" if key == "gen" else "real_players"] += players
        self._test["ref"].append(ref)
        self._test["vis"].append(vis)
        self._test["feat_gen"].append(self._features(generated))
        self._test["feat_real"].append(self._features(real))
        mse = (generated - real).square().flatten(1).mean(1)
        self._test["psnr"].append(10 * torch.log10(1 / mse.clamp(min=1e-10)))
        if batch_idx == 0:
            self._log_pictures(batch, generated)

    def on_test_epoch_end(self) -> None:
        s = self._test
        det, found = torch.cat(s["det"]), torch.cat(s["found"])
        ref, vis = torch.cat(s["ref"]), torch.cat(s["vis"])
        metrics = {f"test/camera_{k}": v for k, v in camera_metrics([camera_counts(det, found, ref, vis)]).items()}
        shuffled = camera_metrics([camera_counts(det, found, ref.roll(1, 0), vis.roll(1, 0))])
        metrics["test/camera_reproj_px_shuffled"] = shuffled["reproj_px"]
        metrics["test/camera_acc_10_shuffled"] = shuffled["acc_10"]
        metrics["test/detector_reproj_px"] = camera_metrics(s["real_counts"])["reproj_px"]
        total, found_p, right = s["players"]
        metrics["test/player_recall"] = found_p / total if total else float("nan")
        metrics["test/jersey_acc"] = right / found_p if found_p else float("nan")
        total_r, found_r, _ = s["real_players"]
        metrics["test/detector_player_recall"] = found_r / total_r if total_r else float("nan")
        gen_f, real_f = np.concatenate(s["feat_gen"]), np.concatenate(s["feat_real"])
        metrics["test/fid_lite0"] = frechet_distance(gen_f, real_f)
        metrics["test/kid_lite0"] = kernel_distance(gen_f, real_f)
        metrics["test/psnr_render"] = torch.cat(s["psnr"]).mean().item()
        metrics["test/sampling_images_per_s"] = s["images"] / max(s["seconds"], 1e-9)
        metrics["test/parameters_m"] = sum(p.numel() for p in self.parameters()) / 1e6
        metrics["test/train_steps_per_s"] = self._train_rate  # nan when testing a checkpoint without fitting
        metrics["test/peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for key, value in metrics.items():
            self.log(key, float(value))

    def predict_step(self, batch: dict, batch_idx: int) -> Tensor:
        """``predict``: sample the test conditions and write condition | generated | rendered PNGs, one per frame, to
        ``<run>/predictions/<name>.png``."""
        generated = self.sample(batch, seed=batch_idx)
        folder = Path(self.trainer.log_dir or ".") / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        condition = self._condition_picture(batch, len(generated))
        for i, name in enumerate(batch["name"]):
            row = torch.cat([condition[i], generated[i], batch["image"][i]], 2)
            pixels = (row.permute(1, 2, 0).cpu().numpy()[..., ::-1] * 255).round().astype(np.uint8)
            cv2.imwrite(str(folder / f"{name}.png"), pixels)
        return generated

    def _condition_picture(self, batch: dict, n: int) -> Tensor:
        """What the method is conditioned on, as an RGB picture: grid dots, players' kits, skeletons."""
        condition = batch["camera_map"][:n, :1].expand(-1, 3, -1, -1).clamp(0, 1)
        if "pitch" in self.concat + self.control:  # the template (pitch grey, markings white) under the grid
            condition = torch.maximum(condition, batch["pitch_map"][:n, :1].expand(-1, 3, -1, -1))
        if "players" in self.control or self.hparams.grounding:
            people = batch["players_map"][:n]
            condition = torch.where(people[:, 3:] > 0, people[:, :3], condition)
        if "skeleton" in self.control:
            condition = torch.maximum(condition, batch["skeleton_map"][:n])
        return condition

    @torch.no_grad()
    def _log_pictures(self, batch: dict, generated: Tensor) -> None:
        """condition | generated | rendered for the first images, and one image per guidance scale."""
        logger = self.logger
        if logger is None:
            return
        n = min(self.hparams.log_images, len(generated))
        condition = self._condition_picture(batch, n)
        rows = torch.stack([condition, generated[:n], batch["image"][:n]], 1).flatten(0, 1)
        log_image(logger, "test/condition_generated_rendered", image_grid(rows, nrow=3), self.global_step)
        few = {k: (v[:4] if torch.is_tensor(v) else {kk: vv[:4] for kk, vv in v.items()} if isinstance(v, dict)
                   else v[:4]) for k, v in batch.items()}
        grid = [self.sample(few, guidance=w) for w in GUIDANCE_GRID]
        log_image(logger, "test/guidance_1_2_4_7", image_grid(torch.stack(grid, 1).flatten(0, 1),
                                                              nrow=len(GUIDANCE_GRID)), self.global_step)
