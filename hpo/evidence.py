"""Is a parameter's effect above the round's noise? Permutation tests on a round's trials.

Pure and deterministic (a fixed-seed generator): the same trials always give the same p-values.
A parameter *matters* when its best trials sit closer together than the best trials of shuffled
scores do (the spread of their values: an optimum inside the range), or when the score trends
with it more than shuffled scores do (a Spearman rank correlation: an optimum past an edge).
The scores are oriented: higher is better. Over several parameters, Holm's step-down keeps the
chance that any noise parameter passes near alpha; exploration trials (from the hard limits) tell
whether the round's ranges beat the limits at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo.ranges import as_float

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "NumericEvidence",
    "clear_lead",
    "WIDEN_MIN_TRIALS",
    "Tested",
    "holm_levels",
    "in_scale",
    "noise_floor",
    "numeric_evidence",
    "ranges_no_better",
    "ranks",
    "shuffles",
    "stands_out",
    "tested_param",
    "worse_than",
]


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


def ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), 0-based, as ``scipy.stats.rankdata`` - 1."""
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    out = np.empty(len(x))
    out[order] = np.repeat(first + (counts - 1) / 2, counts)
    return out


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
    rx = ranks(x)
    rx = (rx - rx.mean()) / (np.linalg.norm(rx - rx.mean()) or 1.0)
    rs = ranks(score)
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
    r = ranks(both)
    rng = np.random.default_rng(0)
    stats = [r[: len(a)].mean()]
    for _ in range(permutations):
        stats.append(rng.permutation(r)[: len(a)].mean())
    stats = np.array(stats)
    return float((1 + np.sum(stats[1:] <= stats[0] + 1e-12)) / (permutations + 1))


@dataclass(frozen=True)
class Tested:
    """A numeric parameter's values over the round's ranked trials and its evidence (None: too
    few trials with a value)."""

    name: str
    x: np.ndarray  # the values of the trials that have one, best first
    t: np.ndarray  # the same, in the parameter's own scale (log10 on a log range)
    top: int
    ev: Any = None


def in_scale(param, col) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A numeric column as floats ``x``, which values are usable (finite, and > 0 on a log
    range), and ``t``: the usable ones in the parameter's own scale (log10 on a log range)."""
    x = np.array([as_float(v) for v in col], dtype=float)
    ok = np.isfinite(x) & ((x > 0) if param.log else True)
    return x, ok, np.log10(x[ok]) if param.log else x[ok]


def tested_param(name, param, col, score, k, policy, m: int) -> Tested:
    x, ok, t = in_scale(param, col)
    top = min(k, int(ok[:k].sum()) or 1)
    if ok.sum() < policy.min_trials:
        return Tested(name, x[ok], t, top)
    perms = shuffles(policy, m)
    return Tested(name, x[ok], t, top, numeric_evidence(t, score[ok], top, perms))


def shuffles(policy, m: int) -> int:
    """Permutations behind a p-value judged at a level down to alpha / 2m (Holm's strictest, or
    a choice's): ``policy.permutations``, raised so that the smallest p-value can pass it."""
    return max(policy.permutations, math.ceil(8 * m / policy.alpha))


def noise_floor(score: np.ndarray) -> tuple[float, float]:
    """The round's median score and its robust sd (1.4826 x the median absolute deviation)."""
    median = float(np.median(score))
    return median, 1.4826 * float(np.median(np.abs(score - median)))


def clear_of_noise(score: np.ndarray) -> np.ndarray:
    """Which scores stand clearly above the noise floor (median + 3 robust sd). When some do, the
    best trials are taken among them (hpo.narrowing) and another choice's best trial is a local
    centre only if it is one of them (hpo.explore), not a noise winner that ranks next to them."""
    if not len(score):  # nothing scored yet (a resumed round 1): no numpy warning
        return np.zeros(0, dtype=bool)
    median, noise = noise_floor(score)
    return score > median + 3 * noise


def clear_lead(score: np.ndarray) -> bool:
    """Whether the best of a study's scores so far (oriented: higher is better) stands clear of
    their noise (:func:`clear_of_noise`): a lead worth refining in the last round rather than
    widening away from (hpo.narrowing)."""
    score = np.asarray(score, dtype=float)
    score = score[np.isfinite(score)]
    return len(score) >= 4 and bool(clear_of_noise(score).any())  # if any is clear, the best is


STANDOUT = 4.0  # robust sds above the round's median (pure Gaussian noise, 30 trials: 2% of rounds)


def stands_out(score: np.ndarray) -> bool:
    """Whether the round's best score stands far out of its noise (median + 4 robust sd, the
    sd from the median absolute deviation; noise-free scores: any score above the median): a
    real effect, even when too few trials share it for a test on any one parameter to pass."""
    if len(score) < 4:
        return False
    median, noise = noise_floor(score)
    return bool(np.max(score) > median + STANDOUT * noise)


def holm_levels(tested: Mapping[str, Tested], alpha: float) -> dict[str, float]:
    """Each parameter's level (Holm's step-down over the parameters tested, so that testing many
    parameters does not make a noise-level one look like it matters): the smallest p-value is
    judged at alpha / m, the next at alpha / (m - 1), ...; after the first that fails, every later
    one is judged at the level that failed."""
    if alpha >= 1:
        return dict.fromkeys(tested, alpha)
    order = sorted(tested, key=lambda n: tested[n].ev.p if tested[n].ev else 2.0)
    levels, m, failed = {}, len(order), None
    for i, name in enumerate(order):
        level = failed or alpha / (m - i)
        ev = tested[name].ev
        if failed is None and not (ev and ev.significant(level)):
            failed = level
        levels[name] = level
    return levels


WIDEN_MIN_TRIALS = 5  # exploration trials and ranges' trials each, to compare the two


def ranges_no_better(scored: pd.DataFrame, score: np.ndarray, policy) -> str:
    """Why the round's ranges look no better than the hard limits ('' when they do, or when it
    cannot be judged): an exploration trial (drawn from the limits) was the best of the round,
    or the ranges' trials do not score clearly above the exploration trials (judged with at
    least WIDEN_MIN_TRIALS of each, not ``policy.min_choice_trials``: that is the choices')."""
    if "explore" not in scored.columns or not len(score):
        return ""
    explore = scored["explore"].fillna(False).astype(bool).to_numpy()
    if explore[0]:
        return "an exploration trial beat the ranges"
    wide, mine = score[explore], score[~explore]
    if min(len(wide), len(mine)) < WIDEN_MIN_TRIALS:
        return ""
    p = worse_than(wide, mine, policy.permutations)
    return (
        "" if p < policy.alpha else f"the ranges score no better than the hard limits (p={p:.2f})"
    )
