"""One round: W worker processes take trials of the round's Optuna study from a shared storage.

The driver enqueues exactly the round's budget as WAITING trials; a worker only ever claims a
WAITING trial (an atomic storage operation), so W workers record exactly the budget, with no
surplus trial and no duplicate. A failed trial is replaced by a new WAITING one until the failure
limit; a trial left RUNNING by a dead worker is failed by the driver and replaced the same way.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import numpy as np
import optuna
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import TrialState

from hpo.objective import Diverged, TrialContext, call_objective
from hpo.space import Categorical, IntRange, SearchSpace
from hpo.storage import ATTR, FINISHED_STATUSES, open_storage, trial_status

__all__ = ["RoundJob", "SAMPLERS", "PRUNERS", "make_pruner", "make_sampler", "run_workers"]

SAMPLERS = ("random", "tpe", "qmc", "cmaes", "grid")
PRUNERS = ("none", "median", "hyperband")

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


def trial_seed(seed: int, round_: int, number: int) -> int:
    """A trial's seed: a function of (study seed, round, trial number), not of scheduling."""
    return int(np.random.SeedSequence([seed, round_, number]).generate_state(1)[0])


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
    metric: str = "val_acc"
    max_failures: int = 5

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space_dict)


def _suggest(trial: optuna.Trial, name: str, param) -> Any:
    if isinstance(param, Categorical):
        return trial.suggest_categorical(name, list(param.choices))
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, log=param.log)
    return trial.suggest_float(name, param.low, param.high, log=param.log)


def pop_waiting(study: optuna.Study) -> int | None:
    """Claim one WAITING trial of ``study`` (atomic in every Optuna storage), or None."""
    storage, sid = study._storage, study._study_id
    for t in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return t._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def counts(storage, study_id: int) -> dict[str, int]:
    """Trials of a round by hpo status (finished/pruned/diverged/failed/...), plus 'done'."""
    out: dict[str, int] = {}
    for t in storage.get_all_trials(study_id, deepcopy=False):
        status = trial_status(t)
        out[status] = out.get(status, 0) + 1
    out["done"] = sum(out.get(s, 0) for s in FINISHED_STATUSES)
    return out


def too_many_failures(c: dict[str, int], n_trials: int, max_failures: int) -> bool:
    """A round whose first ``max_failures`` trials all failed, or with as many failures as its
    budget, stops: a study whose every trial fails must not run its whole budget."""
    failed = c.get("failed", 0)
    return (c["done"] == 0 and failed >= max_failures) or failed >= max(n_trials, max_failures)


def replace_failed(study: optuna.Study, n_trials: int, max_failures: int) -> bool:
    """Enqueue WAITING trials so that done + running + waiting reaches ``n_trials``.

    Only the driver calls this, between runs of the workers: a single writer of the queue, so
    two workers replacing failures at once can never push the round past its budget.

    Returns False (and enqueues nothing) once the round has ``max_failures`` failures and nothing
    finished, or as many failures as its budget: a study whose every trial fails stops early.
    Interrupted trials (Ctrl-C, SIGTERM) are replaced but are not failures of the objective.
    """
    c = counts(study._storage, study._study_id)
    if too_many_failures(c, n_trials, max_failures):
        return False
    missing = n_trials - c["done"] - c.get("running", 0) - c.get("waiting", 0)
    for _ in range(max(missing, 0)):
        study.enqueue_trial({}, skip_if_exists=False)
    return True


def _finish(study, trial, state, status, value=None, **attrs):
    for key, val in attrs.items():
        if val is not None:
            trial.set_user_attr(ATTR[key], val)
    trial.set_user_attr(ATTR["trial_status"], status)
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)


def _assign_grid_point(study: optuna.Study, trial_id: int, number: int) -> None:
    """Grid sampler: trial ``number`` takes grid point ``number``; a trial replacing a failed one
    takes the first point no finished or running trial holds. (Enqueued trials bypass the
    sampler's own assignment.)"""
    sampler, storage = study.sampler, study._storage
    n = len(sampler._all_grids)
    if number >= n:
        held = {
            t.system_attrs.get("grid_id")
            for t in storage.get_all_trials(study._study_id, deepcopy=False)
            if t.state != TrialState.FAIL and t._trial_id != trial_id
        }
        number = next((i for i in range(n) if i not in held), number % n)
    storage.set_trial_system_attr(trial_id, "search_space", sampler._search_space)
    storage.set_trial_system_attr(trial_id, "grid_id", number)


