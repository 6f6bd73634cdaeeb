"""Narrowing of categorical parameters, for :func:`hpo.narrowing.narrow`: a choice is dropped only
on evidence that it is worse, never while a numeric range moves past an edge, and while a choice
is kept the numeric ranges keep the region where its best trial lies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpo.evidence import in_scale, numeric_evidence, shuffles, worse_than
from hpo.ranges import scale
from hpo.records import PARAM_PREFIX, Change
from hpo.space import Categorical, SearchSpace

__all__ = [
    "NONE",
    "Climb",
    "choice_bests",
    "narrow_categorical",
    "rival_bests",
    "rival_climbs",
    "same_choice",
    "unbracketed",
]

NONE = object()  # no incumbent value for a parameter


@dataclass(frozen=True)
class Climb:
    """A choice whose own trials score higher toward one edge of a numeric range: its region
    lies past that edge, so the evidence against it holds only inside the range."""

    param: str  # the categorical
    choice: Any
    numeric: str  # the numeric parameter
    direction: int  # +1: toward the upper edge, -1: the lower
    rho: float
    p: float

    def note(self) -> str:
        edge = "upper" if self.direction > 0 else "lower"
        return (
            f"trials climb toward {self.numeric}'s {edge} edge "
            f"(rank correlation {self.rho:+.2f}, p={self.p:.3f})"
        )


def narrow_categorical(
    name: str,
    param: Categorical,
    labels: list[Any],
    score: np.ndarray,
    policy,
    incumbent: Any,
    n_params: int = 1,
    climbs: tuple[Climb, ...] = (),
) -> tuple[Change, bool]:
    """Drop a choice only when enough of its trials score clearly below the best choice's: at
    alpha / 2m for the m = ``n_params`` parameters of the space (Bonferroni's), so that a noise
    round rarely drops any choice; and never a choice whose own trials climb toward an edge
    (``climbs``: its best region lies outside the ranges)."""
    member = members(param.choices, labels)
    if not any(map(any, member)):
        return Change(name, param, param, "kept", "kept: no trial used a known choice"), False
    best = next(i for i in range(len(labels)) if any(m[i] for m in member))
    b = next(j for j, m in enumerate(member) if m[best])
    rival = score[member[b]]
    if len(param.choices) == 1:
        only = f"kept: {param.choices[0]!r} is the only choice left (median {np.median(rival):.3g})"
        return Change(name, param, param, "kept", only, settled=True), False
    dropped, notes, evidence, unjudged = {}, [], False, False
    level, perms = policy.alpha / (2 * n_params), shuffles(policy, n_params)
    for j, c in enumerate(param.choices):
        if j == b:
            continue
        mine = score[member[j]]
        if min(len(mine), len(rival)) < policy.min_choice_trials:
            notes.append(f"{c!r} {len(mine)} trials")
            unjudged = True
            continue
        p = worse_than(mine, rival, perms)
        gap = float(np.median(rival) - np.median(mine))
        clear = p < level and gap >= 0.1 * float(np.ptp(score))  # a gap that matters
        evidence |= clear
        climb = next((cl for cl in climbs if same_choice(c, cl.choice)), None)
        held = incumbent is not NONE and same_choice(c, incumbent)
        if clear and climb is None and not held:
            dropped[j] = f"{c!r} ({len(mine)} trials, median {np.median(mine):.3g}, p={p:.3f})"
        else:
            notes.append(_kept_note(c, p, gap, (clear, p < level), climb, held))
    lead = f"best choice {param.choices[b]!r} (median {np.median(rival):.3g})"
    if not dropped:
        why = f"kept: no choice is clearly worse than the {lead}"
        need = (
            f"need p < {level:.2g}, a median at least {0.1 * float(np.ptp(score)):.3g} below "
            f"and {policy.min_choice_trials} trials each"
        )
        detail = f"{why}: {'; '.join(notes)} ({need})"
        return Change(name, param, param, "kept", detail, settled=not unjudged), evidence
    keep = tuple(c for j, c in enumerate(param.choices) if j not in dropped)
    detail = f"dropped {', '.join(dropped.values())}: clearly below the {lead}"
    return Change(name, param, Categorical(keep), "shrunk", detail), True


def _kept_note(choice: Any, p: float, gap: float, worse: tuple, climb, held: bool) -> str:
    """Why a choice stays (``worse``: clearly worse, ranked below): its trials climb past an
    edge, it holds the best trial so far, it ranks below by too little to matter, or its p-value
    is too high."""
    clear, below = worse
    if clear and climb is not None:
        return f"{choice!r} below here, but its {climb.note()}"
    if clear and held:
        return f"{choice!r} p={p:.3f}, but it holds the best trial so far"
    if below:
        return f"{choice!r} p={p:.3f}, but its median is only {max(gap, 0.0):.3g} below"
    return f"{choice!r} p={p:.3f}"


def same_choice(a: Any, b: Any) -> bool:
    return Categorical((a,)).contains(b)


def members(choices, labels: list[Any]) -> list[np.ndarray]:
    """For each choice, which of the trials (their ``labels``, in ranked order) took it."""
    return [np.array([same_choice(c, v) for v in labels], dtype=bool) for c in choices]


def choice_bests(choices, labels: list[Any]) -> list[int | None]:
    """For each choice, the first of the trials (their ``labels``, in ranked order: its best)
    that took it, or None."""
    return [int(np.argmax(took)) if took.any() else None for took in members(choices, labels)]


def rival_bests(space: SearchSpace, changes: Mapping[str, Change], scored) -> list[int]:
    """Rows (in ranked order) of the best trial of each choice a categorical keeps, among the
    round's better half: a numeric range narrowed around the leading choice's best trials alone
    would leave out the region where another choice does best (adam's lr is not sgd's)."""
    rows: set[int] = set()
    half = len(scored) // 2
    for name, param in space.items():
        kept = changes.get(name)
        column = PARAM_PREFIX + name
        if not isinstance(param, Categorical) or kept is None or column not in scored.columns:
            continue
        if len(kept.new.choices) < 2:
            continue
        for i in choice_bests(kept.new.choices, scored[column].tolist()):
            if i is not None and 0 < i < half:
                rows.add(i)
    return sorted(rows)


def rival_climbs(space: SearchSpace, scored, score: np.ndarray, policy) -> list[Climb]:
    """Choices other than the leading one whose own trials' scores still rise toward an edge of a
    numeric range past the leading choice's best trial (a Spearman trend over those trials at
    alpha / 4m for the m (choice, range) pairs, two sides each; the choice's best trial in the
    edge band): a choice can lose inside the ranges only because its region lies past them (a
    large batch's best optimizer is not a small batch's). A shared optimum is no climb: past it,
    the choice's scores fall. When at most one of its trials lies farther out than its best, the
    trend is read over all its trials (adam's region 1.5 decades above a range where sgd does
    best near the top: few of its trials lie past sgd's best; 'b''s 3 doublings above the batch
    range: five trials in perfect order cannot pass alpha / 4m, seven can)."""
    numeric = {  # each numeric with a column: (usable, its values in its own scale)
        n: _full(*in_scale(p, scored[PARAM_PREFIX + n]))
        for n, p in space.items()
        if not isinstance(p, Categorical) and PARAM_PREFIX + n in scored.columns
    }
    pairs = _pairs(space, scored, policy, list(numeric)) if len(score) else []
    level, perms = policy.alpha / (4 * max(len(pairs), 1)), shuffles(policy, 2 * len(pairs))
    climbs = (_climb(space, numeric, score, policy, level, perms, *pair) for pair in pairs)
    return [c for c in climbs if c is not None]


def _full(x: np.ndarray, ok: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``in_scale``'s usable values put back in every trial's row (0 where unusable)."""
    t_all = np.zeros(len(x))
    t_all[ok] = t
    return ok, t_all


