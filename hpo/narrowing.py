"""Narrow a search space around a round's best trials, the 6-5 way, and say why for each bound.

Pure: (space, trials, policy) -> (next space, one Change per parameter). A best trial that crowds
an edge means the optimum is not bracketed yet (6-5's best learning rates sit at the top of the
starting range), so that side moves past the edge, up to the hard limits, instead of shrinking.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo.records import Change, ranked
from hpo.space import Categorical, Param, SearchSpace, _fmt

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NarrowingPolicy", "converged", "narrow", "relative_change"]
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

    def __post_init__(self) -> None:
        below = math.nextafter  # open bounds: the next float inside
        _check("top_fraction", self.top_fraction, below(0, 1), 1, "a number in (0, 1]", False)
        _check("min_top", self.min_top, 1, math.inf, "an int >= 1", True)
        _check("margin", self.margin, 0, _HUGE, "a finite number >= 0", False)
        _check("min_width", self.min_width, below(0, 1), _HUGE, "a finite number > 0", False)
        _check("edge", self.edge, 0, below(0.5, 0), "a number in [0, 0.5)", False)
        _check("push", self.push, 0, _HUGE, "a finite number >= 0", False)
        _check("min_trials", self.min_trials, 1, math.inf, "an int >= 1", True)


def narrow(
    space: SearchSpace,
    trials: pd.DataFrame,
    *,
    direction: str = "maximize",
    policy: NarrowingPolicy = NarrowingPolicy(),  # noqa: B008 (frozen, so sharing it is safe)
) -> tuple[SearchSpace, dict[str, Change]]:
    """The next round's space, narrowed (or moved) around the best finished trials.

    ``trials`` has columns ``value``, ``state`` (Optuna state names) and ``params_<name>``, as
    ``optuna.Study.trials_dataframe()`` gives. Only COMPLETE trials with a finite value count.
    """
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', but got {direction!r}")
    if missing := sorted({"value", "state"} - set(trials.columns)):
        raise ValueError(f"trials: missing column(s) {missing}; expected value, state, params_*")
    best, n = _best_trials(trials, direction, policy)
    changes = {}
    for name, param in space.items():
        column = f"params_{name}"
        if n < policy.min_trials:
            why = f"only {n} finished trials (need {policy.min_trials})"
        elif column not in trials.columns:
            why = f"no column {column} in the trials"
        else:
            why = ""
            values = best[column].tolist()
            if isinstance(param, Categorical):
                changes[name] = _narrow_categorical(name, param, values)
            else:
                changes[name] = _narrow_numeric(name, param, values, policy)
        if why:
            changes[name] = Change(name, param, param, "kept", f"kept: {why}")
    return space.replace(**{name: c.new for name, c in changes.items()}), changes


def converged(changes: Mapping[str, Change] | Iterable[Change]) -> bool:
    """True when narrowing changed nothing: the study can stop early."""
    items = changes.values() if isinstance(changes, Mapping) else changes
    return all(c.reason == "kept" for c in items)


def relative_change(old: Param, new: Param) -> float:
    """How much a range moved, as a fraction of its old width in its own scale (0 = unchanged).

    For categoricals: the fraction of choices added or removed.
    """
    if type(old) is not type(new):
        raise ValueError(f"cannot compare a {type(old).__name__} with a {type(new).__name__}")
    if isinstance(old, Categorical):
        gone = [c for c in old.choices if not new.contains(c)]
        added = [c for c in new.choices if not old.contains(c)]
        return (len(gone) + len(added)) / len(old.choices)
    f = math.log10 if old.log else float
    moved = abs(f(new.low) - f(old.low)) + abs(f(new.high) - f(old.high))
    return moved / (f(old.high) - f(old.low))


def _best_trials(
    trials: pd.DataFrame, direction: str, policy: NarrowingPolicy
) -> tuple[pd.DataFrame, int]:
    """The top k finished trials, best first (ties keep row order), and the number finished."""
    order = ranked(trials, direction)
    n = len(order)
    k = min(n, max(policy.min_top, math.ceil(round(policy.top_fraction * n, 9))))
    return order.iloc[:k], n


def _narrow_categorical(name: str, param: Categorical, values: list[Any]) -> Change:
    seen = tuple(c for c in param.choices if any(Categorical((c,)).contains(v) for v in values))
    if not seen:
        return Change(name, param, param, "kept", "kept: no best trial used a known choice")
    reason = "shrunk" if len(seen) < len(param.choices) else "kept"
    detail = f"best {len(values)} trials use {', '.join(map(repr, seen))}"
    new = Categorical(seen) if reason == "shrunk" else param
    return Change(name, param, new, reason, detail if reason == "shrunk" else f"kept: {detail}")


def _narrow_numeric(name: str, param: Param, values: list[Any], policy: NarrowingPolicy) -> Change:
    is_int = isinstance(param.low, int)
    x = np.array([_as_float(v) for v in values], dtype=float)
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
    reason = _reason(param, new)
    detail = _detail(param, new, reason, len(x), (m, top), (crowd_lo, crowd_hi), (hit_lo, hit_hi))
    return Change(name, param, new, reason, detail)


def _as_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return math.nan
    return float(v)


def _reason(old: Param, new: Param) -> str:
    grew_lo, grew_hi = new.low < old.low, new.high > old.high
    if (grew_hi and new.low > old.low) or (grew_lo and new.high < old.high):
        return "shifted"
    if grew_lo or grew_hi:
        return "extended"
    return "kept" if (new.low, new.high) == (old.low, old.high) else "shrunk"


def _detail(
    old: Param,
    new: Param,
    reason: str,
    k: int,
    span: tuple[float, float],
    crowd: tuple[bool, bool],
    hit: tuple[bool, bool],
) -> str:
    def show(v: float, digits: int) -> str:
        if isinstance(old.low, int) and not old.log:
            return str(int(v))
        return f"10^{v:.{digits}g}" if old.log else f"{v:.{digits}g}"

    digits = next((d for d in range(3, 7) if show(span[0], d) != show(span[1], d)), 3)
    parts = [f"best {k} trials span {show(span[0], digits)}..{show(span[1], digits)}"]
    sides = [s for s, c in zip(("lower", "upper"), crowd, strict=True) if c]
    if sides:
        edges = "both edges" if len(sides) == 2 else f"the {sides[0]} edge"
        it = "them" if len(sides) == 2 else "it"
        if reason == "shifted":
            parts.append(f"crowd {edges}, moved past {it}")
        elif reason == "extended":
            parts.append(f"crowd {edges}, extended past {it}")
        else:
            parts.append(f"crowd {edges}")
    elif reason == "shrunk":
        parts.append("narrowed around them")
    else:
        parts.append("they span the whole range")
    for side, was_hit, bound in zip(("lower", "upper"), hit, (new.low, new.high), strict=True):
        if was_hit:
            kind = "hard limit" if old.limits is not None else "domain bound"
            parts.append(f"{side} side stopped at the {kind} {_fmt(bound)}")
    text = "; ".join(parts)
    return f"kept: {text}" if reason == "kept" else text
