"""MPI-Sintel (Butler et al., "A naturalistic open source movie for optical flow evaluation", ECCV 2012).

Large, non-rigid motion and strong camera motion; the flow set (MPI-Sintel-complete) and the depth/camera set
(MPI-Sintel-depth-training) together give flow, depth, K and camera poses for the ``training`` scenes.

Layout, under ``<root>/<split>/``::

    <pass>/<scene>/frame_0001.png         final or clean pass (required)
    flow/<scene>/frame_0001.flo           flow frame_0001 -> frame_0002 (required)
    invalid/<scene>/frame_0001.png        white = no valid flow (optional)
    camdata_left/<scene>/frame_0001.cam   M (K) and N (world-to-camera) (required: K)
    depth/<scene>/frame_0001.dpt          z-depth (optional)

Sintel has no motion masks: ``moving`` is derived where depth and both cameras exist as
|flow - rigid flow| > 1 px (characters and props move; the camera-induced part is exact), known where both
the flow and the rigid flow are valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ego_motion_flow.data.io import PathLike, read_cam, read_dpt, read_flo, read_png_indices, read_rgb
from ego_motion_flow.data.sample import make_sample
from shared_utils.datasets import DatasetFormatError, folder_listing

LAYOUT = ("MPI-Sintel layout <root>/<split>/{<pass>/<scene>/frame_NNNN.png, flow/<scene>/frame_NNNN.flo, "
          "camdata_left/<scene>/frame_NNNN.cam (from MPI-Sintel-depth-training)} (invalid/, depth/ optional)")
MOVING_THRESHOLD_PX = 1.0


def _world_to_camera(N: np.ndarray) -> np.ndarray:
    return np.vstack([N, [0.0, 0.0, 0.0, 1.0]])


class Sintel(Dataset):
    """Consecutive frame pairs of ``scenes`` (all scene folders of the pass when None) of ``pass_name``.

    T_21 = E_2 E_1^-1 from the ``.cam`` world-to-camera matrices N; K = M of frame 1.
    """

    def __init__(self, root: PathLike, split: str = "training", pass_name: str = "final",
                 scenes: Sequence[str] | None = None) -> None:
        self.base = Path(root) / split
        self.pass_name = pass_name
        pass_dir = self.base / pass_name
        if scenes is None:
            scenes = sorted(p.name for p in pass_dir.iterdir() if p.is_dir()) if pass_dir.is_dir() else []
            if not scenes:
                raise DatasetFormatError(f"no scene folders in {pass_dir}: expected the {LAYOUT}; "
                                         f"{folder_listing(self.base if self.base.is_dir() else Path(root))}")
        elif not scenes:
            raise ValueError("Sintel: scenes is empty; give None for every scene of the pass")
        self.pairs: list[tuple[str, str, str]] = []  # scene, stem of frame 1, stem of frame 2
        for scene in scenes:
            frames = sorted((pass_dir / scene).glob("frame_*.png"))
            if len(frames) < 2:
                raise DatasetFormatError(f"{pass_dir / scene}: expected at least two frame_NNNN.png in the {LAYOUT}, "
                                         f"found {len(frames)}; {folder_listing(pass_dir)}")
            for first, second in zip(frames[:-1], frames[1:]):
                for role, path in (("flow", self._path("flow", scene, first.stem, ".flo")),
                                   ("camera of frame 1", self._path("camdata_left", scene, first.stem, ".cam")),
                                   ("camera of frame 2", self._path("camdata_left", scene, second.stem, ".cam"))):
                    if not path.is_file():
                        raise DatasetFormatError(f"{path} not found: expected the {role} of {first} in the {LAYOUT}; "
                                                 f"{folder_listing(path.parent)}")
                self.pairs.append((scene, first.stem, second.stem))

    def _path(self, folder: str, scene: str, stem: str, suffix: str) -> Path:
        return self.base / folder / scene / f"{stem}{suffix}"

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        scene, first, second = self.pairs[index]
        flow = read_flo(self._path("flow", scene, first, ".flo"))
        flow_valid = np.isfinite(flow).all(axis=-1)
        invalid_path = self._path("invalid", scene, first, ".png")
        if invalid_path.is_file():
            flow_valid &= read_png_indices(invalid_path, "Sintel invalid mask (8-bit PNG, white = invalid)") == 0
        flow = np.where(flow_valid[..., None], flow, 0.0)
        K, N1 = read_cam(self._path("camdata_left", scene, first, ".cam"))
        _, N2 = read_cam(self._path("camdata_left", scene, second, ".cam"))
        T_21 = _world_to_camera(N2) @ np.linalg.inv(_world_to_camera(N1))
        depth_path = self._path("depth", scene, first, ".dpt")
        depth = read_dpt(depth_path) if depth_path.parent.is_dir() else None
        sample = make_sample(read_rgb(self.base / self.pass_name / scene / f"{first}.png"),
                             read_rgb(self.base / self.pass_name / scene / f"{second}.png"), K, sequence=scene,
                             frame=int(first.removeprefix("frame_")), name=f"sintel/{self.pass_name}/{scene}/{first}",
                             flow=flow, flow_valid=flow_valid, depth=depth, T_21=T_21)
        known = sample["flow_valid"] & sample["rigid_valid"]
        sample["moving"] = known & ((sample["flow"] - sample["rigid_flow"]).norm(dim=0) > MOVING_THRESHOLD_PX)
        sample["moving_valid"] = known
        return sample
