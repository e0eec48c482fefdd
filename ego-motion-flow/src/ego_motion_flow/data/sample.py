"""The sample dict every dataset returns, and the ground-truth rigid (ego) flow that fills it.

One structure for all datasets (synthetic, KITTI 2015, KITTI odometry, Virtual KITTI 2, Sintel): a modality a
dataset lacks is present as zeros with an all-False validity mask, never a missing key, so every method and
metric runs on every dataset and ``default_collate`` batches any of them.

Keys (torch tensors unless noted): ``image1``, ``image2`` 3 x H x W float32 RGB in [0, 1]; ``flow`` 2 x H x W
float32 forward flow, ``flow_valid`` H x W bool; ``depth`` H x W float32 metres of frame 1 (0 = unknown);
``K`` 3 x 3 float32; ``T_21`` 4 x 4 float32 (X_cam2 = T_21 X_cam1) and ``has_pose`` scalar bool; ``moving``,
``moving_valid`` H x W bool; ``rigid_flow`` 2 x H x W float32 and ``rigid_valid`` H x W bool; ``sequence``
str, ``frame`` int, ``name`` str.
"""

from __future__ import annotations

import numpy as np
import torch

from shared_utils.datasets import DatasetFormatError

MIN_DEPTH_AFTER_MOTION = 1e-3  # a point this close to (or behind) camera 2 does not project


def rigid_flow_np(depth: np.ndarray, K: np.ndarray, T_21: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flow each pixel of frame 1 would have if its 3D point were static (the ego-motion flow).

    Pixel p = (u, v) is backprojected with its depth, X1 = depth * K^-1 [u, v, 1]; moved into camera 2,
    X2 = R X1 + t with T_21 = [R t; 0 1]; and projected, p2 = K X2 / z2. Returns (flow H x W x 2 float32 =
    p2 - p, zero where invalid; valid H x W bool = depth > 0 (finite) and z2 > 1e-3).
    """
    height, width = depth.shape
    K, T_21 = np.asarray(K, np.float64), np.asarray(T_21, np.float64)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)
    d = np.where(np.isfinite(depth), depth, 0.0).astype(np.float64)
    X1 = pixels @ np.linalg.inv(K).T * d[..., None]
    X2 = X1 @ T_21[:3, :3].T + T_21[:3, 3]
    z2 = X2[..., 2]
    valid = (d > 0) & (z2 > MIN_DEPTH_AFTER_MOTION)
    projected = X2 @ K.T
    p2 = projected[..., :2] / np.where(valid, z2, 1.0)[..., None]
    flow = np.where(valid[..., None], p2 - pixels[..., :2], 0.0)
    return flow.astype(np.float32), valid


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 RGB, uint8 (0..255) or float in [0, 1] -> 3 x H x W float32 in [0, 1]."""
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / scale)


def _mask(mask: np.ndarray | None, shape: tuple[int, int], default: bool) -> torch.Tensor:
    if mask is None:
        return torch.full(shape, default, dtype=torch.bool)
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))


def make_sample(image1: np.ndarray, image2: np.ndarray, K: np.ndarray, *, sequence: str, frame: int, name: str,
                flow: np.ndarray | None = None, flow_valid: np.ndarray | None = None,
                depth: np.ndarray | None = None, T_21: np.ndarray | None = None,
                moving: np.ndarray | None = None, moving_valid: np.ndarray | None = None) -> dict:
    """Build the sample dict from numpy arrays: images H x W x 3 RGB (uint8 or float in [0, 1]), flow
    H x W x 2, masks and depth H x W, K 3 x 3, T_21 4 x 4.

    Absent inputs are filled: no flow -> zeros and ``flow_valid`` all False (a given flow without a mask is
    valid everywhere); no depth -> zeros (non-finite depth also becomes 0); no T_21 -> identity with
    ``has_pose`` False; no moving -> all False with ``moving_valid`` all False (a given mask without validity
    is known everywhere). ``rigid_flow`` is :func:`rigid_flow_np` where depth and T_21 are both given, else
    zeros with ``rigid_valid`` all False.
    Arrays of another size than ``image1`` raise DatasetFormatError naming the sample.
    """
    height, width = image1.shape[:2]
    shape = (height, width)
    for key, array in (("image2", image2), ("flow", flow), ("flow_valid", flow_valid), ("depth", depth),
                       ("moving", moving), ("moving_valid", moving_valid)):
        if array is not None and array.shape[:2] != shape:
            raise DatasetFormatError(f"sample {name}: {key} is {array.shape[0]} x {array.shape[1]}, image1 is "
                             f"{height} x {width}")
    if depth is not None and T_21 is not None:
        rigid, rigid_valid = rigid_flow_np(depth, K, T_21)
    else:
        rigid, rigid_valid = np.zeros((height, width, 2), np.float32), np.zeros(shape, bool)
    zeros_2 = np.zeros((height, width, 2), np.float32)
    return {
        "image1": _image_tensor(image1),
        "image2": _image_tensor(image2),
        "flow": torch.from_numpy(np.ascontiguousarray((zeros_2 if flow is None else flow).transpose(2, 0, 1),
                                                      dtype=np.float32)),
        "flow_valid": _mask(flow_valid, shape, flow is not None),
        "depth": torch.from_numpy(np.zeros(shape, np.float32) if depth is None
                                  else np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)),
        "K": torch.as_tensor(np.asarray(K, np.float32)),
        "T_21": torch.as_tensor(np.eye(4, dtype=np.float32) if T_21 is None else np.asarray(T_21, np.float32)),
        "has_pose": torch.tensor(T_21 is not None),
        "moving": _mask(moving, shape, False),
        "moving_valid": _mask(moving_valid, shape, moving is not None),
        "rigid_flow": torch.from_numpy(np.ascontiguousarray(rigid.transpose(2, 0, 1))),
        "rigid_valid": torch.from_numpy(rigid_valid),
        "sequence": sequence,
        "frame": int(frame),
        "name": name,
    }
