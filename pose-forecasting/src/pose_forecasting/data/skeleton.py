"""The Human3.6M 32-joint skeleton and its forward kinematics, as the forecasting literature uses it.

Constants and conventions are those of Martinez et al. (CVPR 2017, ``forward_kinematics.py``), which
HisRepItself (Mao et al., ECCV 2020), STS-GCN and siMLPe (Guo et al., WACV 2023) all copy:

- a frame of an expmap file is 99 numbers: the root translation (3), then 32 joints x an exponential
  map (axis * angle); the first joint's expmap is the global rotation;
- bone ``offsets`` in millimetres, in the parent's frame, and row-vector composition
  ``p_i = offset_i @ R_parent + p_parent`` with ``R_i = R_local_i @ R_parent``;
- 22 of the 32 joints move (``JOINTS_USED``); the others are the root, the hips' fixed children and
  six duplicates (``JOINTS_DUPLICATE``) that sit exactly on another joint (``JOINTS_EQUAL``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

NUM_JOINTS = 32

# Parent of each joint (-1: the root). Martinez et al.'s table, 1-based there, 0-based here.
PARENTS = np.array([0, 1, 2, 3, 4, 5, 1, 7, 8, 9, 10, 1, 12, 13, 14, 15, 13,
                    17, 18, 19, 20, 21, 20, 23, 13, 25, 26, 27, 28, 29, 28, 31]) - 1

# Bone offsets (mm) of the Human3.6M skeleton (subject-independent in the expmap release).
OFFSETS_MM = np.array([
    0.000000, 0.000000, 0.000000, -132.948591, 0.000000, 0.000000, 0.000000, -442.894612, 0.000000,
    0.000000, -454.206447, 0.000000, 0.000000, 0.000000, 162.767078, 0.000000, 0.000000, 74.999437,
    132.948826, 0.000000, 0.000000, 0.000000, -442.894413, 0.000000, 0.000000, -454.206590, 0.000000,
    0.000000, 0.000000, 162.767426, 0.000000, 0.000000, 74.999948, 0.000000, 0.100000, 0.000000,
    0.000000, 233.383263, 0.000000, 0.000000, 257.077681, 0.000000, 0.000000, 121.134938, 0.000000,
    0.000000, 115.002227, 0.000000, 0.000000, 257.077681, 0.000000, 0.000000, 151.034226, 0.000000,
    0.000000, 278.882773, 0.000000, 0.000000, 251.733451, 0.000000, 0.000000, 0.000000, 0.000000,
    0.000000, 0.000000, 99.999627, 0.000000, 100.000188, 0.000000, 0.000000, 0.000000, 0.000000,
    0.000000, 257.077681, 0.000000, 0.000000, 151.031437, 0.000000, 0.000000, 278.892924, 0.000000,
    0.000000, 251.728680, 0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 99.999888,
    0.000000, 137.499922, 0.000000, 0.000000, 0.000000, 0.000000,
]).reshape(NUM_JOINTS, 3)

JOINT_NAMES = (
    "Hips", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase", "RightToeSite",
    "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "LeftToeSite",
    "Spine", "Spine1", "Neck", "Head", "HeadSite",
    "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftHandThumb", "LeftHandThumbSite",
    "LeftWristEnd", "LeftWristEndSite",
    "RightShoulder", "RightArm", "RightForeArm", "RightHand", "RightHandThumb", "RightHandThumbSite",
    "RightWristEnd", "RightWristEndSite",
)

# The 22 joints every forecasting paper predicts (siMLPe's ``joint_used_xyz``).
JOINTS_USED = np.array([2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 17, 18, 19, 21, 22, 25, 26, 27, 29, 30])
# Joints that coincide with another one; evaluation copies them from JOINTS_EQUAL (siMLPe/HisRepItself).
JOINTS_DUPLICATE = np.array([16, 20, 23, 24, 28, 31])
JOINTS_EQUAL = np.array([13, 19, 22, 13, 27, 30])

# Bones between the 22 used joints (indices into JOINTS_USED), for drawing and for graph models:
# the parent of each used joint, walked up the tree to the nearest used ancestor (-1: none).
_used_index = {int(j): i for i, j in enumerate(JOINTS_USED)}


def _used_parent(j: int) -> int:
    p = int(PARENTS[j])
    while p >= 0 and p not in _used_index:
        p = int(PARENTS[p])
    return _used_index.get(p, -1)


PARENTS_USED = np.array([_used_parent(int(j)) for j in JOINTS_USED])
BONES_32 = [(int(PARENTS[j]), j) for j in range(1, NUM_JOINTS) if PARENTS[j] >= 0]
BONES_22 = [(int(p), i) for i, p in enumerate(PARENTS_USED) if p >= 0]


def expmap_to_rotmat(r: Tensor) -> Tensor:
    """Rodrigues' formula, ``(..., 3)`` axis-angle -> ``(..., 3, 3)``.

    ``R = I + sin(theta) K + (1 - cos(theta)) K^2`` with ``K`` the skew matrix of the unit axis,
    as siMLPe's ``expmap2rotmat_torch`` (the 1e-7 guard keeps a zero rotation at the identity).
    """
    theta = r.norm(dim=-1, keepdim=True)
    axis = r / (theta + 1e-7)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*r.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    return eye + s * K + (1 - c) * (K @ K)


def forward_kinematics(rotmats: Tensor, offsets: Tensor | np.ndarray = OFFSETS_MM,
                       parents: np.ndarray = PARENTS) -> Tensor:
    """Joint positions ``(N, J, 3)`` from local rotations ``(N, J, 3, 3)`` and bone offsets ``(J, 3)``.

    Martinez et al.'s ``fkl`` with its row-vector convention. ``offsets`` may also be ``(N, J, 3)``
    (per-frame skeletons, e.g. per-subject bone scaling). Vectorised over frames: one loop over the
    32 joints, whatever the sequence length.
    """
    offsets = torch.as_tensor(offsets, dtype=rotmats.dtype, device=rotmats.device)
    offsets = offsets.expand(rotmats.shape[0], *offsets.shape[-2:])
    num_joints = rotmats.shape[1]
    global_rot: list[Tensor] = [rotmats[:, 0]]
    positions: list[Tensor] = [offsets[:, 0]]
    for i in range(1, num_joints):
        p = int(parents[i])
        global_rot.append(rotmats[:, i] @ global_rot[p])
        positions.append((offsets[:, i, None, :] @ global_rot[p])[:, 0] + positions[p])
    return torch.stack(positions, dim=1)


def expmap_to_xyz(expmap: Tensor, offsets: Tensor | np.ndarray = OFFSETS_MM) -> Tensor:
    """``(N, 99)`` expmap frames -> ``(N, 32, 3)`` joints in mm, global translation and rotation zeroed.

    Exactly the preprocessing of siMLPe's ``H36MEval._preprocess``: the first two triplets (root
    translation, global rotation) are set to zero, the other 32 become rotation matrices.
    """
    frames = expmap.reshape(expmap.shape[0], NUM_JOINTS + 1, 3).clone()
    frames[:, :2] = 0
    return forward_kinematics(expmap_to_rotmat(frames[:, 1:]), offsets)
