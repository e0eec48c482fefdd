"""MVTec AD metrics against brute-force references, hand-computed cases and the anomalib reference fixture."""

import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from fewshot_anomaly.metrics import AnomalyMetrics, aupro, auroc, f1_max

# Reference arrays and the values anomalib computes on them (tests/data/README.md says how they were made).
FIXTURES = Path(__file__).resolve().parent / "data"


# ---------------------------------------------------------------------------------------------------------------
# Brute-force references: direct transcriptions of the definitions, no sorting tricks, no cv2.


def brute_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Count all (positive, negative) pairs: 1 if the positive scores higher, 1/2 on a tie."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def brute_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the rule score >= t for every distinct score t."""
    best = 0.0
    for t in np.unique(scores):
        predicted = scores >= t
        tp = np.sum(predicted & (labels == 1))
        precision, recall = tp / predicted.sum(), tp / labels.sum()
        if tp > 0:
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def regions_8_connected(mask: np.ndarray) -> list[np.ndarray]:
    """Connected components of one mask by breadth-first flood fill over the 8 neighbours."""
    seen = np.zeros(mask.shape, dtype=bool)
    regions = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        region = np.zeros(mask.shape, dtype=bool)
        queue = deque([start])
        seen[start] = True
        while queue:
            y, x = queue.popleft()
            region[y, x] = True
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    inside = 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                    if inside and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        regions.append(region)
    return regions


def brute_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """Sweep every distinct score as threshold, measure FPR and mean per-region overlap, integrate to fpr_limit."""
    regions = [(i, region) for i in range(len(masks)) for region in regions_8_connected(masks[i])]
    normal_scores = maps[masks == 0]
    curve = [(0.0, 0.0)]  # threshold above every score
    for t in np.unique(maps)[::-1]:
        fpr = np.mean(normal_scores >= t)
        pro = np.mean([np.mean(maps[i][region] >= t) for i, region in regions])
        curve.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(curve[:-1], curve[1:]):
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
        elif x0 < fpr_limit:  # the segment crossing the limit: interpolate the PRO at fpr_limit
            y_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_limit) / 2
    return area / fpr_limit


def random_blob_masks(rng: np.random.Generator, num_images: int = 5, size: int = 16) -> np.ndarray:
    """Masks with 1-3 rectangular and diagonal blobs per image; images 0 and 3 stay normal."""
    masks = np.zeros((num_images, size, size), dtype=np.uint8)
    for i in range(num_images):
        if i in (0, 3):
            continue
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, size - 4, 2)
            h, w = rng.integers(1, 5, 2)
            masks[i, y : y + h, x : x + w] = 1
        y, x = rng.integers(0, size - 3, 2)
        masks[i, y + np.arange(3), x + np.arange(3)] = 1  # a diagonal line: one region only under 8-connectivity
    return masks


# ---------------------------------------------------------------------------------------------------------------
# auroc


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_pair_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # one decimal: many ties, across classes too
    assert auroc(scores, labels) == pytest.approx(brute_auroc(scores, labels), abs=1e-12)


def test_auroc_matches_torchmetrics_exact_on_unit_interval() -> None:
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.random((4, 30, 30)) < 0.2)
    scores = torch.from_numpy(np.round(rng.random((4, 30, 30)), 2)).float() + 0.1 * labels
    scores = scores.clamp(0, 1)
    expected = binary_auroc(scores.flatten(), labels.flatten().long(), thresholds=None).item()
    assert auroc(scores, labels) == pytest.approx(expected, abs=1e-6)
    assert auroc(scores.numpy(), labels.numpy()) == auroc(scores, labels)  # numpy and torch give the same


def test_auroc_hand_cases() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.7, 0.9, 0.3, 0.8])
    assert auroc(scores, labels) == 1.0
    assert auroc(-scores, labels) == 0.0
    assert auroc(np.full(6, 0.4), labels) == 0.5
    # Positives {0.5, 0.9}, negatives {0.1, 0.5, 0.7}: 4 pairs ordered, 1 tied, 1 inverted: (4 + 0.5) / 6.
    assert auroc(np.array([0.1, 0.5, 0.5, 0.9, 0.7]), np.array([0, 1, 0, 1, 0])) == pytest.approx(0.75)


def test_auroc_rejects_single_class_and_non_binary_labels() -> None:
    with pytest.raises(ValueError, match="both classes"):
        auroc(np.random.rand(10), np.zeros(10))
    with pytest.raises(ValueError, match="both classes"):
        auroc(np.random.rand(10), np.ones(10))
    with pytest.raises(ValueError, match="only 0 and 1"):
        auroc(np.random.rand(3), np.array([0, 255, 0]))


