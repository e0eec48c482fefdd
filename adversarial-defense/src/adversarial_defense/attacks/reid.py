"""Metric attacks on re-identification embeddings (Bai, Li, Zhou, Li, Torr, "Metric Attack and Defense for
Person Re-identification", TPAMI 2020, arXiv 1901.10650; reference code github.com/SongBaiHust/
Adversarial_Metric_Attack, ``Gen_Adv.py``).

A re-ID system ranks the gallery by the distance of each entry's embedding to the query's, so an attack works on
that distance, not on a classifier's logits (the paper's "adversarial metric attack"). As in the reference,
embeddings are L2-normalised and the distance of a pair is their mean squared difference (``torch.nn.MSELoss``,
``= (2 - 2 cos) / D``), summed over the pairs the attack considers:

- ``reid_push`` (the paper's non-targeted attack): maximise the distance of the attacked image's embedding to
  its ``anchors``, the embeddings of its true matches in the gallery, so that they drop down the ranking.
  Without anchors, the attack moves the embedding away from its own clean value; the clean image is the minimum
  of that distance, where the gradient is zero and signed steps would never leave it, so this case alone starts
  from a uniform random point of the eps ball (PGD's random start);
- ``reid_pull`` (its targeted attack): minimise the distance to ``targets``, embeddings of another identity, so
  that that identity rises to the top.

The optimiser is the reference's I-FGSM (Kurakin et al.): no random start (but in the case above), ``steps``
signed steps of ``alpha``, each projected to the Linf ``eps`` ball around the clean image and to [0, 1]; by
default ``steps = int(min(eps + 4, 1.25 eps))`` with eps in 1/255 units (Kurakin's rule, the reference's
``max_iter``) and the reference's eps 5/255, alpha 1/255. The reference perturbs gallery images against the
query; the distance is symmetric, so attacking the query against its gallery matches is the same attack. Its
gradient normalisation by the mean absolute gradient only matters with momentum (MI-FGSM) and is left out.

Anchors and targets, per attacked image: a tensor (B, D) (one embedding each), (B, M, D) (M each) or a
sequence of B tensors (M_i, D) (any number each); they are normalised here too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adversarial_defense.attacks._common import attacking, check_eps, private_images

__all__ = ["embedding_distance", "kurakin_steps", "reid_pull", "reid_push"]

Anchors = Tensor | Sequence[Tensor]




def kurakin_steps(eps: float) -> int:
    """I-FGSM's number of steps for ``eps`` in image units: ``int(min(eps + 4, 1.25 eps))`` with eps in 1/255
    units (Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world", ICLR-W 2017), at least 1."""
    eps_255 = round(check_eps(eps) * 255, 6)
    return max(1, int(min(eps_255 + 4, 1.25 * eps_255)))


def _per_image(anchors: Anchors, batch: int, name: str) -> list[Tensor]:
    """``anchors`` as B tensors (M_i, D)."""
    if isinstance(anchors, Tensor):
        if anchors.ndim == 2:
            anchors = anchors[:, None]
        if anchors.ndim != 3:
            raise ValueError(f"{name} must be (B, D), (B, M, D) or B tensors (M_i, D), got {tuple(anchors.shape)}")
    if len(anchors) != batch:
        raise ValueError(f"{name}: {len(anchors)} entries for {batch} images")
    return [a.detach() for a in anchors]


def embedding_distance(embeddings: Tensor, anchors: Anchors) -> Tensor:
    """Per image (B,), the sum over its anchors of the reference's distance: the mean squared difference of the
    L2-normalised embeddings (``(2 - 2 cos) / D``)."""
    embeddings = F.normalize(embeddings, dim=1)
    return torch.stack([(embeddings[b][None] - F.normalize(a.to(embeddings), dim=-1)).pow(2).mean(dim=1).sum()
                        for b, a in enumerate(_per_image(anchors, len(embeddings), "anchors"))])


def _i_fgsm(model: nn.Module, x: Tensor, anchors: Anchors | None, direction: float, eps: float, alpha: float,
            steps: int | None, generator: torch.Generator | None = None) -> Tensor:
    """I-FGSM moving ``model(x)`` away from (``direction`` 1) or towards (-1) ``anchors`` (None: the clean
    embeddings, from a random start)."""
    eps, alpha = check_eps(eps), check_eps(alpha, "alpha")
    steps = kurakin_steps(eps) if steps is None else steps
    with attacking(model):
        images = private_images(x)
        x_adv = images.clone()
        if anchors is None:
            with torch.no_grad():
                anchors = model(images)
            device = generator.device if generator is not None else images.device
            noise = torch.rand(images.shape, generator=generator, device=device, dtype=images.dtype)
            x_adv = (images + (2 * noise.to(images.device) - 1) * eps).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = embedding_distance(model(x_adv), anchors).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + direction * alpha * grad.sign()
            x_adv = (images + (x_adv - images).clamp(-eps, eps)).clamp(0, 1)
    return x_adv.detach()


def reid_push(model: nn.Module, x: Tensor, anchors: Anchors | None = None, eps: float = 5 / 255,
              alpha: float = 1 / 255, steps: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Non-targeted metric attack: I-FGSM ascending the distance of ``model(x)`` (B, D) to ``anchors``, the
    embeddings of each image's gallery matches, or its own clean embedding when None (then from a random start
    drawn from ``generator`` or the global RNG). ``steps`` defaults to Kurakin's rule (``kurakin_steps``)."""
    return _i_fgsm(model, x, anchors, 1.0, eps, alpha, steps, generator)


def reid_pull(model: nn.Module, x: Tensor, targets: Anchors, eps: float = 5 / 255, alpha: float = 1 / 255,
              steps: int | None = None) -> Tensor:
    """Targeted metric attack: I-FGSM descending the distance of ``model(x)`` to ``targets``, embeddings of
    another identity (per image). ``steps`` defaults to Kurakin's rule (``kurakin_steps``)."""
    return _i_fgsm(model, x, targets, -1.0, eps, alpha, steps)

