"""The new method: a probabilistic motion test with robust (IRLS) ego-motion, ``probabilistic.yaml``.

A fixed residual threshold (``homography``, ``essential``, ``rigid_gt``) treats every pixel alike, yet the
rigid flow of a near pixel is far more sensitive to a depth error than that of a far one, and a camera
motion fitted by plain least squares is pulled by the moving objects it should ignore. This method:

1. estimates the camera motion from the flow source and a depth of frame 1 by iteratively reweighted least
   squares on se(3) (``geometry.irls_pose``, Cauchy weights): moving pixels get small weights, so the motion
   is the static scene's; no ground-truth pose is used;
2. propagates the flow noise (sigma_f, isotropic) and a relative depth noise (sigma_d = ``sigma_depth_rel`` x
   depth) to first order into the rigid-flow residual r (``geometry.motion_chi2``):
   Sigma = sigma_f^2 I + J_d J_d^T sigma_d^2, chi2 = r^T Sigma^-1 r, chi-square with 2 degrees of freedom for a
   static pixel;
3. calls a pixel moving when chi2 exceeds the chi-square(2) quantile at ``confidence`` (0.99: 9.21), a level
   chosen in advance, not tuned. sigma_f is not tuned either: it is the robust scale of each image's own
   residuals (1.4826 x median absolute residual over the pixels IRLS kept, i.e. a MAD estimate), floored at
   ``sigma_flow_min`` (flow files quantise at 1/64 px; 0.1 px keeps a perfect source from dividing by ~0).

The depth is the dataset's (``depth_checkpoint=None``: e.g. stereo or lidar depth, as the topic's second
stage assumes) or a ``self_supervised`` run's depth network (monocular: then the translation's scale is that
network's, and trajectories are aligned with scale). ``gt_pose=True`` is the control experiment: the same test
on the ground-truth camera motion, to separate what the test gains from what the pose estimate costs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ego_motion_flow import geometry
from ego_motion_flow.methods.geometric import FlowSource, NoTraining
from shared_utils.checkpoints import load_model
from shared_utils.cli import ConfigFileError
from shared_utils.paths import anchored


class ProbabilisticMotion(NoTraining):
    """IRLS ego-motion + chi-square motion test (module docstring)."""

    def __init__(self, flow_checkpoint: str | None = None, depth_checkpoint: str | None = None,
                 confidence: float = 0.99, sigma_depth_rel: float = 0.05, sigma_flow_min: float = 0.1,
                 iterations: int = 10, gt_pose: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.source = FlowSource(flow_checkpoint)
        self.depth_network = None if depth_checkpoint is None else load_model(anchored(depth_checkpoint))
        if self.depth_network is not None and not hasattr(self.depth_network, "predict_depth"):
            raise ConfigFileError(f"depth_checkpoint {depth_checkpoint} holds a {type(self.depth_network).__name__}"
                                  ", which predicts no depth: give a self_supervised run")
        self.monocular = self.depth_network is not None
        self.confidence, self.sigma_depth_rel = confidence, sigma_depth_rel
        self.sigma_flow_min, self.iterations, self.gt_pose = sigma_flow_min, iterations, gt_pose

    @torch.no_grad()
    def depth(self, batch: dict) -> Tensor:
        if self.depth_network is not None:
            return self.depth_network.predict_depth(batch["image1"])[:, 0]
        if not (batch["depth"] > 0).any():
            raise ConfigFileError("this dataset has no depth: set model.init_args.depth_checkpoint to a "
                                  "self_supervised run")
        return batch["depth"]

    def separate(self, batch: dict) -> dict:
        flow, valid = self.source(batch)
        depth = self.depth(batch)
        usable = valid & (depth > 0)
        T_21, weights = geometry.irls_pose(flow, usable, depth[:, None], batch["K"], iterations=self.iterations)
        if self.gt_pose:  # the control: the same test on the true camera motion (IRLS still picks sigma_f's pixels)
            T_21 = batch["T_21"]
        rigid, rigid_valid = geometry.rigid_flow(depth[:, None], batch["K"], T_21)
        residual = flow - rigid
        sigma_flow = self.robust_sigma(residual, usable & rigid_valid & (weights > 0.5))
        chi2 = geometry.motion_chi2(flow, rigid, depth[:, None], batch["K"], T_21,
                                    sigma_flow=sigma_flow.view(-1, 1, 1, 1), sigma_depth_rel=self.sigma_depth_rel)
        moving = (chi2 > geometry.chi2_threshold(self.confidence)) & usable & rigid_valid
        rigid = torch.where(rigid_valid[:, None], rigid, flow)
        return {"flow": flow, "rigid_flow": rigid, "moving": moving, "T_21": T_21}

    def robust_sigma(self, residual: Tensor, keep: Tensor) -> Tensor:
        """Per image (B,): 1.4826 x the median absolute residual component over ``keep``, floored."""
        sigmas = []
        for r, k in zip(residual, keep):
            values = r[:, k].abs().flatten()
            sigma = 1.4826 * values.median() if values.numel() else residual.new_tensor(self.sigma_flow_min)
            sigmas.append(sigma.clamp(min=self.sigma_flow_min))
        return torch.stack(sigmas)
