"""Optuna samplers and pruners by name, and how a trial takes its parameters from a space."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from hpo import _optuna
from hpo.choices import PRUNERS, SAMPLERS
from hpo.conditions import active
from hpo.space import SearchSpace

__all__ = ["FixedSampler", "assign_grid_point", "make_pruner", "make_sampler", "suggest"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(
    name: str, seed: int | None, space: SearchSpace | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler named ``name``: random (the textbook's method), tpe, qmc, cmaes, or grid
    (every combination of the Categorical ``space``; its order must not depend on the seed)."""
    if name == "grid":
        return _GridSampler({n: list(p.choices) for n, p in space.items()}, seed=0)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ValueError(f"sampler: must be one of {', '.join(SAMPLERS)}; got {name!r}")


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` (valid only inside ``optimize``): the
    driver's budget of one trial per grid point ends the round."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_pruner(name: str | None, max_steps: int | None = None) -> optuna.pruners.BasePruner:
    """The pruner named ``name`` (none, median, hyperband), fed by the per-epoch score."""
    if name in (None, "none"):
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_steps or "auto")
    raise ValueError(f"pruner: must be one of {', '.join(PRUNERS)}; got {name!r}")


class FixedSampler(optuna.samplers.BaseSampler):
    """Gives a trial the parameters chosen beforehand (a local trial near the best so far)."""

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.params[param_name]


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample every parameter of ``space`` through the trial's sampler (``Param.to_optuna``), in
    definition order, skipping those whose condition (``when``) does not hold."""
    params = {}
    for name, dist in space.to_optuna().items():
        if not active(space[name], params):
            continue
        if isinstance(dist, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, list(dist.choices))
        elif isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        else:
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return params


def assign_grid_point(study: optuna.Study, storage, study_id: int, trial_id: int, number: int):
    """Grid sampler: trial ``number`` takes grid point ``number``; a trial replacing a failed one
    takes the first point no finished or running trial holds. (Enqueued trials bypass the
    sampler's own assignment.)"""
    grids, search_space = _optuna.grid_of(study.sampler)
    n = len(grids)
    if number >= n:
        held = {
            t.system_attrs.get("grid_id")
            for t in storage.get_all_trials(study_id, deepcopy=False)
            if t.state != TrialState.FAIL and _optuna.trial_id(t) != trial_id
        }
        number = next((i for i in range(n) if i not in held), number % n)
    storage.set_trial_system_attr(trial_id, "search_space", search_space)
    storage.set_trial_system_attr(trial_id, "grid_id", number)
