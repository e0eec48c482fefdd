"""CutPaste: self-supervised defect synthesis, then a Gaussian density on the learned representation.

Li et al., "CutPaste: Self-Supervised Learning for Anomaly Detection and Localization", CVPR 2021
(arXiv:2104.04015). Reference code: google-research/deep_representation_one_class (official) and
Runinho/pytorch-cutpaste (the PyTorch port most reproductions use).

1. Proxy task (Sec. 3.1-3.2): a classifier learns to tell normal images from the same images with a
   CutPaste defect (a rectangle cut from one place, colour jittered, pasted at another) and with a
   CutPaste-Scar defect (a thin rotated rectangle). The 3-way task (normal / CutPaste / Scar) is the
   paper's best; "binary" (normal / CutPaste) and "scar" (normal / Scar) are its other variants.
2. Density (Sec. 3.3, Eq. 3): a Gaussian density estimator (GDE) fitted to the representations of normal
   images; covariance shrunk by Ledoit-Wolf as the reference code; the score is the Mahalanobis distance.
3. Localisation (Sec. 4.2): the same recipe on patches: dense patches of ``patch_size`` pixels every
   ``patch_stride`` pixels are embedded and scored by a second Gaussian fitted on normal patches; the
   score grid is spread back over each patch's receptive field with a Gaussian kernel (the paper's
   "receptive field upsampling" with Gaussian smoothing).

Deviations from the paper:
- One network for both levels: ``loss()`` is the mean of the cross-entropy on augmented full images and on
  augmented random ``patch_size`` crops. The paper trains separate image-level and patch-level models.
- Backbone: any ``shared_utils`` backbone (EfficientNet-Lite0 by default; the paper uses ResNet-18), its
  stride-32 map globally average-pooled. Projection head ``head_dims=(512, 128)`` (Linear-BN-ReLU each)
  instead of the reference's eight 512 layers then 128.
- Representation for the densities: the pooled backbone features (before the projection head), as the
  PyTorch reference code does.
- One Gaussian for all patch positions; patch grid stride ``patch_stride`` (16 px at 128 px images, the
  paper uses stride 4 at 256 px); smoothing kernel: patch_size wide, sigma = patch_size / 4; the map is a
  Gaussian-weighted mean of the scores of the patches covering each pixel.
- Colour jitter (brightness, contrast, saturation, hue, each +-0.1, the reference's strength) is done in
  torch on the whole batch; hue as a rotation of the chroma plane in YIQ space instead of an HSV shift.
- Scar sizes are pixels of the image they are applied to; a scar that would not fit (small crops) is
  shrunk to fit. No other augmentation of the normal images (the reference also jitters and flips them).
- Optimiser and schedule (paper: SGD, lr 0.03, cosine, 256 epochs) are the training wrapper's business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared_utils.backbones import create_backbone

VARIANTS = ("binary", "scar", "3way")
JITTER = 0.1  # colour jitter strength of brightness, contrast, saturation and hue (reference code)
# paper Sec. 3.1 / 4.1: CutPaste rectangle and scar parameters
AREA_RATIO = (0.02, 0.15)
ASPECT_RATIO = (0.3, 3.3)  # sampled log-uniformly: [0.3, 1) and (1, 3.3] are equally likely
SCAR_WIDTH = (2.0, 16.0)
SCAR_LENGTH = (10.0, 25.0)
SCAR_ANGLE = (-45.0, 45.0)
LUMA = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------- augmentations


def _uniform(low: float, high: float, n: int, device: torch.device) -> Tensor:
    return low + (high - low) * torch.rand(n, device=device)


def color_jitter(x: Tensor, mask: Tensor, strength: float = JITTER) -> Tensor:
    """Random brightness, contrast, saturation and hue of each image in (B, 3, H, W); contrast about the
    mean grey level inside ``mask`` (B, H, W) (the pasted patch, as jittering the patch alone would)."""
    B, device = x.shape[0], x.device

    def factor() -> Tensor:
        return _uniform(1 - strength, 1 + strength, B, device).view(B, 1, 1, 1)

    luma = torch.tensor(LUMA, device=device).view(1, 3, 1, 1)
    x = x * factor()
    area = mask.sum((1, 2)).clamp(min=1).view(B, 1, 1, 1)
    mean_grey = ((x * luma).sum(1, keepdim=True) * mask[:, None]).sum((2, 3), keepdim=True) / area
    c = factor()
    x = c * x + (1 - c) * mean_grey
    s = factor()
    x = s * x + (1 - s) * (x * luma).sum(1, keepdim=True)
    # hue: rotate the (I, Q) chroma plane of YIQ by up to strength * 360 degrees
    angle = _uniform(-strength, strength, B, device) * 2 * math.pi
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=device)
    rotation = torch.zeros(B, 3, 3, device=device)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = angle.cos(), -angle.sin()
    rotation[:, 2, 1], rotation[:, 2, 2] = angle.sin(), angle.cos()
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq
    x = torch.einsum("bij,bjhw->bihw", matrix, x)
    return x.clamp(0, 1)


def paste(images: Tensor, width: Tensor, height: Tensor, angle: Tensor, source: Tensor,
          target: Tensor) -> tuple[Tensor, Tensor]:
    """Cut a width x height rectangle centred at ``source`` (B, 2) (x, y pixels), colour jitter it, rotate it
    by ``angle`` (radians) and paste it centred at ``target``. Returns (images, pasted masks (B, H, W)).

    Done for the whole batch at once by inverse mapping: every output pixel inside the rotated target
    rectangle samples the source location that maps onto it (bilinear; exact copies when unrotated with
    integer corners). Pixel j covers [j, j + 1): its centre is j + 0.5.
    """
    B, _, H, W = images.shape
    ys = torch.arange(H, device=images.device, dtype=images.dtype) + 0.5
    xs = torch.arange(W, device=images.device, dtype=images.dtype) + 0.5
    dx = xs.view(1, 1, W) - target[:, 0].view(B, 1, 1)
    dy = ys.view(1, H, 1) - target[:, 1].view(B, 1, 1)
    cos, sin = angle.cos().view(B, 1, 1), angle.sin().view(B, 1, 1)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # target offsets in the rectangle's own frame
    mask = (u.abs() < width.view(B, 1, 1) / 2) & (v.abs() < height.view(B, 1, 1) / 2)
    sx, sy = source[:, 0].view(B, 1, 1) + u, source[:, 1].view(B, 1, 1) + v
    grid = torch.stack([2 * sx / W - 1, 2 * sy / H - 1], dim=-1)  # align_corners=False convention
    patch = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    patch = color_jitter(patch, mask.to(images.dtype))
    return torch.where(mask[:, None], patch, images), mask


def cutpaste(images: Tensor) -> tuple[Tensor, Tensor]:
    """CutPaste (paper Sec. 3.1): a rectangle of area ratio [0.02, 0.15] and aspect ratio [0.3, 3.3], cut at
    a random place, colour jittered, pasted at another random place. Returns (images, masks (B, H, W))."""
    B, _, H, W = images.shape
    device = images.device
    area = _uniform(*AREA_RATIO, B, device) * H * W
    aspect = torch.exp(_uniform(math.log(ASPECT_RATIO[0]), math.log(ASPECT_RATIO[1]), B, device))
    width = torch.sqrt(area * aspect).round().clamp(1, W)
    height = torch.sqrt(area / aspect).round().clamp(1, H)
    size = torch.stack([width, height], dim=1)
    limit = torch.tensor([W, H], device=device) - size + 1  # integer corners keep the copy pixel-exact
    source = torch.floor(torch.rand(B, 2, device=device) * limit) + size / 2
    target = torch.floor(torch.rand(B, 2, device=device) * limit) + size / 2
    return paste(images, width, height, torch.zeros(B, device=device), source, target)


def cutpaste_scar(images: Tensor) -> tuple[Tensor, Tensor]:
    """CutPaste-Scar (paper Sec. 3.2): a thin rectangle, width [2, 16] px and length [10, 25] px, cut at a
    random place, colour jittered, rotated by [-45, 45] degrees, pasted at another random place."""
    B, _, H, W = images.shape
    device = images.device
    width = _uniform(*SCAR_WIDTH, B, device)
    length = _uniform(*SCAR_LENGTH, B, device)
    angle = torch.deg2rad(_uniform(*SCAR_ANGLE, B, device))
    cos, sin = angle.cos().abs(), angle.sin().abs()
    # shrink scars that would not fit: the source (axis aligned) and the rotated target must lie inside
    fit = torch.stack([W / (width * cos + length * sin), H / (width * sin + length * cos),
                       W / width, H / length]).amin(0).clamp(max=1)
    width, length = width * fit, length * fit
    half = torch.stack([width * cos + length * sin, width * sin + length * cos], dim=1) / 2
    wh = torch.tensor([W, H], device=device, dtype=images.dtype)
    size = torch.stack([width, length], dim=1)
    source = size / 2 + torch.rand(B, 2, device=device) * (wh - size)
    target = half + torch.rand(B, 2, device=device) * (wh - 2 * half)
    return paste(images, width, length, angle, source, target)


def random_crops(images: Tensor, size: int) -> Tensor:
    """One random ``size`` x ``size`` crop of each image (the patch-level training samples)."""
    B, _, H, W = images.shape
    if size > min(H, W):
        raise ValueError(f"patch_size {size} is larger than the images ({H}x{W})")
    ys = torch.randint(H - size + 1, (B,)).tolist()
    xs = torch.randint(W - size + 1, (B,)).tolist()
    return torch.stack([img[:, y:y + size, x:x + size] for img, y, x in zip(images, ys, xs)])


# ----------------------------------------------------------------------------- Gaussian density


def ledoit_wolf(X: Tensor) -> tuple[Tensor, Tensor]:
    """Ledoit-Wolf shrunk covariance of the rows of X (n, p): (covariance (p, p), shrinkage in [0, 1]).

    Ledoit & Wolf, "A well-conditioned estimator for large-dimensional covariance matrices" (J. Multivariate
    Anal. 2004), Lemmas 3.2-3.4, in the form of sklearn.covariance.ledoit_wolf (as the CutPaste reference):
    S the empirical covariance (1/n), mu = tr(S)/p, shrinkage = min(b2, d2) / d2 with
    d2 = ||S - mu I||^2 / p and b2 = sum_k ||x_k x_k^T - S||^2 / (n^2 p) = (sum_k ||x_k||^4 / n - ||S||^2) / (n p),
    and the estimate (1 - shrinkage) S + shrinkage mu I. Well conditioned even when n < p (few-shot).
    """
    n, p = X.shape
    X = X - X.mean(0)
    S = X.T @ X / n
    mu = torch.trace(S) / p
    identity = torch.eye(p, dtype=X.dtype, device=X.device)
    d2 = (S - mu * identity).square().sum() / p
    b2 = (X.square().sum(1).square().sum() / n - S.square().sum()) / (n * p)
    shrinkage = torch.clamp(torch.minimum(b2, d2) / d2, 0, 1) if d2 > 0 else X.new_zeros(())
    return (1 - shrinkage) * S + shrinkage * mu * identity, shrinkage


def mahalanobis(x: Tensor, mean: Tensor, inv_cov: Tensor) -> Tensor:
    """sqrt((x - mean)^T inv_cov (x - mean)) for each row of x (N, p)."""
    d = x - mean
    return ((d @ inv_cov) * d).sum(-1).clamp(min=0).sqrt()


class GaussianDensity(nn.Module):
    """Gaussian density estimator of the paper's Eq. 3; the score is the Mahalanobis distance (the
    negative log-density up to a constant and a monotone map). Mean and inverse covariance are buffers."""

    def __init__(self) -> None:
        super().__init__()
        # sizes known only after fitting: empty until fit(), resized on load (_load_from_state_dict)
        self.register_buffer("mean", torch.empty(0))
        self.register_buffer("inv_cov", torch.empty(0, 0))

    @property
    def fitted(self) -> bool:
        return self.mean.numel() > 0

    def fit(self, embeddings: Tensor) -> None:
        if embeddings.shape[0] == 0:
            raise ValueError("a Gaussian needs at least 1 embedding, got none")
        X = embeddings.double()  # inverse of a nearly singular shrunk covariance: double precision
        if X.shape[0] == 1:
            # 1-shot: no spread to estimate; the identity makes the score the Euclidean distance.
            cov = torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
        else:
            cov, _ = ledoit_wolf(X)
        self.mean = X.mean(0).to(embeddings.dtype)
        self.inv_cov = torch.linalg.inv(cov).to(embeddings.dtype)

    def forward(self, embeddings: Tensor) -> Tensor:
        return mahalanobis(embeddings, self.mean, self.inv_cov)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        for name in ("mean", "inv_cov"):
            incoming = state_dict.get(prefix + name)
            if incoming is not None:
                setattr(self, name, getattr(self, name).new_empty(incoming.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# ----------------------------------------------------------------------------- model


def receptive_field_upsample(scores: Tensor, patch_size: int, stride: int, size: tuple[int, int]) -> Tensor:
    """Spread a (B, gh, gw) patch score grid over the pixels each patch covers, Gaussian weighted
    (sigma = patch_size / 4, centred on the patch): each pixel gets the weighted mean of the scores of the
    patches that cover it. Pixels no patch covers (right/bottom remainder) copy the nearest covered one."""
    t = torch.arange(patch_size, dtype=scores.dtype, device=scores.device) - (patch_size - 1) / 2
    g = torch.exp(-0.5 * (t / (patch_size / 4)) ** 2)
    kernel = (g[:, None] * g[None, :]).view(1, 1, patch_size, patch_size)
    x = scores[:, None]
    weighted = F.conv_transpose2d(x, kernel, stride=stride)
    weights = F.conv_transpose2d(torch.ones_like(x), kernel, stride=stride)
    out = weighted / weights
    pad_h, pad_w = size[0] - out.shape[-2], size[1] - out.shape[-1]
    if pad_h or pad_w:
        out = F.pad(out, (0, pad_w, 0, pad_h), mode="replicate")
    return out[:, 0]


class CutPaste(nn.Module):
    """CutPaste anomaly detection (image Gaussian) and localisation (patch Gaussian), Li et al. CVPR 2021.

    Args:
        backbone: a ``shared_utils.backbones`` name, fine-tuned by ``loss()``.
        weights: ``"imagenet"`` (efficientnet_lite0), a local state-dict path, or None (random init).
        variant: "3way" (normal / CutPaste / Scar, the paper's best), "binary" (normal / CutPaste) or
            "scar" (normal / Scar).
        patch_size: side of the patches of the patch-level model, in pixels (paper: 64 at 256 px, a quarter).
        patch_stride: step between scored patches, in pixels.
        head_dims: widths of the projection head's Linear-BN-ReLU layers before the class layer.
    """

    trainable = True

    def __init__(self, backbone: str = "efficientnet_lite0", weights: str | None = "imagenet",
                 variant: str = "3way", patch_size: int = 32, patch_stride: int = 16,
                 head_dims: Sequence[int] = (512, 128)) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.patch_size = patch_size
        self.patch_stride = patch_stride
        # Fine-tuned as in the paper, BatchNorm included: nothing frozen, so its weights are checkpointed.
        self.backbone = create_backbone(backbone, weights, strides=(32,), freeze="none")
        layers: list[nn.Module] = []
        width = self.backbone.channels[-1]
        for dim in head_dims:
            layers += [nn.Linear(width, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True)]
            width = dim
        self.head = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, 3 if variant == "3way" else 2)
        self.image_density = GaussianDensity()
        self.patch_density = GaussianDensity()
        self._image_embeddings: list[Tensor] = []
        self._patch_embeddings: list[Tensor] = []

    def embed(self, images: Tensor) -> Tensor:
        """Representation of (B, 3, H, W) images: globally average-pooled deepest features (B, C)."""
        return self.backbone(images)[-1].mean(dim=(2, 3))

    def logits(self, images: Tensor) -> Tensor:
        return self.classifier(self.head(self.embed(images)))

    def augment(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The proxy-task batch: the normal images then their augmented copies, with class labels
        (0 normal, then 1 CutPaste and/or Scar in the order of the variant)."""
        views = [images]
        if self.variant in ("binary", "3way"):
            views.append(cutpaste(images)[0])
        if self.variant in ("scar", "3way"):
            views.append(cutpaste_scar(images)[0])
        labels = torch.arange(len(views), device=images.device).repeat_interleave(images.shape[0])
        return torch.cat(views), labels

    def loss(self, images: Tensor) -> Tensor:
        """Cross-entropy of the proxy task (paper Eq. 1-2) on the images and on random patch crops."""
        x, y = self.augment(images)
        image_loss = F.cross_entropy(self.logits(x), y)
        x, y = self.augment(random_crops(images, self.patch_size))
        return (image_loss + F.cross_entropy(self.logits(x), y)) / 2

    def patches(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Dense patch_size patches every patch_stride pixels: (B * gh * gw, 3, p, p) and the grid (gh, gw)."""
        B, C, H, W = images.shape
        p, s = self.patch_size, self.patch_stride
        if p > min(H, W):
            raise ValueError(f"patch_size {p} is larger than the images ({H}x{W})")
        grid = ((H - p) // s + 1, (W - p) // s + 1)
        cols = F.unfold(images, kernel_size=p, stride=s)  # (B, 3 p p, gh gw)
        return cols.transpose(1, 2).reshape(-1, C, p, p), grid

    def update(self, images: Tensor) -> None:
        """Collect image and patch representations of normal images (in eval mode: batch-norm running
        statistics, whatever mode the caller left the model in)."""
        training = self.training
        self.eval()
        self._image_embeddings.append(self.embed(images))
        self._patch_embeddings.append(self.embed(self.patches(images)[0]))
        self.train(training)

    def finalize(self) -> None:
        """Fit the image-level and patch-level Gaussians (buffers) on everything update() collected."""
        if not self._image_embeddings:
            raise RuntimeError("CutPaste.finalize(): no embeddings; call update() on normal images first")
        self.image_density.fit(torch.cat(self._image_embeddings))
        self.patch_density.fit(torch.cat(self._patch_embeddings))
        self._image_embeddings, self._patch_embeddings = [], []

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(anomaly maps (B, H, W) at the input resolution, image scores (B,)); higher = more anomalous."""
        if not self.image_density.fitted:
            raise RuntimeError("CutPaste is not fitted: call update() on normal images and finalize() first")
        B, _, H, W = images.shape
        scores = self.image_density(self.embed(images))
        patches, grid = self.patches(images)
        patch_scores = self.patch_density(self.embed(patches)).reshape(B, *grid)
        return receptive_field_upsample(patch_scores, self.patch_size, self.patch_stride, (H, W)), scores
