"""Rollout metrics: success rates with Wilson 95% intervals, episode length, sub-goals completed.

Success rates are reported as in CLIPort / VIMA-Bench (mean success over evaluation episodes); the
interval is Wilson's score interval (Wilson 1927), which, unlike the normal approximation, stays
inside [0, 1] and is sensible at 0% and 100% with 50-100 episodes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from vlm_robot_control.env.tasks import SINGLE_STEP


@dataclass
class EpisodeResult:
    family: str
    split: str
    seed: int
    instruction: str
    success: bool
    length: int
    subgoals_done: int
    subgoals_total: int


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for the default z)."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)      # exact ends: no rounding past p
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def rollout_metrics(results: Sequence[EpisodeResult]) -> dict[str, float]:
    """``test/success_rate_<split>`` (all families pooled) with ``_ci_low``/``_ci_high``,
    ``test/success_rate_<split>_<family>``, ``test/success_rate_<family>`` (splits pooled),
    ``test/episode_length``, ``test/multistep_completed`` and ``test/episodes``."""
    if not results:
        raise ValueError("no rollouts to score")
    out: dict[str, float] = {}
    groups: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        groups[f"success_rate_{r.split}"].append(r)
        groups[f"success_rate_{r.split}_{r.family}"].append(r)
        groups[f"success_rate_{r.family}"].append(r)
    for name, rs in sorted(groups.items()):
        k = sum(r.success for r in rs)
        out[f"test/{name}"] = k / len(rs)
    for split in {r.split for r in results}:
        rs = groups[f"success_rate_{split}"]
        lo, hi = wilson_interval(sum(r.success for r in rs), len(rs))
        out[f"test/success_rate_{split}_ci_low"], out[f"test/success_rate_{split}_ci_high"] = lo, hi
    out["test/episode_length"] = sum(r.length for r in results) / len(results)
    multi = [r for r in results if r.family not in SINGLE_STEP] or list(results)
    out["test/multistep_completed"] = sum(r.subgoals_done for r in multi) / len(multi)
    out["test/episodes"] = float(len(results))
    return out
