"""gaussian_rasterize: the vectorised path against the naive reference (values and autograd gradients),
the projection against hand-derived geometry, compositing against closed forms, and gsplat on a GPU."""

import math

import pytest
import torch

from shared_utils.ops import (
    gaussian_rasterize,
    gaussian_rasterize_gsplat,
    gaussian_rasterize_reference,
    gaussian_rasterize_torch,
    project_gaussians,
    quat_to_rotmat,
)
from shared_utils.ops.gaussian_rasterize import MAX_ALPHA, gsplat_available, tile_intersections

K = torch.tensor([[40.0, 0.0, 23.3], [0.0, 38.0, 17.1], [0.0, 0.0, 1.0]])
W, H = 47, 35  # not multiples of any tile size


def scene(n: int, dtype=torch.float64, seed: int = 0, d: int = 5):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([1.5, 1.0, 1.0], dtype=dtype)
    means[:, 2] += 5.0
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.3 + 0.02
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    features = torch.rand(n, d, generator=g, dtype=dtype)
    # A camera turned and moved, so that world_to_camera is not the identity.
    angle = 0.2
    R = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]],
                     dtype=dtype)
    w2c = torch.eye(4, dtype=dtype)
    w2c[:3, :3], w2c[:3, 3] = R, torch.tensor([0.3, -0.1, 0.5], dtype=dtype)
    return means, quats, scales, opacities, features, w2c, K.to(dtype)


@pytest.mark.parametrize("tile_size", [4, 8, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vectorised_path_matches_naive_reference(tile_size, dtype):
    args = scene(80, dtype)
    bg = torch.linspace(0.1, 0.5, 5, dtype=dtype)
    fast = gaussian_rasterize_torch(*args, W, H, bg, tile_size=tile_size)
    ref = gaussian_rasterize_reference(*args, W, H, bg, tile_size=tile_size)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert fast.image.shape == (H, W, 5) and fast.depth.shape == (H, W) and fast.alpha.shape == (H, W)
    torch.testing.assert_close(fast.image, ref.image, atol=tol, rtol=0)
    torch.testing.assert_close(fast.alpha, ref.alpha, atol=tol, rtol=0)
    torch.testing.assert_close(fast.depth, ref.depth, atol=tol * 100, rtol=tol)
    assert torch.equal(fast.radii, ref.radii)
    assert 0.05 < fast.alpha.mean() < 0.95  # the scene covers part of the image, not none or all of it


@pytest.mark.parametrize("checkpoint_chunks", [False, True])
def test_gradients_match_naive_reference(checkpoint_chunks):
    args = [t.requires_grad_() if i < 5 else t for i, t in enumerate(scene(60))]
    # Small chunks so that the scene is split into several (whole-tile) chunks.
    fast = gaussian_rasterize_torch(*args, W, H, chunk_elements=512, checkpoint_chunks=checkpoint_chunks)
    ref = gaussian_rasterize_reference(*args, W, H, tile_size=4)
    weights = torch.rand(H, W, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def loss(r):
        return (weights * r.image).sum() + (r.depth * r.alpha).sum()

    r_fast, r_ref = gaussian_rasterize_torch(*args, W, H), gaussian_rasterize_reference(*args, W, H, tile_size=4)
    for f, r in [(fast, ref), (r_fast, r_ref)]:
        f.means2d.retain_grad()
        r.means2d.retain_grad()
        g_fast = torch.autograd.grad(loss(f), args[:5] + [f.means2d], retain_graph=True)
        g_ref = torch.autograd.grad(loss(r), args[:5] + [r.means2d], retain_graph=True)
        for name, a, b in zip(["means", "quats", "scales", "opacities", "features", "means2d"], g_fast, g_ref):
            assert b.abs().max() > 0, name  # every input receives a gradient
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=name)


def test_reference_gradients_match_finite_differences():
    """The reference is plain autograd; gradcheck confirms nothing in it blocks or bends a gradient
    (a scene with no splat at the alpha clamp or threshold, so the function is smooth there)."""
    means = torch.tensor([[0.0, 0.0, 4.0], [0.2, 0.1, 5.0], [-0.3, 0.1, 6.0]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0.1, 0.0, 0.0], [0.9, 0.0, 0.3, 0.1], [1.0, 0.0, 0.0, 0.2]], dtype=torch.float64)
    scales = torch.tensor([[0.2, 0.15, 0.1], [0.25, 0.2, 0.2], [0.3, 0.3, 0.1]], dtype=torch.float64)
    opac = torch.tensor([0.5, 0.6, 0.7], dtype=torch.float64)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    Kd = torch.tensor([[10.0, 0, 6.0], [0, 10.0, 6.0], [0, 0, 1]], dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (means, quats, scales, opac, feats)]

    def render(*xs):
        r = gaussian_rasterize_reference(*xs, torch.eye(4, dtype=torch.float64), Kd, 12, 12, tile_size=16)
        return r.image, r.depth

    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-5)


