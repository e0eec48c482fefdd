"""3D Gaussian splatting rasterizer: project, sort and alpha-composite 3D Gaussians into an image.

3D Gaussian Splatting (Kerbl, Kopanas, Leimkuehler & Drettakis, SIGGRAPH 2023) renders a scene of
anisotropic Gaussians ``G(x) = exp(-1/2 (x - mu)^T Sigma^-1 (x - mu))``, ``Sigma = R S S^T R^T``
(rotation from a quaternion, S = diag(scales)), by

1. EWA splatting (Zwicker et al. 2001): the camera-space covariance ``W Sigma W^T`` becomes the
   image-space ``Sigma' = J W Sigma W^T J^T + eps2d I`` with J the Jacobian of the perspective
   projection at the mean (its x/z, y/z clamped a little outside the frustum), and ``eps2d`` = 0.3 px^2
   the low-pass dilation of the paper's code;
2. a per-axis bounding box of the splat, ``ceil(e sqrt(Sigma'_ii))`` with ``e = min(3.33,
   sqrt(2 ln(o / (1/255))))`` (gsplat's opacity-aware extent, Radl et al. 2024), assigned to the
   16 x 16 pixel tiles it touches;
3. per tile, front-to-back compositing in depth order: ``alpha_i = min(0.999, o_i exp(-1/2 d^T
   Sigma'^-1 d))`` at pixel centres (x + 0.5, y + 0.5), skipped below 1/255, ``C = sum_i f_i alpha_i
   T_i + T_final bg`` with ``T_i = prod_{j<i} (1 - alpha_j)``, stopping (exclusively) at the splat
   that would bring T to 1e-4 or below.

The constants, the clamping and the tile assignment are gsplat 1.5's ``classic`` mode (Ye et al.,
"gsplat", JMLR 2025), so the two paths below draw the same image.

Paths:

- ``gaussian_rasterize_torch`` (CPU, and any device): vectorised PyTorch. Splat-tile pairs are sorted
  by (tile, depth) and padded per tile; every pair is evaluated on its tile's pixels only, never on
  the whole image. Transmittance is a cumsum of ``log(1 - alpha)`` along each tile's splats, and the
  weighted sum of the values a batched matrix product. Autograd gives the gradients of every input.
- ``gaussian_rasterize_gsplat``: gsplat's CUDA kernels (the optional ``[cuda]`` extra), for CUDA tensors.
- ``gaussian_rasterize_reference``: a naive loop over splats in depth order, each evaluated on every
  pixel (masked to its tiles). Slow; tests only.

``gaussian_rasterize`` picks gsplat for CUDA tensors when it is installed, the PyTorch path otherwise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ALPHA_THRESHOLD = 1.0 / 255.0  # splats fainter than this at a pixel are skipped
MAX_ALPHA = 0.999  # one splat never makes a pixel fully opaque (keeps log(1 - alpha) finite)
MIN_TRANSMITTANCE = 1e-4  # a pixel is done before the splat that would bring T this low
EXTENT = 3.33  # bounding box half-width in standard deviations, before the opacity-aware bound


class GaussianRender(NamedTuple):
    """What a rasterization returns. Images are (H, W, ...), channels last, as gsplat."""

    image: Tensor  # (H, W, D) composited features, background included
    depth: Tensor  # (H, W) expected depth sum(w z) / sum(w) (0 where nothing is drawn)
    alpha: Tensor  # (H, W) accumulated opacity sum(w) = 1 - T_final
    means2d: Tensor  # (1, N, 2) projected means; retain_grad() it before backward for densification
    radii: Tensor  # (N, 2) integer bounding-box half-sizes in pixels, 0 for culled splats


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices (N, 3, 3) of quaternions (N, 4), w first, normalised here."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(quats.shape[:-1] + (3, 3))


class Projection(NamedTuple):
    means2d: Tensor  # (N, 2) pixels
    conics: Tensor  # (N, 3) upper triangle (a, b, c) of the inverse image-space covariance
    depths: Tensor  # (N,) camera z
    radii: Tensor  # (N, 2) int64, 0 where culled
    cov2d: Tensor  # (N, 2, 2) image-space covariance, dilation included


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                      world_to_camera: Tensor, K: Tensor, width: int, height: int,
                      near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3) -> Projection:
    """EWA projection of 3D Gaussians to the image (pinhole ``K``, OpenCV camera: x right, y down, z forward)."""
    R, t = world_to_camera[:3, :3], world_to_camera[:3, 3]
    mean_c = means @ R.T + t
    rot = R @ quat_to_rotmat(quats)  # camera-from-local rotation of each Gaussian
    M = rot * scales[:, None, :]
    cov_c = M @ M.transpose(1, 2)
    x, y, z = mean_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # Clamp the direction used in J to a little outside the frustum: splats far off-screen otherwise
    # get huge, unstable image-space covariances (the paper's code, gsplat's limits).
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    z_safe = torch.where(z > near_plane, z, torch.ones_like(z))
    tx = z_safe * torch.clamp(x / z_safe, -(cx / fx + 0.3 * tan_x), (width - cx) / fx + 0.3 * tan_x)
    ty = z_safe * torch.clamp(y / z_safe, -(cy / fy + 0.3 * tan_y), (height - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z_safe, zero, -fx * tx / z_safe**2,
                     zero, fy / z_safe, -fy * ty / z_safe**2], dim=-1).reshape(-1, 2, 3)
    cov2d = J @ cov_c @ J.transpose(1, 2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], dim=-1)

    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = a * c - b * b
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)

    with torch.no_grad():  # culling and bounding boxes are not differentiable
        o = opacities.clamp(min=ALPHA_THRESHOLD)
        extent = torch.clamp(torch.sqrt(2.0 * torch.log(o / ALPHA_THRESHOLD)), max=EXTENT)
        radii = torch.ceil(extent[:, None] * torch.sqrt(torch.stack([a, c], -1).clamp(min=0))).long()
        mx, my = means2d[:, 0], means2d[:, 1]
        keep = ((z > near_plane) & (z < far_plane) & (det > 0) & (opacities >= ALPHA_THRESHOLD)
                & (radii > 0).any(-1)
                & (mx + radii[:, 0] > 0) & (mx - radii[:, 0] < width)
                & (my + radii[:, 1] > 0) & (my - radii[:, 1] < height))
        radii = torch.where(keep[:, None], radii, torch.zeros_like(radii))
    return Projection(means2d, conics, z, radii, cov2d)


def _check_inputs(means, quats, scales, opacities, features, world_to_camera, K, width, height):
    n = means.shape[0] if means.ndim == 2 else -1
    expected = {"means": (means, (n, 3)), "quats": (quats, (n, 4)), "scales": (scales, (n, 3)),
                "opacities": (opacities, (n,)), "world_to_camera": (world_to_camera, (4, 4)), "K": (K, (3, 3))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"gaussian_rasterize: {name} must have shape {shape} (N from means (N, 3)), "
                             f"got {tuple(tensor.shape)}")
    if features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"gaussian_rasterize: features must be (N, D) with N = {n}, got {tuple(features.shape)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"gaussian_rasterize: width and height must be positive, got {width} x {height}")


def _background(background: Tensor | None, features: Tensor) -> Tensor:
    if background is None:
        return features.new_zeros(features.shape[1])
    if background.shape != (features.shape[1],):
        raise ValueError(f"gaussian_rasterize: background must have shape ({features.shape[1]},) like the "
                         f"features' last dimension, got {tuple(background.shape)}")
    return background


def _finish(feats: Tensor, depth_sum: Tensor, alpha: Tensor, bg: Tensor, means2d: Tensor,
            radii: Tensor) -> GaussianRender:
    image = feats + (1 - alpha)[..., None] * bg
    depth = depth_sum / alpha.clamp(min=1e-10)
    return GaussianRender(image, depth, alpha, means2d, radii)


def tile_intersections(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int,
                       tile_size: int) -> tuple[Tensor, Tensor]:
    """(tile id, splat id) of every splat-tile overlap, sorted by tile then depth (gsplat's ``isect_tiles``)."""
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    ids = (radii > 0).all(-1).nonzero().squeeze(1)
    m, r = means2d.detach()[ids] / tile_size, radii[ids].to(means2d.dtype) / tile_size
    x0 = torch.floor(m[:, 0] - r[:, 0]).clamp(0, tiles_x).long()
    x1 = torch.ceil(m[:, 0] + r[:, 0]).clamp(0, tiles_x).long()
    y0 = torch.floor(m[:, 1] - r[:, 1]).clamp(0, tiles_y).long()
    y1 = torch.ceil(m[:, 1] + r[:, 1]).clamp(0, tiles_y).long()
    counts = (x1 - x0) * (y1 - y0)
    splat = ids.repeat_interleave(counts)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(splat.numel(), device=ids.device) - first.repeat_interleave(counts)
    w = (x1 - x0).repeat_interleave(counts)
    tile = (y0.repeat_interleave(counts) + k // w) * tiles_x + x0.repeat_interleave(counts) + k % w
    rank = torch.empty_like(ids)  # depth rank among the visible splats
    rank[torch.argsort(depths.detach()[ids])] = torch.arange(ids.numel(), device=ids.device)
    rank_of = torch.zeros(means2d.shape[0], dtype=torch.long, device=ids.device)
    rank_of[ids] = rank
    order = torch.argsort(tile * max(ids.numel(), 1) + rank_of[splat])
    return tile[order], splat[order]


def _composite_tiles(origin: Tensor, local: Tensor, mean2d: Tensor, conic: Tensor, opacity: Tensor, feat: Tensor,
                     valid: Tensor) -> Tensor:
    """Front-to-back compositing of c tiles, each with its splats padded to K in depth order.

    origin (c, 2) tile corners; local (P, 2) pixel-centre offsets in a tile; per splat (c, K, ...): mean2d,
    conic (a, b, c), opacity, feat (values to composite, depth and a constant 1 included), valid (False: padding).
    Returns (c, P, C). Transmittance is a cumsum of log(1 - alpha) along K; the weighted sum over splats is a
    batched matrix product, so the cost of many channels is BLAS's, not an (M, P, C) temporary."""
    px = origin[:, 0, None, None] + local[None, None, :, 0]
    py = origin[:, 1, None, None] + local[None, None, :, 1]
    dx = px - mean2d[..., 0, None]  # (c, K, P)
    dy = py - mean2d[..., 1, None]
    sigma = 0.5 * (conic[..., 0, None] * dx * dx + conic[..., 2, None] * dy * dy) + conic[..., 1, None] * dx * dy
    alpha = torch.clamp(opacity[..., None] * torch.exp(-sigma.clamp(min=0)), max=MAX_ALPHA)
    keep = valid[..., None] & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    log_1m = torch.log1p(-alpha)
    log_next_t = torch.cumsum(log_1m, dim=1)  # log T after each splat
    weight = alpha * torch.exp(log_next_t - log_1m)
    weight = torch.where(log_next_t > math.log(MIN_TRANSMITTANCE), weight, torch.zeros_like(weight))
    return torch.einsum("ckp,ckd->cpd", weight, feat)


def gaussian_rasterize_torch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, features: Tensor,
                             world_to_camera: Tensor, K: Tensor, width: int, height: int,
                             background: Tensor | None = None, near_plane: float = 0.01,
                             far_plane: float = 1e10, eps2d: float = 0.3, tile_size: int = 4,
                             chunk_elements: int = 1 << 19, checkpoint_chunks: bool = False) -> GaussianRender:
    """Vectorised PyTorch rasterization (see the module docstring). Tiles are taken in chunks of similar splat
    counts (sorted by count, so padding each chunk to its largest count wastes little) holding at most
    ``chunk_elements`` (tiles x splats x pixels): chunks of 2^19 (2 MB per float map) stay in the CPU's cache and
    were 3x faster than one pass over 4M pair-pixels (a 128 x 96 view of 35k splats). ``checkpoint_chunks``
    recomputes each chunk in backward instead of storing its intermediates (less memory, slower). Small tiles
    waste fewer pixel evaluations: 4 x 4 was the fastest here (the bench measures 4, 8 and 16). The tile size
    changes which pixels a splat's box reaches, by a little, as it does in gsplat: compare paths at equal sizes."""
    _check_inputs(means, quats, scales, opacities, features, world_to_camera, K, width, height)
    bg = _background(background, features)
    proj = project_gaussians(means, quats, scales, opacities, world_to_camera, K, width, height,
                             near_plane, far_plane, eps2d)
    means2d = proj.means2d[None]  # the tensor on the autograd path, so retain_grad() sees the screen gradient
    tile, splat = tile_intersections(means2d[0], proj.radii, proj.depths, width, height, tile_size)

    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    num_tiles, P, D = tiles_x * tiles_y, tile_size * tile_size, features.shape[1]
    counts = torch.bincount(tile, minlength=num_tiles)
    slot = torch.arange(tile.numel(), device=tile.device) - (torch.cumsum(counts, 0) - counts)[tile]
    local = torch.stack(torch.meshgrid(torch.arange(tile_size), torch.arange(tile_size), indexing="ij"), -1)
    local = local.reshape(P, 2).flip(-1).to(means) + 0.5  # pixel-centre (x, y) offsets inside a tile
    # Per splat: the values to composite, its depth and a 1 (whose composite is the accumulated alpha).
    values = torch.cat([features, proj.depths[:, None], torch.ones_like(proj.depths)[:, None]], 1)

    order = torch.argsort(counts, descending=True)
    busy = order[counts[order] > 0].tolist()
    count_list = counts.tolist()
    chunk_of = torch.full((num_tiles,), -1, dtype=torch.long, device=tile.device)
    results, written, start = [], [], 0
    while start < len(busy):
        k_max = count_list[busy[start]]
        tiles = busy[start:start + max(1, chunk_elements // (k_max * P))]
        start += len(tiles)
        tiles_t = torch.tensor(tiles, device=tile.device)
        chunk_of[tiles_t] = torch.arange(len(tiles), device=tile.device)
        sel = (chunk_of[tile] >= 0).nonzero().squeeze(1)
        index = torch.full((len(tiles), k_max), -1, dtype=torch.long, device=tile.device)
        index[chunk_of[tile[sel]], slot[sel]] = splat[sel]
        chunk_of[tiles_t] = -1
        valid, g = index >= 0, index.clamp(min=0)
        origin = torch.stack([tiles_t % tiles_x, tiles_t // tiles_x], -1).to(means) * tile_size
        args = (origin, local, means2d[0][g], proj.conics[g], opacities[g], values[g], valid)
        if torch.is_grad_enabled() and checkpoint_chunks:
            results.append(checkpoint(_composite_tiles, *args, use_reentrant=False))
        else:
            results.append(_composite_tiles(*args))
        written.append(tiles_t)
    out = values.new_zeros(num_tiles, P, D + 2)
    if results:
        out = out.index_copy(0, torch.cat(written), torch.cat(results))
    img = out.reshape(tiles_y, tiles_x, tile_size, tile_size, D + 2).permute(0, 2, 1, 3, 4)
    img = img.reshape(tiles_y * tile_size, tiles_x * tile_size, D + 2)[:height, :width]
    return _finish(img[..., :D], img[..., D], img[..., D + 1], bg, means2d, proj.radii)


def gaussian_rasterize_reference(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                                 features: Tensor, world_to_camera: Tensor, K: Tensor, width: int, height: int,
                                 background: Tensor | None = None, near_plane: float = 0.01,
                                 far_plane: float = 1e10, eps2d: float = 0.3,
                                 tile_size: int = 16) -> GaussianRender:
    """Naive rasterization for tests: one splat at a time in depth order over every pixel of its tiles."""
    _check_inputs(means, quats, scales, opacities, features, world_to_camera, K, width, height)
    bg = _background(background, features)
    proj = project_gaussians(means, quats, scales, opacities, world_to_camera, K, width, height,
                             near_plane, far_plane, eps2d)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    px, py = xs.to(means) + 0.5, ys.to(means) + 0.5
    tx, ty = xs // tile_size, ys // tile_size
    T = torch.ones(height, width, dtype=means.dtype)
    done = torch.zeros(height, width, dtype=torch.bool)
    feats = features.new_zeros(height, width, features.shape[1])
    depth = means.new_zeros(height, width)
    means2d = proj.means2d[None]  # on the autograd path, as in gaussian_rasterize_torch
    visible = (proj.radii > 0).all(-1).nonzero().squeeze(1)
    for i in visible[torch.argsort(proj.depths.detach()[visible])].tolist():
        m, r = means2d[0, i].detach() / tile_size, proj.radii[i].to(means.dtype) / tile_size
        in_tiles = ((tx >= torch.floor(m[0] - r[0])) & (tx < torch.ceil(m[0] + r[0]))
                    & (ty >= torch.floor(m[1] - r[1])) & (ty < torch.ceil(m[1] + r[1])))
        dx, dy = px - means2d[0, i, 0], py - means2d[0, i, 1]
        a, b, c = proj.conics[i]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(opacities[i] * torch.exp(-sigma.clamp(min=0)), max=MAX_ALPHA)
        use = in_tiles & ~done & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
        next_T = T * (1 - alpha)
        stop = use & (next_T <= MIN_TRANSMITTANCE)
        use = use & ~stop
        done = done | stop
        w = torch.where(use, alpha * T, torch.zeros_like(alpha))
        feats = feats + w[..., None] * features[i]
        depth = depth + w * proj.depths[i]
        T = torch.where(use, next_T, T)
    return _finish(feats, depth, 1 - T, bg, means2d, proj.radii)


def gaussian_rasterize_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, features: Tensor,
                              world_to_camera: Tensor, K: Tensor, width: int, height: int,
                              background: Tensor | None = None, near_plane: float = 0.01,
                              far_plane: float = 1e10, eps2d: float = 0.3, tile_size: int = 16) -> GaussianRender:
    """gsplat's CUDA rasterization (``pip install gsplat``: the ``[cuda]`` extra), same conventions."""
    try:
        from gsplat import rasterization
    except ImportError as err:
        raise ImportError("gaussian_rasterize_gsplat needs gsplat: install the [cuda] extra "
                          "(pip install 'shared-utils[cuda]')") from err
    _check_inputs(means, quats, scales, opacities, features, world_to_camera, K, width, height)
    bg = _background(background, features)
    # "RGB+ED" appends the alpha-normalised depth as the last channel; its background is 0.
    renders, alphas, meta = rasterization(
        means, quats, scales, opacities, features, world_to_camera[None], K[None], width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, packed=False, tile_size=tile_size,
        backgrounds=torch.cat([bg, bg.new_zeros(1)])[None], render_mode="RGB+ED", rasterize_mode="classic")
    radii = meta["radii"][0]
    if radii.ndim == 1:  # gsplat < 1.5: one isotropic radius per splat
        radii = radii[:, None].expand(-1, 2)
    return GaussianRender(renders[0, ..., :-1], renders[0, ..., -1], alphas[0, ..., 0], meta["means2d"],
                          radii.long())


def gsplat_available() -> bool:
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def gaussian_rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, features: Tensor,
                       world_to_camera: Tensor, K: Tensor, width: int, height: int,
                       background: Tensor | None = None, **kwargs) -> GaussianRender:
    """Render N 3D Gaussians seen by one pinhole camera; gsplat for CUDA tensors when installed, PyTorch otherwise.

    means (N, 3) world positions; quats (N, 4) rotations, w first (normalised here); scales (N, 3)
    standard deviations (activated, > 0); opacities (N,) in [0, 1]; features (N, D) any per-splat
    values (RGB from spherical harmonics, semantic features, ...); world_to_camera (4, 4) OpenCV
    camera (x right, y down, z forward); K (3, 3) intrinsics in pixels with pixel centres at +0.5
    (COLMAP's convention); background (D,), default 0. Returns a ``GaussianRender``.
    """
    if means.is_cuda and gsplat_available():
        kwargs.pop("chunk_elements", None)
        kwargs.pop("checkpoint_chunks", None)
        return gaussian_rasterize_gsplat(means, quats, scales, opacities, features, world_to_camera, K,
                                         width, height, background, **kwargs)
    return gaussian_rasterize_torch(means, quats, scales, opacities, features, world_to_camera, K,
                                    width, height, background, **kwargs)
