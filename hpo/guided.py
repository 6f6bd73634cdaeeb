"""TPE across rounds: a round's model-based trials learn from every earlier round.

Each round is its own Optuna study, so a TPE sampler left to itself would start every round from
scratch (its first 10 trials random). Instead, a TPE trial of round k samples from a throw-away
in-memory study that holds the finished trials of the earlier rounds lying inside round k's
ranges, plus round k's own finished trials so far (not the running ones: Optuna's constant liar
would count a running trial as a bad one, and steer the other workers away from a narrow peak
that one of them is evaluating; per-trial seeds keep parallel draws apart). After
a widening (the ranges were found wrong) the trials of the rounds before it are forgotten, but
for their exploration trials: they crowd the region left and would pull the model back; unless
a trial of the round before it stood far out of the noise (hpo.records.learning_since). The
parameters it draws are then given to the real trial. Seeded by the trial's seed, the draw
depends on (seed, round, number) and on which trials had finished, not on the worker's pid.

A diverged trial (the score blew up) is kept as the worst score seen: the model learns to avoid
its region instead of never hearing of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState, create_trial

from hpo import _optuna
from hpo.categorical import same_choice
from hpo.conditions import active
from hpo.evidence import ranks
from hpo.records import PARAM_PREFIX, TrialStatus
from hpo.sampling import suggest
from hpo.space import Categorical, SearchSpace

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["choice_quantiles", "guided_params", "history", "round_observations"]

Observation = tuple[dict[str, Any], float]  # (params, score)


def history(trials: pd.DataFrame | None, space: SearchSpace, before: int, since: int = 1) -> tuple:
    """The scored trials of rounds before ``before`` whose parameters all lie inside ``space``
    (finished: their score; diverged: the worst finished score), as (params, score) pairs; of
    the rounds before ``since`` (ranges since found wrong), only the exploration trials."""
    if trials is None or trials.empty:
        return ()
    out = []
    kept = trials["round"] >= since
    if "explore" in trials.columns:
        kept |= trials["explore"].eq(True)  # True; False, or None where a trial has no mark
    for row in trials[(trials["round"] < before) & kept].itertuples(index=False):
        row = row._asdict()
        if row["status"] == TrialStatus.FINISHED and math.isfinite(row["value"]):
            score = float(row["value"])
        elif row["status"] == TrialStatus.DIVERGED:
            score = math.nan  # the worst score, filled in by guided_params (direction-aware)
        else:
            continue
        params = _inside(space, {k[len(PARAM_PREFIX) :]: v for k, v in row.items()})
        if params is not None:
            out.append((params, score))
    # diverged trials alone carry no score to rank them below
    return tuple(out) if any(math.isfinite(v) for _, v in out) else ()


def _inside(space: SearchSpace, row: Mapping[str, Any]) -> dict[str, Any] | None:
    params: dict[str, Any] = {}
    for name, param in space.items():
        if not active(param, params):
            continue
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(getattr(param, "low", None), int):
            value = int(value)
        if not param.contains(value):
            return None
        params[name] = value
    return params


def guided_params(
    space: SearchSpace,
    observed: Iterable[Observation],
    direction: str,
    seed: int,
) -> dict[str, Any]:
    """One TPE draw over ``space`` given the ``observed`` (params, score) pairs (a NaN score: a
    diverged trial, ranked worst)."""
    observed = list(observed)
    finite = [v for _, v in observed if math.isfinite(v)]
    worst = (min(finite) if direction == "maximize" else max(finite)) if finite else None
    dists = space.to_optuna()
    shadow = optuna.create_study(
        direction=direction,
        # multivariate (joint) TPE, Optuna 5's default, also on Optuna 4: measured better on
        # the interacting hard spaces (far, ridge)
        sampler=optuna.samplers.TPESampler(seed=seed % 2**32, multivariate=True),
    )
    trials = []
    for params, value in observed:
        params = _inside(space, params)  # an exploration trial of the round may lie outside
        if params is None:
            continue
        value = worst if not math.isfinite(value) else value
        if value is None:
            continue
        trials.append(
            create_trial(params=params, distributions=_dists(dists, params), value=float(value))
        )
    shadow.add_trials(trials)
    return suggest(shadow.ask(), space)


def choice_quantiles(
    space: SearchSpace, observed: Iterable[Observation], direction: str
) -> list[Observation]:
    """Each observation's score replaced by its rank among the trials that took the same
    categorical choices, as a fraction in the scores' own order (``maximize``: the best of them
    1.0, their worst 0.0; ``minimize``: the best 0.0; ties share their mean rank); a diverged
    trial stays NaN. Unchanged without a categorical.

    What an exploration trial's TPE learns from: fitted to the raw scores, its good trials are
    all the leading choice's, in the ranges, so it draws near them, and a choice whose region
    lies outside the ranges (adam's best lr decades above sgd's, where adam scores near 0) stays
    among the bad trials even where its scores climb. By rank within its choice, each choice's
    best trials are good, and the draws go on from them over the hard limits."""
    observed = list(observed)
    cats = [(n, p) for n, p in space.items() if isinstance(p, Categorical)]
    if not cats:
        return observed
    groups: dict[tuple, list[int]] = {}
    for i, (params, _) in enumerate(observed):  # a choice by its index: 32 is np.int64(32)
        key = tuple(_choice_index(p, params[n]) if n in params else None for n, p in cats)
        groups.setdefault(key, []).append(i)
    out = [(params, math.nan) for params, _ in observed]
    lone = 1.0 if direction == "maximize" else 0.0  # a choice's only trial is its best
    for members in groups.values():
        scored = [i for i in members if math.isfinite(observed[i][1])]
        rank = ranks(np.array([observed[i][1] for i in scored]))  # ascending, as the scores
        for i, r in zip(scored, rank, strict=True):
            out[i] = (observed[i][0], float(r) / (len(scored) - 1) if len(scored) > 1 else lone)
    return out


def _choice_index(param: Categorical, value: Any) -> int | None:
    return next((k for k, c in enumerate(param.choices) if same_choice(c, value)), None)


def _dists(dists: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    return {n: dists[n] for n in params}


def round_observations(trials: Iterable[Any], this: int) -> list[Observation]:
    """The round's own trials so far (Optuna FrozenTrials), but trial ``this``: the scored and
    diverged ones as (params, score)."""
    from hpo.storage import trial_score, trial_status

    observed = []
    for t in trials:
        if _optuna.trial_id(t) == this or not t.params or t.state == TrialState.RUNNING:
            continue
        if (score := trial_score(t)) is not None:
            observed.append((dict(t.params), score))
        elif trial_status(t) == TrialStatus.DIVERGED:
            observed.append((dict(t.params), math.nan))
    return observed
