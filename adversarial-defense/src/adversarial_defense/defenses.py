"""Defenses of an image classifier, each a training objective (``loss``) and the model as deployed (``wrap``).

- ``Standard``: cross-entropy on clean images (no defense; the reference for what robustness costs).
- ``PGDAT``: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial
  Attacks" (ICLR 2018): ``min_theta E max_{||d||_inf <= eps} CE(f(x + d), y)``, the inner max by PGD with a
  random start; their CIFAR-10 setting: eps 8/255, 7 steps of 2/255.
- ``TRADES``: Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically Principled Trade-off between Robustness
  and Accuracy" (ICML 2019), Eq. 5: ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with ``x'`` maximising the KL
  (10 signed steps of 0.007 from ``x + 0.001 N(0, I)``, eps 0.031, beta 6 in the official code).
- ``FastAT``: Wong, Rice, Kolter, "Fast is better than free: Revisiting adversarial training" (ICLR 2020):
  one FGSM step of 1.25 eps from a uniform random start in the eps ball (eps 8/255, alpha 10/255).
- ``SAT``: Bouniot, Audigier, Loesch, "Optimal Transport as a Defense Against Adversarial Attacks" (ICPR
  2020): Sinkhorn Adversarial Training, ``CE(f(x_adv), y) + S_eps(f(X), f(X_adv))``, the debiased Sinkhorn
  divergence between the batch of clean logits and the batch of adversarial logits (squared Euclidean cost,
  uniform weights, entropic eps 1, at most 50 log-domain iterations stopped when the dual potential moves
  less than 0.1, as the authors' code CEA-LIST/adv-sat computes it); PGD eps 8/255, 7 steps of 2/255.
- ``InputTransform``: a pre-processing defense (JPEG compression, Dziugaite et al. 2016 / Guo et al. ICLR 2018;
  median filter and bit-depth reduction, Xu, Evans, Qi, "Feature Squeezing", NDSS 2018), trained on transformed
  images. It is evaluated as Athalye, Carlini, Wagner ("Obfuscated Gradients Give a False Sense of Security",
  ICML 2018) require: with BPDA (the transform's backward pass replaced by the identity) and, for a random
  transform, EOT (the gradient averaged over transform samples). Its ``wrap`` has both the honest model
  (``bpda=True``) and the naive one, whose gradients are those the transform gives (none for JPEG, zero
  almost everywhere for rounding): the gap between the two robust accuracies is the gradient masking.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adversarial_defense.attacks._common import eval_mode, from_255
from adversarial_defense.attacks.classification import pgd


class Defense(nn.Module, ABC):
    """Base class: a training objective and the deployed model. ``monitor``: the validation metric that picks
    the best checkpoint (adversarial training overfits robustly, Rice et al. ICML 2020: robust accuracy on
    validation data is what early stopping watches)."""

    name = "standard"
    monitor = "val/acc"
    # The fraction of its eps (and step size) an adversarial defense uses now: the training module ramps it from
    # 0 to 1 over its first epochs (``ClassifierModule.eps_warmup_epochs``), 1 outside training.
    eps_scale = 1.0

    def __init__(self) -> None:
        super().__init__()  # an nn.Module so that checkpoints record and rebuild it as they do a model part

    @abstractmethod
    def loss(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss on a batch and what to log beside it."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as deployed (what the test stage attacks)."""
        return model


class Standard(Defense):
    """Cross-entropy on clean images: no defense."""

    def loss(self, model, x, y):
        logits = model(x)
        return F.cross_entropy(logits, y), {"acc": (logits.argmax(1) == y).float().mean()}


