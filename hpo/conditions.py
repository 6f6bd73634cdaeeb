"""Conditional parameters: ``momentum=Uniform(0.5, 0.99, when={"optimizer": "momentum"})``.

A parameter with ``when`` is *active* only when every named parameter took one of the listed
choices; an inactive parameter is never sampled, never passed to the objective and never given a
made-up value (its column in the trials table is empty). Pure helpers, duck-typed on the params of
:mod:`hpo.space` (which imports this module).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["active", "check_conditions", "normalize_when", "when_dict"]

When = tuple[tuple[str, tuple[Any, ...]], ...]


def normalize_when(when: Any) -> When | None:
    """``{"name": choice or (choices...)}`` as a hashable, ordered tuple of (name, choices)."""
    if when is None:
        return None
    if isinstance(when, tuple) and all(isinstance(w, tuple) and len(w) == 2 for w in when):
        when = dict(when)  # already normalised (dataclasses.replace, a copy)
    if not isinstance(when, Mapping) or not when:
        raise ValueError(
            f'`when` must be a non-empty dict such as {{"optimizer": "momentum"}}, got {when!r}'
        )
    out = []
    for name, choices in when.items():
        if not isinstance(name, str):
            raise ValueError(f"`when` must name parameters by str, but got {name!r}")
        many = isinstance(choices, tuple | list | set | frozenset)
        choices = tuple(choices) if many else (choices,)
        if not choices:
            raise ValueError(f"`when` must give at least one choice of {name!r}")
        out.append((name, choices))
    return tuple(out)


def when_dict(when: When | None) -> dict[str, list[Any]] | None:
    """The JSON-able form of a normalised ``when`` (None stays None)."""
    return None if when is None else {name: list(choices) for name, choices in when}


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 and never matches a NaN (an inactive value)."""
    if isinstance(b, float) and math.isnan(b):
        return False
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def active(param: Any, params: Mapping[str, Any]) -> bool:
    """Whether ``param`` is active given the values ``params`` sampled before it."""
    when = getattr(param, "when", None)
    if not when:
        return True
    return all(
        name in params and any(_same(c, params[name]) for c in choices) for name, choices in when
    )


def check_conditions(params: Mapping[str, Any], *, strict: bool = True) -> None:
    """Every ``when`` names a Categorical defined before it (and, ``strict``, one of its choices:
    narrowing may later drop the choice, which only leaves the parameter inactive)."""
    names = list(params)
    for i, (name, param) in enumerate(params.items()):
        for parent, choices in getattr(param, "when", None) or ():
            if parent not in params:
                known = ", ".join(names)
                raise ValueError(
                    f"search space: {name!r} has a condition on unknown parameter {parent!r} "
                    f"(known: {known})"
                )
            if parent not in names[:i]:
                raise ValueError(
                    f"search space: {name!r} has a condition on {parent!r}, which must be "
                    f"defined before it"
                )
            dad = params[parent]
            if not hasattr(dad, "choices"):
                raise ValueError(
                    f"search space: {name!r} has a condition on {parent!r}, which must be a "
                    f"Categorical, but got {type(dad).__name__}"
                )
            bad = [c for c in choices if not dad.contains(c)]
            if strict and bad:
                raise ValueError(
                    f"search space: {name!r} has a condition on unknown choice {bad[0]!r} of "
                    f"{parent!r} (choices: {', '.join(map(repr, dad.choices))})"
                )
