"""A scene of 3D Gaussians (Kerbl et al., "3D Gaussian Splatting for Real-Time Radiance Field Rendering",
SIGGRAPH 2023): the parameters, their activations, spherical-harmonics colour and rendering.

Each Gaussian has a mean, a scale (stored as log, activated by exp), a rotation (a quaternion, w first, normalised
at use), an opacity (stored as a logit, activated by the sigmoid), view-dependent colour as real spherical
harmonics up to ``sh_degree`` (3: 16 coefficients per channel; the DC term is stored apart, as in the paper's code),
and optionally ``feature_dim`` extra values rendered alongside the colour (Feature-3DGS's feature, LangSplat's
latent, Gaussian Grouping's identity: the same rasterizer composites them). Plain PyTorch: no Lightning here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from shared_utils.ops import GaussianRender, gaussian_rasterize, quat_to_rotmat

# Real spherical-harmonics constants of the 3DGS code (sh_utils.py, from PlenOctrees).
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
      1.445305721320277, -0.5900435899266435)


def eval_sh(degree: int, sh: Tensor, dirs: Tensor) -> Tensor:
    """Colour of SH coefficients ``sh`` (N, (degree+1)^2 at least, 3) in unit directions ``dirs`` (N, 3)."""
    result = C0 * sh[:, 0]
    if degree < 1:
        return result
    x, y, z = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
    result = result - C1 * y * sh[:, 1] + C1 * z * sh[:, 2] - C1 * x * sh[:, 3]
    if degree < 2:
        return result
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    result = (result + C2[0] * xy * sh[:, 4] + C2[1] * yz * sh[:, 5] + C2[2] * (2 * zz - xx - yy) * sh[:, 6]
              + C2[3] * xz * sh[:, 7] + C2[4] * (xx - yy) * sh[:, 8])
    if degree < 3:
        return result
    return (result + C3[0] * y * (3 * xx - yy) * sh[:, 9] + C3[1] * xy * z * sh[:, 10]
            + C3[2] * y * (4 * zz - xx - yy) * sh[:, 11] + C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
            + C3[4] * x * (4 * zz - xx - yy) * sh[:, 13] + C3[5] * z * (xx - yy) * sh[:, 14]
            + C3[6] * x * (xx - 3 * yy) * sh[:, 15])


def rgb_to_sh(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / C0


def inverse_sigmoid(x: Tensor) -> Tensor:
    return torch.log(x / (1 - x))


def knn_mean_sq_dist(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """Mean squared distance of each point to its ``k`` nearest neighbours (3DGS's ``distCUDA2``, k = 3)."""
    out = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start:start + chunk], points).square()
        out.append(d.topk(k + 1, largest=False).values[:, 1:].mean(1))  # drop the point itself
    return torch.cat(out)