# ---------------------------------------------------------------------------------------------------------------
# f1_max


@pytest.mark.parametrize("seed", range(5))
def test_f1_max_matches_threshold_sweep(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.2
    scores = np.round(rng.random(300) + 0.4 * labels, 1)
    assert f1_max(scores, labels) == pytest.approx(brute_f1_max(scores, labels), abs=1e-12)


def test_f1_max_exact_on_large_scores() -> None:
    # Scores like Mahalanobis distances, far outside [0, 1]: a float32 sigmoid would make them all 1.0.
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    scores = (20 + 30 * rng.random(200) + 5 * labels).astype(np.float32)
    assert f1_max(scores, labels) == pytest.approx(brute_f1_max(scores, labels), abs=1e-12)
    assert f1_max(scores, labels) < 1.0


def test_f1_max_hand_case() -> None:
    # Threshold 0.35 predicts {0.4, 0.35, 0.8}: TP = 2, FP = 1, FN = 0, F1 = 4 / 5.
    assert f1_max(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.8)
    assert f1_max(np.array([0.1, 0.2, 0.9]), np.array([0, 0, 1])) == 1.0
    with pytest.raises(ValueError, match="positive"):
        f1_max(np.random.rand(5), np.zeros(5))


# ---------------------------------------------------------------------------------------------------------------
# aupro


@pytest.mark.parametrize(("seed", "fpr_limit"), [(0, 0.3), (1, 0.3), (2, 0.3), (3, 0.05), (4, 1.0)])
def test_aupro_matches_threshold_sweep(seed: int, fpr_limit: float) -> None:
    rng = np.random.default_rng(seed)
    masks = random_blob_masks(rng)
    # Two decimals: about 130 distinct thresholds, with ties inside and across regions and background.
    maps = np.round(rng.random(masks.shape) + 0.3 * masks, 2).astype(np.float32)
    expected = brute_aupro(maps, masks, fpr_limit)
    assert 0.0 < expected < 1.0
    assert aupro(maps, masks, fpr_limit) == pytest.approx(expected, abs=1e-6)
    assert aupro(torch.from_numpy(maps), torch.from_numpy(masks), fpr_limit) == pytest.approx(expected, abs=1e-6)


def test_aupro_perfect_and_inverted_maps() -> None:
    masks = random_blob_masks(np.random.default_rng(0))
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0)
    assert aupro(1 - masks.astype(np.float32), masks) == pytest.approx(0.0)


def test_aupro_regions_are_8_connected() -> None:
    # Pixels (0,0), (1,1), (1,2) form one region under 8-connectivity; 4-connectivity would split off (0,0).
    masks = np.zeros((1, 4, 4), dtype=np.uint8)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = 1
    maps = np.full((1, 4, 4), 0.5, dtype=np.float32)
    maps[0, 0, 0], maps[0, 1, 1], maps[0, 1, 2] = 0.9, 0.1, 0.1
    # Curve (0, 0) -> (0, 1/3) -> (1, 1/3) -> (1, 1): the PRO is 1/3 over the whole integration range
    # (it would be 1/2 with two regions).
    assert aupro(maps, masks) == pytest.approx(1 / 3)


def test_aupro_regions_are_per_image() -> None:
    # A defect on the last row of image 0 and one on the first row of image 1 touch if the images are stacked;
    # they are two regions (sizes 1 and 3), not one of size 4.
    masks = np.zeros((2, 4, 4), dtype=np.uint8)
    masks[0, 3, 0] = 1
    masks[1, 0, 0:3] = 1
    maps = np.full((2, 4, 4), 0.5, dtype=np.float32)
    maps[0, 3, 0] = 0.9
    maps[1, 0, 0:3] = 0.1
    assert aupro(maps, masks) == pytest.approx(0.5)  # one of two regions fully found; one region would give 1/4


