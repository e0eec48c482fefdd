"""KITTI odometry (Geiger et al., "Are we ready for autonomous driving?", CVPR 2012): long drives with
ground-truth camera poses (sequences 00-10) and no flow, depth or motion masks, for ego-motion evaluation.

The poses are those of camera 0 (left grey); the images used here are ``image_2`` (left colour), whose optical
centre sits beside camera 0's in the rectified frame. P2 = K [I | t] with t = K^-1 P2[:, 3] (t_x =
P2[0, 3] / P2[0, 0] when t_z = 0): X_cam2 = X_cam0 + t, so camera 2's pose is camera 0's composed with
``[I | -t]``. Without that conversion a turning car would show a spurious lever-arm translation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ego_motion_flow.data.io import PathLike, read_kitti_odometry_calib, read_kitti_poses, read_rgb
from ego_motion_flow.data.sample import make_sample
from shared_utils.datasets import DatasetFormatError, folder_listing

LAYOUT = "KITTI odometry layout <root>/sequences/XX/{image_2/NNNNNN.png, calib.txt} and <root>/poses/XX.txt"


def camera2_to_camera0(P2: np.ndarray) -> np.ndarray:
    """4 x 4 transform taking camera-2 coordinates to camera-0 coordinates (a pure translation -t,
    t = K^-1 P2[:, 3])."""
    transform = np.eye(4)
    transform[:3, 3] = -np.linalg.solve(P2[:, :3], P2[:, 3])
    return transform


class KittiOdometry(Dataset):
    """Consecutive ``image_2`` pairs of the odometry ``sequences`` (e.g. ``["09", "10"]``).

    K = P2[:, :3] from ``sequences/XX/calib.txt``; T_21 from ``poses/XX.txt`` converted to camera 2 (module
    docstring); ``has_pose`` is False for sequences without a poses file (11-21). No flow, depth or moving
    ground truth: those masks are all False.
    """

    def __init__(self, root: PathLike, sequences: Sequence[str]) -> None:
        root = Path(root)
        if not sequences:
            raise ValueError("KittiOdometry needs at least one sequence (e.g. ['09', '10']), got none")
        self.sequences: list[tuple[str, list[Path], np.ndarray, np.ndarray | None]] = []
        self.pairs: list[tuple[int, int]] = []
        for sequence in sequences:
            folder = root / "sequences" / str(sequence)
            images = sorted((folder / "image_2").glob("*.png"))
            if len(images) < 2:
                listing = folder_listing(folder / "image_2" if (folder / "image_2").is_dir() else root / "sequences")
                raise DatasetFormatError(f"{folder / 'image_2'}: expected at least two frames (*.png) of sequence "
                                         f"{sequence} in the {LAYOUT}, found {len(images)}; {listing}")
            P2 = read_kitti_odometry_calib(folder / "calib.txt")["P2"]
            poses_path = root / "poses" / f"{sequence}.txt"
            camera_to_world = None
            if poses_path.is_file():
                poses = read_kitti_poses(poses_path)
                if len(poses) != len(images):
                    raise DatasetFormatError(f"{poses_path}: expected one pose per frame of {folder / 'image_2'} "
                                             f"({len(images)}), found {len(poses)}")
                camera_to_world = poses @ camera2_to_camera0(P2)
            self.pairs += [(len(self.sequences), i) for i in range(len(images) - 1)]
            self.sequences.append((str(sequence), images, P2[:, :3], camera_to_world))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        sequence_index, i = self.pairs[index]
        sequence, images, K, camera_to_world = self.sequences[sequence_index]
        T_21 = None if camera_to_world is None else np.linalg.inv(camera_to_world[i + 1]) @ camera_to_world[i]
        return make_sample(read_rgb(images[i]), read_rgb(images[i + 1]), K, sequence=sequence, frame=i,
                           name=f"kitti_odometry/{sequence}/{images[i].stem}", T_21=T_21)
