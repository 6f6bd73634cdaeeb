"""Two shares of every round's trials that the round's ranges do not decide alone.

Exploration trials are drawn from the hard limits and every starting choice, so an optimum outside
a misleading range (or behind a dropped choice) can be found even when the round's own trials say
nothing. Local trials are drawn close to the best trial so far (inside the round's ranges), so a
good region is refined, not only sampled; while a categorical keeps two or more choices, some are
drawn close to another choice's best trial instead, when it ranks among the best trials so far
(adam's first hit at its own lr, far from sgd's, is refined too: a model fitted to every trial
keeps sampling the leading choice) and stands out of the noise when the lead does. One local trial
in 3 swaps one choice instead and keeps every other value: the choices compared at the best
configuration (a TPE that found lr's region with tanh keeps drawing tanh, and relu, better at every
lr, is never tried there). Which trials are which is a function of the trial number (reproducible,
resume-safe): of a round's first N trials, floor(N x share) exploration trials and N x share
rounded local ones, spread evenly (a local slot that falls on an exploration trial moves to the
next trial).
"""

from __future__ import annotations

import math
from typing import Any

from hpo.categorical import choice_bests, same_choice
from hpo.conditions import active
from hpo.evidence import clear_of_noise
from hpo.records import PARAM_PREFIX, oriented, params_of, ranked
from hpo.space import Categorical, SearchSpace

__all__ = [
    "declared_space",
    "exploration_space",
    "is_exploration",
    "local_centre",
    "local_params",
    "rival_centres",
    "swap_slot",
    "trial_kind",
]

LOCAL_SD = 0.1  # a local trial moves each parameter by N(0, 0.1 x its range width)
SWAP_EVERY = 3  # one local trial in 3 swaps a choice and keeps the rest (local_params)
RIVAL_TOP = 0.2  # another choice's best trial is a local centre when it ranks in this top share


def is_exploration(number: int, share: float) -> bool:
    """Whether trial ``number`` (0-based, within its round) is an exploration trial."""
    return share > 0 and math.floor((number + 1) * share) > math.floor(number * share)


def trial_kind(number: int, explore: float, local: float) -> str:
    """``explore``, ``local`` or ``round`` (sampled by the round's sampler) for trial ``number``.
    A local slot that falls on an exploration trial moves to the next trial that is not one."""
    if is_exploration(number, explore):
        return "explore"
    return "round" if _local_index(number, explore, local) is None else "local"


def _local_index(number: int, explore: float, local: float) -> int | None:
    """Trial ``number``'s place among its round's local trials (0: the first), or None when it
    is not a local trial."""
    locals_ = _local_numbers(number, explore, local)
    return len(locals_) - 1 if locals_ and locals_[-1] == number else None


def _local_numbers(upto: int, explore: float, local: float) -> list[int]:
    """The local trials among trials 0..``upto`` of a round, in one pass."""
    if local <= 0:
        return []
    owed, out = 0, []
    for i in range(upto + 1):
        owed += _local_slot(i, local)
        if owed and not is_exploration(i, explore):
            out.append(i)
            owed -= 1
    return out


def _local_slot(number: int, share: float) -> bool:
    half = 0.5  # local slots sit between the exploration ones
    return math.floor((number + 1) * share + half) > math.floor(number * share + half)


def local_params(space: SearchSpace, best: dict, rng, swap: int | None = None) -> dict:
    """A configuration near ``best`` inside ``space``: each numeric parameter moved by a normal
    step in its own scale (clipped), every choice kept. A swap (``swap`` = k, when a categorical
    has another choice) instead gives one categorical another choice, the k-th of every
    (categorical, other choice) pair in turn, and keeps every other parameter at ``best``'s
    value: the choices compared at the same configuration (a choice that turns a conditional
    parameter on or off is no such pair). Parameters whose condition does not hold for the
    configuration drawn so far are left out."""
    swapped = None if swap is None else _swap_pair(space, best, swap)
    out = {}
    for name, param in space.items():
        if not active(param, out):
            continue
        kept = name in best and param.contains(best[name])
        if isinstance(param, Categorical):
            if swapped is not None and swapped[0] == name:
                out[name] = swapped[1]
            else:
                out[name] = best[name] if kept else param.choices[rng.integers(len(param.choices))]
        elif swapped is not None and kept:
            out[name] = best[name]
        else:
            out[name] = _step(param, best[name] if kept else None, rng)
    return out


def _swap_pair(space: SearchSpace, best: dict, k: int) -> tuple[str, Any] | None:
    """The k-th (categorical, other choice) pair of ``best``, cyclically; None when there is
    none."""
    pairs = [
        (n, c)
        for n, p in space.items()
        if isinstance(p, Categorical) and n in best and p.contains(best[n])
        for c in p.choices
        if not same_choice(c, best[n]) and _same_parameters(space, {**best, n: c})
    ]
    return pairs[k % len(pairs)] if pairs else None


