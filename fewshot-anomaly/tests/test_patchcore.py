"""PatchCore: coreset, chunked kNN and Eq. 7 against brute force / hand values; checkpoint round trip; a defect."""

import math

import cv2
import numpy as np
import pytest
import torch

from fewshot_anomaly.models.filters import gaussian_blur2d
from fewshot_anomaly.models.patchcore import (
    PatchCore,
    coreset_indices,
    greedy_coreset,
    nearest_neighbors,
    reweighted_scores,
)
from textures import texture


def brute_force_greedy(points: list[list[float]], n: int, start: int) -> list[int]:
    selected = [start]
    while len(selected) < n:
        best, best_d = -1, -1.0
        for i, p in enumerate(points):
            d = min(math.dist(p, points[j]) for j in selected)
            if d > best_d:
                best, best_d = i, d
        selected.append(best)
    return selected


def test_greedy_coreset_matches_brute_force():
    points = torch.randn(150, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for start in (0, 77):
        ours = greedy_coreset(points, 20, start).tolist()
        assert ours == brute_force_greedy(points.tolist(), 20, start)
        assert len(set(ours)) == 20


def test_projected_coreset_is_deterministic_and_spread():
    features = torch.randn(400, 300, generator=torch.Generator().manual_seed(3))
    features[:200] *= 0.01  # a dense cluster: k-center must not spend its picks there
    index = coreset_indices(features, 40)
    assert torch.equal(index, coreset_indices(features, 40)) and len(set(index.tolist())) == 40
    assert (index < 200).sum() <= 1


@pytest.mark.parametrize("k", [1, 4])
def test_nearest_neighbors_chunked_equals_full_cdist(k):
    g = torch.Generator().manual_seed(1)
    queries, bank = torch.randn(53, 16, generator=g), torch.randn(101, 16, generator=g)
    full_d, full_i = torch.cdist(queries, bank).topk(k, dim=1, largest=False)
    for chunk in (3, 10, 1000):  # chunks smaller than k, ragged last chunks, one chunk
        d, i = nearest_neighbors(queries, bank, k=k, chunk_size=chunk)
        assert torch.equal(i, full_i)
        torch.testing.assert_close(d, full_d, atol=1e-4, rtol=1e-4)


def test_reweighting_matches_eq7_by_hand():
    # 1-D bank; the second test patch (-1) is the farthest one, its nearest entry m* = 0, and the
    # b = 3 nearest entries of m* are {0, 1, 2}, at distances 1, 2, 3 from the test patch.
    bank = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    features = torch.tensor([[[0.5], [-1.0]]])
    scores, index = (d[..., 0] for d in nearest_neighbors(features[0], bank, 1))
    s = reweighted_scores(features, scores[None], index[None], bank, num_neighbors=3)
    expected = (1 - math.exp(1) / (math.exp(1) + math.exp(2) + math.exp(3))) * 1.0
    assert s.item() == pytest.approx(expected, rel=1e-5)
    assert reweighted_scores(features, scores[None], index[None], bank, num_neighbors=1).item() == 1.0
    # the softmax form stays finite where exp(distance) alone would overflow float32
    big = reweighted_scores(features * 1000, scores[None] * 1000, index[None], bank * 1000, num_neighbors=3)
    assert torch.isfinite(big).all() and big.item() == pytest.approx(1000.0, rel=1e-5)


def test_gaussian_blur_matches_opencv():
    x = torch.rand(2, 1, 40, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = gaussian_blur2d(x, 4.0)
    for b in range(2):
        ref = cv2.GaussianBlur(x[b, 0].numpy(), (33, 33), 4.0, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(ours[b, 0].numpy(), ref, atol=1e-6)


def test_forward_before_finalize_raises():
    model = PatchCore("resnet18", weights=None)
    with pytest.raises(RuntimeError, match="finalize"):
        model(torch.rand(1, 3, 32, 32))


def test_coreset_bank_state_dict_round_trip():
    torch.manual_seed(0)
    model = PatchCore("resnet18", weights=None, target_dim=64, coreset_ratio=0.25, min_coreset_size=10)
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        model.update(images[:2])
        model.update(images[2:])
        model.finalize()
    features = model.embed(images).reshape(-1, 64)  # 3 images x 8 x 8 patches -> 192 -> coreset of 48
    assert model.memory_bank.shape == (48, 64)
    gap = (model.memory_bank[:, None] - features[None]).abs().amax(-1).amin(1)
    assert gap.max() < 1e-5  # every bank entry is one of the patch features

    fresh = PatchCore("resnet18", weights=None, target_dim=64)
    assert fresh.memory_bank.shape == (0, 64)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.memory_bank, model.memory_bank)
    test = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(test), fresh(test)):
            torch.testing.assert_close(a, b)


def test_end_to_end_square_defect_is_found():
    model = PatchCore()  # efficientnet_lite0 with ImageNet weights
    with torch.no_grad():
        model.update(texture(8))
        model.finalize()
        test = texture(2, seed=1)
        test[1, :, 20:36, 28:44] = 1.0  # bright 16 px square
        maps, scores = model(test)
    assert maps.shape == (2, 64, 64) and scores.shape == (2,)
    assert scores[1] > 1.5 * scores[0]
    row, col = divmod(int(maps[1].argmax()), 64)
    assert 20 <= row < 36 and 28 <= col < 44
