"""ORE: Towards Open World Object Detection (Joseph, Khan, Khan, Balasubramanian, CVPR 2021), on the shared
CenterNet, "ORE-EBUI" in its honest variant.

- Auto-labelling unknowns (Sec. 4.2): the detector gets an ``unknown`` class channel; at every training
  step the ``k`` highest-objectness peaks that lie in no labelled box become pseudo-labelled unknown
  objects, with the box the detector predicts there (ORE takes the top-k background RPN proposals by
  objectness).
- Energy-based unknown identifier (Sec. 4.3): the free energy of all class logits (known + unknown, T = 1)
  follows different distributions on known and unknown objects; ORE fits a shifted Weibull to each and
  labels a detection unknown when the unknown density is the higher. ORE fits them on a held-out
  validation set *with labelled unknowns*; here (ORE-EBUI, honest) they are fitted on the training
  objects and the pseudo-labelled unknowns, so no unknown label is ever used.
- Not here: contrastive clustering of the class prototypes (Sec. 4.1), and exemplar replay, which only
  matters for incremental tasks (t2_ft / t3_ft data of the OWOD splits).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from open_world_ood.models.detector import OpenWorldCenterNet
from open_world_ood.models.open_set import Candidates, OpenSetMethod


def weibull_fit(x: np.ndarray) -> tuple[float, float, float]:
    """Maximum-likelihood shifted Weibull (shape k, scale lambda, shift): the shift puts the smallest
    sample at a small positive value, then k solves the MLE equation by bisection."""
    shift = float(x.min()) - 1e-3 * (float(x.max() - x.min()) + 1.0)
    y = x - shift
    log_y = np.log(y)

    def equation(k: float) -> float:
        w = y ** k
        return float((w * log_y).sum() / w.sum() - 1 / k - log_y.mean())

    low, high = 1e-2, 100.0
    for _ in range(100):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if equation(middle) < 0 else (low, middle)
    k = math.sqrt(low * high)
    return k, float(np.mean(y ** k) ** (1 / k)), shift


def weibull_logpdf(x: Tensor, k: float, scale: float, shift: float) -> Tensor:
    y = (x - shift).clamp(min=1e-6) / scale
    return math.log(k / scale) + (k - 1) * torch.log(y) - y ** k


class ORE(OpenSetMethod):
    """Args: k (pseudo-labelled unknowns per image, 1); history (energies kept per kind for the fits)."""

    unknown_channel = True

    def __init__(self, k: int = 1, history: int = 2000) -> None:
        super().__init__()
        self.k, self.history = k, history
        # the latest `history` energies of known objects (row 0) and pseudo-labelled unknowns (row 1): fixed
        # shapes, so that a checkpoint loads into a freshly built method
        self.register_buffer("energy", torch.zeros(2, history))
        self.register_buffer("count", torch.zeros(2, dtype=torch.long))
        self.register_buffer("weibull", torch.full((2, 3), float("nan")))

    def training_targets(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        candidates = OpenWorldCenterNet.candidates({key: value.detach() for key, value in outputs.items()},
                                                   k=self.k + 20, min_objectness=0.0)
        result = []
        for target, candidate in zip(targets, candidates):
            boxes = target["boxes"].to(candidate["boxes"])
            centre = (candidate["boxes"][:, :2] + candidate["boxes"][:, 2:]) / 2
            inside = ((centre[:, None, :] >= boxes[None, :, :2]) & (centre[:, None, :] <= boxes[None, :, 2:])).all(2)
            free = ~inside.any(1) & (candidate["boxes"][:, 2:] - candidate["boxes"][:, :2] > 1).all(1)
            pseudo = candidate["boxes"][free][:self.k]
            labels = torch.full((len(pseudo),), self.num_known, dtype=target["labels"].dtype)
            result.append({**target, "boxes": torch.cat([target["boxes"], pseudo.to(target["boxes"])]),
                           "labels": torch.cat([target["labels"], labels.to(target["labels"].device)])})
        return result

    def observe(self, embedding: Tensor, logits: Tensor, labels: Tensor) -> None:
        energy = -torch.logsumexp(logits.detach(), 1).to(self.energy)
        for row, mask in enumerate((labels < self.num_known, labels == self.num_known)):
            new = energy[mask][-self.history:]
            self.energy[row] = torch.cat([self.energy[row], new])[-self.history:]
            self.count[row] += len(new)

    def fit(self) -> None:
        for row in range(2):
            n = min(int(self.count[row]), self.history)
            if n >= 10:
                sample = self.energy[row, self.history - n:].cpu().double().numpy()
                self.weibull[row] = torch.tensor(weibull_fit(sample))

    def calibrate(self, scores: Tensor, predicted: Tensor) -> None:
        """EBUI decides by the two densities: nothing is calibrated on validation."""

    def fitted(self) -> bool:
        return not bool(torch.isnan(self.weibull).any())

    def unknown_score(self, candidates: Candidates) -> Tensor:
        """The EBUI log-likelihood ratio log p_unknown(E) - log p_known(E) (the energy before the fits)."""
        energy = -torch.logsumexp(candidates["logits"], 1)
        if not self.fitted():
            return energy
        known, unknown = self.weibull.tolist()
        ratio = weibull_logpdf(energy, *unknown) - weibull_logpdf(energy, *known)
        return torch.nan_to_num(ratio, nan=0.0)  # both densities underflow far outside the fitted ranges

    def decide(self, candidates: Candidates) -> tuple[Tensor, Tensor]:
        probability = candidates["logits"].sigmoid()
        best, labels = probability.max(1)
        unknown = labels == self.num_known
        if self.fitted():
            unknown |= self.unknown_score(candidates) > 0
        known_score = probability[:, :self.num_known].amax(1) * candidates["objectness"]
        return torch.where(unknown, -1, labels), torch.where(unknown, candidates["objectness"], known_score)