def run_trial(job: RoundJob, study: optuna.Study, trial_id: int) -> str:
    """Run one claimed trial to its end and record it; returns its hpo status."""
    number = study._storage.get_trial_number_from_id(trial_id)
    seed = trial_seed(job.seed, job.round, number)
    if job.sampler == "random":  # params then depend on (seed, round, number) only
        study.sampler = optuna.samplers.RandomSampler(seed=seed)
    if job.sampler == "grid":
        _assign_grid_point(study, trial_id, number)
    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr(ATTR["seed"], seed)
    trial.set_user_attr(ATTR["worker"], worker_id())
    space = job.space
    params = {name: _suggest(trial, name, p) for name, p in space.items()}

    def report(step: int, value: float) -> bool:
        if job.pruner in (None, "none"):  # curves are kept anyway: spare 1 write per epoch
            return False
        trial.report(value, step)
        return trial.should_prune()

    ctx = TrialContext(number=number, round=job.round, seed=seed, metric=job.metric, _report=report)
    start = time.perf_counter()
    try:
        value = call_objective(job.objective, params, ctx)
        value = float(value)
    except optuna.TrialPruned as exc:
        status, state, reason, value = "pruned", TrialState.PRUNED, str(exc) or "pruned", None
    except Diverged as exc:
        status, state, reason, value = "diverged", TrialState.PRUNED, str(exc), None
    except (KeyboardInterrupt, SystemExit):
        _finish(
            study,
            trial,
            TrialState.FAIL,
            "interrupted",
            reason="interrupted",
            duration=time.perf_counter() - start,
            curves=ctx.curves or None,
        )
        raise
    except Exception as exc:  # the objective's bug fails this trial, not the study
        _finish(
            study,
            trial,
            TrialState.FAIL,
            "failed",
            reason=f"{type(exc).__name__}: {exc}"[:500],
            traceback=traceback.format_exc(),
            duration=time.perf_counter() - start,
            curves=ctx.curves or None,
        )
        return "failed"
    else:
        if math.isfinite(value):
            status, state, reason = "finished", TrialState.COMPLETE, None
        else:
            status, state, reason = "diverged", TrialState.PRUNED, f"score is {value}"
            value = None
    _finish(
        study,
        trial,
        state,
        status,
        value,
        reason=reason,
        duration=time.perf_counter() - start,
        curves=ctx.curves or None,
    )
    return status


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def _worker_storage(spec: str) -> optuna.storages.BaseStorage:
    """One storage object per worker process, kept across rounds: a journal is then read
    incrementally instead of replayed from its start each round (0.1 s a round at 6-5 sizes)."""
    if spec not in _STORAGES:
        _STORAGES[spec] = open_storage(spec)
    return _STORAGES[spec]


