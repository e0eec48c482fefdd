"""Dynamic street scenes in the manner of Street Gaussians (Yan et al., ECCV 2024): static background Gaussians
in the world frame plus, for each moving object, Gaussians in the object's own frame, placed in every frame by the
object's tracked pose (a rigid transform), so that a moving car is one sharp object instead of a smear.

Each Gaussian has an ``owner`` (-1: background, k: moving object k). A view's render transforms object Gaussians
with that view's ``object_poses`` (object-to-world): means ``R mu + t``, rotations ``q_R * q``; all Gaussians then
go through one rasterization, so occlusion between background and objects is exact. Densification clones and
splits Gaussians in their owner's frame. Object Gaussians start as ``object_points`` random points inside the
object's tracked box (Street Gaussians initialises them from the LiDAR points in the box; the proxy has none),
grey. Departures from the paper: no pose refinement (the proxy's tracks are exact), no sky cube map, no 4D SH
for non-rigid appearance. Vanilla 3DGS on the same data (``3dgs.yaml`` with ``moving_cars``) is the comparison.
"""

from __future__ import annotations

import torch
from torch import Tensor

from semantic_gaussians.methods.splatting import GaussianSplatting
from semantic_gaussians.models.gaussians import knn_mean_sq_dist, rgb_to_sh
from shared_utils.cli import ConfigFileError
from shared_utils.ops import GaussianRender


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Unit quaternion (w first) of a rotation matrix (3 x 3)."""
    w = torch.sqrt(torch.clamp(1 + R[0, 0] + R[1, 1] + R[2, 2], min=1e-12)) / 2
    return torch.stack([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)])


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a * b of (..., 4) quaternions, w first."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


class DynamicGaussians(GaussianSplatting):
    """Background + per-object Gaussians moved by tracked poses (module docstring)."""

    def __init__(self, object_points: int = 500, **kwargs) -> None:
        super().__init__(**kwargs)

    def init_from_data(self, datamodule) -> None:
        boxes = getattr(datamodule, "object_boxes", None)
        if not boxes:
            raise ConfigFileError("dynamic needs moving objects with tracked boxes and per-view object_poses: the "
                             "synthetic street with data.init_args.moving_cars > 0")
        g = self.gaussians
        gen = torch.Generator().manual_seed(0)
        xyz, owners = [], []
        for k, (lo, hi) in enumerate(boxes):
            lo, hi = torch.tensor(lo), torch.tensor(hi)
            xyz.append(lo + (hi - lo) * torch.rand(self.hparams.object_points, 3, generator=gen))
            owners.append(torch.full((self.hparams.object_points,), k))
        xyz, owners = torch.cat(xyz), torch.cat(owners)
        n = len(xyz)
        rgb = torch.full((n, 3), 0.5)
        new = {"means": xyz, "scales": torch.log(knn_mean_sq_dist(xyz).clamp(min=1e-7).sqrt())[:, None].expand(n, 3),
               "quats": torch.tensor([1.0, 0, 0, 0]).expand(n, 4),
               "opacities": g.opacities.new_full((n,), g.opacities[0].item()),
               "sh0": rgb_to_sh(rgb)[:, None], "shN": g.shN.new_zeros((n,) + g.shN.shape[1:])}
        with torch.no_grad():
            for name, value in new.items():
                setattr(g, name, torch.nn.Parameter(torch.cat([getattr(g, name), value.to(getattr(g, name))])))
            g.owner = torch.cat([g.owner, owners.to(g.owner)])

    def render(self, batch: dict, degree: int | None = None) -> GaussianRender:
        g = self.gaussians
        poses = batch["object_poses"].to(g.means)
        means, quats = g.means, g.quats
        moving = g.owner >= 0
        if moving.any():
            k = g.owner[moving]
            R, t = poses[k, :3, :3], poses[k, :3, 3]
            pose_quats = torch.stack([rotmat_to_quat(r) for r in poses[:, :3, :3]])[k]
            means = means.clone()
            quats = quats.clone()
            means[moving] = (R @ g.means[moving][..., None])[..., 0] + t
            quats[moving] = quat_multiply(pose_quats, g.quats[moving])
        h, w = batch["image"].shape[1:]
        degree = self.hparams.sh_degree if degree is None else degree
        bg = torch.tensor(self.background, dtype=torch.float32, device=self.device)
        return g.render(batch["world_to_camera"], batch["K"], w, h, degree, bg, self.extra_values(batch),
                        means=means, quats=quats)
