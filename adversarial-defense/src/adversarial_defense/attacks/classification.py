"""Image-classification attacks: FGSM, PGD (Linf, L2), Carlini-Wagner L2, DeepFool, APGD-CE, universal
perturbations and adversarial patches.

Conventions (see ``_common``): images are float (B, 3, H, W) in [0, 1], the model takes them as they are
(it holds its own normalisation) and returns logits (B, K); functions take eps and step sizes in image units
(``8 / 255``), the config classes at the bottom take Linf values in 1/255 units (``eps=8``).

Fidelity to torchattacks 3.5.1. FGSM, PGD, PGDL2, CW, DeepFool and APGD (CE, Linf) compute what torchattacks
computes, operation for operation (random starts, projections, clamping, step sizes, CW's tanh space and best-
adversarial bookkeeping, DeepFool's per-step overshoot, APGD's step-size halving at its checkpoints), so robust
accuracies compare with the numbers of its users; ``tests/test_attacks.py`` checks them against the package
itself to 1e-5 (on its tiny CNN they are bitwise equal, DeepFool to 1.2e-7). The code is our own. torchattacks'
quirks are kept where they change results (CW's clipped margin, see ``_cw_margin``; APGD's first oscillation
check reading a not-yet-written loss; CW's batch-wide early stop). What differs, for every attack:

- Model mode: torchattacks calls ``model.eval()`` and afterwards ``model.train()`` if the model was training,
  which switches on submodules that were frozen in eval mode on purpose; we use ``eval_mode`` (restores each
  submodule's own mode). Normalisation: torchattacks can normalise inside the attack
  (``set_normalization_used``); here the model holds it, so the attack sees and returns [0, 1] images.
- Gradients: we take input gradients with ``torch.autograd.grad``; torchattacks' CW and DeepFool call
  ``backward()``, which also accumulates gradients into the model's parameters (``.grad``), a side effect on
  the training step of adversarial training.
- Autograd is switched on inside every attack (``torch.enable_grad`` and ``torch.inference_mode(False)``), so an
  attack also runs inside a Lightning validation/test step, which runs under inference mode.
- Only untargeted attacks (torchattacks' targeted modes are not needed here); the patch is targeted by design.
- Inputs are checked: images outside [0, 1] (normalised by mistake) and eps in 1/255 units are refused.
- Per attack: APGD draws its random start from its own generator seeded with ``seed`` instead of reseeding
  torch's global RNG (same numbers, no side effect on the caller's randomness); DeepFool is vectorised over the
  batch (torchattacks loops over images: same arithmetic, one backward per class for the whole batch).

Minimal-norm attacks and eps sweeps. CW and DeepFool have no eps: they look for the smallest (L2) perturbation
that changes the label. For an accuracy-vs-eps sweep they take an optional ``max_eps`` (Linf, image units in
the functions, 1/255 units in the classes, set by ``with_eps``): an adversarial example whose Linf distance to
its clean image exceeds ``max_eps`` is replaced by the clean image, so the attack counts as a success only
within the budget, the output stays in the eps ball, and robust accuracy cannot increase with eps (the
search itself does not depend on ``max_eps``, so a sweep could reuse one run). Without ``max_eps`` they are
torchattacks' attacks.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adversarial_defense.attacks._common import EpsUnitError, attacking, check_eps, eval_mode, from_255

__all__ = [
    "APGD",
    "Attack",
    "CW",
    "FGSM",
    "PGD",
    "DeepFool",
    "PRINTABLE_COLOURS",
    "adversarial_patch",
    "apgd_ce",
    "apply_patch",
    "apply_universal",
    "cw_l2",
    "deepfool",
    "fgsm",
    "fooling_rate",
    "non_printability_score",
    "pgd",
    "total_variation",
    "universal_perturbation",
]


# ---------------------------------------------------------------------------------------------------------------
# Shared plumbing
# ---------------------------------------------------------------------------------------------------------------


def _prepare(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Private copies of the inputs (the caller's tensors are never written to; a copy made outside inference
    mode is an ordinary tensor autograd can use), after checking they are a batch of [0, 1] images and labels."""
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"images must be a float (B, C, H, W) batch, got {tuple(x.shape)} {x.dtype}")
    if y.shape != x.shape[:1] or y.is_floating_point():
        raise ValueError(f"labels must be integer class indices of shape ({x.shape[0]},), got {tuple(y.shape)} "
                         f"{y.dtype}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"images must be in [0, 1] (the model normalises them itself), got values in "
                         f"[{x.min().item():.3g}, {x.max().item():.3g}]")
    return x.detach().clone(), y.detach().clone()


def _check_positive_int(value: int, name: str) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _check_l2(value: float, name: str, x: Tensor) -> float:
    """An L2 radius in image units: between 0 and the diameter of the [0, 1] image cube, sqrt(C*H*W); a larger
    value is a value in the wrong units (1/255 units, or squared)."""
    value = float(value)
    diameter = math.sqrt(x[0].numel())
    if not 0 <= value <= diameter:
        raise EpsUnitError(f"{name}={value:g} is not an L2 norm in image units for {tuple(x.shape[1:])} images "
                           f"(at most sqrt(C*H*W) = {diameter:.3g}; e.g. 0.5 for CIFAR-10)")
    return value


