"""One trial: take its parameters, call the objective, record how it ended.

The objective's bugs fail their trial, not the study; a diverging trial is recorded with its
reason and never scored; Ctrl-C marks the trial interrupted and goes on up to the driver.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from hpo.choices import DRAWN_FIRST
from hpo.explore import declared_space, local_centre, local_params, swap_slot, trial_kind
from hpo.guided import choice_quantiles, guided_params, round_observations
from hpo.liveness import deferred_interrupt, worker_id
from hpo.objective import Diverged, TrialContext, call_objective
from hpo.queue import RoundStudy
from hpo.records import ATTR, DEFAULT_METRIC, TrialStatus
from hpo.sampling import FixedSampler, assign_grid_point, suggest
from hpo.space import SearchSpace

__all__ = ["RoundJob", "repeat_seed", "run_trial", "trial_seed"]


def trial_seed(seed: int, round_: int, number: int) -> int:
    """A trial's seed: a function of (study seed, round, trial number), not of scheduling."""
    return int(np.random.SeedSequence([seed, round_, number]).generate_state(1)[0])


def repeat_seed(seed: int, r: int) -> int:
    """The seed of repeat ``r`` of a trial of seed ``seed`` (repeat 0: the trial's own)."""
    return seed if r == 0 else int(np.random.SeedSequence([seed, r]).generate_state(1)[0])


@dataclass(frozen=True)
class RoundJob:
    """Everything a worker needs to take trials of one round (picklable)."""

    storage: str
    study_name: str
    round: int
    space_dict: dict[str, Any]  # the SearchSpace as plain data: cheap and safe to pickle
    objective: Callable[..., Any]
    direction: str = "maximize"
    sampler: str = "random"
    pruner: str | None = None
    max_steps: int | None = None
    seed: int = 0
    metric: str = DEFAULT_METRIC
    max_failures: int = 5
    explore: float = 0.0  # share of exploration trials (hpo.explore)
    explore_dict: dict[str, Any] | None = None  # where they sample
    local: float = 0.0  # share of local trials near ``best`` (hpo.local)
    best: dict[str, Any] | None = None  # the best parameters so far, when there are some
    rivals: tuple = ()  # other choices' best trials: local trials centre on them too (hpo.explore)
    deadline: float | None = None  # time.time() after which no trial is claimed (hpo.budget)
    target: float | None = None  # a trial of the round reached it: no trial is claimed
    repeats: int = 1  # evaluations of each configuration, with seeds repeat_seed(seed, r)
    confirm: bool = False  # the confirmation round: fixed params, fresh seeds and folds
    history: tuple = ()  # tpe: earlier rounds' (params, score) inside the space (hpo.guided)
    session: str = ""  # the driver run (or `hpo worker` run) this job belongs to (hpo.runner)

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space_dict)


@dataclass
class _Outcome:
    status: TrialStatus
    value: float | None = None
    reason: str | None = None
    traceback: str | None = None

    @property
    def state(self) -> TrialState:
        if self.status == TrialStatus.FINISHED:
            return TrialState.COMPLETE
        if self.status in (TrialStatus.PRUNED, TrialStatus.DIVERGED):
            return TrialState.PRUNED
        return TrialState.FAIL


def run_trial(job: RoundJob, rs: RoundStudy, trial_id: int) -> TrialStatus:
    """Run one claimed trial to its end and record it; returns its status."""
    number = rs.storage.get_trial_number_from_id(trial_id)
    seed = trial_seed(job.seed, job.round, number)
    trial, params = _take_params(job, rs, trial_id, number, seed)

    def report(step: int, value: float) -> bool:
        if job.pruner in (None, "none"):  # curves are kept anyway: spare 1 write per epoch
            return False
        trial.report(value, step)
        return trial.should_prune()

    ctx = TrialContext(number=number, round=job.round, seed=seed, metric=job.metric, _report=report)
    ctx.confirm = job.confirm
    start = time.perf_counter()
    try:
        outcome = _repeated(job, params, ctx, trial)
    except (KeyboardInterrupt, SystemExit):
        _record(rs, trial, _Outcome(TrialStatus.INTERRUPTED, reason="interrupted"), ctx, start)
        raise
    _record(rs, trial, outcome, ctx, start)
    return outcome.status


def _take_params(job: RoundJob, rs: RoundStudy, trial_id: int, number: int, seed: int):
    """Sample the trial's parameters: from the round's sampler, the hard limits (exploration) or
    near the best so far or another choice's best (local); the kind is kept as a user attr."""
    kind = "round"
    if job.explore_dict is not None:
        kind = trial_kind(number, job.explore, job.local if job.best else 0.0)
    sampler, space = rs.study.sampler, job.space
    wide = None if job.explore_dict is None else SearchSpace.from_dict(job.explore_dict)
    if job.sampler == "random" or kind == "explore":  # params depend on (seed, round, number)
        rs.study.sampler = optuna.samplers.RandomSampler(seed=seed)
    if kind == "explore":
        space = wide
    if kind == "local":
        rng = np.random.default_rng(seed)
        centre = local_centre(job.best, job.rivals, rng)
        swap = swap_slot(number, job.round, job.explore, job.local)
        rs.study.sampler = FixedSampler(local_params(space, centre, rng, swap))
    elif job.sampler == "tpe":  # a TPE that has seen the earlier rounds too
        rs.study.sampler = FixedSampler(_tpe_draw(job, rs, trial_id, space, seed, kind))
    if job.sampler == "grid":
        assign_grid_point(rs.study, rs.storage, rs.id, trial_id, number)
    if wide is not None and job.sampler in DRAWN_FIRST:
        space = _declared(rs, space, wide)
    trial = optuna.Trial(rs.study, trial_id)
    trial.set_user_attr(ATTR["seed"], seed)
    trial.set_user_attr(ATTR["worker"], worker_id())
    if kind != "round":
        trial.set_user_attr(ATTR[kind], True)
    params = suggest(trial, space)
    if job.sampler != "random":
        rs.study.sampler = sampler  # the round's own sampler for its next trial
    return trial, params


