"""The torch Dataset that decodes :class:`~fewshot_anomaly.data.formats.Sample` lists of any layout.

MVTec AD (Bergmann et al. CVPR 2019), MVTec LOCO AD (Bergmann et al. IJCV 2022) and VisA (Zou et al.
ECCV 2022) all reduce to an image plus zero or more mask files, so one reader serves the three: images
come out RGB in [0, 1] at ``image_size`` x ``image_size`` and masks binary at the same size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from fewshot_anomaly.data.formats import Sample
from shared_utils.datasets import DatasetFormatError

# (RGB uint8 image HxWx3, bool mask HxW, generator) -> (image, mask), at full resolution. The mask goes in
# as well as out so that a transform can add a defect to it (or move it with a geometric augmentation).
Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image as RGB uint8 (H, W, 3); IMREAD_COLOR also turns grayscale PNGs into 3 channels."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetFormatError(f"cannot read image {path}: missing, empty or not an image file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(sample: Sample, size: tuple[int, int]) -> np.ndarray:
    """OR the sample's mask files (> 0 is anomalous) into one bool (H, W) mask; no files -> all normal.

    LOCO masks hold region ids rather than 0/255, hence ``> 0``; they are read unchanged (not converted to
    gray) so that no nonzero id can round down to 0. ``size`` is the image's (H, W): a mask of another
    size belongs to another image or a resized copy, and would misplace every pixel label.
    """
    mask = np.zeros(size, dtype=bool)
    for path in sample.masks:
        region = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if region is None:
            raise DatasetFormatError(f"cannot read mask {path} of image {sample.image}: missing, empty or not an image")
        if region.ndim == 3:
            region = region[..., :3].max(axis=2)  # colour PNG: anomalous where any colour channel is nonzero
        if region.shape != size:
            raise DatasetFormatError(
                f"mask {path} is {region.shape[1]}x{region.shape[0]} (WxH) but its image {sample.image} is "
                f"{size[1]}x{size[0]}: a mask must have its image's size"
            )
        mask |= region > 0
    return mask


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size: INTER_AREA when shrinking (averages, no aliasing), INTER_LINEAR when enlarging."""
    height, width = image.shape[:2]
    interpolation = cv2.INTER_AREA if height >= size and width >= size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


class AnomalyDataset(Dataset):
    """Images, binary masks and labels of a benchmark split, optionally with a seeded full-resolution transform.

    ``transform(image, mask, rng) -> (image, mask)`` sees the RGB uint8 image and bool mask before resizing; its
    generator is seeded from ``(seed, index)``, so item ``i`` is the same in every epoch and every worker.
    The datamodule uses it to paste synthetic defects on held-out normal images for validation: an item whose
    transformed mask is nonzero is then labelled anomalous, with the defect ``"synthetic"``.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: int,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        if not samples:
            raise ValueError("AnomalyDataset needs at least one sample (an empty split means a broken index)")
        self.samples = list(samples)
        self.image_size = image_size
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        index = range(len(self.samples))[i]  # IndexError out of range; a negative i maps to its item's seed
        sample = self.samples[index]
        image = read_rgb(sample.image)
        mask = read_mask(sample, image.shape[:2])
        label, defect = sample.label, sample.defect

        if self.transform is not None:
            image, mask = self.transform(image, mask, np.random.default_rng((self.seed, index)))
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise TypeError(f"transform must return an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
            mask = np.asarray(mask, dtype=bool)
            if not label and mask.any():
                label, defect = 1, "synthetic"

        image = resize_image(image, self.image_size)
        # Nearest keeps the mask binary: interpolating would invent fractional labels on defect borders.
        mask = cv2.resize(mask.astype(np.uint8), (self.image_size,) * 2, interpolation=cv2.INTER_NEAREST)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0),
            "mask": torch.from_numpy(mask).float(),
            "label": torch.tensor(label, dtype=torch.int64),
            "category": sample.category,
            "defect": defect,
            "path": str(sample.image),
        }
