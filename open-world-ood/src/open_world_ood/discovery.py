"""Discovery: clustering confident unknown detections into candidate new classes (the step of open-world
learning before an annotator names them; ORE and PROB leave it to the oracle of the next task).

k-means (k-means++ seeding, Lloyd iterations) on the L2-normalised embeddings of the unknown detections,
with the number of clusters chosen without labels, by the mean silhouette over ``k`` in 2..``max_k``
(Rousseeuw 1987). ``purity`` scores a clustering against the true classes of the objects the detections
fall on (each cluster counts its majority class; detections on no object are one more class,
"background"): 1 when every cluster holds one class.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """Cluster index of each row of ``x`` (n, d)."""
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):  # k-means++: the next centre with probability proportional to the squared distance
        d2 = np.min(((x[:, None] - np.array(centres)[None]) ** 2).sum(-1), 1)
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    centres = np.array(centres)
    assignment = np.zeros(len(x), dtype=int)
    for _ in range(iterations):
        assignment = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        new = np.array([x[assignment == c].mean(0) if (assignment == c).any() else centres[c] for c in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return assignment


def silhouette(x: np.ndarray, assignment: np.ndarray) -> float:
    """Mean silhouette ``(b - a) / max(a, b)`` (a: mean distance within the point's cluster, b: to the nearest
    other cluster); 0 for points alone in their cluster, as scikit-learn."""
    squared = (x ** 2).sum(1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None] - 2 * x @ x.T, 0))
    clusters, index = np.unique(assignment, return_inverse=True)
    if len(clusters) < 2:
        return 0.0
    one_hot = np.eye(len(clusters))[index]                      # (n, K)
    sizes = one_hot.sum(0)
    sums = distances @ one_hot                                  # (n, K): summed distance to each cluster
    own = sizes[index]
    a = sums[np.arange(len(x)), index] / np.maximum(own - 1, 1)
    others = np.where(one_hot > 0, np.inf, sums / sizes)
    b = others.min(1)
    values = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(values.mean())


def discover(embeddings: np.ndarray, max_k: int = 10, max_points: int = 1500, seed: int = 0) -> np.ndarray:
    """Cluster indices of the unknown detections' embeddings, ``k`` chosen by the silhouette (at most
    ``max_points`` points are used to choose it, a random subset, since the silhouette is quadratic)."""
    x = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    if len(x) < 3:
        return np.zeros(len(x), dtype=int)
    subset = np.random.default_rng(seed).permutation(len(x))[:max_points]
    scores = {k: silhouette(x[subset], kmeans(x[subset], k, seed)) for k in range(2, min(max_k, len(x) - 1) + 1)}
    return kmeans(x, max(scores, key=scores.get), seed)


def purity(assignment: np.ndarray, classes: list[str]) -> float:
    """Fraction of points whose cluster's majority class is their class."""
    if not len(assignment):
        return float("nan")
    majority = sum(Counter(c for c, a in zip(classes, assignment) if a == cluster).most_common(1)[0][1]
                   for cluster in np.unique(assignment))
    return majority / len(assignment)