def _tpe_draw(
    job: RoundJob, rs: RoundStudy, trial_id: int, space: SearchSpace, seed: int, kind: str
) -> dict:
    """A TPE draw over ``space`` fitted to the earlier rounds' trials and the round's finished
    ones; for an exploration trial each score counts by its rank among its own choice's trials
    (hpo.guided.choice_quantiles)."""
    trials = rs.storage.get_all_trials(rs.id, deepcopy=False)  # read only
    observed = [*job.history, *round_observations(trials, trial_id)]
    if kind == "explore":  # each choice's best trials lead, not the leading choice's alone
        observed = choice_quantiles(space, observed, job.direction)
    return guided_params(space, observed, job.direction, seed)


def _declared(rs: RoundStudy, space: SearchSpace, wide: SearchSpace) -> SearchSpace:
    """The space the trial declares to Optuna: each categorical with the exploration trials'
    choices (its starting ones: one study cannot change them); a round trial of a random round is
    drawn from the round's own choices first, as the same seeded sampler would draw them."""
    declared = declared_space(space, wide)
    if declared != space and isinstance(rs.study.sampler, optuna.samplers.RandomSampler):
        shadow = optuna.create_study(sampler=rs.study.sampler)
        rs.study.sampler = FixedSampler(suggest(shadow.ask(), space))
    return declared


def _repeated(job: RoundJob, params: dict[str, Any], ctx: TrialContext, trial) -> _Outcome:
    """``job.repeats`` calls of the objective with their own seeds; the score is their mean, and
    each repeat's score and their sd are kept (``hpo.repeats``, ``hpo.value_sd``). Only the first
    repeat reports to the pruner; any repeat that diverges or fails ends the trial so. The curves
    kept are the mean over the repeats, epoch by epoch."""
    if job.repeats == 1:
        return _call(job.objective, params, ctx)
    scores, curves = [], []
    for r in range(job.repeats):
        # repeats after the first report to nobody: the pruner judges the first one only
        fresh = {"seed": repeat_seed(ctx.seed, r), "curves": {}, "repeat": r, "_report": None}
        rctx = ctx if r == 0 else replace(ctx, **fresh)
        outcome = _call(job.objective, params, rctx)
        curves.append(rctx.curves)
        if outcome.status != TrialStatus.FINISHED:
            outcome.reason = f"repeat {r + 1}/{job.repeats}: {outcome.reason}"
            trial.set_user_attr(ATTR["repeats"], scores)
            return outcome
        scores.append(outcome.value)
    ctx.curves = _mean_curves(curves)
    trial.set_user_attr(ATTR["repeats"], scores)
    trial.set_user_attr(ATTR["value_sd"], float(np.std(scores, ddof=1)))
    return _Outcome(TrialStatus.FINISHED, float(np.mean(scores)))


def _mean_curves(curves: list[dict[str, list]]) -> dict[str, list]:
    out = {}
    for name in curves[0]:
        rows = [c.get(name) or [] for c in curves]
        n = max(len(row) for row in rows)
        out[name] = []
        for i in range(n):
            vals = [row[i] for row in rows if i < len(row) and row[i] is not None]
            out[name].append(sum(vals) / len(vals) if vals else None)
    return out


def _call(objective, params: dict[str, Any], ctx: TrialContext) -> _Outcome:
    try:
        value = float(call_objective(objective, params, ctx))
    except optuna.TrialPruned as exc:
        return _Outcome(TrialStatus.PRUNED, reason=str(exc) or "pruned")
    except Diverged as exc:
        return _Outcome(TrialStatus.DIVERGED, reason=str(exc))
    except Exception as exc:  # the objective's bug fails this trial, not the study
        reason = f"{type(exc).__name__}: {exc}"[:500]
        return _Outcome(TrialStatus.FAILED, reason=reason, traceback=traceback.format_exc())
    if not math.isfinite(value):
        return _Outcome(TrialStatus.DIVERGED, reason=f"score is {value}")
    return _Outcome(TrialStatus.FINISHED, value)


def _record(rs: RoundStudy, trial: optuna.Trial, out: _Outcome, ctx: TrialContext, start: float):
    attrs = {
        "reason": out.reason,
        "traceback": out.traceback,
        "duration": time.perf_counter() - start,
        "curves": ctx.curves or None,
    }
    with deferred_interrupt():  # all or nothing: a status without its state counts for nothing
        for key, val in attrs.items():
            if val is not None:
                trial.set_user_attr(ATTR[key], val)
        trial.set_user_attr(ATTR["trial_status"], str(out.status))
        state, value = out.state, out.value if out.state == TrialState.COMPLETE else None
        rs.study.tell(trial, value, state=state)