class GaussianModel(nn.Module):
    """The parameters of N Gaussians (module docstring). ``param_names`` lists what the densification and the
    optimiser touch: every parameter has N rows."""

    def __init__(self, sh_degree: int = 3, feature_dim: int = 0) -> None:
        super().__init__()
        self.sh_degree, self.feature_dim = sh_degree, feature_dim
        self.resize(0)

    @property
    def param_names(self) -> list[str]:
        return ["means", "scales", "quats", "opacities", "sh0", "shN"] + (["features"] if self.feature_dim else [])

    def resize(self, n: int) -> None:
        """Empty parameters for ``n`` Gaussians (before loading a state dict whose N differs). ``owner`` (a buffer)
        says in whose frame each Gaussian lives: -1 the world, k >= 0 moving object k (the dynamic method)."""
        shapes = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,), "sh0": (n, 1, 3),
                  "shN": (n, (self.sh_degree + 1) ** 2 - 1, 3), "features": (n, self.feature_dim)}
        for name in self.param_names:
            setattr(self, name, nn.Parameter(torch.zeros(shapes[name])))
        self.register_buffer("owner", torch.full((n,), -1, dtype=torch.long))

    def create_from_points(self, xyz: Tensor, rgb: Tensor) -> None:
        """3DGS's initialisation from a sparse point cloud: isotropic scales from the 3 nearest neighbours' mean
        squared distance, identity rotations, opacity 0.1, DC colour from the points, higher SH bands 0."""
        n = len(xyz)
        self.resize(n)
        with torch.no_grad():
            self.means.copy_(xyz)
            self.scales.copy_(torch.log(knn_mean_sq_dist(xyz).clamp(min=1e-7).sqrt())[:, None].expand(n, 3))
            self.quats.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4))
            self.opacities.fill_(float(inverse_sigmoid(torch.tensor(0.1))))
            self.sh0.copy_(rgb_to_sh(rgb)[:, None, :])
            if self.feature_dim:
                self.features.normal_(0, 0.1)

    def __len__(self) -> int:
        return self.means.shape[0]

    def colours(self, camera_centre: Tensor, degree: int, means: Tensor | None = None) -> Tensor:
        """RGB of each Gaussian seen from ``camera_centre``: SH of the active ``degree`` + 0.5, clamped at 0."""
        dirs = nn.functional.normalize((self.means if means is None else means) - camera_centre, dim=-1)
        sh = torch.cat([self.sh0, self.shN], dim=1)
        return torch.clamp_min(eval_sh(degree, sh, dirs) + 0.5, 0.0)

    def render(self, world_to_camera: Tensor, K: Tensor, width: int, height: int, degree: int,
               background: Tensor, extra: Tensor | None = None, means: Tensor | None = None,
               quats: Tensor | None = None) -> GaussianRender:
        """Render colour (first 3 channels of ``image``) and ``extra`` per-Gaussian values (N, E) after it;
        ``means`` / ``quats``: world-frame values where the parameters live in other frames (moving objects)."""
        means = self.means if means is None else means
        centre = -world_to_camera[:3, :3].T @ world_to_camera[:3, 3]
        values = self.colours(centre, degree, means)
        if extra is not None:
            values = torch.cat([values, extra], dim=1)
            background = torch.cat([background, background.new_zeros(extra.shape[1])])
        return gaussian_rasterize(means, self.quats if quats is None else quats, torch.exp(self.scales),
                                  torch.sigmoid(self.opacities), values, world_to_camera, K, width, height, background)


def update_params(model: GaussianModel, optimizer: torch.optim.Optimizer, param_fn, state_fn) -> None:
    """Replace every Gaussian parameter ``p`` by ``param_fn(name, p)`` and its Adam moments ``m`` by
    ``state_fn(name, m)`` (3DGS's ``cat_tensors_to_optimizer`` / ``_prune_optimizer``: new Gaussians start with zero
    moments, kept ones keep theirs); the ``owner`` buffer follows ``param_fn``."""
    groups = {group["name"]: group for group in optimizer.param_groups if "name" in group}
    for name in model.param_names:
        old = getattr(model, name)
        new = nn.Parameter(param_fn(name, old.detach()))
        group = groups[name]
        state = optimizer.state.pop(old, None)
        group["params"][0] = new
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = state_fn(name, state[key])
            optimizer.state[new] = state
        setattr(model, name, new)
    model.owner = param_fn("owner", model.owner)