def _linf(delta: Tensor) -> Tensor:
    return delta.flatten(1).abs().amax(1)


def _within_budget(x_adv: Tensor, x: Tensor, max_eps: float | None) -> Tensor:
    """The clean image wherever the adversarial one is farther than ``max_eps`` (Linf) from it: a minimal-norm
    attack counts as a success only within the budget (see the module docstring)."""
    if max_eps is None:
        return x_adv
    too_far = _linf(x_adv - x) > max_eps
    return torch.where(too_far.view(-1, 1, 1, 1), x, x_adv)


def _reiterable(batches: Iterable, name: str = "batches") -> Iterable:
    if iter(batches) is batches:
        raise TypeError(f"{name} is read several times (once per pass): give a list or a DataLoader, not an "
                        f"iterator or generator")
    return batches


# ---------------------------------------------------------------------------------------------------------------
# FGSM and PGD
# ---------------------------------------------------------------------------------------------------------------

def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """Fast gradient sign method, Goodfellow, Shlens & Szegedy, "Explaining and harnessing adversarial
    examples", ICLR 2015, Sec. 4: ``x + eps * sign(grad_x J(x, y))``, clamped to [0, 1].

    J is the batch-mean cross-entropy, as in torchattacks.FGSM (the mean only scales the gradient).
    """
    eps = check_eps(eps)
    with attacking(model):
        x, y = _prepare(x, y)
        x_req = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_req), y), x_req)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int, random_start: bool = True,
        norm: str = "linf", generator: torch.Generator | None = None) -> Tensor:
    """Projected gradient descent on the cross-entropy, Madry et al., "Towards deep learning models resistant to
    adversarial attacks", ICLR 2018, Sec. 2.1: ``x_{t+1} = Proj_{x+S}(x_t + alpha * step(grad))``.

    ``norm="linf"`` (torchattacks.PGD): step ``alpha * sign(grad)``, projection by clipping the perturbation to
    [-eps, eps]; the random start is uniform in the Linf ball. ``norm="l2"`` (torchattacks.PGDL2): step
    ``alpha * grad / (||grad||_2 + 1e-10)``, projection by rescaling the perturbation to L2 norm <= eps; the
    random start is a Gaussian direction with a norm uniform in [0, eps] (so not uniform in the ball's volume,
    as torchattacks). For "l2", ``eps`` and ``alpha`` are L2 norms in image units (0.5 is CIFAR-10's usual eps),
    at most sqrt(C*H*W), the diameter of the image cube. Every iterate is clamped to [0, 1] after projection.

    The random start uses ``generator`` (on the images' device) or, when None, torch's global RNG, like
    torchattacks: after the same ``torch.manual_seed`` both draw the same start.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    with attacking(model):
        x, y = _prepare(x, y)
        if norm == "linf":
            eps, alpha = check_eps(eps), check_eps(alpha, "alpha")
        else:
            eps, alpha = _check_l2(eps, "eps", x), _check_l2(alpha, "alpha", x)
        B = x.shape[0]
        x_adv = x.clone()
        if random_start and norm == "linf":
            x_adv = (x_adv + torch.empty_like(x).uniform_(-eps, eps, generator=generator)).clamp(0, 1)
        elif random_start:
            delta = torch.empty_like(x).normal_(generator=generator)
            radius = torch.zeros(B, 1, 1, 1, dtype=x.dtype, device=x.device).uniform_(0, 1, generator=generator)
            delta *= radius / delta.flatten(1).norm(p=2, dim=1).view(B, 1, 1, 1) * eps
            x_adv = (x_adv + delta).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
            if norm == "linf":
                x_adv = x_adv.detach() + alpha * grad.sign()
                delta = (x_adv - x).clamp(-eps, eps)
            else:
                grad = grad / (grad.flatten(1).norm(p=2, dim=1) + 1e-10).view(B, 1, 1, 1)
                x_adv = x_adv.detach() + alpha * grad
                delta = x_adv - x
                # eps / ||delta|| (torchattacks); a zero delta needs no scaling (and eps = 0 would give 0 / 0).
                norms = delta.flatten(1).norm(p=2, dim=1).clamp_min(torch.finfo(x.dtype).tiny)
                delta = delta * torch.min(eps / norms, torch.ones_like(norms)).view(B, 1, 1, 1)
            x_adv = (x + delta).clamp(0, 1).detach()
    return x_adv.detach()


# ---------------------------------------------------------------------------------------------------------------
# Carlini-Wagner L2 and DeepFool (minimal-norm attacks)
# ---------------------------------------------------------------------------------------------------------------

def _cw_margin(logits: Tensor, y: Tensor, kappa: float) -> Tensor:
    """f_6 of Carlini & Wagner Sec. IV.A, untargeted: ``max(Z_y - max_{i != y} Z_i, -kappa)``, computed as
    torchattacks.CW does: masked logits (the others' set to 0) maxed, so both terms are clipped below at 0.
    This departs from the paper when every other logit (or the true one) is negative; we keep it so that CW
    results match torchattacks'."""
    one_hot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    other = torch.max((1 - one_hot) * logits, dim=1)[0]
    real = torch.max(one_hot * logits, dim=1)[0]
    return torch.clamp(real - other, min=-kappa)


def cw_l2(model: nn.Module, x: Tensor, y: Tensor, c: float = 1.0, kappa: float = 0.0, steps: int = 50,
          lr: float = 0.01, max_eps: float | None = None) -> Tensor:
    """Carlini & Wagner L2 attack, "Towards evaluating the robustness of neural networks", IEEE S&P 2017,
    Sec. V.A: minimise ``||x' - x||_2^2 + c * f(x')`` over ``x' = (tanh(w) + 1) / 2`` (the change of variables
    of Sec. IV.B, which keeps x' in [0, 1]) with Adam, f the margin f_6 of Sec. IV.A with confidence ``kappa``.

    As torchattacks.CW: one fixed ``c`` (no binary search over c, nor the paper's restarts); w starts at
    atanh(2x - 1) (pixels at exactly 0 or 1 map to infinite w and never move); the result is, per image, the
    misclassified iterate with the smallest L2 distance seen so far, else the clean image; every
    ``max(steps // 10, 1)`` steps the optimisation stops if the batch's total cost rose (so one image's result
    depends on the rest of its batch, as in torchattacks). See ``_cw_margin`` for torchattacks' version of f.
    ``max_eps`` (Linf, image units): see the module docstring.
    """
    steps = int(steps)
    if max_eps is not None:
        max_eps = check_eps(max_eps, "max_eps")
    with attacking(model):
        x, y = _prepare(x, y)
        w = torch.clamp(x * 2 - 1, min=-1, max=1)
        w = (0.5 * torch.log((1 + w) / (1 - w))).detach().requires_grad_(True)
        best_adv = x.clone()
        best_l2 = torch.full((x.shape[0],), 1e10, dtype=x.dtype, device=x.device)
        prev_cost = 1e10
        optimizer = torch.optim.Adam([w], lr=lr)
        for step in range(steps):
            x_adv = 0.5 * (torch.tanh(w) + 1)
            l2 = ((x_adv - x) ** 2).flatten(1).sum(1)
            logits = model(x_adv)
            cost = l2.sum() + c * _cw_margin(logits, y, kappa).sum()
            (w.grad,) = torch.autograd.grad(cost, w)
            optimizer.step()
            # The iterate whose logits were just computed (before the step): keep it if misclassified and closer.
            better = (logits.detach().argmax(1) != y) & (best_l2 > l2.detach())
            best_l2 = torch.where(better, l2.detach(), best_l2)
            best_adv = torch.where(better.view(-1, 1, 1, 1), x_adv.detach(), best_adv)
            if step % max(steps // 10, 1) == 0:
                if cost.item() > prev_cost:
                    break
                prev_cost = cost.item()
    return _within_budget(best_adv.clamp(0, 1), x, max_eps).detach()


def _deepfool(model: nn.Module, x: Tensor, y: Tensor, steps: int, overshoot: float) -> Tensor:
    """DeepFool on prepared tensors inside ``attacking``: up to ``steps`` linearised steps for every image
    still classified as its label. The Jacobian rows come from one backward pass per class over the batch sum,
    exact because in eval mode the images do not interact."""
    x_adv = x.clone()
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(steps):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x_i, y_i = x_adv[idx].clone().requires_grad_(True), y[idx]
        logits = model(x_i)
        K = logits.shape[1]
        still = logits.detach().argmax(1) == y_i
        active[idx[~still]] = False  # fooled: stop here, unchanged (torchattacks' early stop)
        if not still.any():
            break
        jac = torch.stack([torch.autograd.grad(logits[:, k].sum(), x_i, retain_graph=k + 1 < K)[0]
                           for k in range(K)], dim=1)  # (b, K, C, H, W)
        logits, jac, x_i, y_i = logits.detach()[still], jac[still], x_i.detach()[still], y_i[still]
        rows = torch.arange(len(y_i), device=x.device)
        # Moosavi-Dezfooli et al. Alg. 2: f'_k = f_k - f_y, w'_k = grad f_k - grad f_y, l = argmin |f'_k| / ||w'_k||
        f_prime = logits - logits[rows, y_i].unsqueeze(1)
        w_prime = jac - jac[rows, y_i].unsqueeze(1)
        ratio = f_prime.abs() / w_prime.flatten(2).norm(p=2, dim=2)
        ratio[rows, y_i] = float("inf")
        hat_l = ratio.argmin(1)
        w_l = w_prime[rows, hat_l]
        r = (f_prime[rows, hat_l].abs() / w_l.flatten(1).norm(p=2, dim=1) ** 2).view(-1, 1, 1, 1) * w_l
        x_adv[idx[still]] = (x_i + (1 + overshoot) * r).clamp(0, 1)
    return x_adv


def deepfool(model: nn.Module, x: Tensor, y: Tensor, steps: int = 50, overshoot: float = 0.02,
             max_eps: float | None = None) -> Tensor:
    """DeepFool, Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to fool deep
    neural networks", CVPR 2016, Alg. 2 (multi-class, L2): step to the nearest linearised decision boundary,
    ``r = |f'_l| / ||w'_l||^2 * w'_l``, until the label changes or ``steps`` steps were taken.

    As torchattacks.DeepFool, and unlike the paper (which scales the total perturbation by 1 + overshoot once at
    the end), each step is scaled by ``1 + overshoot`` and the iterate clamped to [0, 1]; no 1e-4 is added to r.
    Vectorised over the batch (see the module docstring); ``max_eps`` (Linf, image units): ditto.
    """
    steps = _check_positive_int(steps, "steps")
    if max_eps is not None:
        max_eps = check_eps(max_eps, "max_eps")
    with attacking(model):
        x, y = _prepare(x, y)
        x_adv = _deepfool(model, x, y, steps, overshoot)
    return _within_budget(x_adv, x, max_eps).detach()


# ---------------------------------------------------------------------------------------------------------------
# APGD-CE
# ---------------------------------------------------------------------------------------------------------------

def _project_linf(z: Tensor, x: Tensor, eps: float) -> Tensor:
    return torch.min(torch.max(z, x - eps), x + eps).clamp(0, 1)


def _ce_grad(model: nn.Module, x_adv: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image cross-entropy, its gradient (of the sum) with respect to the images, and the logits."""
    x_req = x_adv.detach().requires_grad_(True)
    logits = model(x_req)
    loss = F.cross_entropy(logits, y, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x_req)
    return loss.detach(), grad.detach(), logits.detach()


def _apgd_run(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, rho: float,
              generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One APGD run (Croce & Hein 2020, Alg. 1), returning per image whether it is still classified correctly
    after every iterate, and its last misclassified iterate (else the random start)."""
    B = x.shape[0]
    # Checkpoints w_j (Sec. 3.2): the first after 22 % of the iterations, then intervals shrinking by 3 % of
    # the budget down to 6 % (AutoAttack's and torchattacks' integer versions of p_{j+1} = p_j + max(...)).
    k = max(int(0.22 * steps), 1)
    k_min, k_decr = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    # Random start on the surface of the Linf ball (drawn on the CPU, as torchattacks, so any device agrees).
    t = (2 * torch.rand(x.shape, generator=generator) - 1).to(x.device)
    x_adv = (x + eps * t / t.flatten(1).abs().amax(1).view(B, 1, 1, 1)).clamp(0, 1)
    x_best, x_best_adv = x_adv.clone(), x_adv.clone()
    loss, grad, logits = _ce_grad(model, x_adv, y)
    correct = logits.argmax(1) == y
    loss_best, grad_best = loss.clone(), grad.clone()
    loss_steps = torch.zeros(steps, B, dtype=loss.dtype, device=x.device)
    step_size = torch.full((B, 1, 1, 1), 2 * eps, dtype=x.dtype, device=x.device)  # eta^(0) = 2 eps
    x_adv_old = x_adv.clone()
    since_check = 0
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones(B, dtype=torch.bool, device=x.device)
    for i in range(steps):
        with torch.no_grad():
            # Sec. 3.1: gradient step z, then momentum alpha = 0.75 between z and the previous iterate (none at i = 0)
            momentum = x_adv - x_adv_old
            x_adv_old = x_adv.clone()
            a = 0.75 if i > 0 else 1.0
            z = _project_linf(x_adv + step_size * torch.sign(grad), x, eps)
            x_adv = _project_linf(x_adv + (z - x_adv) * a + momentum * (1 - a), x, eps)
        loss, grad, logits = _ce_grad(model, x_adv, y)
        fooled = logits.argmax(1) != y
        correct &= ~fooled
        x_best_adv[fooled] = x_adv[fooled]
        loss_steps[i] = loss
        improved = loss > loss_best
        x_best[improved], grad_best[improved], loss_best[improved] = x_adv[improved], grad[improved], loss[improved]
        since_check += 1
        if since_check == k:
            # Condition 1: the loss rose in at most rho * k of the last k steps. As AutoAttack and torchattacks,
            # at the first checkpoint the oldest comparison reads loss_steps[-1], the last row, not yet written.
            rises = sum((loss_steps[i - j] > loss_steps[i - j - 1]).to(x.dtype) for j in range(k))
            oscillating = rises <= k * rho
            # Condition 2: step size not reduced at the previous checkpoint and no improvement since.
            stalled = ~reduced_last_check & (loss_best_last_check >= loss_best)
            reduce = oscillating | stalled
            reduced_last_check, loss_best_last_check = reduce.clone(), loss_best.clone()
            # Halve the step size and restart from the best point so far.
            step_size[reduce] /= 2.0
            x_adv[reduce], grad[reduce] = x_best[reduce].clone(), grad_best[reduce].clone()
            since_check = 0
            k = max(k - k_decr, k_min)
    return correct, x_best_adv


def apgd_ce(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 10, n_restarts: int = 1,
            rho: float = 0.75, seed: int = 0) -> Tensor:
    """APGD-CE, Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020, Alg. 1 (Linf, cross-entropy loss; AutoAttack's first attack).

    Gradient steps with momentum 0.75 (Sec. 3.1), initial step 2 eps, halved at checkpoints w_j when the loss
    oscillated (rose in at most ``rho`` of the steps since the last checkpoint) or the best loss stalled, each
    halving restarting from the best point. As torchattacks.APGD (``loss='ce'``, ``norm='Linf'``): only images
    the model classifies correctly are attacked; each restart attacks those not fooled yet; the result is an
    image's last misclassified iterate, and the clean image where no iterate fooled the model (so robust accuracy
    is the fraction never fooled, the keep-best property). The random starts come from a CPU generator seeded
    with ``seed`` once per call: the same numbers as torchattacks, which reseeds torch's global RNG instead.
    """
    eps = check_eps(eps)
    steps = _check_positive_int(steps, "steps")
    n_restarts = _check_positive_int(n_restarts, "n_restarts")
    if not 0 < rho < 1:
        raise ValueError(f"rho must be in (0, 1), got {rho}")
    with attacking(model):
        x, y = _prepare(x, y)
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        adv = x.clone()
        generator = torch.Generator().manual_seed(int(seed))
        for _ in range(n_restarts):
            idx = correct.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            still, x_run = _apgd_run(model, x[idx], y[idx], eps, steps, rho, generator)
            correct[idx[~still]] = False
            adv[idx[~still]] = x_run[~still]
    return adv.detach()


# ---------------------------------------------------------------------------------------------------------------
# Universal adversarial perturbations
# ---------------------------------------------------------------------------------------------------------------

def apply_universal(x: Tensor, delta: Tensor) -> Tensor:
    """Images with a universal perturbation added, clamped to [0, 1]."""
    return (x + delta).clamp(0, 1)


def fooling_rate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], delta: Tensor) -> float:
    """Fraction of the images whose prediction on ``clamp(x + delta)`` differs from their label. With the
    model's clean predictions as labels this is Moosavi-Dezfooli et al.'s fooling rate (CVPR 2017)."""
    fooled = total = 0
    with eval_mode(model), torch.no_grad():
        for x, y in batches:
            fooled += (model(apply_universal(x, delta)).argmax(1) != y).sum().item()
            total += len(y)
    return fooled / max(total, 1)


def universal_perturbation(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], eps: float,
                           max_passes: int = 5, target_fooling_rate: float = 0.8, method: str = "deepfool",
                           deepfool_steps: int = 10, overshoot: float = 0.02,
                           step_size: float | None = None) -> Tensor:
    """A universal (image-agnostic) Linf perturbation, Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, "Universal
    adversarial perturbations", CVPR 2017, Alg. 1; returns ``delta`` of shape (1, C, H, W), ``|delta| <= eps``.

    ``batches``: (images, labels) pairs, read once per pass (a list or a DataLoader). An image counts as fooled
    when its prediction on ``clamp(x + delta)`` differs from its label; give the model's clean predictions as
    labels to follow the paper (k(x + v) != k(x)). Passes stop once the fooling rate over all batches reaches
    ``target_fooling_rate`` (the paper's 1 - delta) or after ``max_passes`` (its max iterations); the result is
    the delta with the highest fooling rate at the end of a pass (the paper returns the last one, but the rate
    need not grow from pass to pass).

    ``method="deepfool"`` (the paper): for the not-yet-fooled images of a batch, DeepFool (``deepfool_steps``,
    ``overshoot``) finds the minimal extra perturbation of each, all from the current delta and at once; delta
    moves by their sum, then is projected on the Linf ball (clipped to [-eps, eps]). Alg. 1 adds them one
    image at a time, projecting after each and recomputing DeepFool from the updated delta; the batched sum is
    the same update whenever the intermediate projections are inactive, and it is vectorised.
    ``method="sgd"``: the stochastic-gradient variant of Shafahi et al., "Universal adversarial training",
    AAAI 2020 (without their clipped loss): per batch, delta moves by ``step_size`` (image units;
    default eps / 4) times the sign of the gradient of the batch-mean cross-entropy, then is projected.
    """
    eps = check_eps(eps)
    if method not in ("deepfool", "sgd"):
        raise ValueError(f"method must be 'deepfool' or 'sgd', got {method!r}")
    step_size = check_eps(eps / 4 if step_size is None else step_size, "step_size")
    max_passes = _check_positive_int(max_passes, "max_passes")
    batches = _reiterable(batches)
    delta, best_delta, best_rate = None, None, -1.0
    with attacking(model):
        for _ in range(max_passes):
            for x, y in batches:
                x, y = _prepare(x, y)
                if delta is None:
                    delta = torch.zeros_like(x[:1])
                if method == "sgd":
                    delta_req = delta.clone().requires_grad_(True)
                    loss = F.cross_entropy(model(apply_universal(x, delta_req)), y)
                    (grad,) = torch.autograd.grad(loss, delta_req)
                    delta = (delta + step_size * grad.sign()).clamp(-eps, eps)
                    continue
                x_pert = apply_universal(x, delta)
                with torch.no_grad():
                    not_fooled = model(x_pert).argmax(1) == y
                if not not_fooled.any():
                    continue
                x_pert = x_pert[not_fooled]
                x_df = _deepfool(model, x_pert, y[not_fooled], deepfool_steps, overshoot)
                delta = (delta + (x_df - x_pert).sum(0, keepdim=True)).clamp(-eps, eps)
            if delta is None:
                raise ValueError("batches is empty")
            rate = fooling_rate(model, batches, delta)
            if rate > best_rate:
                best_rate, best_delta = rate, delta
            if rate >= target_fooling_rate:
                break
    return best_delta.detach()


