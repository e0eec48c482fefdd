"""Real photographs with ImageNet-1k labels, shipped inside scikit-image's wheel: attack a real pretrained
classifier (``shared_utils.backbones.create_backbone("efficientnet_lite0")``) offline, without ImageNet.

Only files that ``skimage.data`` bundles are used (they load with no network and no pooch download). A photo
is kept when it shows something ImageNet-1k has a class for *and* the pretrained EfficientNet-Lite0 ranks one
of the right classes first on the clean photo, so that an attack's success is measured from a correct start.
``ACCEPTED`` lists the semantically right classes of each photo (several where ImageNet has near-synonyms),
checked with the classifier (top-1 class and probability at 224 px):

- chelsea (a tabby cat):          281 tabby, 282 tiger cat, 285 Egyptian cat  -> 282 tiger cat, p = 0.39
- coffee (a cup of coffee):       967 espresso, 968 cup, 504 coffee mug       -> 967 espresso, p = 0.95
- rocket (a launcher on its pad): 657 missile, 744 projectile, 812 space shuttle -> 657 missile, p = 0.32
- camera (the cameraman, grey):   872 tripod, 759 reflex camera, 732 Polaroid camera -> 872 tripod, p = 0.94
- motorcycle_left (a motorbike):  665 moped, 670 motor scooter                 -> 665 moped, p = 0.49

Left out: astronaut (top-1 450 bobsled; ImageNet has no astronaut or space suit), clock (top-1 971 bubble:
motion-blurred), coins (574 golf ball), horse (a binary silhouette), and the textures and microscopy images,
which have no ImageNet class.

Preprocessing (the ImageNet evaluation transform of torchvision/timm, crop fraction 0.875): resize so that the
shorter side is ``round(size / 0.875)`` (256 for 224) with bilinear interpolation and antialiasing, centre-crop
``size`` x ``size``; grey photos are repeated over three channels. No normalisation: the backbone normalises.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

CROP_FRACTION = 0.875

# name -> (loader of the bundled file, accepted ImageNet-1k class ids)
PHOTOS: dict[str, tuple[Callable[[], np.ndarray], tuple[int, ...]]] = {
    "chelsea": (skimage.data.chelsea, (281, 282, 285)),
    "coffee": (skimage.data.coffee, (967, 968, 504)),
    "rocket": (skimage.data.rocket, (657, 744, 812)),
    "camera": (skimage.data.camera, (872, 759, 732)),
    "motorcycle_left": (lambda: skimage.data.stereo_motorcycle()[0], (665, 670)),
}
ACCEPTED = {name: accepted for name, (_, accepted) in PHOTOS.items()}


def preprocess(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) -> float (3, size, size) in [0, 1]: shorter side to size / 0.875, centre crop."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    x = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    short = round(size / CROP_FRACTION)
    new_h, new_w = (short, round(w * short / h)) if h <= w else (round(h * short / w), short)
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[0, :, top:top + size, left:left + size].clamp(0, 1).contiguous()


def imagenet_photos(size: int = 224) -> list[tuple[str, torch.Tensor, tuple[int, ...]]]:
    """``[(name, image float (3, size, size) in [0, 1], accepted ImageNet-1k class ids), ...]`` in ``PHOTOS``
    order (the module docstring lists them with the classifier's predictions)."""
    return [(name, preprocess(load(), size), accepted) for name, (load, accepted) in PHOTOS.items()]
