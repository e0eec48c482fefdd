"""Virtual KITTI 2 (Cabon, Murray & Humenberger, arXiv:2001.10773), the official 2.0.3 layout.

Synthetic clones of KITTI tracking drives with exact flow, depth, camera poses, instance masks and a
per-object ``isMoving`` flag: the one driving dataset where every ground truth this project needs is exact,
and the format the synthetic generator writes.

Layout, under ``<root>/<scene>/<variation>/`` (e.g. ``Scene01/clone``)::

    frames/rgb/Camera_0/rgb_00000.jpg                       required
    frames/forwardFlow/Camera_0/flow_00000.png              required: one sample per file (frame t -> t+1)
    frames/depth/Camera_0/depth_00000.png                   optional (vkitti_2.0.3_depth.tar)
    frames/instanceSegmentation/Camera_0/instancegt_00000.png  optional (..._instanceSegmentation.tar)
    intrinsic.txt, extrinsic.txt, bbox.txt                  optional (vkitti_2.0.3_textgt.tar)

A missing optional part leaves its masks False (no depth: no rigid flow; no extrinsics: ``has_pose`` False;
no instances or bbox.txt: ``moving_valid`` False). Without ``intrinsic.txt`` K is the dataset's constant
K (fx = fy = 725.0087, cx = 620.5, cy = 187), which only holds for its 1242 x 375 images.

Camera motion: ``extrinsic.txt`` rows are world-to-camera E (X_cam = E X_world), one row per frame and
camera, so T_21 = E_{t+1} E_t^-1 (``tests/test_loaders.py`` reprojects a known point to pin this down).
Moving objects: instance pixels (index = trackID + 1) whose track has ``isMoving`` True in ``bbox.txt`` for
frame t, i.e. the object moves between t and t+1; the background is static scenery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ego_motion_flow.data.io import (
    PathLike,
    read_rgb,
    read_vkitti2_depth,
    read_vkitti2_extrinsics,
    read_vkitti2_flow,
    read_vkitti2_instances,
    read_vkitti2_intrinsics,
    read_vkitti2_moving,
)
from ego_motion_flow.data.sample import make_sample
from shared_utils.datasets import DatasetFormatError, folder_listing

LAYOUT = ("Virtual KITTI 2.0.3 layout <root>/<scene>/<variation>/frames/{rgb/<camera>/rgb_NNNNN.jpg, "
          "forwardFlow/<camera>/flow_NNNNN.png} (depth, instanceSegmentation, intrinsic.txt, extrinsic.txt, "
          "bbox.txt optional)")
DATASET_K = np.array([[725.0087, 0.0, 620.5], [0.0, 725.0087, 187.0], [0.0, 0.0, 1.0]])
DATASET_SIZE = (375, 1242)  # height, width of every Virtual KITTI 2 image


@dataclass
class _Sequence:
    """One scene/variation as seen by one camera, with its parsed text files (None where absent)."""

    name: str
    folder: Path
    intrinsics: dict[tuple[int, int], np.ndarray] | None
    extrinsics: dict[tuple[int, int], np.ndarray] | None
    moving: dict[tuple[int, int], set[int]] | None
    has_depth: bool
    has_instances: bool


def _nearest_listing(path: Path, root: Path) -> str:
    """What the closest existing folder above ``path`` (up to ``root``) holds: shows where the layout breaks."""
    while path != root and not path.is_dir():
        path = path.parent
    return folder_listing(path)


class VirtualKitti2(Dataset):
    """Every forward-flow pair of ``scenes`` x ``variations`` seen by ``camera`` (module docstring)."""

    def __init__(self, root: PathLike, scenes: Sequence[str], variations: Sequence[str],
                 camera: str = "Camera_0") -> None:
        self.root, self.camera = Path(root), camera
        prefix, _, number = camera.partition("_")
        if prefix != "Camera" or not number.isdigit():
            raise ValueError(f"camera must be 'Camera_<n>' (Virtual KITTI 2 has Camera_0 and Camera_1), got {camera!r}")
        self.camera_id = int(number)
        if not scenes or not variations:
            raise ValueError(f"VirtualKitti2 needs at least one scene and one variation, got scenes={list(scenes)} "
                             f"and variations={list(variations)}")
        self.sequences: list[_Sequence] = []
        self.pairs: list[tuple[int, int]] = []
        for scene in scenes:
            for variation in variations:
                self._index(scene, variation)

    def _frame_path(self, sequence: _Sequence, modality: str, stem: str, frame: int, suffix: str) -> Path:
        return sequence.folder / "frames" / modality / self.camera / f"{stem}_{frame:05d}{suffix}"

    def _index(self, scene: str, variation: str) -> None:
        folder = self.root / scene / variation
        flow_dir = folder / "frames" / "forwardFlow" / self.camera
        flows = sorted(flow_dir.glob("flow_*.png"))
        if not flows:
            raise DatasetFormatError(f"no flow_*.png in {flow_dir}: expected the {LAYOUT}; "
                                     f"{_nearest_listing(flow_dir, self.root)}")

        def table(name: str, reader):
            return reader(folder / name) if (folder / name).is_file() else None

        frames_dir = folder / "frames"
        sequence = _Sequence(f"{scene}/{variation}", folder, table("intrinsic.txt", read_vkitti2_intrinsics),
                             table("extrinsic.txt", read_vkitti2_extrinsics), table("bbox.txt", read_vkitti2_moving),
                             (frames_dir / "depth" / self.camera).is_dir(),
                             (frames_dir / "instanceSegmentation" / self.camera).is_dir())
        for flow in flows:
            frame = int(flow.stem.removeprefix("flow_"))
            required = {"first frame": self._frame_path(sequence, "rgb", "rgb", frame, ".jpg"),
                        "second frame": self._frame_path(sequence, "rgb", "rgb", frame + 1, ".jpg")}
            if sequence.has_depth:
                required["depth"] = self._frame_path(sequence, "depth", "depth", frame, ".png")
            if sequence.has_instances:
                required["instances"] = self._frame_path(sequence, "instanceSegmentation", "instancegt", frame, ".png")
            for role, path in required.items():
                if not path.is_file():
                    raise DatasetFormatError(f"{path} not found: expected the {role} of the pair of {flow} in the "
                                             f"{LAYOUT}; {_nearest_listing(path.parent, self.root)}")
            self.pairs.append((len(self.sequences), frame))
        self.sequences.append(sequence)

    def _row(self, table: dict[tuple[int, int], np.ndarray], sequence: _Sequence, name: str, frame: int) -> np.ndarray:
        key = (frame, self.camera_id)
        if key not in table:
            raise DatasetFormatError(f"{sequence.folder / name}: no row for frame {frame}, camera {self.camera_id} "
                                     f"(expected one row per frame and camera)")
        return table[key]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        sequence_index, frame = self.pairs[index]
        sequence = self.sequences[sequence_index]
        image1 = read_rgb(self._frame_path(sequence, "rgb", "rgb", frame, ".jpg"))
        image2 = read_rgb(self._frame_path(sequence, "rgb", "rgb", frame + 1, ".jpg"))
        flow, flow_valid = read_vkitti2_flow(self._frame_path(sequence, "forwardFlow", "flow", frame, ".png"))
        if sequence.intrinsics is not None:
            K = self._row(sequence.intrinsics, sequence, "intrinsic.txt", frame)
        elif image1.shape[:2] == DATASET_SIZE:
            K = DATASET_K
        else:
            raise DatasetFormatError(
                f"{sequence.folder / 'intrinsic.txt'} not found and the images are {image1.shape[0]} x "
                f"{image1.shape[1]}: the dataset's constant K only holds for {DATASET_SIZE[0]} x {DATASET_SIZE[1]}; "
                f"{folder_listing(sequence.folder)}")
        T_21 = None
        if sequence.extrinsics is not None:
            E1 = self._row(sequence.extrinsics, sequence, "extrinsic.txt", frame)
            E2 = self._row(sequence.extrinsics, sequence, "extrinsic.txt", frame + 1)
            T_21 = E2 @ np.linalg.inv(E1)
        depth = (read_vkitti2_depth(self._frame_path(sequence, "depth", "depth", frame, ".png"))
                 if sequence.has_depth else None)
        moving = None
        if sequence.has_instances and sequence.moving is not None:
            instances = read_vkitti2_instances(
                self._frame_path(sequence, "instanceSegmentation", "instancegt", frame, ".png"))
            moving_tracks = sorted(sequence.moving.get((frame, self.camera_id), set()))
            moving = (instances > 0) & np.isin(instances - 1, moving_tracks)
        return make_sample(image1, image2, K, sequence=sequence.name, frame=frame,
                           name=f"vkitti2/{sequence.name}/{self.camera}/{frame:05d}", flow=flow,
                           flow_valid=flow_valid, depth=depth, T_21=T_21, moving=moving)