# ---------------------------------------------------------------------------------------------------------------
# Adversarial patch
# ---------------------------------------------------------------------------------------------------------------

# An illustrative palette of colours an office printer reproduces (no saturated RGB primaries), for the
# non-printability score. Sharif et al. measure theirs (30 colours) by printing and photographing a colour chart;
# do the same for a physical experiment.
PRINTABLE_COLOURS = torch.tensor([
    [0.10, 0.10, 0.10], [0.95, 0.95, 0.93], [0.50, 0.50, 0.50], [0.75, 0.22, 0.20], [0.20, 0.55, 0.30],
    [0.20, 0.30, 0.65], [0.90, 0.80, 0.25], [0.85, 0.50, 0.20], [0.45, 0.25, 0.55], [0.25, 0.65, 0.75],
    [0.55, 0.35, 0.20], [0.90, 0.65, 0.70],
])


def non_printability_score(patch: Tensor, palette: Tensor = PRINTABLE_COLOURS) -> Tensor:
    """Sharif, Bhagavatula, Bauer & Reiter, "Accessorize to a crime", CCS 2016, Sec. 4.3: ``NPS = sum over
    pixels p of prod over palette colours c of ||p - c||_2`` (zero for a patch of printable colours only), here
    averaged over the pixels so that its weight does not depend on the patch size. ``patch`` (3, h, w)."""
    pixels = patch.flatten(1).T  # (h*w, 3)
    distances = ((pixels[:, None, :] - palette.to(patch)[None]) ** 2).sum(-1).add(1e-12).sqrt()
    return distances.prod(dim=1).mean()