class Densifier:
    """3DGS's adaptive density control (Sec. 5.2 and the paper's code, ``densify_and_prune``).

    Every ``every`` steps between ``start`` and ``stop``: Gaussians whose view-space positional gradient, averaged
    over the views that saw them, exceeds ``grad_threshold`` are cloned (small: max scale <= ``percent_dense`` x
    the scene extent) or split in two (large: samples from the Gaussian, scales / 1.6); Gaussians with opacity below
    ``min_opacity``, and, after the first opacity reset, those larger than ``max_screen_radius`` pixels or 0.1 x the
    extent, are pruned. Every ``reset_every`` steps opacities are clamped to 0.01. The gradient is taken in NDC
    units (pixels x W/2, H/2), as the paper's rasterizer reports it, so its 2e-4 threshold keeps its meaning.
    ``max_gaussians`` (not in the paper) stops growth at a count the CPU can afford.
    """

    def __init__(self, start: int = 100, stop: int = 1500, every: int = 100, reset_every: int = 1000,
                 grad_threshold: float = 2e-4, percent_dense: float = 0.01, min_opacity: float = 0.005,
                 max_screen_radius: float = 20.0, max_gaussians: int = 60_000) -> None:
        self.start, self.stop, self.every, self.reset_every = start, stop, every, reset_every
        self.grad_threshold, self.percent_dense, self.min_opacity = grad_threshold, percent_dense, min_opacity
        self.max_screen_radius, self.max_gaussians = max_screen_radius, max_gaussians
        self.grad_sum = self.count = self.max_radii = torch.zeros(0)

    def reset_stats(self, n: int, device: torch.device) -> None:
        self.grad_sum = torch.zeros(n, device=device)
        self.count = torch.zeros(n, device=device)
        self.max_radii = torch.zeros(n, device=device)

    @torch.no_grad()
    def after_backward(self, render: GaussianRender, width: int, height: int) -> None:
        """Accumulate the screen-space gradient of the Gaussians this view saw (``render.means2d`` must have had
        ``retain_grad()`` before the backward pass)."""
        if len(self.grad_sum) != render.means2d.shape[1]:
            self.reset_stats(render.means2d.shape[1], render.means2d.device)
        visible = (render.radii > 0).all(-1)
        grad = render.means2d.grad[0] * render.means2d.new_tensor([width / 2.0, height / 2.0])
        self.grad_sum[visible] += grad[visible].norm(dim=-1)
        self.count[visible] += 1
        self.max_radii[visible] = torch.maximum(self.max_radii[visible], render.radii[visible].max(-1).values.float())

    @torch.no_grad()
    def step(self, step: int, model: GaussianModel, optimizer: torch.optim.Optimizer, extent: float) -> None:
        """Densify / prune / reset at the scheduled steps (``step`` counts from 1)."""
        if step < self.stop and step > self.start and step % self.every == 0:
            self.densify_and_prune(model, optimizer, extent, prune_big=step > self.reset_every)
            self.reset_stats(len(model), model.means.device)
        if step < self.stop and step % self.reset_every == 0:
            clamp = float(inverse_sigmoid(torch.tensor(0.01)))
            update_params(model, optimizer, lambda n, p: p.clamp(max=clamp) if n == "opacities" else p,
                          lambda n, m: torch.zeros_like(m) if n == "opacities" else m)

    def densify_and_prune(self, model: GaussianModel, optimizer: torch.optim.Optimizer, extent: float,
                          prune_big: bool) -> None:
        grads = self.grad_sum / self.count.clamp(min=1)
        scales = torch.exp(model.scales).max(-1).values
        hot = grads >= self.grad_threshold
        room = self.max_gaussians - len(model)
        if room <= 0:
            hot[:] = False
        elif hot.sum() > room:  # keep the largest gradients only
            hot &= grads >= grads[hot].topk(room).values.min()
        clone = hot & (scales <= self.percent_dense * extent)
        split = hot & ~clone
        n = len(model)
        # Split: two samples from each large Gaussian, scales / (0.8 * 2), the original removed below.
        idx = split.nonzero().squeeze(1).repeat(2)
        std = torch.exp(model.scales[idx])
        offsets = (quat_to_rotmat(model.quats[idx]) @ (torch.randn_like(std) * std)[..., None]).squeeze(-1)
        names = model.param_names + ["owner"]
        new_split = {name: getattr(model, name)[idx] for name in names}
        new_split["means"] = new_split["means"] + offsets
        new_split["scales"] = torch.log(std / 1.6)
        cidx = clone.nonzero().squeeze(1)
        add = {name: torch.cat([getattr(model, name)[cidx], new_split[name]]) for name in names}
        update_params(model, optimizer, lambda name, p: torch.cat([p, add[name]]),
                      lambda name, m: torch.cat([m, m.new_zeros((len(add[name]),) + m.shape[1:])]))
        total = len(model)
        prune = torch.zeros(total, dtype=torch.bool, device=model.means.device)
        prune[:n] = split  # the originals of the split Gaussians
        prune |= torch.sigmoid(model.opacities) < self.min_opacity
        if prune_big:
            radii = torch.cat([self.max_radii, self.max_radii.new_zeros(total - n)])
            prune |= (radii > self.max_screen_radius) | (torch.exp(model.scales).max(-1).values > 0.1 * extent)
        keep = ~prune
        update_params(model, optimizer, lambda name, p: p[keep], lambda name, m: m[keep])


def exponential_lr(step: int, lr_init: float, lr_final: float, max_steps: int) -> float:
    """3DGS's ``get_expon_lr_func`` without delay: log-linear from ``lr_init`` to ``lr_final`` over ``max_steps``."""
    t = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t)
