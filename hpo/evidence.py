"""Is a parameter's effect above the round's noise? Permutation tests on a round's trials.

Pure and deterministic (a fixed-seed generator): the same trials always give the same p-values.
A parameter *matters* when its best trials sit closer together than the best trials of shuffled
scores do (the spread of their values: an optimum inside the range), or when the score trends
with it more than shuffled scores do (a Spearman rank correlation: an optimum past an edge).
The scores are oriented: higher is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NumericEvidence", "numeric_evidence", "worse_than"]


@dataclass(frozen=True)
class NumericEvidence:
    """p-values of the two tests (with ``rho``, the rank correlation of value and score)."""

    p_apart: float  # the top trials' values are closer together than by chance
    p_trend: float  # the score rises or falls with the value
    rho: float

    def significant(self, alpha: float) -> bool:
        """Either test below alpha / 2 (Bonferroni for the two); alpha >= 1: always."""
        return alpha >= 1 or min(self.p_apart, self.p_trend) < alpha / 2

    @property
    def p(self) -> float:
        return min(self.p_apart, self.p_trend)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), 0-based, as ``scipy.stats.rankdata`` - 1."""
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts - 1) / 2, counts)
    return ranks


def numeric_evidence(
    x: np.ndarray, score: np.ndarray, k: int, permutations: int = 199
) -> NumericEvidence:
    """Tests of ``x`` (a parameter, in its own scale) against ``score`` over a round's trials;
    the top ``k`` trials by score are 'the best'."""
    n = len(x)
    if n < 3 or k < 1 or k >= n or np.ptp(x) == 0:
        return NumericEvidence(1.0, 1.0, 0.0)
    rng = np.random.default_rng(0)
    x = (x - x.min()) / np.ptp(x)  # in [0, 1]: no overflow at extreme values
    rx = _ranks(x)
    rx = (rx - rx.mean()) / (np.linalg.norm(rx - rx.mean()) or 1.0)
    rs = _ranks(score)
    perms = np.vstack([rs, np.array([rng.permutation(rs) for _ in range(permutations)])])
    centred = perms - perms.mean(axis=1, keepdims=True)
    rho = centred @ rx / np.maximum(np.linalg.norm(centred, axis=1), 1e-12)
    top = perms >= np.sort(rs)[n - k]  # the k best of each (shuffled) scoring
    m = top.sum(axis=1)  # k, or more on ties
    mean = (top * x).sum(axis=1) / m
    spread = (top * (x - mean[:, None]) ** 2).sum(axis=1) / m
    p_apart = (1 + np.sum(spread[1:] <= spread[0] + 1e-12)) / (permutations + 1)
    p_trend = (1 + np.sum(np.abs(rho[1:]) >= abs(rho[0]) - 1e-12)) / (permutations + 1)
    return NumericEvidence(float(p_apart), float(p_trend), float(rho[0]))


def worse_than(a: np.ndarray, b: np.ndarray, permutations: int = 199) -> float:
    """One-sided p-value that scores ``a`` are lower than scores ``b`` (Mann-Whitney's rank
    statistic, by permutation)."""
    both = np.concatenate([a, b])
    if len(a) == 0 or len(b) == 0 or np.ptp(both) == 0:
        return 1.0
    r = _ranks(both)
    rng = np.random.default_rng(0)
    stats = [r[: len(a)].mean()]
    for _ in range(permutations):
        stats.append(rng.permutation(r)[: len(a)].mean())
    stats = np.array(stats)
    return float((1 + np.sum(stats[1:] <= stats[0] + 1e-12)) / (permutations + 1))
