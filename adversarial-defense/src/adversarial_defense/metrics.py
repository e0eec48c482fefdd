"""Evaluation metrics: Market-1501 retrieval (CMC, mAP) and robustness curves (accuracy over eps).

``market_cmc_map`` is the Market-1501 protocol (Zheng et al., "Scalable Person Re-identification: A
Benchmark", ICCV 2015) exactly as torchreid computes it (Zhou & Xiang, "Torchreid", arXiv 2019:
``torchreid.metrics.rank.eval_market1501``), so numbers compare with the re-ID attack papers that report through
it (e.g. Bai et al., "Adversarial Metric Attack and Defense for Person Re-identification", TPAMI), vectorised
over queries instead of torchreid's per-query loop.
"""

from __future__ import annotations

import numpy as np

_QUERY_CHUNK = 256  # queries ranked at once: bounds memory to a few (256, num_gallery) arrays


def market_cmc_map(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                   g_camids: np.ndarray, max_rank: int = 50) -> tuple[np.ndarray, float]:
    """CMC curve (float32, length ``min(max_rank, num_gallery)``) and mAP of a query-gallery distance matrix.

    For each query, the gallery is sorted by increasing distance and the entries with the query's pid *and*
    camera are removed (the same person seen by the same camera is too easy a match; entries of other pids in
    the query's camera stay). A query with no gallery entry of its pid left is skipped (it counts neither in
    CMC nor in mAP). On the ranked list that remains:

    - CMC@k = 1 when a true match is within the first k entries; the curve is averaged over valid queries.
      Where a query's list is shorter than ``max_rank`` (its camera held most of the gallery), its curve is
      continued at 1 (it has a match); torchreid would fail on such ragged curves.
    - AP = (1 / R) * sum over the ranks k of the R true matches of precision@k (matches in the first k / k);
      mAP is the mean over valid queries.

    Ties in distance are broken by gallery order (a stable sort; torchreid's ``np.argsort`` quicksort leaves
    them unspecified). Raises ValueError when no query has a valid match, as torchreid does (an assertion).
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids, q_camids, g_camids = (np.asarray(a).ravel() for a in (q_pids, g_pids, q_camids, g_camids))
    num_q, num_g = distmat.shape if distmat.ndim == 2 else (-1, -1)
    if num_q < 0 or len(q_pids) != num_q or len(q_camids) != num_q or len(g_pids) != num_g or len(g_camids) != num_g:
        raise ValueError(f"distmat must be (num_query, num_gallery) = ({len(q_pids)}, {len(g_pids)}) with "
                         f"{len(q_camids)} query and {len(g_camids)} gallery camera ids, got {distmat.shape}")
    max_rank = min(max_rank, num_g)
    cmc_sum = np.zeros(max_rank, np.float64)
    aps = []
    for start in range(0, num_q, _QUERY_CHUNK):
        rows = slice(start, start + _QUERY_CHUNK)
        order = np.argsort(distmat[rows], axis=1, kind="stable")
        match = g_pids[order] == q_pids[rows, None]
        keep = ~(match & (g_camids[order] == q_camids[rows, None]))
        hits = match & keep
        valid = hits.any(axis=1)
        hits, keep = hits[valid], keep[valid]
        rank = np.cumsum(keep, axis=1) - 1  # each kept entry's 0-based rank in the list without removed entries
        first = rank[np.arange(len(hits)), hits.argmax(axis=1)]  # rank of the first true match
        cmc_sum += (first[:, None] <= np.arange(max_rank)).sum(axis=0)
        # precision at each true match: (matches so far) / (its rank + 1); removed entries count nowhere (those
        # ranked before the first kept entry have rank -1: clipped, their precision is multiplied by 0 anyway)
        precision = np.cumsum(hits, axis=1) / (np.maximum(rank, 0) + 1.0)
        aps.append((precision * hits).sum(axis=1) / hits.sum(axis=1))
    aps = np.concatenate(aps) if aps else np.zeros(0)
    if not len(aps):
        raise ValueError("no query has a gallery match in another camera: all query identities are missing from "
                         "the gallery (or seen only by the query's own camera)")
    return (cmc_sum / len(aps)).astype(np.float32), float(aps.mean())


def accuracy_eps_auc(eps: np.ndarray, acc: np.ndarray) -> float:
    """Normalised area under the robust-accuracy-vs-eps curve: (1 / eps_max) * integral over [0, eps_max] of
    acc(eps), by the trapezoid rule over the given points. In [0, 1] for accuracies in [0, 1]; 1 means no
    accuracy lost up to eps_max, the clean accuracy is its value for a model that breaks at once. One number to
    rank defenses over a whole range of budgets rather than at one eps (Carlini et al., "On Evaluating
    Adversarial Robustness", arXiv 2019, ask for accuracy-vs-budget curves rather than single points).

    ``eps`` must contain 0 (the clean accuracy) and distinct values, in any order; ``acc`` the accuracy at each.
    Only comparable between curves sampled on the same eps grid (a different grid is a different quadrature).
    """
    eps, acc = np.asarray(eps, dtype=np.float64).ravel(), np.asarray(acc, dtype=np.float64).ravel()
    if eps.shape != acc.shape or len(eps) < 2:
        raise ValueError(f"need matching eps and acc with at least two points, got {eps.shape} and {acc.shape}")
    order = np.argsort(eps)
    eps, acc = eps[order], acc[order]
    if eps[0] != 0 or np.any(np.diff(eps) <= 0):
        raise ValueError(f"eps must be distinct, non-negative values including 0 (the clean accuracy), got {eps}")
    if np.any((acc < 0) | (acc > 1)):
        raise ValueError(f"accuracies must be fractions in [0, 1], got {acc}")
    return float(np.sum((acc[1:] + acc[:-1]) / 2 * np.diff(eps)) / eps[-1])
