"""Narrow a search space around a round's best trials, the 6-5 way, and say why for each bound.

Pure: (space, trials, policy) -> (next space, one Change per parameter). It decides as a careful
researcher would, on evidence judged against the round's noise (:mod:`hpo.evidence`):

- A parameter is narrowed only when its effect beats shuffled scores; otherwise it is kept.
- When the score climbs toward an edge, the range moves past it by at least a whole width, in
  steps that double while the climb goes on (6-5's best learning rates sit above its start).
- A best trial that crowds an edge means the optimum is not bracketed yet: that side moves out.
- A categorical choice is dropped only when enough of its trials score clearly worse (at
  alpha / 2m over m parameters). While a choice is kept, the numeric ranges keep the region
  where its best trial lies (when it ranks in the round's better half): adam's best lr is not
  sgd's. A choice whose own scores climb toward an edge past the leading choice's best trial
  (its region lies outside the range) is kept, and the range reaches a width past that edge
  (``Change.reaches``: the next round samples at random, so that trials go there).
- No choice is dropped while a numeric range moves past an edge: the choices were compared only
  inside a range found not to bracket the optimum (adam's best lr may lie past sgd's edge).
- The parameters are tested together (Holm's step-down): noise parameters do not add up to a
  false lead.
- A signal (a parameter's own test at alpha, or a trial far out of the round's noise) lets the
  next round's trials learn from the scores even after a widening (hpo.records.RoundRecord.
  learns); a trial far out of the noise keeps the trials of the ranges left in what they learn
  from (hpo.records.learning_since). A signal narrows nothing.
- When no parameter shows evidence and the ranges' trials score no better than the exploration
  trials (drawn from the hard limits), or an exploration trial beat them all, the ranges are
  wrong: they widen toward the hard limits. The best trial so far (``incumbent``) always stays
  inside the new ranges, its choice too (an exploration trial may bring a dropped one back).
- A survey (``survey``, the default: round 1's trials all exploration trials) narrows nothing but
  to keep the best trial: it sampled the limits, not the ranges, and a TPE clusters its draws
  near early winners, which the tests would read as evidence. The round after it learns from
  the survey only when a trial stood out (``Change.surveyed``), as after a widening.
- A round whose best trial stands far out of its noise does not widen: that lead is refined
  where it is (the ranges stretch to keep it, as they keep any best trial so far). Nor does the
  round before the last when the best trial so far stands clear of the study's noise (``final``):
  no round would follow a widening to narrow it again, so that lead is refined instead.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo.categorical import (
    NONE,
    narrow_categorical,
    rival_bests,
    rival_climbs,
    same_choice,
    unbracketed,
)
from hpo.evidence import (
    Tested,
    clear_of_noise,
    holm_levels,
    ranges_no_better,
    stands_out,
    tested_param,
)
from hpo.ranges import as_float, describe, reason_of, rebuild, relative_change, scale
from hpo.records import PARAM_PREFIX, Change, explored_only, oriented, ranked
from hpo.space import Categorical, Param, SearchSpace, _fmt

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "NarrowingPolicy",
    "converged",
    "narrow",
    "relative_change",
]  # relative_change: re-exported
_TINY, _HUGE = sys.float_info.min, sys.float_info.max


def _check(name: str, value: Any, low: float, high: float, accepted: str, integer: bool) -> None:
    """One-line error unless ``value`` is a number (an int if asked) in [low, high]."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        raise ValueError(f"NarrowingPolicy.{name} must be {accepted}, but got {value!r}")


