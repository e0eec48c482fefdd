"""CutPaste: augmentation geometry, proxy-task training, Ledoit-Wolf and Mahalanobis against brute force,
checkpoint round trip, shapes, a pasted defect."""

import math

import numpy as np
import pytest
import torch

from fewshot_anomaly.models.cutpaste import (
    CutPaste,
    GaussianDensity,
    cutpaste,
    cutpaste_scar,
    ledoit_wolf,
    receptive_field_upsample,
)
from textures import texture


def test_cutpaste_pastes_one_rectangle_of_the_paper_sizes():
    torch.manual_seed(0)
    images = torch.rand(64, 3, 64, 64)
    out, mask = cutpaste(images)
    assert not ((out != images).any(1) & ~mask).any()  # nothing changes outside the pasted rectangle
    assert (out != images).any(1).sum() > 0.9 * mask.sum()  # and the pasted pixels did change
    for m in mask:
        rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
        h, w = len(rows), len(cols)
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w and m.sum() == h * w  # a rectangle
        assert 0.02 * 0.8 <= h * w / 64**2 <= 0.15 * 1.2  # area ratio [0.02, 0.15] (sides rounded to pixels)
        assert 0.3 / 1.3 <= w / h <= 3.3 * 1.3  # aspect ratio [0.3, 3.3]


def test_scar_is_a_thin_rotated_rectangle_of_the_paper_sizes():
    torch.manual_seed(0)
    images = torch.rand(64, 3, 96, 96)
    out, mask = cutpaste_scar(images)
    assert not ((out != images).any(1) & ~mask).any()
    long_scars = 0
    for m in mask:
        pts = m.nonzero().double()
        # a uniform rectangle of side L has variance L^2 / 12 along that side: recover width and length
        var, axes = torch.linalg.eigh(torch.cov(pts.T))
        width, length = (12 * var).sqrt().tolist()
        assert 1.0 <= width <= 17.5 and 9.0 <= length <= 26.5
        if length > 17.5:  # longer than any width: the length axis, at most 45 degrees from vertical (rows)
            assert abs(axes[0, 1]) >= math.cos(math.radians(45)) - 0.05
            long_scars += 1
    assert long_scars > 10


@pytest.mark.parametrize("variant, classes", [("3way", 3), ("binary", 2), ("scar", 2)])
def test_augment_labels(variant, classes):
    model = CutPaste("resnet18", weights=None, variant=variant, head_dims=(16,))
    images = torch.rand(4, 3, 32, 32)
    x, y = model.augment(images)
    assert x.shape == (4 * classes, 3, 32, 32)
    assert y.tolist() == [c for c in range(classes) for _ in range(4)]
    assert torch.equal(x[:4], images)
    assert all((x[4 * c:4 * c + 4] != images).any() for c in range(1, classes))
    assert model.classifier.out_features == classes