def worker(job: RoundJob, n_trials: int) -> int:
    """Worker process body: claim and run WAITING trials of the round until none is left."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # W workers use W cores: no BLAS oversubscription
    study = optuna.load_study(
        study_name=job.study_name,
        storage=_worker_storage(job.storage),
        sampler=make_sampler(
            job.sampler, trial_seed(job.seed, job.round, 10**9 + os.getpid()), job.space
        ),
        pruner=make_pruner(job.pruner, job.max_steps),
    )
    ran = 0
    while (trial_id := pop_waiting(study)) is not None:
        try:  # RDB storages: a heartbeat thread, as study.optimize runs, so a dead worker shows
            with get_heartbeat_thread(trial_id, study._storage):
                status = run_trial(job, study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # failed meanwhile by the driver (heartbeat late): it has been replaced
        ran += 1
        if status == "failed" and too_many_failures(
            counts(study._storage, study._study_id), n_trials, job.max_failures
        ):
            break  # every trial fails: stop instead of running the whole budget
    return ran


def fail_orphans(storage, study_id: int, *, everyone: bool = False, unowned: bool = False) -> int:
    """Mark RUNNING trials whose worker process is gone (or all, with ``everyone``) as failed.

    ``unowned``: also fail at once the trials claimed by a worker that never signed them (it
    died right after claiming); otherwise they are failed a minute after their claim.

    A worker on this host is checked by pid; RDB storages also fail trials whose heartbeat
    stopped. Returns how many trials were failed.
    """
    host = socket.gethostname()
    n = 0 if everyone else fail_stale(storage, study_id)
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(ATTR["worker"], "")
        h, _, pid = owner.rpartition(":")
        dead = everyone or (
            h == host
            and pid.isdigit()
            and (not _alive(int(pid)) or _started_after(int(pid), t.datetime_start))
        )
        if not owner:  # claimed but never started: its worker died at once
            dead = dead or everyone or unowned or _claimed_long_ago(t)
        if dead:
            status = "interrupted" if everyone else "failed"
            reason = "interrupted" if everyone else f"worker {owner or '?'} died during the trial"
            storage.set_trial_user_attr(t._trial_id, ATTR["trial_status"], status)
            storage.set_trial_user_attr(t._trial_id, ATTR["reason"], reason)
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            n += 1
    return n


def fail_stale(storage, study_id: int) -> int:
    """RDB storages: fail the RUNNING trials whose worker (on any machine) stopped sending
    heartbeats for the grace period (``HPO_HEARTBEAT_GRACE``); returns how many."""
    if not is_heartbeat_enabled(storage):
        return 0
    n = 0
    for trial_id in storage._get_stale_trial_ids(study_id):  # what fail_stale_trials uses
        owner = storage.get_trial(trial_id).user_attrs.get(ATTR["worker"], "?")
        try:  # our attrs first: Optuna refuses to change a finished trial
            storage.set_trial_user_attr(trial_id, ATTR["trial_status"], "failed")
            storage.set_trial_user_attr(
                trial_id, ATTR["reason"], f"worker {owner} stopped sending heartbeats"
            )
            n += storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished (or another process failed it) meanwhile
    return n


def _claimed_long_ago(t, seconds: float = 60.0) -> bool:
    if t.datetime_start is None:
        return True
    from datetime import datetime

    start = t.datetime_start.astimezone(UTC)  # Optuna records naive local times
    return (datetime.now(UTC) - start).total_seconds() > seconds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed child not yet reaped) is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _started_after(pid: int, when) -> bool:
    """Whether process ``pid`` started after ``when`` (a trial's start, naive local time as Optuna
    records it): then it is not the trial's worker but a later process given the same pid, as
    happens after a reboot."""
    if when is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start, since boot
        with open("/proc/uptime") as f:
            boot = time.time() - float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return boot + ticks / os.sysconf("SC_CLK_TCK") > when.timestamp() + 1.0


def _ready() -> int:
    import hpo.objective  # noqa: F401  (what a worker needs before its first trial)

    return os.getpid()


def warm_up(n_workers: int, backend: str = "loky") -> threading.Thread | None:
    """Start the worker processes in the background (spawn, imports) while the driver does its
    own start-up (MLflow), so round 1 does not wait for them. Join the thread before round 1."""
    if backend != "loky" or n_workers == 1:
        return None
    from joblib import Parallel, delayed, parallel_config

    def start() -> None:
        with parallel_config(backend=backend, n_jobs=n_workers, max_nbytes=None):
            Parallel()(delayed(_ready)() for _ in range(n_workers))

    thread = threading.Thread(target=start, name="hpo-warm-up", daemon=True)
    thread.start()
    return thread


def run_workers(job: RoundJob, n_trials: int, n_workers: int, backend: str = "loky") -> None:
    """Run ``n_workers`` workers of ``job`` through joblib until no WAITING trial is left."""
    from joblib import Parallel, delayed, parallel_config

    if n_workers == 1 and backend == "loky":
        worker(job, n_trials)  # in-process: no pool start-up, same code path
        return
    if backend == "dask":  # dask pickles by reference what plain pickle accepts, and a study
        import cloudpickle  # file's objective exists on no other machine: send the job by value

        job = _Pickled(cloudpickle.dumps(job))
    # max_nbytes=None: the job's arrays go inline with it; dumping them to memmap files each
    # round cost more (0.1 s a round at the 6-5 sizes) than sending them
    with parallel_config(backend=backend, n_jobs=n_workers, max_nbytes=None):
        Parallel()(delayed(worker)(job, n_trials) for _ in range(n_workers))


class _Pickled:
    """A RoundJob as cloudpickle bytes; unpickling it gives the RoundJob back."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        import cloudpickle

        return cloudpickle.loads, (self.data,)