@dataclass(frozen=True)
class NarrowingPolicy:
    """How far to narrow: which trials count as best, the margin kept around them, the edges."""

    top_fraction: float = 0.2  # fraction of finished trials kept as the best
    min_top: int = 3  # at least this many best trials, when there are that many
    margin: float = 0.25  # added on each side, as a fraction of the best trials' span
    min_width: float = 0.1  # margin floor, as a fraction of the current width (span may be 0)
    edge: float = 0.1  # a best trial this close to a bound (fraction of width) crowds it
    push: float = 0.5  # past a crowded edge, move this fraction of the current width at least
    min_trials: int = 4  # fewer finished trials than this: keep every range
    alpha: float = 0.05  # evidence: a parameter matters when p < alpha (1: always narrow)
    min_choice_trials: int = 5  # a choice is dropped only with this many trials of it and its rival
    explore: float = 0.2  # share of each round's trials drawn from the hard limits (0: none)
    survey: float = 1.0  # share of round 1's trials drawn from the hard limits (0: none)
    local: float = 0.2  # share drawn close to the best trial so far (0: none)
    permutations: int = 399  # shuffles behind each p-value

    def __post_init__(self) -> None:
        below = math.nextafter  # open bounds: the next float inside
        _check("top_fraction", self.top_fraction, below(0, 1), 1, "a number in (0, 1]", False)
        _check("min_top", self.min_top, 1, math.inf, "an int >= 1", True)
        _check("margin", self.margin, 0, _HUGE, "a finite number >= 0", False)
        _check("min_width", self.min_width, below(0, 1), _HUGE, "a finite number > 0", False)
        _check("edge", self.edge, 0, below(0.5, 0), "a number in [0, 0.5)", False)
        _check("push", self.push, 0, _HUGE, "a finite number >= 0", False)
        _check("min_trials", self.min_trials, 1, math.inf, "an int >= 1", True)
        _check("alpha", self.alpha, below(0, 1), 1, "a number in (0, 1]", False)
        _check("min_choice_trials", self.min_choice_trials, 1, math.inf, "an int >= 1", True)
        _check("explore", self.explore, 0, below(1, 0), "a number in [0, 1)", False)
        _check("survey", self.survey, 0, 1, "a number in [0, 1]", False)
        _check("local", self.local, 0, below(1, 0), "a number in [0, 1)", False)
        _check("permutations", self.permutations, 19, 100_000, "an int in [19, 100000]", True)


def narrow(
    space: SearchSpace,
    trials: pd.DataFrame,
    *,
    direction: str = "maximize",
    policy: NarrowingPolicy = NarrowingPolicy(),  # noqa: B008 (frozen, so sharing it is safe)
    incumbent: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Change]] = (),
    final: bool = False,
) -> tuple[SearchSpace, dict[str, Change]]:
    """The next round's space, narrowed (or moved) around the best finished trials.

    ``trials`` has columns ``value``, ``state`` (Optuna state names) and ``params_<name>``, as
    ``optuna.Study.trials_dataframe()`` gives. Only COMPLETE trials with a finite value count.
    ``incumbent``: the best parameters so far, kept inside the new ranges; ``history``: the
    changes of the earlier rounds, oldest first (a climb that goes on takes larger steps);
    ``final``: the next round is the last and the best trial so far stands clear of the study's
    noise (:func:`hpo.evidence.clear_lead`): the ranges do not widen.
    """
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', but got {direction!r}")
    if missing := sorted({"value", "state"} - set(trials.columns)):
        raise ValueError(f"trials: missing column(s) {missing}; expected value, state, params_*")
    scored = ranked(trials, direction)
    n = len(scored)
    score = oriented(scored, direction)
    k = _top_count(score, policy)
    incumbent = dict(incumbent or {})
    changes, evidence, tested = {}, {}, {}
    survey = policy.survey > 0 and not any(history) and explored_only(scored)  # round 1
    climbs = [] if survey or n < policy.min_trials else rival_climbs(space, scored, score, policy)
    for name, param in space.items():
        column = PARAM_PREFIX + name
        if not (why := _unjudged(n, survey, column, trials.columns, policy)):
            col = scored[column].tolist()
            if isinstance(param, Categorical):
                inc, own = incumbent.get(name, NONE), tuple(c for c in climbs if c.param == name)
                changes[name], evidence[name] = narrow_categorical(
                    name, param, col, score, policy, inc, len(space), own
                )
            else:
                tested[name] = tested_param(name, param, col, score, k, policy, len(space))
        if why:
            changes[name] = Change(name, param, param, "kept", f"kept: {why}")
    rivals = rival_bests(space, changes, scored)
    for name, alpha in holm_levels(tested, policy.alpha).items():
        trends = [h[name].trend for h in history if name in h]
        also = scored[PARAM_PREFIX + name].iloc[rivals].tolist()
        change, shown = _numeric(space[name], tested[name], alpha, policy, trends, also)
        past = [c for c in climbs if c.numeric == name]  # a kept choice's region past an edge
        changes[name], evidence[name] = _past_edges(change, past), shown or bool(past)
    changes = {name: changes[name] for name in space}  # in the space's order
    changes = unbracketed(changes)  # no choice dropped while a range moves past an edge
    standout = n >= policy.min_trials and stands_out(score)
    if evidence and not any(evidence.values()) and (why := ranges_no_better(scored, score, policy)):
        hold = (  # why a lead is refined rather than widened away from ('' : widen)
            "the round's best trial stands far out of its noise"
            if standout
            else "the next round is the last, and the best trial so far stands clear of the "
            "study's noise (no round would follow to narrow a widening)"
            if final
            else ""
        )
        changes = {name: _widen(c, why, hold) for name, c in changes.items()}
    changes = {name: _holding(c, incumbent.get(name, NONE)) for name, c in changes.items()}
    # a signal (what a model-based sampler may learn from, hpo.records.RoundRecord.learns):
    # the parameter's own test passes at alpha before Holm's correction, or a trial stands far
    # out of the round's noise
    signal = {
        name: t.ev is not None and t.ev.significant(policy.alpha) for name, t in tested.items()
    }
    changes = {
        name: dataclasses.replace(
            c,
            evidence=evidence.get(name, False),
            signal=standout or evidence.get(name, False) or signal.get(name, False),
            standout=standout,
            surveyed=survey,
        )
        for name, c in changes.items()
    }
    return space.replace(**{name: c.new for name, c in changes.items()}), changes