def test_short_training_loss_decreases_and_a_defect_scores_higher():
    torch.manual_seed(0)
    model = CutPaste(patch_size=16, patch_stride=8, head_dims=(64,)).train()
    images = texture(4, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = model.loss(images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses

    with torch.no_grad():
        model.update(texture(16, 32, seed=1))  # update() embeds in eval mode even on a model left in train
        model.finalize()
        model.eval()
        normal_maps, normal_scores = model(texture(6, 32, seed=3))
        defect = texture(6, 32, seed=3)
        defect[:, :, 8:20, 10:22] = 1.0  # bright 12 px square
        defect_maps, defect_scores = model(defect)
    assert defect_scores.min() > normal_scores.max()
    assert (defect_maps[:, 8:20, 10:22].mean((1, 2)) > normal_maps.amax((1, 2))).all()


def brute_force_ledoit_wolf(X: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit & Wolf (2004), Lemmas 3.2-3.4, with their normalised norm ||A||^2 = tr(A A^T) / p."""
    n, p = X.shape
    X = X - X.mean(0)
    S = sum(np.outer(x, x) for x in X) / n
    norm2 = lambda A: np.trace(A @ A.T) / p  # noqa: E731
    m = np.trace(S) / p
    d2 = norm2(S - m * np.eye(p))
    b2 = min(sum(norm2(np.outer(x, x) - S) for x in X) / n**2, d2)
    return b2 / d2 * m * np.eye(p) + (1 - b2 / d2) * S, b2 / d2


@pytest.mark.parametrize("n, p", [(6, 10), (40, 5)])  # fewer samples than dimensions, and more
def test_ledoit_wolf_matches_brute_force(n, p):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 3, size=p)
    cov, shrinkage = ledoit_wolf(torch.from_numpy(X))
    ref_cov, ref_shrinkage = brute_force_ledoit_wolf(X)
    assert 0 < shrinkage.item() < 1
    assert shrinkage.item() == pytest.approx(ref_shrinkage, rel=1e-9)
    np.testing.assert_allclose(cov.numpy(), ref_cov, rtol=1e-9, atol=1e-12)


def test_gaussian_density_mahalanobis_matches_brute_force():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 4)) @ rng.normal(size=(4, 4)) + 2.0
    queries = rng.normal(size=(7, 4))
    density = GaussianDensity()
    density.fit(torch.from_numpy(X))
    cov, _ = brute_force_ledoit_wolf(X)
    inv, mean = np.linalg.inv(cov), X.mean(0)
    expected = [math.sqrt((q - mean) @ inv @ (q - mean)) for q in queries]
    np.testing.assert_allclose(density(torch.from_numpy(queries)).numpy(), expected, rtol=1e-8)


def test_receptive_field_upsample():
    constant = receptive_field_upsample(torch.full((1, 3, 3), 2.0), 8, 4, (18, 19))
    assert constant.shape == (1, 18, 19) and torch.allclose(constant, torch.tensor(2.0))
    grid = torch.zeros(1, 3, 3)
    grid[0, 0, 2] = 1.0  # patch at rows 0..7, columns 8..15
    row, col = divmod(int(receptive_field_upsample(grid, 8, 4, (16, 16))[0].argmax()), 16)
    assert row < 8 and 8 <= col < 16


def fitted_model(**kwargs) -> CutPaste:
    torch.manual_seed(0)
    model = CutPaste(patch_size=16, patch_stride=8, **kwargs).eval()
    with torch.no_grad():
        model.update(texture(8, 32))
        model.update(texture(8, 32, seed=1))
        model.finalize()
    return model


def test_forward_shapes_and_not_fitted_error():
    model = CutPaste("resnet18", weights=None, patch_size=16, patch_stride=8, head_dims=(16,))
    with pytest.raises(RuntimeError, match="finalize"):
        model(torch.rand(1, 3, 32, 32))
    with torch.no_grad():
        model.update(torch.rand(3, 3, 40, 40))
        model.finalize()
        maps, scores = model.eval()(torch.rand(2, 3, 40, 40))  # 40 = 16 + 3 * 8: the grid covers the image
    assert maps.shape == (2, 40, 40) and scores.shape == (2,)
    maps, _ = model(torch.rand(1, 3, 37, 45))  # remainders the patch grid does not cover
    assert maps.shape == (1, 37, 45) and torch.isfinite(maps).all()


def test_state_dict_round_trip():
    model = fitted_model()
    fresh = CutPaste(patch_size=16, patch_stride=8).eval()
    assert not fresh.image_density.fitted
    fresh.load_state_dict(model.state_dict())
    test = texture(2, 32, seed=2)
    with torch.no_grad():
        for a, b in zip(model(test), fresh(test)):
            torch.testing.assert_close(a, b)


def test_density_on_imagenet_features_finds_a_defect_without_training():
    # the density and patch-scoring half alone, on fixed (untrained) embeddings
    model = fitted_model()
    test = texture(6, 32, seed=3)
    defect = test.clone()
    defect[:, :, 8:20, 10:22] = 1.0
    with torch.no_grad():
        normal_maps, normal_scores = model(test)
        defect_maps, defect_scores = model(defect)
    assert defect_scores.min() > normal_scores.max()
    assert (defect_maps[:, 8:20, 10:22].mean((1, 2)) > normal_maps.amax((1, 2))).all()


def test_one_shot_density_is_the_euclidean_distance():
    density = GaussianDensity()
    x = torch.randn(1, 5)
    density.fit(x)  # a single embedding (k_shot=1): no covariance to estimate
    y = torch.randn(3, 5)
    torch.testing.assert_close(density(y), (y - x).norm(dim=1))
