"""Arithmetic on a numeric range in its own scale (log10 for log ranges), shared by narrowing,
and the one-line reason of the 6-5 rule."""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from typing import Any

from hpo.space import Categorical, Param, _fmt

__all__ = ["as_float", "describe", "reason_of", "rebuild", "relative_change", "scale"]

_TINY, _HUGE = sys.float_info.min, sys.float_info.max


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


def scale(param):
    """(low, high) in the parameter's own scale, the maps to and from it, finite hard limits."""
    lim_lo, lim_hi = param.hard_limits
    lim_lo = max(lim_lo, min(param.low, _TINY)) if param.log else max(lim_lo, -_HUGE)
    lim_hi = min(lim_hi, _HUGE)
    if param.log:
        return (
            math.log10(param.low),
            math.log10(param.high),
            math.log10,
            lambda v: math.inf if v > 308.5 else 10.0**v,
            lim_lo,
            lim_hi,
        )
    return param.low, param.high, float, float, lim_lo, lim_hi


def rebuild(param, low: float, high: float):
    """``param`` with a new [low, high] (ints rounded outward); ``param`` if that is empty."""
    if isinstance(param.low, int):
        low, high = math.floor(low), math.ceil(high)
    if not (low < high and math.isfinite(low) and math.isfinite(high)):
        return param
    return dataclasses.replace(param, low=low, high=high)


def as_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return math.nan
    return float(v)


def reason_of(old: Param, new: Param) -> str:
    grew_lo, grew_hi = new.low < old.low, new.high > old.high
    if (grew_hi and new.low > old.low) or (grew_lo and new.high < old.high):
        return "shifted"
    if grew_lo or grew_hi:
        return "extended"
    return "kept" if (new.low, new.high) == (old.low, old.high) else "shrunk"


def describe(
    old: Param,
    new: Param,
    reason: str,
    k: int,
    span: tuple[float, float],
    crowd: tuple[bool, bool],
    hit: tuple[bool, bool],
) -> str:
    """The 6-5 rule's one-line reason: the best trials' span, the edges they crowd, the limits
    hit."""

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
