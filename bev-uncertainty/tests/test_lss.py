"""Lift-Splat geometry, splat and BEVDepth depth targets against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from bev_uncertainty.data.grid import BEVGrid
from bev_uncertainty.models.lss import LiftSplat

GRID = BEVGrid(-20.0, 20.0, -20.0, 20.0, 1.0)


@pytest.fixture(scope="module")
def model() -> LiftSplat:
    net = LiftSplat(pretrained=False, context_channels=4, bev_channels=8, depth=(2.0, 20.0, 1.0))
    net.set_geometry(GRID, (32, 88))
    return net.eval()


def front_camera(yaw: float = 0.0, height: float = 1.5) -> torch.Tensor:
    """cam_to_ego of a camera looking along ego yaw (camera z forward, x right, y down)."""
    c, s = math.cos(yaw), math.sin(yaw)
    rotation = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ torch.tensor(
        [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    pose = torch.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, torch.tensor([0.5, 0.0, height])
    return pose


K = torch.tensor([[40.0, 0.0, 44.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])


def test_frustum_points_project_back_to_their_pixels(model):
    pose = front_camera(yaw=0.7)
    points = model.geometry(K.view(1, 1, 3, 3), pose.view(1, 1, 4, 4))[0, 0]  # (D, h, w, 3)
    cam = (points.reshape(-1, 3) - pose[:3, 3]) @ pose[:3, :3]  # ego -> camera
    uv = (cam @ K.T)[:, :2] / cam[:, 2:]
    d, h, w = points.shape[:3]
    expected_v, expected_u = torch.meshgrid((torch.arange(h) + 0.5) * 8, (torch.arange(w) + 0.5) * 8, indexing="ij")
    assert torch.allclose(uv.view(d, h, w, 2)[..., 0], expected_u.expand(d, h, w), atol=1e-3)
    assert torch.allclose(uv.view(d, h, w, 2)[..., 1], expected_v.expand(d, h, w), atol=1e-3)
    assert torch.allclose(cam[:, 2].view(d, h, w), model.depth_values.view(-1, 1, 1).expand(d, h, w), atol=1e-4)


def test_voxel_coords_follow_the_grid_orientation(model):
    # ego (x=10.5 ahead, y=5.5 left): row (20 - 10.5) / 1 = 9.5 -> 9, col (20 - 5.5) = 14.5 -> 14.
    points = torch.tensor([[10.5, 5.5, 0.0], [-10.5, -5.5, 0.0], [0.0, 0.0, 15.0]]).view(1, 1, 3, 1, 1, 3)
    coords = model.voxel_coords(points)
    assert coords[0].tolist() == [0, 0, 9, 14]
    assert coords[1].tolist() == [0, 0, 30, 25]
    assert coords[2, 2] == -1  # above the z range: dropped by bev_pool


def test_splat_sums_points_of_a_cell(model):
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).view(1, 1, 3, 1, 1, 2)
    points = torch.tensor([[10.2, 5.2, 0.0], [10.8, 5.9, 0.0], [-3.0, 2.0, 0.0]]).view(1, 1, 3, 1, 1, 3)
    bev = model.splat(features, model.voxel_coords(points), 1)
    assert bev.shape == (1, 2, 40, 40)
    assert bev[0, :, 9, 14].tolist() == [4.0, 6.0]
    assert bev[0, :, 23, 18].tolist() == [5.0, 6.0]
    assert bev.sum().item() == 21.0


def test_depth_targets_take_the_nearest_point_per_patch(model):
    depth = torch.zeros(1, 1, 32, 88)
    depth[0, 0, 0, 0], depth[0, 0, 3, 5], depth[0, 0, 7, 7] = 5.2, 3.9, 8.0  # patch (0, 0): nearest 3.9 -> bin 2
    depth[0, 0, 8, 8] = 30.0  # patch (1, 1): beyond the last bin -> ignored
    index, valid = model.depth_targets(depth)
    assert index.shape == valid.shape == (1, 1, 4, 11)
    assert valid[0, 0, 0, 0] and index[0, 0, 0, 0] == 2
    assert not valid[0, 0, 1, 1] and valid.sum() == 1


def test_forward_shapes_and_gradients(model):
    images = torch.rand(2, 6, 3, 32, 88, requires_grad=True)
    cams = torch.stack([front_camera(yaw) for yaw in torch.linspace(0, 5, 6).tolist()])
    out = model(images, K.expand(2, 6, 3, 3), cams.expand(2, 6, 4, 4))
    assert out["logits"].shape == (2, 2, 40, 40) and out["depth_logits"].shape == (2, 6, 18, 4, 11)
    out["logits"].sum().backward()
    assert images.grad.abs().sum() > 0


def test_geometry_must_be_set_and_match():
    net = LiftSplat(pretrained=False, context_channels=4, bev_channels=8)
    images = torch.rand(1, 6, 3, 32, 88)
    with pytest.raises(RuntimeError, match="set_geometry"):
        net(images, K.expand(1, 6, 3, 3), torch.eye(4).expand(1, 6, 4, 4))
    net.set_geometry(GRID, (64, 176))
    with pytest.raises(ValueError, match="built for"):
        net(images, K.expand(1, 6, 3, 3), torch.eye(4).expand(1, 6, 4, 4))
    with pytest.raises(ValueError, match="multiple of the feature stride"):
        net.set_geometry(GRID, (30, 88))


def test_backbone_batchnorm_stays_frozen_while_its_weights_train():
    """The image backbone keeps its ImageNet BatchNorm statistics in training mode (create_backbone's
    freeze="batchnorm"), but its weights still get gradients; the rest of the network trains normally."""
    net = LiftSplat(pretrained=False, context_channels=4, bev_channels=8)
    net.set_geometry(GRID, (32, 88))
    net.train()
    backbone_bn = [m for m in net.encoder.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert backbone_bn and not any(m.training for m in backbone_bn)
    assert net.encoder.neck.training and net.bev_encoder.training
    stats = [m.running_mean.clone() for m in backbone_bn]
    out = net(torch.rand(2, 6, 3, 32, 88), K.expand(2, 6, 3, 3), front_camera().expand(2, 6, 4, 4))
    out["logits"].sum().backward()
    assert all(torch.equal(m.running_mean, s) for m, s in zip(backbone_bn, stats))
    assert all(p.requires_grad for p in net.encoder.backbone.parameters())
    assert sum(float(p.grad.abs().sum()) for p in net.encoder.backbone.parameters() if p.grad is not None) > 0
