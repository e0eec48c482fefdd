"""Two-view geometry of optical flow: rigid (ego) flow, pose parametrisation, warping and ego-motion estimators.

Conventions (INTERFACE.md): pixel (u, v) = (column, row) with pixel centres at integers (OpenCV); flow is forward,
pixel p of frame 1 moves to p + flow(p); depth is z-depth of frame 1 (0 = unknown); the relative motion is
T_21 with X_cam2 = T_21 @ X_cam1. Everything is batched over B and vectorised over pixels; the only Python loops
run per image around OpenCV's RANSAC calls.

Contents
- `backproject`, `project`, `rigid_flow`: the pinhole model (Hartley & Zisserman, Multiple View Geometry, 2nd ed.
  2003, ch. 6); `rigid_flow` is differentiable and is the view-synthesis flow of SfMLearner (Zhou et al., CVPR 2017)
  and GeoNet's rigid flow (Yin & Shi, CVPR 2018).
- `pose_vec_to_mat`, `mat_to_pose_vec`: axis-angle + translation <-> 4 x 4 (Rodrigues' formula).
- `warp`: differentiable bilinear sampling (Jaderberg et al., Spatial Transformer Networks, NeurIPS 2015).
- `homography_compensation`, `ground_prior`: ego-motion compensation with a road-plane homography (Ding et al.,
  ACCV 2020).
- `essential_ego_motion`: five-point essential matrix + pose recovery (Nister, PAMI 2004, via OpenCV), then
  per-pixel triangulation and reprojection.
- `irls_pose`: metric camera motion from flow + depth by robust Gauss-Newton on se(3) (IRLS as in DVO, Kerl et al.,
  ICRA 2013).
- `motion_chi2`, `chi2_threshold`, `moving_from_residual`: per-pixel "is it moving" tests on the residual flow.
"""

import math
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor

# Points closer than this to camera 2's image plane (metres, or scene units) are invalid (INTERFACE.md).
MIN_DEPTH = 1e-3
# Number of flow correspondences handed to OpenCV's RANSAC per image: enough for a stable fit, cheap to run.
RANSAC_SAMPLES = 2000
# Inliers handed to cv2.recoverPose, whose cheirality test is a majority vote: more only costs time (~3 us each).
RECOVER_POSE_POINTS = 500
# Shape of `ground_prior`'s trapezoid: half-widths (fractions of the image width) at its top and bottom rows.
GROUND_TOP_HALF_WIDTH = 0.1
GROUND_BOTTOM_HALF_WIDTH = 0.4