def _pairs(space: SearchSpace, scored, policy, numeric: list[str]) -> list[tuple]:
    """(categorical, choice, its trials, the leading choice's trials, numeric) to test."""
    pairs = []
    for name, param in space.items():
        column = PARAM_PREFIX + name
        if not isinstance(param, Categorical) or column not in scored.columns:
            continue
        took = members(param.choices, scored[column].tolist())
        first = next((j for j, m in enumerate(took) if m[0]), None)
        if first is None:  # the round's best trial took no known choice
            continue
        for c, mine in zip(param.choices, took, strict=True):
            if mine.sum() >= policy.min_choice_trials and c is not param.choices[first]:
                pairs += [(name, c, mine, took[first], n) for n in numeric]
    return pairs


def _climb(space, numeric, score, policy, level, perms, name, c, mine, lead, num) -> Climb | None:
    param = space[num]
    usable, t_all = numeric[num]
    if not (lead & usable).any():
        return None
    pivot = t_all[lead & usable][0]  # the leading choice's best trial
    lo, hi = scale(param)[:2]
    band = 2 * policy.edge * (hi - lo)
    for direction in (1, -1):  # the choice's trials past the lead's best, on each side
        ok = mine & usable & (direction * (t_all - pivot) > 0)
        out = direction * t_all[mine & usable]
        if ok.any() and (out > out[0]).sum() <= 1:
            # its best lies farthest out, or but one trial (scoring lower for another parameter,
            # or just past the peak): the trend over all its trials. Past a shared optimum the
            # scores fall, so the best has more of its trials beyond it
            ok = mine & usable
        if ok.sum() < policy.min_choice_trials:
            continue
        t = t_all[ok]  # ranked order: t[0] is the choice's best there
        ev = numeric_evidence(t, score[ok], max(1, min(policy.min_top, len(t) - 1)), perms)
        edge = t[0] >= hi - band if direction > 0 else t[0] <= lo + band
        if ev.p_trend < level and ev.rho * direction > 0 and edge:
            return Climb(name, c, num, direction, ev.rho, ev.p_trend)
    return None


def unbracketed(changes: dict[str, Change]) -> dict[str, Change]:
    """No choice is dropped while a numeric range moves past an edge: the choices were compared
    only inside the old range, and the region the range moves into may be where one of them
    does best (adam's best lr may lie above sgd's and above the starting range)."""
    moved = [  # hpo.ranges.reason_of: a bound moved out past the old range
        c.name
        for c in changes.values()
        if not isinstance(c.old, Categorical) and c.reason in ("shifted", "extended")
    ]
    if not moved:
        return changes
    out = dict(changes)
    for name, c in changes.items():
        if isinstance(c.old, Categorical) and len(c.new.choices) < len(c.old.choices):
            detail = (
                f"kept: {', '.join(moved)} moved past an edge, so the choices are compared "
                f"again inside the new range (else: {c.detail})"
            )
            out[name] = dataclasses.replace(c, new=c.old, reason="kept", detail=detail)
    return out
