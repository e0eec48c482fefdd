"""The methods that learn: ``raft_small``, ``supervised`` (the default), ``self_supervised``.

Thin Lightning wrappers over the plain torch models of ``models/`` (the anomalib split): each defines its
training loss and ``separate``; evaluation, trajectories and pictures come from ``MotionMethod``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ego_motion_flow import geometry
from ego_motion_flow.methods.base import MotionMethod, residual_moving
from ego_motion_flow.models.geonet import ResFlowNet, geonet_flow_loss
from ego_motion_flow.models.monodepth import DepthNet, PoseNet, disp_to_depth, monodepth2_loss
from ego_motion_flow.models.raft import RAFTSmall, sequence_loss
from ego_motion_flow.models.separation import SeparationNet, separation_loss


class LearnedMethod(MotionMethod):
    """AdamW with RAFT's one-cycle schedule (linear warm-up over 5 % of the steps, then linear decay)."""

    def __init__(self, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.lr, total_steps=max(int(self.trainer.estimated_stepping_batches), 2),
            pct_start=0.05, cycle_momentum=False, anneal_strategy="linear")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class RAFTFlow(LearnedMethod):
    """RAFT-small (Teed & Deng, ECCV 2020), ``models/raft.py``, trained with the sequence loss (eq. 7, gamma
    0.8): a flow source for the geometric methods (``flow_checkpoint``). It separates nothing itself."""

    test_time_hparams = ("test_iters",)

    def __init__(self, iters: int = 8, test_iters: int = 12, gamma: float = 0.8, lr: float = 4e-4,
                 weight_decay: float = 1e-4) -> None:
        super().__init__(lr, weight_decay)
        self.save_hyperparameters()
        self.network = RAFTSmall(train_iters=iters, test_iters=test_iters)
        self.gamma = gamma

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        out = self.network(batch["image1"], batch["image2"])
        loss = sequence_loss(out.flow_predictions, batch["flow"], batch["flow_valid"], gamma=self.gamma)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["flow"]))
        return loss

    def predict_flow(self, image1: Tensor, image2: Tensor) -> Tensor:
        return self.network(image1, image2).flow

    def separate(self, batch: dict) -> dict:
        return {"flow": self.predict_flow(batch["image1"], batch["image2"]), "rigid_flow": None, "moving": None,
                "T_21": None}


class SupervisedSeparation(LearnedMethod):
    """The supervised separation network (``models/separation.py``): RAFT-small for the full flow, plus heads
    for the rigid (ego) flow and the moving-object mask, trained on the synthetic ground truth of all three.
    A pixel is moving where the mask probability exceeds 0.5."""

    test_time_hparams = ("test_iters",)

    def __init__(self, iters: int = 8, test_iters: int = 12, rigid_weight: float = 1.0, mask_weight: float = 1.0,
                 lr: float = 4e-4, weight_decay: float = 1e-4) -> None:
        super().__init__(lr, weight_decay)
        self.save_hyperparameters()
        self.network = SeparationNet(RAFTSmall(train_iters=iters, test_iters=test_iters))
        self.rigid_weight, self.mask_weight = rigid_weight, mask_weight

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        out = self.network(batch["image1"], batch["image2"])
        loss, parts = separation_loss(out, batch, rigid_weight=self.rigid_weight, moving_weight=self.mask_weight)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["flow"]))
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=len(batch["flow"]))
        return loss

    def predict_flow(self, image1: Tensor, image2: Tensor) -> Tensor:
        return self.network(image1, image2)["flow"]

    def separate(self, batch: dict) -> dict:
        out = self.network(batch["image1"], batch["image2"])
        return {"flow": out["flow"], "rigid_flow": out["rigid_flow"], "moving": out["moving_logits"][:, 0] > 0,
                "T_21": None}


class SelfSupervised(LearnedMethod):
    """Self-supervised depth and camera motion (Monodepth2, Godard et al. ICCV 2019: SSIM + L1 photometric
    loss, per-pixel minimum reprojection, auto-masking, edge-aware smoothness) giving the rigid flow, and
    GeoNet's ResFlowNet (Yin & Shi, CVPR 2018) for the residual flow. No ground truth is used in training.

    Each pair trains both ways (target frame 1 with source frame 2 under T_21, and the reverse under
    inv(T_21)), as Monodepth2 uses frames on both sides of the target. As GeoNet, the residual stage sees a
    detached rigid flow (its loss does not move depth or pose). The translation has no metric scale
    (``monocular``); moving pixels are the residual's outliers in KITTI's sense (``residual_moving``). The
    checkpoint kept is the last (no ground-truth criterion picks it).
    """

    monitor = None
    monocular = True

    def __init__(self, min_depth: float = 0.1, max_depth: float = 100.0, smoothness_weight: float = 1e-3,
                 flow_smoothness_weight: float = 0.2, lr: float = 1e-4, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.save_hyperparameters()
        self.depth_net, self.pose_net, self.residual_net = DepthNet(), PoseNet(), ResFlowNet()
        self.min_depth, self.max_depth = min_depth, max_depth
        self.smoothness_weight, self.flow_smoothness_weight = smoothness_weight, flow_smoothness_weight

    def pose(self, image1: Tensor, image2: Tensor) -> Tensor:
        return geometry.pose_vec_to_mat(self.pose_net(image1, image2))

    def predict_depth(self, image: Tensor) -> Tensor:
        """B x 1 x H x W depth (up to the scale the self-supervision settles on)."""
        return disp_to_depth(self.depth_net(image)[0], self.min_depth, self.max_depth)[1]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        image1, image2, K = batch["image1"], batch["image2"], batch["K"]
        T_21 = self.pose(image1, image2)
        disps1, disps2 = self.depth_net(image1), self.depth_net(image2)
        forward, parts = monodepth2_loss(image1, [image2], disps1, [T_21], K, self.min_depth, self.max_depth,
                                         self.smoothness_weight)
        backward, _ = monodepth2_loss(image2, [image1], disps2, [torch.linalg.inv(T_21)], K, self.min_depth,
                                      self.max_depth, self.smoothness_weight)
        depth1 = disp_to_depth(disps1[0], self.min_depth, self.max_depth)[1]
        rigid = geometry.rigid_flow(depth1, K, T_21)[0].detach()
        residual, _ = geonet_flow_loss(image1, image2, rigid, self.residual_net(image1, image2, rigid),
                                       self.flow_smoothness_weight)
        loss = (forward + backward) / 2 + residual
        n = len(image1)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({"train/photometric": parts["photometric"], "train/residual_flow": residual.detach()},
                      batch_size=n)
        return loss

    def separate(self, batch: dict) -> dict:
        image1, image2, K = batch["image1"], batch["image2"], batch["K"]
        T_21 = self.pose(image1, image2)
        rigid, valid = geometry.rigid_flow(self.predict_depth(image1), K, T_21)
        residual = self.residual_net(image1, image2, rigid)[0]
        flow = rigid + residual
        return {"flow": flow, "rigid_flow": rigid, "moving": residual_moving(residual, flow) & valid, "T_21": T_21}
