"""Pinhole cameras placed like Human3.6M's four, and a 2D-detector stand-in, for 2D-input experiments.

Human3.6M (Ionescu et al., TPAMI 2014) films the capture area with four calibrated cameras at its corners,
about 5 m from the subject and 1.2-1.8 m high, images of 1000 x 1002 or 1000 x 1000 pixels, focal
lengths of about 1145-1150 px. The expmap release has no cameras, and the synthetic data none either, so
:data:`H36M_LIKE_CAMERAS` places four pinhole cameras like that around the forward-kinematics frame
(y up, metres, hips at the origin once the loader has zeroed the global translation), all looking at the
pelvis; their intrinsics are the four published Human3.6M ones, rounded (lens distortion left out), in
1000 x 1000 images. A 2D-to-3D lifter such as MotionBERT's DSTformer (Zhu et al., ICCV 2023) takes the
pixels normalised by :func:`normalise` and a confidence per joint, which :func:`detector_noise` imitates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Height of the hips above the floor for a standing adult (the H36M rest skeleton: 0.90 m to the ankles).
PELVIS_HEIGHT = 0.9


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: ``X_cam = R X_world + t`` (metres, z forward, x right, y down in the image),
    pixels ``u = f * X_cam[:2] / X_cam[2] + c``. Arrays are made read-only: the camera is a constant."""

    R: np.ndarray  # (3, 3) world -> camera rotation
    t: np.ndarray  # (3,) metres
    f: np.ndarray  # (2,) focal lengths, px
    c: np.ndarray  # (2,) principal point, px
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("R", "t", "f", "c"):
            value = np.array(getattr(self, name), dtype=np.float64)
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    @property
    def centre(self) -> np.ndarray:
        """Optical centre in world coordinates, ``-R^T t``."""
        return -self.R.T @ self.t


def look_at(centre: tuple[float, float, float], target: tuple[float, float, float], f: tuple[float, float],
            c: tuple[float, float], width: int = 1000, height: int = 1000) -> Camera:
    """A camera at ``centre`` whose optical axis goes through ``target``, image rows along world -y.

    The rows of ``R`` are the camera axes in world coordinates: right = forward x up, down = forward x right.
    """
    centre_ = np.asarray(centre, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - centre_
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    R = np.stack([right, np.cross(forward, right), forward])
    return Camera(R=R, t=-R @ centre_, f=f, c=c, width=width, height=height)


def _corner(azimuth_deg: float, distance: float, height_above_floor: float) -> tuple[float, float, float]:
    a = np.deg2rad(azimuth_deg)
    return distance * np.sin(a), height_above_floor - PELVIS_HEIGHT, distance * np.cos(a)


# The four corners, 4.6-5.4 m away and 1.35-1.75 m high, with Human3.6M's intrinsics (cameras 54138969,
# 55011271, 58860488, 60457274, rounded to 0.1 px).
H36M_LIKE_CAMERAS = (
    look_at(_corner(45, 4.7, 1.55), (0, 0, 0), f=(1145.0, 1143.8), c=(512.5, 515.5)),
    look_at(_corner(135, 5.3, 1.45), (0, 0, 0), f=(1149.7, 1147.6), c=(508.8, 508.1)),
    look_at(_corner(225, 4.9, 1.75), (0, 0, 0), f=(1149.1, 1148.8), c=(519.8, 501.4)),
    look_at(_corner(315, 5.4, 1.35), (0, 0, 0), f=(1145.5, 1144.8), c=(515.0, 501.9)),
)


def _as(array: np.ndarray, like: Tensor) -> Tensor:
    return torch.tensor(array, dtype=like.dtype, device=like.device)


def to_camera(points: Tensor, cam: Camera) -> Tensor:
    """World ``(..., 3)`` -> camera coordinates ``(..., 3)`` (metres, z = depth along the optical axis)."""
    return points @ _as(cam.R, points).T + _as(cam.t, points)


def to_world(points: Tensor, cam: Camera) -> Tensor:
    """Camera ``(..., 3)`` -> world coordinates: the inverse of :func:`to_camera`, ``R^T (X - t)``."""
    return (points - _as(cam.t, points)) @ _as(cam.R, points)


def project(points: Tensor, cam: Camera) -> Tensor:
    """World ``(..., 3)`` -> pixels ``(..., 2)`` (x right, y down), pinhole without distortion."""
    x = to_camera(points, cam)
    return x[..., :2] / x[..., 2:] * _as(cam.f, points) + _as(cam.c, points)


def normalise(pixels: Tensor, cam: Camera) -> Tensor:
    """MotionBERT's ``normalize_screen_coordinates``: ``x / w * 2 - 1``, ``y / w * 2 - h / w``, so that x
    spans [-1, 1] and the aspect ratio is kept."""
    offset = torch.tensor([1.0, cam.height / cam.width], dtype=pixels.dtype, device=pixels.device)
    return pixels / cam.width * 2 - offset


def detector_noise(pixels: Tensor, generator: torch.Generator | None = None, sigma_px: float = 3.0,
                   dropout: float = 0.02, outlier_prob: float = 0.03) -> tuple[Tensor, Tensor]:
    """Corrupts projected joints ``(..., 2)`` like a 2D pose detector; returns pixels and confidence ``(...)``.

    Per joint, independently: with probability ``dropout`` the joint is not detected (pixels 0, confidence 0,
    the convention of OpenPose-style outputs); with probability ``outlier_prob`` it lands 10-40 ``sigma_px``
    away in a random direction (a wrong limb or a left/right swap) with a low confidence in [0.05, 0.3];
    otherwise Gaussian jitter of ``sigma_px`` per axis and a confidence ``exp(-|e|^2 / (8 sigma^2))`` that
    falls with the error ``e`` (about 0.8 for a typical error). Draws come from ``generator``.
    """
    shape = pixels.shape[:-1]
    device = generator.device if generator is not None else pixels.device

    def draw(fn, *size: int) -> Tensor:
        return fn((*shape, *size), generator=generator, device=device, dtype=pixels.dtype).to(pixels.device)

    category = draw(torch.rand)
    dropped = category < dropout
    outlier = ~dropped & (category < dropout + outlier_prob)
    error = draw(torch.randn, 2) * sigma_px
    angle = draw(torch.rand) * 2 * torch.pi
    distance = (10 + 30 * draw(torch.rand)) * sigma_px
    jump = torch.stack([torch.cos(angle), torch.sin(angle)], -1) * distance[..., None]
    error = torch.where(outlier[..., None], jump, error)
    confidence = torch.exp(-error.square().sum(-1) / (8 * sigma_px ** 2))
    confidence = torch.where(outlier, 0.05 + 0.25 * draw(torch.rand), confidence)
    confidence = confidence.masked_fill(dropped, 0.0)
    noisy = (pixels + error).masked_fill(dropped[..., None], 0.0)
    return noisy, confidence