def pixel_grid(
    height: int, width: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """2 x H x W pixel coordinates (u, v) = (column, row), pixel centres at integers (OpenCV convention)."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([u, v])


def _length(vectors: Tensor) -> Tensor:
    """Euclidean length over dim 1 of B x 2 x ... vectors (torch's norm(dim=1) is ~100x slower on CPU here)."""
    return torch.hypot(vectors[:, 0], vectors[:, 1])


def backproject(depth: Tensor, K: Tensor) -> Tensor:
    """3D points in camera 1 (B x 3 x H x W) of the pixels with z-depth `depth` (B x 1 x H x W): X = d K^-1 [u, v, 1].

    Pinhole model (Hartley & Zisserman ch. 6) inverted along the ray; pixels with depth 0 map to the origin.
    """
    B, _, H, W = depth.shape
    grid = pixel_grid(H, W, depth.device, depth.dtype)
    homogeneous = torch.cat([grid, torch.ones_like(grid[:1])]).reshape(3, H * W)
    rays = torch.linalg.inv(K.to(depth.dtype)) @ homogeneous  # B x 3 x HW, z = 1
    return rays.reshape(B, 3, H, W) * depth


def project(points: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """Pixels (B x 2 x H x W) and z-depth (B x 1 x H x W) of camera-frame points (B x 3 x H x W): p = K X / Z.

    The division uses max(Z, MIN_DEPTH) so that points on or behind the image plane give finite values (and finite
    gradients); callers must mask them with `z > MIN_DEPTH`, as `rigid_flow` does.
    """
    B, _, H, W = points.shape
    z = points[:, 2:3]
    image = (K.to(points.dtype) @ points.reshape(B, 3, H * W)).reshape(B, 3, H, W)
    return image[:, :2] / z.clamp(min=MIN_DEPTH), z


def rigid_flow(depth: Tensor, K: Tensor, T_21: Tensor) -> tuple[Tensor, Tensor]:
    """Rigid (ego) flow B x 2 x H x W and its validity B x H x W: the flow pixel p would have if its point were static.

    Backproject p with the depth of frame 1, move it with X2 = R X1 + t (T_21), project with K (Zhou et al.,
    SfMLearner, CVPR 2017, eq. 2). Invalid where depth <= 0 or the transformed z <= MIN_DEPTH; the flow is 0 there.
    Differentiable in depth and T_21, so self-supervised losses can train depth and pose through it.
    """
    B, _, H, W = depth.shape
    points = backproject(depth, K)
    T = T_21.to(depth.dtype)
    moved = (T[:, :3, :3] @ points.reshape(B, 3, H * W) + T[:, :3, 3:]).reshape(B, 3, H, W)
    pixels, z = project(moved, K)
    valid = (depth[:, 0] > 0) & (z[:, 0] > MIN_DEPTH)
    flow = pixels - pixel_grid(H, W, depth.device, depth.dtype)
    return torch.where(valid[:, None], flow, torch.zeros_like(flow)), valid


def _skew(w: Tensor) -> Tensor:
    """B x 3 x 3 cross-product matrices [w]_x of B x 3 vectors."""
    zero = torch.zeros_like(w[:, 0])
    rows = [zero, -w[:, 2], w[:, 1], w[:, 2], zero, -w[:, 0], -w[:, 1], w[:, 0], zero]
    return torch.stack(rows, dim=1).reshape(-1, 3, 3)


def pose_vec_to_mat(vec: Tensor) -> Tensor:
    """B x 4 x 4 rigid transforms from B x 6 vectors (axis-angle rotation w, then translation t).

    Rodrigues' formula R = I + (sin a / a) [w]_x + ((1 - cos a) / a^2) [w]_x^2 with a = |w| (Hartley & Zisserman
    A4.3). Below a = 1e-2 both coefficients use their Taylor series in a^2 (error < 1e-12), so the map and its
    gradient stay finite and exact at w = 0, where pose networks start. The translation is used as is (the
    "pose vector" of SfMLearner/GeoNet, not the SE(3) exponential).
    """
    w, t = vec[:, :3], vec[:, 3:]
    angle2 = (w * w).sum(1)[:, None, None]
    small = angle2 < 1e-4
    angle = torch.where(small, torch.ones_like(angle2), angle2).sqrt()  # dummy 1 keeps sqrt's gradient finite at 0
    a = torch.where(small, 1 - angle2 / 6 + angle2**2 / 120, torch.sin(angle) / angle)
    b = torch.where(small, 0.5 - angle2 / 24 + angle2**2 / 720, (1 - torch.cos(angle)) / angle**2)
    W = _skew(w)
    R = torch.eye(3, dtype=vec.dtype, device=vec.device) + a * W + b * (W @ W)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=vec.dtype, device=vec.device).expand(vec.shape[0], 1, 4)
    return torch.cat([torch.cat([R, t[:, :, None]], 2), bottom], 1)


def mat_to_pose_vec(T: Tensor) -> Tensor:
    """B x 6 (axis-angle, translation) of B x 4 x 4 rigid transforms: the inverse of `pose_vec_to_mat`.

    The angle is atan2(sin, cos) with sin = |vee(R - R^T)| / 2 and cos = (tr R - 1) / 2, accurate at every angle
    (acos loses half the digits near 0). The axis is vee(R - R^T) / (2 sin) for angles below pi/2 and, above, the
    dominant column of the symmetric part (R + R^T)/2 - cos I = (1 - cos) n n^T, signed like vee(R - R^T); so
    rotations near pi keep their axis (Hartley & Zisserman A4.3).
    """
    R = T[:, :3, :3]
    vee = torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], 1)  # 2 sin(a) n
    sin = vee.norm(dim=1) / 2
    cos = ((R.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2).clamp(-1, 1)
    angle = torch.atan2(sin, cos)
    # Small and moderate angles: w = a / sin(a) * vee / 2, with a / sin(a) = 1 + a^2 / 6 near 0.
    ratio = torch.where(sin < 1e-6, 1 + angle**2 / 6, angle / sin.clamp(min=1e-6))
    w_small = ratio[:, None] * vee / 2
    # Large angles: n n^T from the symmetric part, its largest-diagonal column normalised.
    eye = torch.eye(3, dtype=T.dtype, device=T.device)
    outer = ((R + R.transpose(1, 2)) / 2 - cos[:, None, None] * eye) / (1 - cos).clamp(min=1e-6)[:, None, None]
    column = outer.diagonal(dim1=1, dim2=2).argmax(1)
    axis = outer.gather(2, column[:, None, None].expand(-1, 3, 1))[:, :, 0]
    axis = axis / axis.norm(dim=1, keepdim=True).clamp(min=1e-12)
    axis = torch.where((axis * vee).sum(1, keepdim=True) < 0, -axis, axis)
    w = torch.where((cos < 0)[:, None], angle[:, None] * axis, w_small)
    return torch.cat([w, T[:, :3, 3]], 1)


def warp(image: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Sample `image` (B x C x H x W) at p + flow(p) with bilinear interpolation; also return in_bounds (B x H x W).

    Backward warping of frame 2 into frame 1 by the forward flow 1 -> 2 (Jaderberg et al., NeurIPS 2015;
    the photometric loss of Monodepth2/GeoNet). With pixel centres at integers, u in [0, W - 1] maps to [-1, 1],
    which is exactly `grid_sample(..., align_corners=True)`. Outside the image the sample is 0 and in_bounds False.
    """
    B, _, H, W = image.shape
    target = pixel_grid(H, W, flow.device, flow.dtype) + flow  # B x 2 x H x W
    u, v = target[:, 0], target[:, 1]
    grid = torch.stack([2 * u / max(W - 1, 1) - 1, 2 * v / max(H - 1, 1) - 1], dim=-1)
    warped = torch.nn.functional.grid_sample(image, grid.to(image.dtype), mode="bilinear", align_corners=True)
    in_bounds = (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    return warped, in_bounds


def _sample_correspondences(
    flow: Tensor, mask: Tensor, num_samples: int, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `num_samples` random pixels of one image where `mask` (H x W) holds: (p, p + flow) as N x 2 float64."""
    v, u = torch.nonzero(mask.cpu(), as_tuple=True)
    pick = torch.randperm(u.numel(), generator=generator)[:num_samples]
    u, v = u[pick], v[pick]
    f = flow.detach().cpu().double()[:, v, u].T
    p1 = torch.stack([u, v], 1).double()
    return p1.numpy(), (p1 + f).numpy()


def ground_prior(height: int, width: int, horizon: float = 0.55, device: torch.device | None = None) -> Tensor:
    """H x W bool prior of where the road is when no segmentation is given: a trapezoid at the bottom centre.

    Rows below `horizon * H`; half-width GROUND_TOP_HALF_WIDTH * W at the top row, growing linearly to
    GROUND_BOTTOM_HALF_WIDTH * W at the bottom row, centred on the image. A prior, not a segmentation: it may contain
    cars and pedestrians, which RANSAC is then expected to reject as outliers of the road homography.
    """
    grid = pixel_grid(height, width, device)
    top = horizon * height
    depth_in = ((grid[1] - top) / max(height - 1 - top, 1.0)).clamp(0, 1)
    half_width = (GROUND_TOP_HALF_WIDTH + (GROUND_BOTTOM_HALF_WIDTH - GROUND_TOP_HALF_WIDTH) * depth_in) * width
    return (grid[1] >= top) & ((grid[0] - (width - 1) / 2).abs() <= half_width)


def homography_compensation(
    flow: Tensor, valid: Tensor, ground: Tensor, threshold: float = 1.0, num_samples: int = RANSAC_SAMPLES
) -> tuple[Tensor, Tensor, Tensor]:
    """Ego-motion compensation with the road-plane homography (Ding et al., ACCV 2020): (rigid_flow, residual, H).

    The flow of a plane seen by a moving camera is a homography, H = K (R + t n^T / d) K^-1 for the plane
    n^T X1 = d (Hartley & Zisserman result 13.1), so the road's flow gives the camera motion's effect on the road
    without depth. Per image, up to `num_samples` correspondences p -> p + flow(p) drawn (seeded) from valid ground
    pixels are fitted with cv2.findHomography (RANSAC, reprojection threshold `threshold` px, then a
    Levenberg-Marquardt refinement on the inliers inside OpenCV). Then for every pixel rigid_flow = H p - p and
    residual = flow - rigid_flow (0 where `valid` is False). Off the road plane the "rigid" flow is only the plane's
    and the residual also holds parallax of static structure (kerbs, buildings, trees):
    the known limit of homography compensation. Images with fewer than 4 ground correspondences, or where RANSAC
    fails, get H = identity (rigid flow 0). Shapes: flow B x 2 x H x W, valid and ground B x H x W (or H x W) bool,
    H B x 3 x 3 normalised to H[2, 2] = 1.
    """
    B, _, height, width = flow.shape
    ground = ground.expand(B, height, width)
    generator = torch.Generator().manual_seed(0)
    homographies = []
    for b in range(B):
        src, dst = _sample_correspondences(flow[b], valid[b] & ground[b], num_samples, generator)
        H = None
        if len(src) >= 4:
            H, _ = cv2.findHomography(src, dst, cv2.RANSAC, ransacReprojThreshold=threshold)
        homographies.append(np.eye(3) if H is None else H / H[2, 2])
    H = torch.from_numpy(np.stack(homographies)).to(flow.device, flow.dtype)
    grid = pixel_grid(height, width, flow.device, flow.dtype)
    homogeneous = torch.cat([grid, torch.ones_like(grid[:1])]).reshape(3, -1)
    mapped = H @ homogeneous  # B x 3 x HW
    w = mapped[:, 2:]
    w = torch.where(w.abs() < 1e-9, torch.full_like(w, 1e-9), w)  # pixels on the plane's vanishing line
    rigid = (mapped[:, :2] / w).reshape(B, 2, height, width) - grid
    residual = torch.where(valid[:, None], flow - rigid, torch.zeros_like(flow))
    return rigid, residual, H


def _refit_essential(
    E: np.ndarray, p1: np.ndarray, p2: np.ndarray, K: np.ndarray, threshold: float, rounds: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Re-estimate RANSAC's essential matrix from all its inliers (Hartley & Zisserman, algorithm 4.6 (iii)).

    OpenCV's RANSAC returns the best minimal five-point model, whose error on exact flow is still ~1e-2 rad with a
    1 px threshold (many models fit within 1 px). Each round keeps the correspondences with Sampson distance
    <= threshold px (H&Z eq. 11.9), fits E by linear least squares on them (the eight-point algorithm on
    normalised coordinates K^-1 p, H&Z 11.2) and projects it to the essential manifold (singular values 1, 1, 0).
    Returns E and the final inlier mask (N bool).
    """
    K_inv = np.linalg.inv(K)
    x1 = np.c_[p1, np.ones(len(p1))] @ K_inv.T
    x2 = np.c_[p2, np.ones(len(p2))] @ K_inv.T
    for _ in range(rounds):
        F = K_inv.T @ E @ K_inv
        h1, h2 = np.c_[p1, np.ones(len(p1))], np.c_[p2, np.ones(len(p2))]
        Fx1, Ftx2 = h1 @ F.T, h2 @ F
        sampson = (h2 * Fx1).sum(1) ** 2 / (Fx1[:, 0] ** 2 + Fx1[:, 1] ** 2 + Ftx2[:, 0] ** 2 + Ftx2[:, 1] ** 2)
        inliers = sampson <= threshold**2
        if inliers.sum() < 8:
            break
        A = (x2[inliers, :, None] * x1[inliers, None, :]).reshape(-1, 9)  # rows of x2^T E x1 = 0
        E = np.linalg.eigh(A.T @ A)[1][:, 0].reshape(3, 3)  # least-squares null vector of A
        U, _, Vt = np.linalg.svd(E)
        E = U @ np.diag([1.0, 1.0, 0.0]) @ Vt
    return E, inliers


def essential_ego_motion(
    flow: Tensor, valid: Tensor, K: Tensor, ransac_threshold: float = 1.0, num_samples: int = RANSAC_SAMPLES
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Camera motion up to scale from flow alone, and the rigid flow it explains: (T_21, rigid_flow, residual, inliers).

    1. Per image, up to `num_samples` correspondences p -> p + flow(p) drawn (seeded) from valid pixels;
       cv2.findEssentialMat (RANSAC, five-point solver of Nister, PAMI 2004; threshold `ransac_threshold` px) and
       cv2.recoverPose (cheirality test, Hartley & Zisserman 9.6.2) give R and a unit-norm t, X2 = R X1 + t.
    2. Every pixel is triangulated in closed form, all at once. With p1 = p taken as exact (it is a pixel centre,
       all the error is in the flow) the optimal triangulation is one-sided: the static point on the ray of p1
       whose image in view 2 is closest to p2 = p + flow. That image is the orthogonal projection of p2 onto the
       epipolar line F p1, i.e. the Sampson-corrected p2 (exact here because the epipolar constraint is linear in
       p2; Hartley & Zisserman 4.2.6, 12.4), and its depth follows from the ray. (A symmetric DLT/midpoint
       triangulation would also move p1, and its reprojection would leave the epipolar line of p1.)
    3. Cheirality: the images of the ray's points in front of both cameras form one piece of the epipolar line,
       from the vanishing point (depth -> inf) towards the epipole (depth -> 0). Where the projection of p2 falls
       outside it, the point would triangulate behind a camera: it is clamped to the nearest end of the piece, so
       the along-line part of the flow that no static point explains goes to the residual too (a car that outruns
       the camera towards the focus of expansion gets a large residual, not 0). Those pixels are not inliers.
    rigid_flow = reprojection - p, residual = flow - rigid_flow (0 where `valid` is False), inliers = valid pixels
    triangulated in front of both cameras with |residual| <= ransac_threshold. Without camera translation the
    essential matrix is undefined (pure rotation): use `homography_compensation` or `irls_pose` then. Images with
    fewer than 5 correspondences or a failed fit get T_21 = identity (rigid flow 0, no inliers).
    Shapes: flow B x 2 x H x W, valid B x H x W bool, K B x 3 x 3; T_21 B x 4 x 4.
    """
    B, _, height, width = flow.shape
    generator = torch.Generator().manual_seed(0)
    poses, fitted = [], []
    for b in range(B):
        p1, p2 = _sample_correspondences(flow[b], valid[b], num_samples, generator)
        T = np.eye(4)
        E = None
        camera = K[b].detach().cpu().double().numpy()
        if len(p1) >= 5:
            E, _ = cv2.findEssentialMat(p1, p2, camera, method=cv2.RANSAC, prob=0.999, threshold=ransac_threshold)
        if E is not None and E.shape[0] >= 3:
            E, inliers = _refit_essential(E[:3], p1, p2, camera, ransac_threshold)
            keep = np.flatnonzero(inliers)[:RECOVER_POSE_POINTS]
            _, R, t, _ = cv2.recoverPose(E, p1[keep], p2[keep], camera)
            T[:3, :3], T[:3, 3] = R, t[:, 0] / np.linalg.norm(t)
        poses.append(T)
        fitted.append(E is not None)
    T_21 = torch.from_numpy(np.stack(poses)).to(flow.device)

    # One-sided triangulation, in float64: along the ray of p1, camera 2 sees a + rho t (rho = inverse depth,
    # a = R K^-1 p1); in pixels that is v + mu g with v = pi(K a) the vanishing point and g the line direction.
    grid = pixel_grid(height, width, flow.device, torch.float64)
    Kd = K.to(torch.float64)
    rays = torch.linalg.inv(Kd) @ torch.cat([grid, torch.ones_like(grid[:1])]).reshape(3, -1)
    A = Kd @ T_21[:, :3, :3] @ rays  # B x 3 x HW: K a
    Kt = Kd @ T_21[:, :3, 3:]  # B x 3 x 1: K t
    a_z, t_z = A[:, 2:], Kt[:, 2:]
    in_front = a_z > 1e-9  # the ray's point at infinity is in front of camera 2 (rotations below ~90 degrees)
    a_z = a_z.clamp(min=1e-9)
    vanishing = A[:, :2] / a_z
    g = Kt[:, :2] * a_z - A[:, :2] * t_z  # P(rho) = v + mu g, mu = rho / (a_z (a_z + rho t_z)) >= 0
    p2 = grid.reshape(2, -1) + flow.to(torch.float64).reshape(B, 2, -1)
    g2 = (g * g).sum(1, keepdim=True)
    mu = ((p2 - vanishing) * g).sum(1, keepdim=True) / g2.clamp(min=1e-18)
    # The admissible piece: mu in [0, 1 / (a_z t_z)] (epipole, depth 0) when the camera moves back (t_z > 0), else
    # [0, inf). Points on the line through the epipole (g = 0) see no parallax: their image is v.
    mu_max = torch.where(t_z > 0, 1 / (a_z * t_z).clamp(min=1e-18), torch.full_like(mu, math.inf))
    mu_clamped = torch.where(g2 > 1e-18, torch.minimum(mu.clamp(min=0), mu_max), torch.zeros_like(mu))
    rigid = (vanishing + mu_clamped * g - grid.reshape(2, -1)).reshape(B, 2, height, width)
    rigid = rigid.to(flow.dtype)
    residual = torch.where(valid[:, None], flow - rigid, torch.zeros_like(flow))
    admissible = (in_front & (mu >= 0) & (mu <= mu_max)).reshape(B, height, width)
    fitted = torch.tensor(fitted, device=flow.device)[:, None, None]
    inliers = valid & admissible & fitted & (_length(residual) <= ransac_threshold)
    return T_21.to(flow.dtype), rigid, residual, inliers


def _pnp_init(flow: Tensor, mask: Tensor, points: Tensor, K: Tensor, num_samples: int = RANSAC_SAMPLES) -> Tensor:
    """B x 4 x 4 float64 initial T_21 by cv2.solvePnPRansac on sampled pixels: 3D X1 (points, B x 3 x H x W) -> 2D
    p + flow. RANSAC PnP (EPnP/DLT start + Levenberg-Marquardt, OpenCV defaults) is robust to moving pixels and to
    large rotations, where Gauss-Newton from the identity diverges (from about 0.3 rad). Identity where it fails."""
    generator = torch.Generator().manual_seed(0)
    poses = []
    for b in range(flow.shape[0]):
        p1, p2 = _sample_correspondences(flow[b], mask[b], num_samples, generator)
        u, v = p1[:, 0].astype(np.int64), p1[:, 1].astype(np.int64)
        objects = points[b].detach().cpu().double().numpy()[:, v, u].T
        T = np.eye(4)
        if len(p1) >= 6:
            ok, rvec, tvec, _ = cv2.solvePnPRansac(objects, p2, K[b].detach().cpu().double().numpy(), None)
            if ok:
                T[:3, :3], T[:3, 3] = cv2.Rodrigues(rvec)[0], tvec[:, 0]
        poses.append(T)
    return torch.from_numpy(np.stack(poses)).to(flow.device)


def _robust_weights(error: Tensor, robust: str, scale: float) -> Tensor:
    """IRLS weights of residual norms (M-estimators, Zhang, Image Vis. Comput. 1997): Cauchy 1 / (1 + (e/c)^2),
    Huber min(1, c/e), "none" 1 (plain least squares)."""
    if robust == "cauchy":
        return 1 / (1 + (error / scale) ** 2)
    if robust == "huber":
        return (scale / error.clamp(min=1e-12)).clamp(max=1)
    if robust == "none":
        return torch.ones_like(error)
    raise ValueError(f"robust must be 'cauchy', 'huber' or 'none', got {robust!r}")


def irls_pose(
    flow: Tensor,
    valid: Tensor,
    depth: Tensor,
    K: Tensor,
    init_T_21: Tensor | None = None,
    iterations: int = 10,
    robust: Literal["cauchy", "huber", "none"] = "cauchy",
    scale: float = 1.0,
    weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Metric camera motion T_21 (B x 4 x 4) from flow and depth of frame 1, robust to moving objects; and weights.

    Minimises sum_i w_i |p_i + flow_i - pi(T X_i)|^2, X_i = backproject(p_i, d_i), by Gauss-Newton on se(3) with
    iteratively reweighted least squares (the robust direct odometry of DVO, Kerl et al., ICRA 2013). Each iteration:
    residuals r_i under the current T; weights w_i = prior_i * rho'(|r_i|) / |r_i| (`_robust_weights`, scale
    `scale` px; prior_i = `weights` (B x H x W) or 1); the update xi = (omega, v) solves the batched 6 x 6 normal
    equations (sum w J^T J) xi = sum w J^T r, and T <- pose_vec_to_mat(xi) T. J is the analytic 2 x 6 Jacobian of
    the projection of Y = T X under the left perturbation Y + omega x Y + v; with x = X/Z, y = Y/Z:
    d(x, y)/dv = [[1/Z, 0, -x/Z], [0, 1/Z, -y/Z]], d(x, y)/domega = [[-xy, 1 + x^2, -y], [-(1 + y^2), xy, x]],
    and pixels (fx x + s y + cx, fy y + cy). Pixels count where valid, depth > 0, prior > 0 and the moved point is in
    front of camera 2. Initialisation: `init_T_21`, else cv2.solvePnPRansac (`_pnp_init`), because Gauss-Newton from
    the identity diverges beyond about 0.3 rad of rotation. Returns T_21 and the final weights under it (B x H x W,
    0 on unused pixels): low weight = inconsistent with the camera motion, a soft moving-object map.
    Computed in float64, returned in flow's dtype.
    """
    B, _, H, W = flow.shape
    dtype = torch.float64
    Kd = K.to(dtype)
    points = backproject(depth.to(dtype), Kd)
    prior = torch.ones(B, H, W, dtype=dtype, device=flow.device) if weights is None else weights.to(dtype)
    usable = valid & (depth[:, 0] > 0) & (prior > 0)
    T = _pnp_init(flow, usable, points, Kd) if init_T_21 is None else init_T_21.to(dtype)
    points, usable, prior = points.reshape(B, 3, H * W), usable.reshape(B, H * W), prior.reshape(B, H * W)
    observed = (pixel_grid(H, W, flow.device, dtype) + flow.to(dtype)).reshape(B, 2, H * W)
    fx, s, fy = (Kd[:, i, j, None, None] for i, j in ((0, 0), (0, 1), (1, 1)))  # B x 1 x 1

    def residuals(T: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        Y = T[:, :3, :3] @ points + T[:, :3, 3:]  # B x 3 x N
        r = observed - (Kd[:, :2] @ Y) / Y[:, 2:].clamp(min=MIN_DEPTH)
        w = torch.where(usable & (Y[:, 2] > MIN_DEPTH), prior * _robust_weights(_length(r), robust, scale), 0.0)
        return Y, r, w

    for _ in range(iterations):
        Y, r, w = residuals(T)
        inv_z = 1 / Y[:, 2].clamp(min=MIN_DEPTH)
        x, y = Y[:, 0] * inv_z, Y[:, 1] * inv_z
        zero = torch.zeros_like(x)
        dx = torch.stack([-x * y, 1 + x * x, -y, inv_z, zero, -x * inv_z], 1)  # B x 6 x N: d x / d(omega, v)
        dy = torch.stack([-(1 + y * y), x * y, x, zero, inv_z, -y * inv_z], 1)
        J_u, J_v = fx * dx + s * dy, fy * dy  # B x 6 x N: rows of the 2 x 6 Jacobian of (u, v)
        J_uw, J_vw = J_u * w[:, None], J_v * w[:, None]
        normal = J_uw @ J_u.transpose(1, 2) + J_vw @ J_v.transpose(1, 2)
        rhs = (J_uw * r[:, None, 0]).sum(2) + (J_vw * r[:, None, 1]).sum(2)
        xi = torch.linalg.solve(normal + 1e-9 * torch.eye(6, dtype=dtype, device=flow.device), rhs)
        T = pose_vec_to_mat(xi) @ T
    w = residuals(T)[2]
    return T.to(flow.dtype), w.reshape(B, H, W).to(flow.dtype)


def motion_chi2(
    flow: Tensor,
    rigid_flow: Tensor,
    depth: Tensor,
    K: Tensor,
    T_21: Tensor,
    sigma_flow: float | Tensor = 1.0,
    sigma_depth_rel: float = 0.05,
) -> Tensor:
    """Mahalanobis distance chi2 = r^T Sigma^-1 r (B x H x W) of the residual r = flow - rigid_flow.

    The probabilistic motion test (Wedel et al., "Detection and segmentation of independently moving objects from
    dense scene flow", EMMCVPR 2009): a static pixel's residual is noise, propagated to first order (Hartley &
    Zisserman 5.2.1): Sigma = sigma_flow^2 I + sigma_d^2 J_d J_d^T, sigma_d = sigma_depth_rel * depth, where
    J_d = d(rigid flow)/d(depth) = J_pi(Y) R K^-1 p (2 x 1, analytic). The 2 x 2 inverse is closed form
    (Sherman-Morrison): chi2 = (|r|^2 - s^2 (J_d . r)^2 / (sigma_flow^2 + s^2 |J_d|^2)) / sigma_flow^2.
    Under the static hypothesis chi2 ~ chi-square(2): compare with `chi2_threshold`. 0 where the rigid flow is
    undefined (depth <= 0 or transformed z <= MIN_DEPTH). Depth B x 1 x H x W, as `rigid_flow`; sigma_flow a
    number or one per image (B x 1 x 1 x 1).
    """
    B, _, H, W = flow.shape
    T = T_21.to(depth.dtype)
    rays = backproject(torch.ones_like(depth), K).reshape(B, 3, H * W)
    a = (T[:, :3, :3] @ rays).reshape(B, 3, H, W)  # dY/d(depth) = R K^-1 p
    Y = a * depth + T[:, :3, 3, None, None]
    pixels, z = project(Y, K)
    Ka = (K.to(depth.dtype)[:, :2] @ a.reshape(B, 3, H * W)).reshape(B, 2, H, W)
    J_d = (Ka - pixels * a[:, 2:]) / z.clamp(min=MIN_DEPTH)
    r = flow - rigid_flow
    s2 = (sigma_depth_rel * depth) ** 2
    f2 = sigma_flow**2
    jr, jj = (J_d * r).sum(1, keepdim=True), (J_d * J_d).sum(1, keepdim=True)
    chi2 = ((r * r).sum(1, keepdim=True) - s2 * jr**2 / (f2 + s2 * jj)) / f2
    valid = (depth > 0) & (z > MIN_DEPTH)
    return torch.where(valid, chi2, torch.zeros_like(chi2))[:, 0]


def chi2_threshold(p: float = 0.99) -> float:
    """Quantile p of the chi-square distribution with 2 degrees of freedom: -2 ln(1 - p), exact (its CDF is
    1 - exp(-x / 2)). chi2_threshold(0.99) = 9.2103."""
    return -2.0 * math.log(1.0 - p)


def moving_from_residual(residual: Tensor, threshold_px: float) -> Tensor:
    """B x H x W bool: pixels whose residual flow (B x 2 x H x W) is longer than `threshold_px` pixels."""
    return _length(residual) > threshold_px
