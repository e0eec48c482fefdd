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
observed, so its gated vacuity should be low, and which score detects OOD objects best is an empirical
question. The method computes four candidates (``OOD_SCORES``) and ``ood_score`` picks one; the choice is
made on the validation split of the synthetic world, whose OOD objects (crates, barriers) are of other
shapes and colours than the test split's (cylinders, blobs): ``val/auroc_ood/<candidate>`` of the bench
run (README, RESULTS.md). An earlier version chose it on the test split; it no longer does.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from bev_uncertainty.methods.evidential import Evidential
from bev_uncertainty.models.lss import LiftSplat

# The OOD score candidates (see ``ood_candidates``).
OOD_SCORES = ("gated_vacuity", "vacuity", "gate_x_vacuity", "entropy")


class GeometryEvidential(Evidential):
    # The OOD score does not enter training: a checkpoint can be tested with another one.
    test_time_hparams = ("ood_score",)

    def __init__(self, model: LiftSplat, tau: float = 1.0, gamma: float = 1.0, window: int = 5,
                 ood_score: str = "entropy", **kwargs) -> None:
        if not model.observation_channels:
            raise ValueError("GeometryEvidential needs model.init_args.observation_channels: true")
        if ood_score not in OOD_SCORES:
            raise ValueError(f"ood_score must be one of {OOD_SCORES}, got {ood_score!r}")
        super().__init__(model, **kwargs)
        self.tau, self.gamma, self.window, self.ood_score = tau, gamma, window, ood_score

    def observed(self, out: dict[str, Tensor]) -> Tensor:
        """(B, H, W) in [0, 1]: how well the cameras observed each cell."""
        reach = F.avg_pool2d(out["reach"][:, None], self.window, 1, self.window // 2,
                             count_include_pad=False)[:, 0] * self.window ** 2
        return (1 - (-reach / self.tau).exp()) * (1 - out["ambiguity"].clamp(0, 1)) ** self.gamma

    def alpha(self, out: dict[str, Tensor], gate: Tensor | None = None) -> Tensor:
        # Detached: the gate reports what the depth (trained by LiDAR) saw; the segmentation loss must not
        # reshape depth to buy evidence.
        gate = self.observed(out).detach() if gate is None else gate
        return F.softplus(out["logits"][:, :2]) * gate[:, None] + self.prior

    def ood_candidates(self, out: dict[str, Tensor], gate: Tensor, scores: dict[str, Tensor]) -> dict[str, Tensor]:
        """The OOD scores compared on the validation split (``scores``: of the gated Dirichlet):

        - ``gated_vacuity``: K / S of the gated Dirichlet (high where nothing was observed, the unseen score);
        - ``vacuity``: K / S of the head's evidence without the gate (the evidential baseline's OOD score);
        - ``gate_x_vacuity``: observed, yet without evidence: the gate times the ungated vacuity;
        - ``entropy``: entropy of the expected probability (observed, but the head cannot tell the class).
        """
        vacuity = 2 / (F.softplus(out["logits"][:, :2]) + self.prior).sum(1)
        return {"gated_vacuity": scores["ood_score"], "vacuity": vacuity, "gate_x_vacuity": gate * vacuity,
                "entropy": scores["uncertainty"]}

    def predict(self, batch: dict) -> dict[str, Tensor]:
        """``unseen_score`` is the vacuity of the gated Dirichlet (nothing observed); the OOD score is the
        ``ood_score`` candidate, all candidates are returned for the validation comparison."""
        out = self(batch)
        gate = self.observed(out)
        scores = self.scores(self.alpha(out, gate))
        candidates = self.ood_candidates(out, gate, scores)
        return {**scores, "unseen_score": scores["ood_score"], "ood_score": candidates[self.ood_score],
                "ood_candidates": candidates}
