"""Optuna samplers and pruners by name, and how a trial takes its parameters from a space."""

from __future__ import annotations

import warnings
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
    name: str, seed: int | None, space: SearchSpace, *, shared: int | None
) -> optuna.samplers.BaseSampler:
    """A round's sampler named ``name`` over the round's ``space``: random (the textbook's
    method), tpe, qmc, cmaes, or grid (every combination of the Categorical ``space``; its order
    must not depend on the seed). With tpe, every trial takes its parameters from
    :mod:`hpo.guided` (a FixedSampler): Optuna's TPESampler here draws none. ``seed``: this
    process's own; ``shared``: the same in every worker of the round, for QMC's scrambled
    sequence (Optuna keeps its position in the storage and requires distributed QMC samplers to
    share the seed; its conditional parameters, drawn at random, use ``seed``)."""
    if name == "grid":
        return _GridSampler({n: list(p.choices) for n, p in space.items()}, seed=0)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "qmc":
        return _RoundQMC(
            _relative_space(space, categorical=True),
            seed=shared,
            scramble=True,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
        )
    if name == "cmaes":
        return _RoundCmaEs(_relative_space(space, categorical=False), seed=seed)
    raise ValueError(f"sampler: must be one of {', '.join(SAMPLERS)}; got {name!r}")


def _relative_space(space: SearchSpace, categorical: bool) -> dict[str, Any]:
    """The distributions a relative sampler (QMC, CMA-ES) models in a round: the round's own
    unconditional parameters (categoricals only if ``categorical``). Optuna infers them from the
    trials instead, and a round's exploration trials, declared over the hard limits, would make
    that 'a dynamic search space': every parameter would fall back to independent sampling."""
    dists = {n: p.to_optuna() for n, p in space.items() if p.when is None}
    return {
        n: d
        for n, d in dists.items()
        if not d.single() and (categorical or not isinstance(d, CategoricalDistribution))
    }


class _RoundSpace:
    """A relative sampler that models the round's own distributions (``_relative``), whatever
    its exploration trials declared. Those trials, local ones and conditional parameters are
    sampled otherwise on purpose: no warning for each."""

    _relative: dict[str, Any]

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return dict(self._relative)


class _RoundQMC(_RoundSpace, optuna.samplers.QMCSampler):
    def __init__(self, relative: dict[str, Any], **kw: Any) -> None:
        with warnings.catch_warnings():  # "experimental": the user chose it, once per round
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(warn_independent_sampling=False, **kw)
        self._relative = relative


class _RoundCmaEs(_RoundSpace, optuna.samplers.CmaEsSampler):
    def __init__(self, relative: dict[str, Any], **kw: Any) -> None:
        super().__init__(warn_independent_sampling=False, **kw)
        self._relative = relative


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