class PGDAT(Defense):
    """Madry et al. 2018. ``eps``, ``alpha`` in 1/255 units."""

    name, monitor = "pgd_at", "val/robust_acc_pgd"

    def __init__(self, eps: float = 8, alpha: float = 2, steps: int = 7) -> None:
        super().__init__()
        self.eps, self.alpha, self.steps = from_255(eps), from_255(alpha, "alpha"), steps

    def adversarial(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.eps_scale <= 0:
            return x
        return pgd(model, x, y, eps=self.eps * self.eps_scale, alpha=self.alpha * self.eps_scale, steps=self.steps,
                   random_start=True)

    def loss(self, model, x, y):
        logits = model(self.adversarial(model, x, y))
        return F.cross_entropy(logits, y), {"robust_acc": (logits.argmax(1) == y).float().mean()}


class FastAT(PGDAT):
    """Wong et al. 2020: PGD with one step of ``alpha`` (1.25 eps) from a uniform random start (FGSM-RS)."""

    name = "fast_at"

    def __init__(self, eps: float = 8, alpha: float = 10) -> None:
        super().__init__(eps=eps, alpha=alpha, steps=1)


class TRADES(Defense):
    """Zhang et al. 2019, Eq. 5, with the official code's inner maximisation (model in eval mode,
    ``sum``-reduced KL divided by the batch size)."""

    name, monitor = "trades", "val/robust_acc_pgd"

    def __init__(self, beta: float = 6.0, eps: float = 8, alpha: float = 1.785, steps: int = 10) -> None:
        super().__init__()
        self.beta, self.eps, self.alpha, self.steps = beta, from_255(eps), from_255(alpha, "alpha"), steps

    def adversarial(self, model: nn.Module, x: Tensor) -> Tensor:
        eps, alpha = self.eps * self.eps_scale, self.alpha * self.eps_scale
        with eval_mode(model):
            with torch.no_grad():
                clean = F.softmax(model(x), dim=1)
            adv = (x + 0.001 * torch.randn_like(x)).detach()
            for _ in range(self.steps):
                adv.requires_grad_(True)
                kl = F.kl_div(F.log_softmax(model(adv), dim=1), clean, reduction="sum")
                grad, = torch.autograd.grad(kl, adv)
                adv = torch.min(torch.max(adv.detach() + alpha * grad.sign(), x - eps), x + eps)
                adv = adv.clamp(0, 1)
        return adv.detach()

    def loss(self, model, x, y):
        adv = self.adversarial(model, x)
        logits, logits_adv = model(x), model(adv)
        natural = F.cross_entropy(logits, y)
        robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="sum") / len(x)
        return natural + self.beta * robust, {"acc": (logits.argmax(1) == y).float().mean(),
                                              "robust_acc": (logits_adv.argmax(1) == y).float().mean(),
                                              "kl": robust.detach()}


def sinkhorn_cost(a: Tensor, b: Tensor, blur: float = 1.0, max_iter: int = 50, threshold: float = 0.1) -> Tensor:
    """Entropic OT cost ``<pi, C>`` between the uniform point clouds ``a`` (N, D) and ``b`` (M, D), ``C`` the
    squared Euclidean distances, by log-domain Sinkhorn iterations on the dual potentials (Cuturi 2013;
    Peyre & Cuturi 2019, Sec. 4.4); differentiable through the iterations, as in adv-sat."""
    cost = torch.cdist(a, b) ** 2
    log_mu = torch.full((len(a),), -np.log(len(a)), dtype=a.dtype, device=a.device)
    log_nu = torch.full((len(b),), -np.log(len(b)), dtype=a.dtype, device=a.device)
    u, v = torch.zeros_like(log_mu), torch.zeros_like(log_nu)
    for _ in range(max_iter):
        previous = u
        u = blur * (log_mu - torch.logsumexp((-cost + u[:, None] + v[None, :]) / blur, dim=1)) + u
        v = blur * (log_nu - torch.logsumexp((-cost + u[:, None] + v[None, :]) / blur, dim=0)) + v
        if (u - previous).abs().sum().item() < threshold:
            break
    plan = torch.exp((-cost + u[:, None] + v[None, :]) / blur)
    return (plan * cost).sum()


def sinkhorn_divergence(a: Tensor, b: Tensor, blur: float = 1.0, max_iter: int = 50) -> Tensor:
    """Debiased Sinkhorn divergence ``OT(a, b) - (OT(a, a) + OT(b, b)) / 2`` (Genevay, Peyre, Cuturi,
    AISTATS 2018), which is 0 when the two clouds coincide."""
    return (sinkhorn_cost(a, b, blur, max_iter)
            - 0.5 * (sinkhorn_cost(a, a, blur, max_iter) + sinkhorn_cost(b, b, blur, max_iter)))


