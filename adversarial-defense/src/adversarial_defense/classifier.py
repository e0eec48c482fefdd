"""The Lightning layer for image classification: train a network with a defense, test it under attacks.

- fit: the defense's objective (``defenses.py``); AdamW with a cosine learning-rate decay. Adversarial
  defenses train on clean images for ``clean_epochs`` (the adv-sat reference's ``--epoch_adv``), then ramp
  their eps (and step size) linearly from 0 over ``eps_warmup_epochs`` (a curriculum, as Cai et al.,
  "Curriculum Adversarial Training", IJCAI 2018, and the eps ramp of Gowal et al. 2018): on the shape-texture
  set, adversarial training from the first step, at eps 8/255 and even at 2/255, stays at chance accuracy
  (validation split). Validation logs ``val/acc`` and
  ``val/robust_acc_pgd`` (PGD-10 at the training eps); the defense's ``monitor`` picks the best checkpoint.
- test: on the deployed model (``defense.wrap``), ``test/clean_acc`` and ``test/robust_acc_<attack>`` for each
  attack of ``attacks`` (eps in 1/255 units in the configs); minimal-norm attacks (CW-L2, DeepFool) count as
  successful only within the L2 budget ``l2_budget`` (robust accuracy at ``||d||_2 <= l2_budget``, how
  minimal-norm attacks are turned into a robust accuracy); the accuracy-vs-eps curve of PGD over
  ``eps_curve`` (``test/acc_pgd_eps<e>``) and its normalised area ``test/auac_pgd`` (Bouniot et al.'s AUAC);
  the universal perturbation's fooling rate and the adversarial patch's success, both fitted on training
  images; for an input-transform defense, ``test/robust_acc_pgd_naive`` (no BPDA: the gradient-masking gap).
  Accuracies are percentages. A test label of -1 (``ImagenetPhotos``) means "the model's clean prediction".
  TensorBoard: per attack, clean | adversarial | amplified perturbation with the predicted classes.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from adversarial_defense.attacks import classification as attacks
from adversarial_defense.attacks._common import amplified, from_255
from adversarial_defense.defenses import Defense, InputTransform, Standard
from adversarial_defense.metrics import accuracy_eps_auc
from adversarial_defense.models import Lite0Classifier, PreActResNet
from shared_utils.logging import image_grid, log_image

MINIMAL_NORM = ("cw", "deepfool")


def default_attacks() -> list:
    return [attacks.FGSM(eps=8), attacks.PGD(eps=8, alpha=2, steps=10), attacks.CW(c=1.0, kappa=0.0, steps=50),
            attacks.DeepFool(steps=50, overshoot=0.02), attacks.APGD(eps=8, steps=10)]


def build_network(arch: str, num_classes: int, width: int) -> nn.Module:
    if arch == "preact_resnet":
        return PreActResNet(num_classes, width=width)
    if arch == "lite0":
        return Lite0Classifier(num_classes)
    raise ValueError(f"arch must be preact_resnet or lite0, got {arch!r}")


class ClassifierModule(LightningModule):
    """Args:
        defense: the training objective and deployed model (``Standard``, ``PGDAT``, ``TRADES``, ``FastAT``,
            ``SAT``, ``InputTransform``).
        attacks: the test attacks (``FGSM``, ``PGD``, ``CW``, ``DeepFool``, ``APGD``); default FGSM, PGD-10,
            CW-L2 (50 steps), DeepFool (50 steps), APGD-CE (10 iterations), Linf eps 8/255.
        num_classes: linked from the data.
        arch: ``preact_resnet`` (trained here) or ``lite0`` (the pretrained ImageNet classifier; 1000 classes
            keep its real head).
        width: PreActResNet's first-stage channels.
        lr, weight_decay: AdamW's, ``lr`` decayed by a cosine to 0 over the run.
        clean_epochs, eps_warmup_epochs: an adversarial defense trains on clean images for ``clean_epochs``
            (adv-sat's ``--epoch_adv``), then ramps its eps from 0 to its value over ``eps_warmup_epochs``.
        eps_curve: the PGD accuracy-vs-eps curve's eps values (1/255 units; 0 is clean accuracy).
        val_eps: the eps of the validation PGD (1/255 units).
        l2_budget: the L2 norm within which a minimal-norm attack counts as a success.
        universal_eps: the universal perturbation's Linf eps (1/255 units; 0: not run), fitted by DeepFool
            (10 steps) on ``universal_batches`` training batches in at most ``universal_passes`` passes.
        patch_size: the adversarial patch's side in pixels (0: not run); patch_target its target class;
            patch_steps its optimisation steps (Adam, lr 0.05, EOT placements).
        num_visualized: test images drawn to TensorBoard per attack.
    """

    # evaluation-only settings: a test of a checkpoint takes them from the config (shared_utils.cli)
    test_time_hparams = ("attacks", "eps_curve", "l2_budget", "universal_eps", "patch_size", "patch_target",
                         "patch_steps", "universal_batches", "universal_passes", "num_visualized")

    def __init__(self, defense: Defense | None = None, attacks: list[attacks.Attack] | None = None,
                 num_classes: int = 10, arch: str = "preact_resnet", width: int = 8, lr: float = 3e-3,
                 weight_decay: float = 5e-4, clean_epochs: float = 2, eps_warmup_epochs: float = 4,
                 eps_curve: list[float] = (0, 2, 4, 6, 8, 12, 16), val_eps: float = 8,
                 l2_budget: float = 0.5, universal_eps: float = 8, patch_size: int = 8, patch_target: int = 0,
                 patch_steps: int = 100, universal_batches: int = 4, universal_passes: int = 2,
                 num_visualized: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.defense = defense or Standard()
        self.attacks = attacks if attacks is not None else default_attacks()
        self.net = build_network(arch, num_classes, width)
        self.monitor = self.defense.monitor
        self.monitor_mode = "max"

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @property
    def deployed(self) -> nn.Module:
        return self.defense.wrap(self.net)

    # fit ----------------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        epoch = self.global_step / max(self.trainer.num_training_batches, 1)  # fractional epochs done
        clean, warmup = self.hparams.clean_epochs, self.hparams.eps_warmup_epochs
        ramp = 1.0 if warmup <= 0 else (epoch - clean) / warmup
        self.defense.eps_scale = 0.0 if epoch < clean else min(1.0, max(0.0, ramp))
        self.log("train/eps_scale", self.defense.eps_scale)
        loss, logs = self.defense.loss(self.net, x, y)
        self.defense.eps_scale = 1.0
        self.log("train/loss", loss, prog_bar=True)
        for name, value in logs.items():
            self.log(f"train/{name}", value)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.hparams.lr,
                                      weight_decay=self.hparams.weight_decay)
        # cosine decay from the first step: a warm-up (one-cycle) leaves the network at chance while eps ramps up
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                               T_max=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = _trainable(batch)
        model = self.deployed
        with torch.enable_grad():
            eps = from_255(self.hparams.val_eps)
            adv = attacks.pgd(model, x, y, eps=eps, alpha=eps / 4, steps=10, random_start=True)
        with torch.no_grad():
            self.log("val/acc", 100 * (model(x).argmax(1) == y).float().mean(), prog_bar=True)
            self.log("val/robust_acc_pgd", 100 * (model(adv).argmax(1) == y).float().mean(), prog_bar=True)

    # test ---------------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._counts: dict[str, float] = {}
        self._total = 0
        self._universal = self._patch = None
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and "train" in getattr(datamodule, "splits", {}):
            self._fit_universal(datamodule)

    def _train_batches(self, datamodule, limit: int = 8) -> list[tuple[Tensor, Tensor]]:
        batches = []
        for i, (x, y) in enumerate(datamodule.train_dataloader()):
            if i == limit:
                break
            batches.append((x.to(self.device), y.to(self.device)))
        return batches

    def _fit_universal(self, datamodule) -> None:
        """The universal perturbation and the patch are fitted on training images, never on the test set."""
        with torch.inference_mode(False), torch.enable_grad():
            model = self.deployed
            batches = [(x.clone(), y.clone())
                       for x, y in self._train_batches(datamodule, self.hparams.universal_batches)]
            if self.hparams.universal_eps:
                with torch.no_grad():  # the paper's fooling criterion: k(x + v) != k(x)
                    predicted = [(x, model(x).argmax(1)) for x, _ in batches]
                self._universal = attacks.universal_perturbation(model, predicted,
                                                                 eps=from_255(self.hparams.universal_eps),
                                                                 max_passes=self.hparams.universal_passes)
            if self.hparams.patch_size:
                self._patch = attacks.adversarial_patch(model, batches, target=self.hparams.patch_target,
                                                        patch_size=self.hparams.patch_size,
                                                        steps=self.hparams.patch_steps, lr=0.05)

    def _count(self, name: str, correct: Tensor) -> None:
        self._counts[name] = self._counts.get(name, 0.0) + float(correct.float().sum())

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = _trainable(batch)
        model = self.deployed
        with torch.no_grad():
            clean = model(x).argmax(1)
        y = torch.where(y < 0, clean, y)  # ImagenetPhotos: the clean prediction is the label
        self._total += len(x)
        self._count("clean_acc", clean == y)
        drawn = []
        with torch.enable_grad():
            for attack in self.attacks:
                adv = attack(model, x, y)
                if attack.name in MINIMAL_NORM:  # a success only within the L2 budget
                    within = (adv - x).flatten(1).norm(dim=1) <= self.hparams.l2_budget
                    adv = torch.where(within[:, None, None, None], adv, x)
                with torch.no_grad():
                    predicted = model(adv).argmax(1)
                self._count(f"robust_acc_{attack.name}", predicted == y)
                if batch_idx == 0:
                    drawn.append((attack.name, adv, predicted))
            for eps in self.hparams.eps_curve:
                if eps == 0:
                    correct = clean == y
                else:
                    e = from_255(eps)
                    adv = attacks.pgd(model, x, y, eps=e, alpha=e / 4, steps=10, random_start=True)
                    with torch.no_grad():
                        correct = model(adv).argmax(1) == y
                self._count(f"acc_pgd_eps{eps:g}", correct)
            if isinstance(self.defense, InputTransform):
                naive = self.defense.wrap(self.net, bpda=False)
                e = from_255(self.hparams.val_eps)
                adv = attacks.pgd(naive, x, y, eps=e, alpha=e / 4, steps=10, random_start=True)
                with torch.no_grad():
                    self._count("robust_acc_pgd_naive", model(adv).argmax(1) == y)
        with torch.no_grad():
            if self._universal is not None:
                fooled = model((x + self._universal).clamp(0, 1)).argmax(1) != clean
                self._count("fooling_rate_uap", fooled)
            if self._patch is not None:  # at a random place per image (seeded: the same places for every model)
                generator = torch.Generator().manual_seed(batch_idx)
                room = torch.tensor(x.shape[-2:]) - self.hparams.patch_size
                top_left = (torch.rand(len(x), 2, generator=generator) * (room + 1)).floor().to(x.device)
                patched = attacks.apply_patch(x, self._patch, top_left)
                self._count("patch_success", model(patched).argmax(1) == self.hparams.patch_target)
        if batch_idx == 0:
            self._visualize(x, clean, drawn)

    def on_test_epoch_end(self) -> None:
        metrics = {name: 100 * count / max(self._total, 1) for name, count in self._counts.items()}
        curve = [(eps, metrics[f"acc_pgd_eps{eps:g}"]) for eps in self.hparams.eps_curve]
        metrics["auac_pgd"] = 100 * accuracy_eps_auc([e for e, _ in curve], [a / 100 for _, a in curve])
        for name, value in metrics.items():
            self.log(f"test/{name}", value)

    def _visualize(self, x: Tensor, clean: Tensor, drawn: list[tuple[str, Tensor, Tensor]]) -> None:
        n = min(self.hparams.num_visualized, len(x))
        classes = getattr(getattr(self.trainer, "datamodule", None), "classes", None)
        for name, adv, predicted in drawn:
            perturbation = amplified(x[:n], adv[:n])
            tiles = [_labelled(x[i], clean[i], classes) for i in range(n)]
            tiles += [_labelled(adv[i], predicted[i], classes) for i in range(n)]
            tiles += [_upscale(perturbation[i]) for i in range(n)]
            log_image(self.logger, f"test/{name}", image_grid(torch.stack(tiles).cpu(), nrow=n))


def _trainable(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Lightning evaluates under ``torch.inference_mode``; attacks need autograd, so evaluation steps clone
    their batch outside it (``inference_mode: false`` on the Trainer would do the same for every project)."""
    x, y = batch
    with torch.inference_mode(False):
        return x.clone(), y.clone()


def _upscale(image: Tensor, size: int = 96) -> Tensor:
    return F.interpolate(image[None].float(), size=(size, size), mode="nearest")[0].clamp(0, 1)


def _labelled(image: Tensor, label: Tensor, classes: list[str] | None) -> Tensor:
    """The image upscaled with its predicted class written on it."""
    canvas = np.ascontiguousarray((_upscale(image).permute(1, 2, 0).detach().cpu().numpy() * 255).astype(np.uint8))
    text = classes[int(label)] if classes and int(label) < len(classes) else str(int(label))
    cv2.putText(canvas, text[:12], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.32, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(canvas, text[:12], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.32, (0, 0, 0), 1, cv2.LINE_AA)
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255