def test_projection_is_the_pinhole_and_the_ewa_jacobian():
    means, quats, scales, opac, _, w2c, Kd = scene(30)
    proj = project_gaussians(means, quats, scales, opac, w2c, Kd, W, H, eps2d=0.3)
    cam = means @ w2c[:3, :3].T + w2c[:3, 3]
    pix = cam @ Kd.T
    torch.testing.assert_close(proj.means2d, pix[:, :2] / pix[:, 2:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(proj.depths, cam[:, 2])
    # Sigma' = J Sigma_cam J^T + 0.3 I, J the Jacobian of the projection at the mean (by finite differences;
    # only splats inside the clamp limits, where J is the true Jacobian).
    inside = (proj.means2d[:, 0] > 0) & (proj.means2d[:, 0] < W) & (proj.means2d[:, 1] > 0) & (proj.means2d[:, 1] < H)
    assert inside.sum() > 10
    for i in inside.nonzero().squeeze(1).tolist():
        def f(p):
            q = p @ Kd.T
            return q[:2] / q[2]
        J = torch.autograd.functional.jacobian(f, cam[i])
        M = w2c[:3, :3] @ quat_to_rotmat(quats[i:i + 1])[0] @ torch.diag(scales[i])
        expected = J @ M @ M.T @ J.T + 0.3 * torch.eye(2, dtype=torch.float64)
        torch.testing.assert_close(proj.cov2d[i], expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(proj.conics[i], torch.stack([torch.linalg.inv(expected)[0, 0],
                                                                torch.linalg.inv(expected)[0, 1],
                                                                torch.linalg.inv(expected)[1, 1]]))


def test_quaternions_are_w_first_and_normalised():
    angle = 0.7
    q = torch.tensor([[math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)]]) * 3.0  # about z, not unit
    R = quat_to_rotmat(q)[0]
    expected = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    torch.testing.assert_close(R, expected)


def test_one_splat_has_the_closed_form_value():
    """An isotropic splat on the optical axis: image-space variance (f s / z)^2 + 0.3, alpha = o exp(-r^2 / 2v)."""
    f, s, z, o = 20.0, 0.1, 4.0, 0.8
    Kd = torch.tensor([[f, 0, 8.0], [0, f, 8.0], [0, 0, 1]], dtype=torch.float64)
    r = gaussian_rasterize_torch(torch.tensor([[0.0, 0.0, z]], dtype=torch.float64),
                                 torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64),
                                 torch.full((1, 3), s, dtype=torch.float64), torch.tensor([o], dtype=torch.float64),
                                 torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.eye(4, dtype=torch.float64),
                                 Kd, 16, 16, torch.tensor([0.5, 0.0], dtype=torch.float64))
    v = (f * s / z) ** 2 + 0.3
    for y, x in [(7, 7), (7, 9), (6, 8)]:  # pixel (x, y) has its centre at (x + 0.5, y + 0.5); the mean is at (8, 8)
        d2 = (x + 0.5 - 8.0) ** 2 + (y + 0.5 - 8.0) ** 2
        alpha = o * math.exp(-d2 / (2 * v))
        assert r.alpha[y, x].item() == pytest.approx(alpha, rel=1e-12)
        assert r.image[y, x, 0].item() == pytest.approx(alpha * 1.0 + (1 - alpha) * 0.5, rel=1e-12)
        assert r.depth[y, x].item() == pytest.approx(z, rel=1e-12)
    # Two pixels further, alpha = 0.8 exp(-6.5 / 1.1) = 0.0022 < 1/255: skipped.
    assert r.alpha[5, 8] == 0
    # Outside the bounding box (radius ceil(e sqrt(v)), e = min(3.33, sqrt(2 ln(255 o)))), nothing is drawn.
    radius = math.ceil(min(3.33, math.sqrt(2 * math.log(255 * o))) * math.sqrt(v))
    assert r.radii.tolist() == [[radius, radius]]
    assert r.alpha[0, 0] == 0 and r.image[0, 0, 0] == 0.5


def test_front_splat_occludes_whatever_the_input_order():
    means = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 6.0]])
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2)
    scales = torch.tensor([[0.3, 0.3, 0.3], [2.0, 2.0, 2.0]])  # the far splat looks 3x wider
    opac = torch.tensor([1.0, 1.0])
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    Kd = torch.tensor([[10.0, 0, 8.5], [0, 10.0, 8.5], [0, 0, 1]])  # the means fall on pixel (8, 8)'s centre
    for order in ([0, 1], [1, 0]):
        r = gaussian_rasterize_torch(means[order], quats[order], scales[order], opac[order], feats[order],
                                     torch.eye(4), Kd, 16, 16)
        centre = r.image[8, 8]
        assert centre[0] == pytest.approx(MAX_ALPHA, abs=1e-6)  # the near splat, capped at 0.999
        # Behind it T = 0.001 and the far splat would bring T to 1e-6 <= 1e-4: the pixel is done.
        assert centre[1] == 0
        assert r.image[8, 12, 1] > 0.4 and r.image[8, 12, 0] < 0.01  # beside the near splat, the far one shows


