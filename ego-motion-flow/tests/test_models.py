"""Models: output shapes, RAFT's correlation lookup against brute force, losses against hand computations and
against images built with the true geometry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ego_motion_flow.geometry import pose_vec_to_mat, rigid_flow
from ego_motion_flow.models.geonet import ResFlowNet, geonet_flow_loss
from ego_motion_flow.models.monodepth import (
    SSIM,
    DepthNet,
    PoseNet,
    disp_to_depth,
    monodepth2_loss,
    photometric_error,
    warp_border,
)
from ego_motion_flow.models.raft import CorrBlock, RAFTSmall, coords_grid, sequence_loss
from ego_motion_flow.models.separation import SeparationNet, separation_loss


def texture(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth random RGB texture in [0, 1] (random 1/4-resolution noise, upsampled bilinearly)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, height // 4, width // 4, generator=g)
    return F.interpolate(low, (height, width), mode="bilinear", align_corners=False)


def intrinsics(batch: int, height: int, width: int) -> torch.Tensor:
    K = torch.tensor([[50.0, 0, (width - 1) / 2], [0, 50.0, (height - 1) / 2], [0, 0, 1]])
    return K.expand(batch, 3, 3)


# ---------------------------------------------------------------- RAFT


def test_raft_shapes_and_iterations():
    torch.manual_seed(0)
    model = RAFTSmall()
    image1, image2 = torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 64)
    out = model(image1, image2, iters=3)
    assert len(out.flow_predictions) == 3
    assert all(f.shape == (2, 2, 32, 64) for f in out.flow_predictions)
    assert out.flow is out.flow_predictions[-1]
    assert out.flow_low.shape == (2, 2, 8, 16)
    assert out.hidden.shape == (2, model.hidden_dim, 8, 16)
    assert out.context.shape == (2, model.context_dim, 8, 16)
    model.eval()
    with torch.no_grad():
        assert len(model(image1, image2).flow_predictions) == 12
    assert len(RAFTSmall(downsample=8).eval()(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64),
                                               iters=2).flow_predictions) == 2
    with pytest.raises(ValueError, match="multiples"):
        model(torch.rand(1, 3, 30, 64), torch.rand(1, 3, 30, 64))


def test_corr_lookup_equals_brute_force_dot_products():
    g = torch.Generator().manual_seed(0)
    B, D, h, w, r = 2, 8, 6, 10, 2
    f1, f2 = torch.randn(B, D, h, w, generator=g), torch.randn(B, D, h, w, generator=g)
    corr = CorrBlock(f1, f2, num_levels=2, radius=r)
    # Even integer correspondences, so that level 1 (coords / 2) also falls on integers.
    coords = 2 * torch.randint(-1, 6, (B, 2, h, w), generator=g).float()
    out = corr(coords)
    assert out.shape == (B, 2 * (2 * r + 1) ** 2, h, w)
    f2_pooled = F.avg_pool2d(f2, 2)  # <f1, mean of 4 f2> = mean of the 4 dot products: level 1 of the pyramid
    for b in range(B):
        for y in range(h):
            for x in range(w):
                channel = 0
                for level, fmap in enumerate([f2, f2_pooled]):
                    cx, cy = (coords[b, :, y, x] / 2 ** level).long().tolist()
                    for dy in range(-r, r + 1):
                        for dx in range(-r, r + 1):
                            qx, qy = cx + dx, cy + dy
                            inside = 0 <= qx < fmap.shape[-1] and 0 <= qy < fmap.shape[-2]
                            expected = (f1[b, :, y, x] @ fmap[b, :, qy, qx]) / math.sqrt(D) if inside else 0.0
                            assert out[b, channel, y, x].item() == pytest.approx(float(expected), abs=1e-4)
                            channel += 1


def test_corr_lookup_is_bilinear_between_integers():
    g = torch.Generator().manual_seed(1)
    f1, f2 = torch.randn(1, 4, 4, 6, generator=g), torch.randn(1, 4, 4, 6, generator=g)
    corr = CorrBlock(f1, f2, num_levels=1, radius=1)
    base = coords_grid(1, 4, 6, torch.device("cpu"))
    half = corr(base + torch.tensor([0.5, 0.0]).view(1, 2, 1, 1))
    left, right = corr(base), corr(base + torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    # Window centre (channel 4) of an interior pixel: the mean of its two integer neighbours.
    assert half[0, 4, 1, 2] == pytest.approx(((left + right) / 2)[0, 4, 1, 2].item(), abs=1e-5)


def test_sequence_loss_hand_computed():
    gt = torch.tensor([[[[1.0, 2.0, 500.0]], [[0.0, 0.0, 0.0]]]])  # 1 x 2 x 1 x 3
    valid = torch.tensor([[[True, False, True]]])  # pixel 2 is dropped by max_flow=400
    first = torch.zeros(1, 2, 1, 3)                 # error at pixel 0: |1 - 0| + |0 - 0| = 1
    second = torch.tensor([[[[0.5, 0.0, 0.0]], [[0.25, 0.0, 0.0]]]])  # |1 - 0.5| + |0 - 0.25| = 0.75
    loss = sequence_loss([first, second], gt, valid, gamma=0.8)
    assert loss.item() == pytest.approx(0.8 * 1.0 + 1.0 * 0.75)
    assert sequence_loss([first], gt, torch.zeros_like(valid)).item() == 0.0


def test_raft_adam_steps_reduce_loss():
    torch.manual_seed(0)
    image1 = texture(1, 32, 64)
    image2 = torch.roll(image1, shifts=2, dims=-1)  # content moves 2 px right: flow u = +2
    gt = torch.zeros(1, 2, 32, 64)
    gt[:, 0] = 2.0
    valid = torch.zeros(1, 32, 64, dtype=torch.bool)
    valid[:, :, 2:] = True  # the wrapped-around columns have no true correspondence
    model = RAFTSmall()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = sequence_loss(model(image1, image2, iters=3).flow_predictions, gt, valid)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------- separation


def test_separation_net_outputs_and_gradients():
    torch.manual_seed(0)
    model = SeparationNet()
    out = model(torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 64), iters=2)
    assert out["flow"].shape == out["rigid_flow"].shape == (2, 2, 32, 64)
    assert out["moving_logits"].shape == (2, 1, 32, 64)
    assert len(out["flow_predictions"]) == 2 and out["flow"] is out["flow_predictions"][-1]
    ones = torch.ones(2, 32, 64, dtype=torch.bool)
    batch = {"flow": torch.randn(2, 2, 32, 64), "flow_valid": ones, "rigid_flow": torch.randn(2, 2, 32, 64),
             "rigid_valid": ones, "moving": torch.rand(2, 32, 64) > 0.8, "moving_valid": ones}
    loss, parts = separation_loss(out, batch, pos_weight=4.0)
    loss.backward()
    assert set(parts) == {"flow", "rigid", "moving"}
    for head in (model.rigid_head, model.moving_head, model.raft.update_block):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_separation_loss_hand_computed():
    H, W = 2, 3
    valid = torch.tensor([[[True, True, False], [False, False, False]]])
    out = {"flow_predictions": [torch.zeros(1, 2, H, W)], "rigid_flow": torch.zeros(1, 2, H, W),
           "moving_logits": torch.zeros(1, 1, H, W)}
    batch = {"flow": torch.ones(1, 2, H, W), "flow_valid": valid,
             "rigid_flow": torch.full((1, 2, H, W), 3.0), "rigid_valid": valid,
             "moving": torch.tensor([[[True, False, True], [True, True, True]]]), "moving_valid": valid}
    # flow: |1| + |1| = 2; rigid: 3 + 3 = 6; moving (logit 0): log 2 for each class, positives x pos_weight.
    loss, parts = separation_loss(out, batch, flow_weight=1.0, rigid_weight=0.5, moving_weight=2.0, pos_weight=3.0)
    moving = (3.0 * math.log(2) + math.log(2)) / 2
    assert parts["flow"].item() == pytest.approx(2.0)
    assert parts["rigid"].item() == pytest.approx(6.0)
    assert parts["moving"].item() == pytest.approx(moving)
    assert loss.item() == pytest.approx(2.0 + 0.5 * 6.0 + 2.0 * moving)
    empty = {k: torch.zeros_like(v) if k.endswith("valid") else v for k, v in batch.items()}
    assert separation_loss(out, empty)[0].item() == 0.0


# ---------------------------------------------------------------- Monodepth2


def test_depth_and_pose_net_shapes():
    torch.manual_seed(0)
    disps = DepthNet()(torch.rand(2, 3, 64, 64))
    assert [tuple(d.shape) for d in disps] == [(2, 1, 64 // 2**s, 64 // 2**s) for s in range(4)]
    assert all(((d > 0) & (d < 1)).all() for d in disps)
    assert PoseNet()(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)).shape == (2, 6)


def test_pose_net_output_is_scaled_by_one_hundredth():
    net = PoseNet()
    last = net.decoder[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.copy_(torch.arange(1.0, 7.0))
    out = net(torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64))
    assert torch.allclose(out, 0.01 * torch.arange(1.0, 7.0).expand(3, 6))


def test_ssim_of_image_with_itself_is_one():
    image = texture(2, 16, 24)
    assert torch.allclose(SSIM()(image, image), torch.ones_like(image), atol=1e-5)
    assert photometric_error(image, image).abs().max() < 1e-6
    assert photometric_error(image, texture(2, 16, 24, seed=1)).mean() > 0.05


def test_disp_to_depth_bounds():
    disp = torch.tensor([0.0, 0.5, 1.0])
    scaled, depth = disp_to_depth(disp, min_depth=0.1, max_depth=100.0)
    assert depth[0].item() == pytest.approx(100.0)
    assert depth[2].item() == pytest.approx(0.1)
    assert scaled[1].item() == pytest.approx(0.01 + 0.5 * (10.0 - 0.01))
    assert (depth[:-1] > depth[1:]).all()
    assert torch.allclose(scaled * depth, torch.ones(3))


def scene(B: int = 2, H: int = 32, W: int = 64):
    """A source texture, a constant disparity (fronto-parallel plane) and a camera motion."""
    source = texture(B, H, W)
    disps = [torch.full((B, 1, H // 2**s, W // 2**s), 0.05) for s in range(4)]
    depth = disp_to_depth(disps[0])[1]  # ~1.9 m
    T = pose_vec_to_mat(torch.tensor([[0.0, 0.02, 0.0, 0.1, 0.0, 0.05]]).expand(B, 6))
    return source, disps, depth, T


def test_monodepth2_loss_vanishes_at_the_true_depth_and_pose():
    torch.manual_seed(0)
    source, disps, depth, T = scene()
    K = intrinsics(2, 32, 64)
    target = warp_border(source, rigid_flow(depth, K, T)[0])  # what the target camera sees of the source
    loss, parts = monodepth2_loss(target, [source], disps, [T], K)
    assert abs(loss.item()) < 1e-5
    assert parts["automask"].shape == (2, 32, 64) and parts["automask"].float().mean() > 0.95
    wrong = pose_vec_to_mat(torch.tensor([[0.0, -0.02, 0.0, -0.1, 0.02, 0.0]]).expand(2, 6))
    wrong_loss, _ = monodepth2_loss(target, [source], disps, [wrong], K)
    assert wrong_loss.item() > 0.01
    # A second source that only the identity explains must not change the minimum.
    both, _ = monodepth2_loss(target, [source, texture(2, 32, 64, seed=3)], disps, [T, wrong], K)
    assert abs(both.item()) < 1e-5


def test_monodepth2_automask_masks_identical_frames():
    torch.manual_seed(0)
    source, disps, _, T = scene()
    loss, parts = monodepth2_loss(source, [source], disps, [T], intrinsics(2, 32, 64))
    assert parts["automask"].float().mean() < 0.02  # the unwarped source explains every pixel
    assert abs(loss.item()) < 1e-4


def test_monodepth2_loss_trains_the_pose():
    torch.manual_seed(0)
    source, disps, depth, T = scene(B=1)
    K = intrinsics(1, 32, 64)
    target = warp_border(source, rigid_flow(depth, K, T)[0])
    vec = torch.zeros(1, 6, requires_grad=True)
    loss, _ = monodepth2_loss(target, [source], disps, [pose_vec_to_mat(vec)], K)
    loss.backward()
    assert vec.grad[0, 3] < 0  # the true x-translation is +0.1: the gradient points towards it


# ---------------------------------------------------------------- GeoNet


def test_resflownet_shapes_and_loss():
    torch.manual_seed(0)
    B, H, W = 2, 64, 64
    image2 = texture(B, H, W)
    rigid = torch.zeros(B, 2, H, W)
    rigid[:, 0] = 1.5
    image1 = warp_border(image2, rigid)
    model = ResFlowNet()
    residuals = model(image1, image2, rigid)
    assert [tuple(r.shape) for r in residuals] == [(B, 2, H, W)] * 4
    loss, parts = geonet_flow_loss(image1, image2, rigid, residuals)
    loss.backward()
    assert set(parts) == {"photometric", "smoothness"}
    assert all(p.grad is not None for p in model.parameters())
    zero = [torch.zeros(B, 2, H, W)] * 4
    exact, exact_parts = geonet_flow_loss(image1, image2, rigid, zero)
    assert exact_parts["photometric"].item() < 1e-5
    assert exact_parts["smoothness"].item() < 1e-6  # constant flow
    moved = [torch.full((B, 2, H, W), 1.0)] * 4
    assert geonet_flow_loss(image1, image2, rigid, moved)[0] > 0.01
