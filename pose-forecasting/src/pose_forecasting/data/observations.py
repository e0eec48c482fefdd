"""2D inputs for estimation: the observed 3D joints seen by one of the four Human3.6M-like cameras, as
a 2D detector would report them (jitter, outliers, missed joints), MotionBERT-normalised."""

from __future__ import annotations

import torch
from torch import Tensor

from pose_forecasting.data.cameras import H36M_LIKE_CAMERAS, detector_noise, normalise, project


def observe_2d(history: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """``history`` ``(T, J, 3)`` world metres -> ``keypoints_2d`` ``(T, J, 2)``, ``confidence`` ``(T, J)`` and
    ``camera_R`` ``(3, 3)`` (world -> camera rotation: root-relative camera-frame targets are ``X @ R^T``).

    The camera is drawn uniformly from :data:`cameras.H36M_LIKE_CAMERAS`; ``generator`` makes it and the
    noise reproducible (evaluation), ``None`` draws fresh ones (training).
    """
    cam = H36M_LIKE_CAMERAS[int(torch.randint(len(H36M_LIKE_CAMERAS), (1,), generator=generator))]
    pixels, confidence = detector_noise(project(history, cam), generator)
    keypoints = normalise(pixels, cam) * (confidence > 0)[..., None]  # a missed joint stays at 0
    return {"keypoints_2d": keypoints, "confidence": confidence,
            "camera_R": torch.tensor(cam.R, dtype=history.dtype)}