def test_compositing_stops_before_transmittance_reaches_1e_4():
    """Many opaque splats on one pixel: gsplat's rule is exclusive (the splat that would bring T to 1e-4
    or below is not drawn, nor any behind it)."""
    n = 6
    means = torch.stack([torch.zeros(n), torch.zeros(n), torch.linspace(3, 8, n)], -1).double()
    r = gaussian_rasterize_torch(means, torch.tensor([[1.0, 0, 0, 0]] * n).double(), torch.full((n, 3), 0.5).double(),
                                 torch.full((n,), 0.95, dtype=torch.float64), torch.eye(n).double(),
                                 torch.eye(4).double(),
                                 torch.tensor([[10.0, 0, 8.5], [0, 10.0, 8.5], [0, 0, 1]]).double(), 16, 16)
    # At pixel (8, 8), whose centre is the means' projection, alpha = 0.95 each: T after each splat = 0.05,
    # 2.5e-3, 1.25e-4 (drawn), 6.25e-6 (<= 1e-4: the 4th stops the pixel).
    assert r.image[8, 8].tolist() == pytest.approx([0.95, 0.0475, 0.002375, 0, 0, 0], abs=1e-12)
    assert r.alpha[8, 8].item() == pytest.approx(1 - 1.25e-4, abs=1e-12)


def test_splats_behind_the_camera_or_off_screen_are_culled():
    means = torch.tensor([[0.0, 0.0, -2.0], [0.0, 0.0, 0.005], [50.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    r = gaussian_rasterize_torch(means, torch.tensor([[1.0, 0, 0, 0]] * 4), torch.full((4, 3), 0.1),
                                 torch.full((4,), 0.5), torch.ones(4, 1), torch.eye(4),
                                 torch.tensor([[10.0, 0, 8.0], [0, 10.0, 8.0], [0, 0, 1]]), 16, 16)
    assert (r.radii > 0).all(-1).tolist() == [False, False, False, True]


def test_empty_scene_is_the_background():
    r = gaussian_rasterize_torch(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0),
                                 torch.zeros(0, 3), torch.eye(4), K, W, H, torch.tensor([0.2, 0.4, 0.6]))
    assert torch.allclose(r.image, torch.tensor([0.2, 0.4, 0.6]).expand(H, W, 3))
    assert r.alpha.abs().max() == 0 and r.depth.abs().max() == 0


def test_tile_intersections_are_sorted_by_tile_then_depth():
    args = scene(50)
    proj = project_gaussians(*args[:4], args[5], args[6], W, H)
    tile, splat = tile_intersections(proj.means2d, proj.radii, proj.depths, W, H, 8)
    key = tile.double() * 1e6 + proj.depths[splat]
    assert torch.all(key[1:] >= key[:-1])
    assert (proj.radii[splat] > 0).all()


def test_bad_shapes_name_the_argument():
    means, quats, scales, opac, feats, w2c, Kd = scene(4)
    with pytest.raises(ValueError, match="quats must have shape"):
        gaussian_rasterize(means, quats[:, :3], scales, opac, feats, w2c, Kd, W, H)
    with pytest.raises(ValueError, match="features must be"):
        gaussian_rasterize(means, quats, scales, opac, feats[:3], w2c, Kd, W, H)
    with pytest.raises(ValueError, match="background must have shape"):
        gaussian_rasterize(means, quats, scales, opac, feats, w2c, Kd, W, H, background=torch.zeros(3))


@pytest.mark.cuda
def test_gsplat_matches_the_torch_path_on_the_same_scene():
    if not gsplat_available():
        pytest.skip("gsplat is not installed (the [cuda] extra)")
    args = [t.float().cuda() for t in scene(300, torch.float32)]
    args = [t.requires_grad_() if i < 5 else t for i, t in enumerate(args)]
    bg = torch.linspace(0.1, 0.5, 5, device="cuda")
    ours = gaussian_rasterize_torch(*args, W, H, bg, tile_size=16)
    theirs = gaussian_rasterize_gsplat(*args, W, H, bg, tile_size=16)
    assert torch.equal(ours.radii, theirs.radii)
    torch.testing.assert_close(theirs.image, ours.image, atol=1e-4, rtol=0)
    torch.testing.assert_close(theirs.alpha, ours.alpha, atol=1e-4, rtol=0)
    covered = ours.alpha > 0.5
    torch.testing.assert_close(theirs.depth[covered], ours.depth[covered], atol=1e-3, rtol=1e-4)
    g_ours = torch.autograd.grad(ours.image.sum(), args[:5])
    g_theirs = torch.autograd.grad(theirs.image.sum(), args[:5])
    for a, b in zip(g_theirs, g_ours):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-2)
    assert gaussian_rasterize(*args, W, H, bg).image.shape == (H, W, 5)  # dispatches to gsplat
