"""The methods that learn nothing: ``zero_flow``, ``rigid_gt``, ``homography``, ``essential``.

They run directly: ``ego-motion-flow test --config configs/<data>.yaml --config configs/<method>.yaml``.
The geometric ones separate a *flow source*: the dataset's ground-truth flow by default, or the flow of a
trained network (``flow_checkpoint``: a ``raft_small`` or ``supervised`` run or checkpoint file), which is
what a real deployment has. Their moving mask is the residual flow's outliers in KITTI's sense
(``base.residual_moving``), a threshold fixed in advance.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ego_motion_flow import geometry
from ego_motion_flow.methods.base import MotionMethod, residual_moving
from shared_utils.checkpoints import load_model
from shared_utils.cli import ConfigFileError
from shared_utils.paths import anchored


class NoTraining(MotionMethod):
    """A method without parameters to train: ``fit`` says so instead of running an empty loop."""

    def configure_optimizers(self):
        raise ConfigFileError(f"{type(self).__name__} learns nothing: run `ego-motion-flow test --config "
                              "<data>.yaml --config <method>.yaml` (no fit, no checkpoint)")

    def training_step(self, batch: dict, batch_idx: int) -> None:  # pragma: no cover - fit stops before
        return None


class FlowSource(nn.Module):
    """The flow a geometric method separates: ground truth (``checkpoint=None``) or a trained flow network's.

    A network is loaded once, in eval mode, from a run directory (its best checkpoint) or a ``.ckpt`` file;
    its flow is valid everywhere. Ground truth keeps the dataset's validity mask.
    """

    def __init__(self, checkpoint: str | None = None) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.network = None if checkpoint is None else load_model(anchored(checkpoint))
        if self.network is not None and not hasattr(self.network, "predict_flow"):
            raise ConfigFileError(f"flow_checkpoint {checkpoint} holds a {type(self.network).__name__}, which "
                                  "predicts no flow: give a raft_small or supervised run")

    @torch.no_grad()
    def forward(self, batch: dict) -> tuple[Tensor, Tensor]:
        if self.network is not None:
            flow = self.network.predict_flow(batch["image1"], batch["image2"])
            return flow, torch.ones_like(flow[:, 0], dtype=torch.bool)
        if not batch["flow_valid"].any():
            raise ConfigFileError("this dataset has no ground-truth flow (e.g. KITTI odometry): set "
                                  "model.init_args.flow_checkpoint to a raft_small or supervised run")
        return batch["flow"], batch["flow_valid"]


class ZeroFlow(NoTraining):
    """The floor: no motion at all (flow, rigid flow and residual zero, identity camera motion)."""

    def separate(self, batch: dict) -> dict:
        flow = torch.zeros_like(batch["flow"])
        eye = torch.eye(4, device=flow.device).expand(len(flow), 4, 4)
        return {"flow": flow, "rigid_flow": flow, "moving": torch.zeros_like(batch["moving"]), "T_21": eye}


class RigidGT(NoTraining):
    """The ceiling of the geometric route: rigid flow from the ground-truth depth of frame 1 and the ground-
    truth camera motion; residual = source flow - rigid flow. Where depth or the pose is unknown (sky, no
    lidar, a pair whose KITTI 2015 pose fit failed) the rigid flow is that of the source (residual zero: no
    evidence of motion)."""

    def __init__(self, flow_checkpoint: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.source = FlowSource(flow_checkpoint)

    def separate(self, batch: dict) -> dict:
        flow, _ = self.source(batch)
        if not batch["has_pose"].any():
            raise ConfigFileError("rigid_gt needs the ground-truth camera motion, which this dataset lacks")
        rigid, valid = geometry.rigid_flow(batch["depth"][:, None], batch["K"], batch["T_21"])
        valid &= batch["has_pose"][:, None, None]  # a pair without pose (a failed KITTI 2015 fit): no evidence
        rigid = torch.where(valid[:, None], rigid, flow)
        return {"flow": flow, "rigid_flow": rigid, "moving": residual_moving(flow - rigid, flow),
                "T_21": batch["T_21"]}


class Homography(NoTraining):
    """Homography ego-motion compensation (Ding et al., ACCV 2020): the road is a plane, so its flow is a
    homography, fitted by RANSAC to the source flow inside a ground prior (a trapezoid below the horizon,
    ``geometry.ground_prior``); every pixel's rigid flow is that homography's. Exact on the road, wrong off
    the plane (buildings and poles show parallax and read as motion): the method's known limit. It gives no
    camera motion (a plane homography's decomposition is ambiguous without the plane's normal)."""

    def __init__(self, flow_checkpoint: str | None = None, horizon: float = 0.55) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.source, self.horizon = FlowSource(flow_checkpoint), horizon

    def separate(self, batch: dict) -> dict:
        flow, valid = self.source(batch)
        b, _, h, w = flow.shape
        ground = geometry.ground_prior(h, w, horizon=self.horizon, device=flow.device).expand(b, h, w)
        rigid, residual, _ = geometry.homography_compensation(flow, valid, ground & valid)
        return {"flow": flow, "rigid_flow": rigid, "moving": residual_moving(residual, flow), "T_21": None}


class Essential(NoTraining):
    """Essential-matrix ego-motion: RANSAC essential matrix from the flow's correspondences, pose recovery
    (translation of unit norm: monocular), per-pixel triangulation (depth up to scale) and its reprojection
    as rigid flow; the residual is the flow's departure from the epipolar geometry."""

    monocular = True

    def __init__(self, flow_checkpoint: str | None = None, ransac_threshold: float = 1.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.source, self.ransac_threshold = FlowSource(flow_checkpoint), ransac_threshold

    def separate(self, batch: dict) -> dict:
        flow, valid = self.source(batch)
        T_21, rigid, residual, _ = geometry.essential_ego_motion(flow, valid, batch["K"], self.ransac_threshold)
        return {"flow": flow, "rigid_flow": rigid, "moving": residual_moving(residual, flow), "T_21": T_21}