def _same_parameters(space: SearchSpace, params: dict) -> bool:
    """Whether ``params`` holds a value for exactly the parameters active for it: a swap that
    turns a conditional parameter on (or off) compares no longer at the same configuration."""
    seen: dict = {}
    for name, param in space.items():
        if active(param, seen) != (name in params):
            return False
        if name in params:
            seen[name] = params[name]
    return True


def _step(param, start, rng):
    """``start`` (None: a uniform draw) moved by N(0, LOCAL_SD x width) in the parameter's scale,
    clipped to its range."""
    f, back = (math.log10, lambda v: 10.0**v) if param.log else (float, float)
    lo, hi = f(param.low), f(param.high)
    start = f(start) if start is not None else rng.uniform(lo, hi)
    value = back(min(max(start + rng.normal(0, LOCAL_SD * (hi - lo)), lo), hi))
    value = min(max(value, param.low), param.high)
    return round(value) if isinstance(param.low, int) else value


def swap_slot(number: int, round_: int, explore: float, local: float) -> int | None:
    """The swap index of trial ``number`` of round ``round_`` when it is a swap, else None: of a
    round's local trials every SWAP_EVERY-th (the 2nd, 5th, ...) swaps a choice; the k-th swap
    of round r takes (categorical, other choice) pair k + r, so the pairs take turns."""
    j = _local_index(number, explore, local)  # the local trials before this one
    if j is None:
        return None
    return j // SWAP_EVERY + round_ if j % SWAP_EVERY == 1 else None


def local_centre(best: dict, rivals: tuple, rng) -> dict:
    """Where a local trial centres: the best so far or, when there are other choices' bests
    (``rivals``, :func:`rival_centres`), one of them, each equally likely. Without rivals no
    random number is drawn, so such studies draw the trials they always did."""
    return (best, *rivals)[int(rng.integers(1 + len(rivals)))] if rivals else best


def exploration_space(
    start: SearchSpace, current: SearchSpace, choices: bool = True
) -> SearchSpace:
    """Where exploration trials sample: each numeric parameter over its hard limits (a log range
    without limits: its starting range widened by its width on each side; a linear one without
    limits: its starting range); each categorical over its starting choices, those narrowing
    dropped included (``choices`` False: the round's own choices, for a sampler that cannot be
    kept to a subset of the choices a round study declares)."""
    params = {}
    for name, param in current.items():
        first = start.get(name, param)
        if isinstance(param, Categorical) or isinstance(first, Categorical):
            params[name] = _starting_choices(first, param) if choices else param
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
    return current.replace(**params)  # conditions kept; a choice narrowed away is no error


def _starting_choices(first, param: Categorical) -> Categorical:
    """The starting choices and then any other the round has: what every trial of a round study
    declares to Optuna (one study cannot change a categorical's choices, optuna/optuna#2199)."""
    if not isinstance(first, Categorical):
        return param
    more = tuple(c for c in param.choices if not first.contains(c))
    return Categorical(first.choices + more, when=param.when)


def declared_space(space: SearchSpace, wide: SearchSpace) -> SearchSpace:
    """``space`` with each categorical declared with the choices it has in ``wide``."""
    return space.replace(
        **{n: wide[n] for n, p in space.items() if isinstance(p, Categorical) and n in wide}
    )


def rival_centres(
    trials, space: SearchSpace, best, direction: str, before: int | None = None
) -> tuple[dict, ...]:
    """For each categorical of ``space`` with two or more choices, the best scored trial of each
    choice other than ``best``'s (the best so far) when it ranks among the top ``RIVAL_TOP`` of
    the study's scored trials (of the rounds before ``before``: a resumed round, or a worker
    that joins late, centres where the round's first trials did) and, when some trials stand
    clearly out of the noise (hpo.evidence.clear_of_noise), is one of them: further centres for
    local trials. A noise winner of another choice would take local trials from the lead."""
    if trials is None or len(trials) == 0 or not best:
        return ()
    if before is not None:
        trials = trials[trials["round"] < before]
    scored = ranked(trials, direction)
    top = scored.head(math.ceil(RIVAL_TOP * len(scored)))
    clear = clear_of_noise(oriented(scored, direction))
    if clear.any():  # a lead stands out of the noise: a noise winner of another choice is none
        top = top[clear[: len(top)]]
    rows = top.to_dict("records")
    centres = []
    for name, param in space.items():
        column = PARAM_PREFIX + name
        if not isinstance(param, Categorical) or len(param.choices) < 2 or column not in top:
            continue
        firsts = choice_bests(param.choices, top[column].tolist())
        for choice, i in zip(param.choices, firsts, strict=True):
            if i is not None and not (name in best and same_choice(choice, best[name])):
                centres.append(params_of(rows[i]))
    return tuple(centres)
