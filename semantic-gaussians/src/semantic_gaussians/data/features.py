"""Precomputed 2D feature maps that the user brings (CLIP via SAM masks, DINO, ...), the distillation targets of
the semantic features rendered by the Gaussians.

Two layouts, each keyed by the image's file stem:

- LangSplat's (Qin et al., CVPR 2024, ``preprocess.py``): ``<stem>_f.npy`` (M, D) one feature per SAM mask, the
  masks of all levels concatenated, and ``<stem>_s.npy`` (L, H, W) segmentation maps (L = 4 levels: default, s,
  m, l), each pixel holding the global row of its mask in ``_f.npy`` or -1 where no mask covers it. LangSplat
  saves the maps as float32 holding integers; its loader casts them with ``.long()``.
- One dense map per image, ``<stem>.npy`` (h, w, D) channels-last, at the image size or an integer fraction of it
  (e.g. a ViT's patch grid upsampled by the extractor to 1/k of the image).

Both ``load`` a map for an image of ``height`` x ``width`` pixels, the size the dataset returns after any
downscale, as (D, height, width) float32 plus a validity mask: only valid pixels enter the feature loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared_utils.datasets import DatasetFormatError, folder_listing

PathLike = str | Path


def _check_folder(folder: Path, expected: str) -> None:
    if not folder.is_dir():
        raise DatasetFormatError(f"{folder}: feature folder not found: expected {expected}; {folder_listing(folder)}")


def _load_npy(path: Path, expected: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetFormatError(f"{path} not found: expected {expected}; {folder_listing(path.parent)}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DatasetFormatError(f"{path}: expected {expected}, found a file NumPy cannot load ({error})") from None


def _integer_factor(found: tuple[int, int], image: tuple[int, int]) -> int | None:
    """k such that ``found`` = (k h, k w) for ``image`` = (h, w), or None. Used both ways: seg maps are finer than
    (or as fine as) the image, dense features coarser."""
    k = found[0] // image[0]
    return k if k >= 1 and found == (k * image[0], k * image[1]) else None


class LangSplatFeatures:
    """LangSplat's layout: <folder>/<stem>_f.npy (M, D) features of all SAM masks of the image (all levels
    concatenated) and <stem>_s.npy (L, H, W) integer segmentation maps (LangSplat: 4 levels default/s/m/l), each
    pixel holding an index into the rows of _f.npy (global indices, as LangSplat's own loader reads them) or -1 for
    no mask.

    ``level`` picks the segmentation map (LangSplat trains one model per level 1, 2, 3 = s, m, l). A map whose size
    is k times the image's (the image was downscaled by k after LangSplat's preprocessing) is subsampled at the
    centre pixel of each k x k block: nearest neighbour, since mask indices cannot be interpolated."""

    def __init__(self, folder: PathLike, level: int = 1) -> None:
        if level < 0:
            raise ValueError(f"level {level}: expected an index >= 0 into the segmentation maps")
        self.folder, self.level = Path(folder), level
        _check_folder(self.folder, "LangSplat's <stem>_f.npy and <stem>_s.npy files")

    def load(self, stem: str, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (D, height, width) float32, 0 where no mask; valid (height, width) bool) of image ``stem``."""
        features_path, seg_path = self.folder / f"{stem}_f.npy", self.folder / f"{stem}_s.npy"
        features = _load_npy(features_path, "LangSplat mask features (M, D)")
        if features.ndim != 2:
            raise DatasetFormatError(f"{features_path}: shape {features.shape}: expected (M, D) mask features")
        seg = self._segmentation(seg_path, height, width)
        if seg.max() >= len(features):
            raise DatasetFormatError(f"{seg_path}: level {self.level} holds mask index {seg.max()}: expected -1 or "
                                     f"an index below M = {len(features)}, the rows of {features_path} (shape "
                                     f"{features.shape})")
        valid = torch.from_numpy(seg >= 0)
        gathered = torch.from_numpy(features).float()[torch.from_numpy(np.maximum(seg, 0))]  # (H, W, D)
        return (gathered * valid[..., None]).permute(2, 0, 1).contiguous(), valid

    def _segmentation(self, path: Path, height: int, width: int) -> np.ndarray:
        """The level's map as (height, width) int64 indices >= -1, checked."""
        expected = f"(L, {height}, {width}) with L > level {self.level}, or (L, k*{height}, k*{width})"
        seg = _load_npy(path, f"LangSplat segmentation maps {expected}")
        if seg.ndim != 3 or seg.shape[0] <= self.level:
            raise DatasetFormatError(f"{path}: shape {seg.shape}: expected {expected}")
        k = _integer_factor(seg.shape[1:], (height, width))
        if k is None:
            raise DatasetFormatError(f"{path}: shape {seg.shape}: expected {expected} for an image of {height} x "
                                     f"{width} pixels (rows x columns)")
        seg = seg[self.level, k // 2::k, k // 2::k]
        if seg.dtype.kind not in "iuf" or not np.array_equal(seg, np.round(seg)) or seg.min() < -1:
            raise DatasetFormatError(f"{path}: level {self.level} ({seg.dtype}, values {seg.min()} .. {seg.max()}): "
                                     "expected integer mask indices >= -1")
        return seg.astype(np.int64)


class NpyFeatures:
    """<folder>/<stem>.npy: one feature map (h, w, D) channels-last per image (float16 or float32), at the image's
    size or at an integer fraction of it (h = H/k, w = W/k for one integer k >= 1; upsampled bilinearly to H x W).

    Bilinear with ``align_corners=False`` treats feature cells as covering k x k pixels with centres at +0.5, the
    pixel convention of the scenes."""

    def __init__(self, folder: PathLike) -> None:
        self.folder = Path(folder)
        _check_folder(self.folder, "one <stem>.npy (h, w, D) feature map per image")

    def load(self, stem: str, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (D, height, width) float32, valid (height, width) all True) of image ``stem``."""
        path = self.folder / f"{stem}.npy"
        expected = f"({height}, {width}, D) or ({height}/k, {width}/k, D) for an integer k, float16 or float32"
        features = _load_npy(path, f"a feature map {expected}")
        k = None if features.ndim != 3 or min(features.shape[:2]) < 1 else \
            _integer_factor((height, width), features.shape[:2])
        if k is None or features.dtype not in (np.float16, np.float32):
            raise DatasetFormatError(f"{path}: shape {features.shape} {features.dtype}: expected {expected}")
        feature_map = torch.from_numpy(features).float().permute(2, 0, 1)
        if k > 1:
            feature_map = F.interpolate(feature_map[None], size=(height, width), mode="bilinear",
                                        align_corners=False)[0]
        return feature_map.contiguous(), torch.ones(height, width, dtype=torch.bool)