class SAT(PGDAT):
    """Bouniot et al. 2020: ``CE(f(x_adv), y) + S(f(X), f(X_adv))`` on logits; ``blur`` is the entropic
    regularisation (adv-sat's ``--sink_eps``, default 1)."""

    name = "ot_at"

    def __init__(self, eps: float = 8, alpha: float = 2, steps: int = 7, blur: float = 1.0,
                 max_iter: int = 50) -> None:
        super().__init__(eps=eps, alpha=alpha, steps=steps)
        self.blur, self.max_iter = blur, max_iter

    def loss(self, model, x, y):
        adv = self.adversarial(model, x, y)
        logits, logits_adv = model(x), model(adv)
        divergence = sinkhorn_divergence(logits, logits_adv, self.blur, self.max_iter)
        return F.cross_entropy(logits_adv, y) + divergence, {
            "robust_acc": (logits_adv.argmax(1) == y).float().mean(), "sinkhorn": divergence.detach()}


def jpeg(x: Tensor, quality: int) -> Tensor:
    """JPEG round trip of every image with OpenCV at ``quality`` (not differentiable)."""
    out = []
    for image in (x.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8):
        ok, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        out.append(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])
    return torch.from_numpy(np.stack(out).astype(np.float32) / 255).permute(0, 3, 1, 2).to(x)


def median_filter(x: Tensor, size: int = 3) -> Tensor:
    """Per-channel ``size`` x ``size`` median with reflection padding (differentiable through the selected
    pixel, as torch.median is)."""
    pad = size // 2
    patches = F.unfold(F.pad(x, (pad,) * 4, mode="reflect"), size)  # (B, C * size^2, H * W)
    b, c, h, w = x.shape
    return patches.view(b, c, size * size, h * w).median(dim=2).values.view(b, c, h, w)


def bit_depth(x: Tensor, bits: int = 4) -> Tensor:
    """Each channel rounded to ``bits`` bits (Feature Squeezing); its gradient is 0 almost everywhere."""
    levels = 2 ** bits - 1
    return torch.round(x * levels) / levels


class TransformedModel(nn.Module):
    """``model(transform(x))``. ``bpda``: the backward pass treats the transform as the identity (straight-
    through); else its own gradient (none at all for JPEG, whose output is computed outside autograd).
    ``eot``: logits averaged over that many transform samples when the transform is random."""

    def __init__(self, model: nn.Module, transform: InputTransform, bpda: bool, eot: int = 1) -> None:
        super().__init__()
        self.model, self.transform, self.bpda, self.eot = model, transform, bpda, eot

    def forward(self, x: Tensor) -> Tensor:
        samples = self.eot if self.transform.random else 1
        logits = 0
        for _ in range(samples):
            t = self.transform.apply(x)
            logits = logits + self.model(x + (t - x).detach() if self.bpda else t)
        return logits / samples


class InputTransform(Defense):
    """Args:
        kind: ``"jpeg"``, ``"median"`` or ``"bit_depth"``.
        quality: JPEG quality, or ``[low, high]`` for a quality drawn per call (a random transform: EOT).
        size: median filter size; bits: bit depth.
        eot: transform samples averaged by the attack when the transform is random.
    """

    name = "input_transform"

    def __init__(self, kind: str = "bit_depth", quality: int | list[int] = 75, size: int = 3, bits: int = 4,
                 eot: int = 8) -> None:
        if kind not in ("jpeg", "median", "bit_depth"):
            raise ValueError(f"InputTransform kind must be jpeg, median or bit_depth, got {kind!r}")
        super().__init__()
        self.kind, self.quality, self.size, self.bits, self.eot = kind, quality, size, bits, eot
        self.random = kind == "jpeg" and isinstance(quality, (list, tuple))

    def apply(self, x: Tensor) -> Tensor:
        if self.kind == "jpeg":
            quality = (np.random.randint(self.quality[0], self.quality[1] + 1) if self.random else self.quality)
            return jpeg(x, quality)
        if self.kind == "median":
            return median_filter(x, self.size)
        return bit_depth(x, self.bits)

    def loss(self, model, x, y):
        logits = model(self.apply(x))
        return F.cross_entropy(logits, y), {"acc": (logits.argmax(1) == y).float().mean()}

    def wrap(self, model: nn.Module, bpda: bool = True) -> nn.Module:
        return TransformedModel(model, self, bpda=bpda, eot=self.eot)


__all__ = ["Defense", "Standard", "PGDAT", "FastAT", "TRADES", "SAT", "InputTransform", "TransformedModel",
           "sinkhorn_divergence", "jpeg", "median_filter", "bit_depth"]
