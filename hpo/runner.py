"""One round's workers: W processes (joblib) that claim and run trials until the queue is empty.

Each worker opens the round's study on a shared storage, pins BLAS to one thread (W workers use
W cores) and takes WAITING trials (:mod:`hpo.queue`) until none is left. A worker process ends
with its driver: killed, even by SIGKILL, it leaves no worker running behind it.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time

import optuna

from hpo import _optuna
from hpo.budget import stop_claiming
from hpo.liveness import interruptible
from hpo.queue import RoundStudy, counts, pop_waiting, too_many_failures
from hpo.records import TrialStatus
from hpo.sampling import make_pruner, make_sampler
from hpo.storage import open_storage
from hpo.trials import RoundJob, run_trial, trial_seed

__all__ = ["run_workers", "warm_up", "worker"]

_STORAGES: dict[str, tuple[str, optuna.storages.BaseStorage]] = {}  # spec: (session, storage)
_FOLLOWED: set[int] = set()  # the driver this worker process ends with (one at most)
_ORPHANED = threading.Event()  # that driver has ended: claim no more trials
GRACE = 3.0  # seconds for the trial in flight to record itself interrupted once the driver died


def _worker_storage(spec: str, session: str = "") -> optuna.storages.BaseStorage:
    """One storage object per worker process, kept across the rounds of one ``session`` (a
    driver's run): a journal is then read incrementally instead of replayed from its start each
    round (0.1 s a round at 6-5 sizes). A new session opens it again: its file may have been
    deleted and made anew since (a study run afresh at the same path, in the same process or in
    a worker process joblib reuses), and an object kept from before would read the old file and
    never see the new round's trials. No session: opened afresh."""
    cached = _STORAGES.get(spec)
    if not session or cached is None or cached[0] != session:
        cached = (session, open_storage(spec))
        _STORAGES[spec] = cached
    return cached[1]


def worker(job: RoundJob, n_trials: int, driver: int | None = None) -> int:
    """Worker process body: claim and run WAITING trials of the round until none is left.
    ``driver``: the pid of the driver that started this process, which it ends with."""
    from threadpoolctl import threadpool_limits

    _end_with(driver)
    threadpool_limits(1)  # W workers use W cores: no BLAS oversubscription
    storage = _worker_storage(job.storage, job.session)
    # a stream of draws per process; QMC's sequence is shared by every worker (make_sampler)
    own = trial_seed(job.seed, job.round, 10**9 + os.getpid())
    shared = trial_seed(job.seed, job.round, 10**9)
    study = optuna.load_study(
        study_name=job.study_name,
        storage=storage,
        sampler=make_sampler(job.sampler, own, job.space, shared=shared),
        pruner=make_pruner(job.pruner, job.max_steps),
    )
    rs = RoundStudy.of(study)
    ran = 0
    while (
        not _ORPHANED.is_set()
        and not stop_claiming(job, rs.storage, rs.id)
        and (trial_id := pop_waiting(rs)) is not None
    ):
        try:  # RDB storages: a heartbeat thread, as study.optimize runs, so a dead worker shows
            with _optuna.get_heartbeat_thread(trial_id, rs.storage):
                status = run_trial(job, rs, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # failed meanwhile by the driver (heartbeat late): it has been replaced
        ran += 1
        if status == TrialStatus.FAILED and too_many_failures(
            counts(rs.storage, rs.id), n_trials, job.max_failures
        ):
            break  # every trial fails: stop instead of running the whole budget
    return ran


def _end_with(driver: int | None) -> None:
    """In a worker process the driver started: a thread that ends this process when the driver
    ends, however it ends (loky's workers outlive a driver killed with SIGKILL)."""
    if driver is None or driver == os.getpid() or _FOLLOWED:
        return
    interruptible()  # started by a driver that ignores SIGINT: _watch's SIGINT must still act
    _FOLLOWED.add(driver)
    threading.Thread(target=_watch, args=(driver,), name="hpo-follow-driver", daemon=True).start()


def _watch(driver: int) -> None:
    """Wait for ``driver`` to end; then interrupt the trial in flight (SIGINT: it is recorded as
    interrupted, as on Ctrl-C) and exit after a grace period whatever the main thread does."""
    try:
        fd = os.pidfd_open(driver)  # Linux 5.3+: readable once the process has ended
    except (AttributeError, OSError):  # elsewhere, or the driver has already gone
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    else:
        while os.getppid() == driver:
            time.sleep(0.5)
    _ORPHANED.set()  # a trial claimed now could no longer be signed before the exit below
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(GRACE)
    os._exit(1)


def _ready(driver: int | None = None) -> int:
    _end_with(driver)
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
            try:
                Parallel()(delayed(_ready)(os.getpid()) for _ in range(n_workers))
            except Exception as exc:  # a worker killed while starting: round 1 starts another
                if not is_worker_death(exc):
                    raise

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
    driver = os.getpid() if backend == "loky" else None  # dask workers may be on other machines
    # max_nbytes=None: the job's arrays go inline with it; dumping them to memmap files each
    # round cost more (0.1 s a round at the 6-5 sizes) than sending them
    with parallel_config(backend=backend, n_jobs=n_workers, max_nbytes=None):
        Parallel()(delayed(worker)(job, n_trials, driver) for _ in range(n_workers))


def is_worker_death(exc: BaseException) -> bool:
    """Whether ``exc`` is joblib's word that a worker process died (its trial is then failed)."""
    from joblib.externals.loky.process_executor import BrokenProcessPool, TerminatedWorkerError

    return isinstance(exc, (TerminatedWorkerError, BrokenProcessPool))


def shutdown_pool() -> None:
    """Kill the reusable loky pool's workers (Ctrl-C: trials in flight end now)."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True, kill_workers=True)


class _Pickled:
    """A RoundJob as cloudpickle bytes; unpickling it gives the RoundJob back."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        import cloudpickle

        return cloudpickle.loads, (self.data,)
