"""Exploration trials: a share of every round drawn from the hard limits, not the round's ranges.

So an optimum outside a misleading range can be found even when the round's own trials say
nothing. Which trials explore is a function of the trial number (reproducible, resume-safe): of
every round's first N trials, floor(N x share) explore, spread evenly.
"""

from __future__ import annotations

import math

from hpo.space import Categorical, SearchSpace

__all__ = ["exploration_space", "is_exploration"]


def is_exploration(number: int, share: float) -> bool:
    """Whether trial ``number`` (0-based, within its round) is an exploration trial."""
    return share > 0 and math.floor((number + 1) * share) > math.floor(number * share)


def exploration_space(start: SearchSpace, current: SearchSpace) -> SearchSpace:
    """Where exploration trials sample: each numeric parameter over its hard limits (a log range
    without limits: its starting range widened by its width on each side; a linear one without
    limits: its starting range); categoricals over the round's own choices (a sampler such as
    TPE cannot take a choice the round's trials do not know)."""
    params = {}
    for name, param in current.items():
        first = start.get(name, param)
        if isinstance(param, Categorical) or isinstance(first, Categorical):
            params[name] = param
        elif first.limits is not None:
            params[name] = first.replace_range(*first.limits)
        elif first.log:
            width = math.log10(first.high) - math.log10(first.low)
            low = max(10 ** (math.log10(first.low) - width), 1 if isinstance(first.low, int) else 0)
            params[name] = first.replace_range(
                low or first.low, 10 ** (math.log10(first.high) + width)
            )
        else:
            params[name] = first
    return SearchSpace(params)