def _unjudged(n: int, survey: bool, column: str, columns, policy: NarrowingPolicy) -> str:
    """Why a parameter is kept without a test ('' when it can be judged)."""
    if n < policy.min_trials:
        return f"only {n} finished trials (need {policy.min_trials})"
    if survey:
        return "round 1 surveyed the hard limits (exploration trials alone narrow nothing)"
    return f"no column {column} in the trials" if column not in columns else ""


def converged(changes: Mapping[str, Change] | Iterable[Change]) -> bool:
    """True when narrowing changed nothing on evidence (a range kept for the lack of evidence is
    not converged): the study can stop early."""
    items = changes.values() if isinstance(changes, Mapping) else changes
    return all(c.reason == "kept" and c.settled for c in items)


def _top_count(score: np.ndarray, policy: NarrowingPolicy) -> int:
    """How many trials count as the best: ``top_fraction`` of them (at least ``min_top``), or
    fewer when only a few stand clearly above the round's noise floor (median + 3 robust sd)."""
    n = len(score)
    most = min(n, max(policy.min_top, math.ceil(round(policy.top_fraction * n, 9))))
    if n == 0:
        return 0
    above = int(np.sum(clear_of_noise(score)))
    return most if above == 0 else min(most, max(above, min(policy.min_top, n)))


def _numeric(
    param: Param, tested: Tested, alpha: float, policy, trends, also=()
) -> tuple[Change, bool]:
    """Narrow on evidence: keep without it, climb past an edge on a trend, else the 6-5 rule."""
    name, ev, t, top = tested.name, tested.ev, tested.t, tested.top
    if ev is None:
        return Change(name, param, param, "kept", f"kept: too few trials with a {name}"), False
    if not ev.significant(alpha):
        detail = f"kept: no evidence that {name} matters (p={ev.p:.3f}, need < {alpha / 2:.2g})"
        return Change(name, param, param, "kept", detail), False
    lo, hi = (
        (math.log10(param.low), math.log10(param.high)) if param.log else (param.low, param.high)
    )
    band = 2 * policy.edge * (hi - lo)  # the best trial near an edge, or past it
    crowd_lo, crowd_hi = bool(np.any(t[:top] <= lo + band)), bool(np.any(t[:top] >= hi - band))
    up = ev.rho > 0 and t[0] >= hi - band and not crowd_lo  # a climb, not two edges at once
    down = ev.rho < 0 and t[0] <= lo + band and not crowd_hi
    if (ev.p_trend < alpha / 2 or alpha >= 1) and (up or down):
        direction = 1 if up else -1
        streak = next((i for i, d in enumerate(reversed(trends)) if d != direction), len(trends))
        return _climb(name, param, t[:top], direction, streak, ev, policy), True
    change = _narrow_numeric(name, param, tested.x[:top].tolist() + list(also), policy)
    evidence = f" (evidence p={ev.p:.3f})" if alpha < 1 else ""
    detail = change.detail + evidence
    return dataclasses.replace(change, detail=detail, settled=change.reason == "kept"), True