def total_variation(patch: Tensor) -> Tensor:
    """Total variation of Sharif et al. 2016, Sec. 4.3, ``sum_ij sqrt((r_ij - r_i+1,j)^2 + (r_ij - r_i,j+1)^2)``
    per channel, averaged over pixels and channels (smooth patches survive printing and camera blur)."""
    d_rows = patch[:, :-1, :-1] - patch[:, 1:, :-1]
    d_cols = patch[:, :-1, :-1] - patch[:, :-1, 1:]
    return (d_rows**2 + d_cols**2 + 1e-12).sqrt().mean()


def apply_patch(images: Tensor, patch: Tensor, top_left: Tensor | tuple[float, float],
                scale: Tensor | float = 1.0, angle: Tensor | float = 0.0) -> Tensor:
    """Paste ``patch`` (C, p, p) into ``images`` (B, C, H, W), differentiably in the patch (Brown et al. 2017).

    ``top_left`` (row, col) in pixels, one pair or (B, 2): the corner of the scaled, unrotated patch, which then
    covers rows ``[row, row + p * scale)`` and columns ``[col, col + p * scale)``; ``scale`` (side in pixels
    over p) and ``angle`` (degrees, about the patch centre, counter-clockwise as displayed) are floats or (B,).
    Pixels whose centre falls inside the placed patch take its bilinearly resampled values (an exact copy at
    scale 1, angle 0 and integer positions), the others keep the image; gradients reach the patch.
    """
    B, C, H, W = images.shape
    if patch.ndim != 3 or patch.shape[0] != C or patch.shape[1] != patch.shape[2]:
        raise ValueError(f"patch must be ({C}, p, p), got {tuple(patch.shape)}")
    p = patch.shape[-1]
    opts = {"dtype": torch.float64, "device": images.device}
    top_left = torch.as_tensor(top_left, **opts).expand(B, 2)
    side = p * torch.as_tensor(scale, **opts).expand(B)
    theta_rad = torch.deg2rad(torch.as_tensor(angle, **opts).expand(B))
    cy, cx = top_left[:, 0] + side / 2, top_left[:, 1] + side / 2
    # Output pixel (normalised x_n, y_n) sits at pixel coordinates ((x_n + 1) W / 2, (y_n + 1) H / 2); undo the
    # translation to the centre, the rotation (the inverse of a counter-clockwise turn on screen, where rows grow
    # downwards) and the scale, to get the patch's normalised coordinates (u, v), in [-1, 1] on the patch.
    cos, sin, k = torch.cos(theta_rad), torch.sin(theta_rad), 2 / side
    ox, oy = W / 2 - cx, H / 2 - cy
    theta = torch.stack([
        torch.stack([k * cos * W / 2, -k * sin * H / 2, k * (cos * ox - sin * oy)], dim=1),
        torch.stack([k * sin * W / 2, k * cos * H / 2, k * (sin * ox + cos * oy)], dim=1),
    ], dim=1).to(images.dtype)
    grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
    # A pixel belongs to the patch when its centre falls inside the patch square (|u|, |v| <= 1): a hard edge,
    # exact at integer placements; inside, border padding extends the outermost patch pixels to the edge.
    content = F.grid_sample(patch.expand(B, C, p, p), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
    inside = (grid.abs() <= 1).all(dim=-1).unsqueeze(1)
    return torch.where(inside, content, images).clamp(0, 1)


def _random_placements(B: int, H: int, W: int, p: int, scale_range: tuple[float, float], max_angle: float,
                       generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """EOT transformations (Athalye et al. 2018, as used by Brown et al.): scale and angle uniform in their
    ranges, position uniform among those where the rotated patch lies inside the image (centred if it cannot)."""
    lo, hi = scale_range
    scale = lo + (hi - lo) * torch.rand(B, generator=generator, dtype=torch.float64)
    angle = max_angle * (2 * torch.rand(B, generator=generator, dtype=torch.float64) - 1)
    side = p * scale
    rad = torch.deg2rad(angle)
    half_extent = side / 2 * (rad.cos().abs() + rad.sin().abs())
    centres = []
    for size in (H, W):
        room = size - 2 * half_extent
        u = torch.rand(B, generator=generator, dtype=torch.float64)
        centres.append(torch.where(room >= 0, half_extent + u * room.clamp_min(0), torch.full_like(room, size / 2)))
    top_left = torch.stack(centres, dim=1) - (side / 2).unsqueeze(1)
    return top_left, scale, angle


def adversarial_patch(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], target: int, patch_size: int,
                      steps: int, lr: float, scale_range: tuple[float, float] = (0.8, 1.2), max_angle: float = 22.5,
                      nps_weight: float = 0.01, tv_weight: float = 0.1, palette: Tensor = PRINTABLE_COLOURS,
                      generator: torch.Generator | None = None) -> Tensor:
    """A targeted adversarial patch, Brown, Mané, Roy, Abadi & Gilmer, "Adversarial patch", NeurIPS workshop
    2017, Eq. 1: maximise ``E_{x, t}[log Pr(target | A(p, x, t))]`` over the patch p, the expectation over
    images x and random placements t (expectation over transformation: position, scale, rotation), here with
    the printability terms of Sharif et al., CCS 2016 (Sec. 4.3): the loss is
    ``CE(target) + nps_weight * NPS(p) + tv_weight * TV(p)``.

    ``batches``: (images, labels) pairs, cycled until ``steps`` Adam steps (step size ``lr``) were taken;
    images already of class ``target`` carry no signal and are left out of the loss. Each image of a step gets
    its own placement: ``scale_range`` multiplies ``patch_size`` pixels, angles are uniform in
    ``[-max_angle, max_angle]`` degrees (Brown et al. use +-22.5). The patch starts uniform random
    (``generator``, a CPU generator, also draws the placements), is clamped to [0, 1] after each step, and is
    returned as (C, patch_size, patch_size).
    """
    steps = _check_positive_int(steps, "steps")
    patch_size = _check_positive_int(patch_size, "patch_size")
    batches = _reiterable(batches)
    patch, optimizer, done = None, None, 0
    with attacking(model):
        while done < steps:
            for x, y in batches:
                x, y = _prepare(x, y)
                if patch is None:
                    patch = torch.rand(x.shape[1], patch_size, patch_size, generator=generator).to(x)
                    patch.requires_grad_(True)
                    optimizer = torch.optim.Adam([patch], lr=lr)
                loss = nps_weight * non_printability_score(patch, palette) + tv_weight * total_variation(patch)
                x = x[y != target]
                if len(x):
                    placements = _random_placements(len(x), x.shape[2], x.shape[3], patch_size, scale_range,
                                                    max_angle, generator)
                    logits = model(apply_patch(x, patch, *placements))
                    if not 0 <= target < logits.shape[1]:
                        raise ValueError(f"target={target} is not a class of a {logits.shape[1]}-class model")
                    loss = loss + F.cross_entropy(logits, torch.full((len(x),), target, device=x.device))
                (patch.grad,) = torch.autograd.grad(loss, patch)
                optimizer.step()
                with torch.no_grad():
                    patch.clamp_(0, 1)
                done += 1
                if done == steps:
                    break
            if patch is None:
                raise ValueError("batches is empty")
    return patch.detach()


# ---------------------------------------------------------------------------------------------------------------
# Config-friendly attacks: Linf eps and step sizes in 1/255 units, ``__call__(model, x, y) -> x_adv``
# ---------------------------------------------------------------------------------------------------------------

class Attack(ABC):
    """Base of the config classes (what a config's ``attacks: [{class_path: ...}]`` list holds)."""

    name: ClassVar[str]

    @abstractmethod
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The adversarial images of ``x`` (labels ``y``) against ``model``."""


@dataclass(frozen=True)
class FGSM(Attack):
    """``fgsm`` with ``eps`` in 1/255 units."""

    eps: float = 8
    name: ClassVar[str] = "fgsm"

    def __post_init__(self) -> None:
        from_255(self.eps)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return fgsm(model, x, y, from_255(self.eps))

    def with_eps(self, eps_255: float) -> FGSM:
        return replace(self, eps=eps_255)


@dataclass(frozen=True)
class PGD(Attack):
    """``pgd``. For ``norm="linf"``, ``eps`` and ``alpha`` are in 1/255 units (default 8 and 2). For
    ``norm="l2"`` they are L2 norms in image units (e.g. eps=0.5, alpha=0.1 on CIFAR-10), with no default: no
    single value suits every image size. ``with_eps`` changes eps only (in the same units) and keeps alpha."""

    eps: float | None = None
    alpha: float | None = None
    steps: int = 10
    random_start: bool = True
    norm: str = "linf"
    name: ClassVar[str] = "pgd"

    def __post_init__(self) -> None:
        if self.norm == "linf":
            object.__setattr__(self, "eps", 8 if self.eps is None else self.eps)
            object.__setattr__(self, "alpha", 2 if self.alpha is None else self.alpha)
            from_255(self.eps)
            from_255(self.alpha, "alpha")
        elif self.norm == "l2":
            for key in ("eps", "alpha"):
                value = getattr(self, key)
                if value is None or not 0 <= value < math.inf:
                    raise EpsUnitError(f"PGD(norm='l2') needs {key} as an L2 norm in image units (e.g. eps=0.5, "
                                       f"alpha=0.1 for CIFAR-10), got {value}")
        else:
            raise ValueError(f"norm must be 'linf' or 'l2', got {self.norm!r}")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.norm == "linf":
            eps, alpha = from_255(self.eps), from_255(self.alpha, "alpha")
        else:
            eps, alpha = self.eps, self.alpha
        return pgd(model, x, y, eps, alpha, self.steps, self.random_start, self.norm)

    def with_eps(self, eps_255: float) -> PGD:
        return replace(self, eps=eps_255)


@dataclass(frozen=True)
class CW(Attack):
    """``cw_l2``; ``max_eps`` (1/255 units, None: unbounded) is the Linf budget of an eps sweep (module
    docstring), set by ``with_eps``."""

    c: float = 1.0
    kappa: float = 0.0
    steps: int = 50
    lr: float = 0.01
    max_eps: float | None = None
    name: ClassVar[str] = "cw"

    def __post_init__(self) -> None:
        if self.max_eps is not None:
            from_255(self.max_eps, "max_eps")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        max_eps = None if self.max_eps is None else from_255(self.max_eps, "max_eps")
        return cw_l2(model, x, y, self.c, self.kappa, self.steps, self.lr, max_eps)

    def with_eps(self, eps_255: float) -> CW:
        return replace(self, max_eps=eps_255)


@dataclass(frozen=True)
class DeepFool(Attack):
    """``deepfool``; ``max_eps`` as in ``CW``."""

    steps: int = 50
    overshoot: float = 0.02
    max_eps: float | None = None
    name: ClassVar[str] = "deepfool"

    def __post_init__(self) -> None:
        if self.max_eps is not None:
            from_255(self.max_eps, "max_eps")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        max_eps = None if self.max_eps is None else from_255(self.max_eps, "max_eps")
        return deepfool(model, x, y, self.steps, self.overshoot, max_eps)

    def with_eps(self, eps_255: float) -> DeepFool:
        return replace(self, max_eps=eps_255)


@dataclass(frozen=True)
class APGD(Attack):
    """``apgd_ce`` with ``eps`` in 1/255 units (random starts seeded with ``seed`` at every call, as
    torchattacks)."""

    eps: float = 8
    steps: int = 10
    n_restarts: int = 1
    seed: int = 0
    name: ClassVar[str] = "apgd"

    def __post_init__(self) -> None:
        from_255(self.eps)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return apgd_ce(model, x, y, from_255(self.eps), self.steps, self.n_restarts, seed=self.seed)

    def with_eps(self, eps_255: float) -> APGD:
        return replace(self, eps=eps_255)