def test_aupro_rejects_undefined_inputs() -> None:
    maps = np.random.rand(2, 8, 8).astype(np.float32)
    with pytest.raises(ValueError, match="defect and normal"):
        aupro(maps, np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="defect and normal"):
        aupro(maps, np.ones((2, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="only 0 and 1"):
        aupro(maps, np.full((2, 8, 8), 255, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        aupro(maps[0], np.zeros((8, 8), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------------------------
# Reference fixture (anomalib 2.7.0 and exact rank statistics), shipped in tests/data


@pytest.fixture
def reference() -> tuple[np.ndarray, np.ndarray]:
    data = np.load(FIXTURES / "aupro_reference.npz")
    return data["maps"], data["masks"]


def test_reference_fixture(reference: tuple[np.ndarray, np.ndarray]) -> None:
    maps, masks = reference
    image_scores = maps.reshape(len(maps), -1).max(axis=1)
    image_labels = masks.reshape(len(masks), -1).any(axis=1)
    assert aupro(maps, masks, fpr_limit=0.3) == pytest.approx(0.88341, abs=1e-3)
    assert auroc(maps, masks) == pytest.approx(0.96883, abs=1e-3)
    assert auroc(image_scores, image_labels) == pytest.approx(0.96875, abs=1e-3)


def test_anomaly_metrics_on_reference_fixture(reference: tuple[np.ndarray, np.ndarray]) -> None:
    maps, masks = (torch.from_numpy(a) for a in reference)
    metric = AnomalyMetrics()
    for batch in torch.arange(len(maps)).split(5):  # uneven batches: 5, 5, 2
        metric.update(maps[batch], maps[batch].flatten(1).amax(1), masks[batch], masks[batch].flatten(1).amax(1))
    result = metric.compute()
    assert result["aupro"] == pytest.approx(0.88341, abs=1e-3)
    assert result["pixel_auroc"] == pytest.approx(0.96883, abs=1e-3)
    assert result["image_auroc"] == pytest.approx(0.96875, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# AnomalyMetrics


def random_batch(rng: np.random.Generator, masks: np.ndarray) -> tuple[torch.Tensor, ...]:
    maps = torch.from_numpy(rng.random(masks.shape) + 0.5 * masks).float()
    scores = maps.flatten(1).amax(1) + torch.from_numpy(rng.normal(0, 0.2, len(masks))).float()
    labels = torch.from_numpy(masks.reshape(len(masks), -1).any(1)).long()
    return maps, scores, torch.from_numpy(masks), labels


def test_anomaly_metrics_equals_functions() -> None:
    rng = np.random.default_rng(0)
    batches = [random_batch(rng, random_blob_masks(rng, num_images=n, size=32)) for n in (2, 4, 3)]
    metric = AnomalyMetrics(fpr_limit=0.3)
    for batch in batches:
        metric.update(*batch)
    maps, scores, masks, labels = (torch.cat(parts) for parts in zip(*batches))
    expected = {
        "image_auroc": auroc(scores, labels),
        "pixel_auroc": auroc(maps, masks),
        "aupro": aupro(maps, masks, 0.3),
        "image_f1max": f1_max(scores, labels),
        "pixel_f1max": f1_max(maps, masks),
    }
    result = metric.compute()
    assert result.keys() == expected.keys()
    assert result == pytest.approx(expected, abs=1e-12)
    assert all(0 < value < 1 for value in result.values())

    metric.reset()
    metric.update(*batches[0])
    assert metric.compute()["pixel_auroc"] == pytest.approx(auroc(batches[0][0], batches[0][2]))


def test_anomaly_metrics_nan_where_undefined() -> None:
    rng = np.random.default_rng(0)
    metric = AnomalyMetrics()
    metric.update(*random_batch(rng, np.zeros((3, 8, 8), dtype=np.uint8)))  # normal images only
    assert all(math.isnan(value) for value in metric.compute().values())

    # Defective images only: image AUROC is undefined, F1-max of images is 1 (flag everything), pixels are fine.
    masks = random_blob_masks(rng, num_images=3, size=16)[1:]
    metric.reset()
    metric.update(*random_batch(rng, masks))
    result = metric.compute()
    assert math.isnan(result["image_auroc"])
    assert result["image_f1max"] == 1.0
    assert all(0 < result[key] < 1 for key in ("pixel_auroc", "aupro", "pixel_f1max"))


def test_anomaly_metrics_rejects_bad_inputs() -> None:
    metric = AnomalyMetrics()
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()
    maps, scores = torch.rand(2, 8, 8), torch.rand(2)
    with pytest.raises(ValueError, match="expected maps"):
        metric.update(maps, scores, torch.zeros(2, 1, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="masks must contain only 0 and 1"):
        metric.update(maps, scores, torch.full((2, 8, 8), 255), torch.zeros(2))


def test_f1_threshold_reaches_f1_max():
    from fewshot_anomaly.metrics import f1_max_threshold

    rng = np.random.default_rng(3)
    scores, labels = rng.random(200).round(2), rng.random(200) < 0.3
    best, threshold = f1_max_threshold(scores, labels)
    predicted = scores >= threshold
    tp = (predicted & labels).sum()
    assert best == pytest.approx(2 * tp / (predicted.sum() + labels.sum()))
    assert best == pytest.approx(f1_max(scores, labels))
    metrics = AnomalyMetrics()
    metrics.update(torch.zeros(1, 2, 2), torch.zeros(1), torch.zeros(1, 2, 2), torch.zeros(1))
    assert metrics.f1_threshold() is None  # no defect pixel: no threshold