def _climb(name, param, t_top, direction: int, streak: int, ev, policy) -> Change:
    """The score climbs toward an edge: move past it a whole width, doubled per round it goes on."""
    lo, hi, fwd, back, lim_lo, lim_hi = scale(param)
    width = hi - lo
    pad = max(policy.margin * float(np.ptp(t_top)), policy.min_width * width)
    step = width * 2.0**streak
    if direction > 0:
        new_lo, new_hi = max(lo, float(t_top.min()) - pad), max(hi, float(t_top.max())) + step
    else:
        new_lo, new_hi = min(lo, float(t_top.min())) - step, min(hi, float(t_top.max()) + pad)
    new = rebuild(param, max(back(new_lo), lim_lo), min(back(new_hi), lim_hi))
    edge = "upper" if direction > 0 else "lower"
    detail = (
        f"scores climb toward the {edge} edge (rank correlation {ev.rho:+.2f}, "
        f"p={ev.p_trend:.3f}); moved {2**streak:g} width{'s' if streak else ''} past it"
    )
    if (new.high if direction > 0 else new.low) in (lim_hi, lim_lo):
        detail += f"; stopped at the hard limit {_fmt(new.high if direction > 0 else new.low)}"
    return Change(name, param, new, reason_of(param, new), detail, trend=direction)


def _past_edges(change: Change, climbs) -> Change:
    """A kept choice's trials climb toward an edge: the range reaches a whole width past it."""
    param = change.old
    lo, hi, fwd, back, lim_lo, lim_hi = scale(param)
    for climb in climbs:
        new = change.new
        if climb.direction > 0:
            new = rebuild(new, new.low, min(max(new.high, back(hi + (hi - lo))), lim_hi))
        else:
            new = rebuild(new, max(min(new.low, back(lo - (hi - lo))), lim_lo), new.high)
        if (new.low, new.high) != (change.new.low, change.new.high):
            note = f"{climb.param} {climb.choice!r} {climb.note()}"
            detail = f"{change.detail}; {note}: reaches a width past it"
            change = dataclasses.replace(
                change, new=new, reason=reason_of(param, new), detail=detail, reaches=True
            )
    return change


def _widen(change: Change, why: str, hold: str = "") -> Change:
    """No parameter shows evidence: the range may be wrong. One width more on each side, unless
    a lead is to be refined where it is (``hold``: why)."""
    param = change.old
    if isinstance(param, Categorical) or change.reason != "kept":
        return change
    if hold:
        return dataclasses.replace(
            change, detail=f"{change.detail}; {why}, but not widened: {hold}"
        )
    if not param.log and param.limits is None:
        return change  # no hard limit to widen toward, and no natural domain bound
    lo, hi, fwd, back, lim_lo, lim_hi = scale(param)
    width = hi - lo
    new = rebuild(param, max(back(lo - width), lim_lo), min(back(hi + width), lim_hi))
    if (new.low, new.high) == (param.low, param.high):
        return change
    detail = (
        f"no parameter beats the round's noise and {why}: "
        "widened one width on each side toward the hard limits"
    )
    return Change(change.name, param, new, reason_of(param, new), detail, widened=True)


def _holding(change: Change, value: Any) -> Change:
    """The new range, stretched to keep the best trial so far inside it."""
    new = change.new
    if value is NONE or new.contains(value):
        return change
    if isinstance(new, Categorical):  # a choice dropped earlier comes back (exploration)
        back = () if change.old.contains(value) else (value,)
        keep = tuple(c for c in change.old.choices if new.contains(c) or same_choice(c, value))
        new = Categorical(keep + back)
    else:
        v = as_float(value)
        lo_lim, hi_lim = new.hard_limits
        if not (math.isfinite(v) and lo_lim <= v <= hi_lim):
            return change
        new = rebuild(new, min(new.low, v), max(new.high, v))
    shown = _fmt(value) if isinstance(value, numbers.Real) else repr(value)
    detail = f"{change.detail}; stretched to keep the best trial so far ({shown})"
    if isinstance(new, Categorical):
        n_old, n_new = len(change.old.choices), len(new.choices)
        reason = "shrunk" if n_new < n_old else "extended" if n_new > n_old else "kept"
    else:
        reason = reason_of(change.old, new)
    return dataclasses.replace(change, new=new, reason=reason, detail=detail)


def _narrow_numeric(name: str, param: Param, values: list[Any], policy: NarrowingPolicy) -> Change:
    is_int = isinstance(param.low, int)
    x = np.array([as_float(v) for v in values], dtype=float)
    x = x[np.isfinite(x) & ((x > 0) if param.log else True)]
    if not len(x):
        return Change(name, param, param, "kept", f"kept: the best trials have no value for {name}")
    # Hard bounds in the original scale, made finite (and > 0 on a log scale) for the arithmetic.
    lim_lo, lim_hi = param.hard_limits
    lim_lo = max(lim_lo, min(param.low, _TINY)) if param.log else max(lim_lo, -_HUGE)
    lim_hi = min(lim_hi, _HUGE)
    x = np.clip(x, lim_lo, lim_hi)
    best_x = float(x[0])
    fwd = math.log10 if param.log else float
    t = np.log10(x) if param.log else x
    lo, hi = fwd(param.low), fwd(param.high)
    width = hi - lo
    m, top = float(t.min()), float(t.max())
    pad = max(policy.margin * (top - m), policy.min_width * width)
    band = policy.edge * width
    crowd_lo = bool(t[0] <= lo + band or np.mean(t <= lo + band) >= 0.5)
    crowd_hi = bool(t[0] >= hi - band or np.mean(t >= hi - band) >= 0.5)
    push = max(pad, band, policy.push * width)  # reach an optimum far outside in few rounds

    def back(v: float) -> float:  # to the original scale, never overflowing
        if not param.log:
            return v
        return math.inf if v > 308.5 else 10.0**v

    new_lo = back(min(m, lo) - push if crowd_lo else m - pad)
    new_hi = back(max(top, hi) + push if crowd_hi else top + pad)
    hit_lo, hit_hi = crowd_lo and new_lo <= lim_lo, crowd_hi and new_hi >= lim_hi
    new_lo = max(new_lo, lim_lo if crowd_lo else param.low)
    new_hi = min(new_hi, lim_hi if crowd_hi else param.high)
    # Not bracketed on one side yet: move the whole window rather than shrink it.
    if crowd_hi and not hit_hi and not crowd_lo:
        new_lo = max(param.low, min(new_lo, back(fwd(new_hi) - width)))
    if crowd_lo and not hit_lo and not crowd_hi:
        new_hi = min(param.high, max(new_hi, back(fwd(new_lo) + width)))
    if is_int:
        new_lo, new_hi = math.floor(new_lo), math.ceil(new_hi)
    ok = lim_lo <= new_lo <= best_x <= new_hi <= lim_hi and new_lo < new_hi
    if not ok:  # float round-off on a tiny range: keep the old one, widened to the best trial
        new_lo, new_hi = min(param.low, best_x), max(param.high, best_x)
        if is_int:
            new_lo, new_hi = math.floor(new_lo), math.ceil(new_hi)
    new = dataclasses.replace(param, low=new_lo, high=new_hi)
    reason = reason_of(param, new)
    detail = describe(param, new, reason, len(x), (m, top), (crowd_lo, crowd_hi), (hit_lo, hit_hi))
    return Change(name, param, new, reason, detail)
