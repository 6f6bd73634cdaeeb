"""Which RUNNING trials lost their worker: a dead pid on this host, or a stopped heartbeat.

A trial left RUNNING by a dead worker is failed here (and replaced by the driver's queue), so a
crashed worker never leaves a hole in a round's budget.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime

import optuna
from optuna.trial import TrialState

from hpo import _optuna
from hpo.records import ATTR, TrialStatus

__all__ = [
    "deferred_interrupt",
    "fail_orphans",
    "fail_stale",
    "interruptible",
    "process_gone",
    "worker_id",
]


def interruptible() -> None:
    """Let SIGINT interrupt this process's main thread (KeyboardInterrupt, as Ctrl-C does), which
    is how a worker's own watcher ends the trial in flight once its driver is gone. A process
    started with SIGINT ignored (a script's `hpo worker ... &`: a shell without job control
    ignores it for background jobs) inherits SIG_IGN, and that interruption would do nothing.
    Main thread only (Python's rule); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def deferred_interrupt():
    """Hold SIGINT (Ctrl-C, or a worker's watcher once its driver is gone) back until the block
    ends, then act on it: a trial's outcome is written as several storage calls, and one
    interrupted between them would leave the trial half recorded. Main thread with a Python
    handler only (elsewhere there is nothing to hold back)."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    held: list[tuple] = []
    signal.signal(signal.SIGINT, lambda *sig: held.append(sig))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            previous(*held[0])


def worker_id() -> str:
    """``host:pid`` of this process, as trials record their worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_orphans(storage, study_id: int, *, everyone: bool = False, unowned: bool = False) -> int:
    """Mark RUNNING trials whose worker process is gone (or all, with ``everyone``) as failed.

    ``unowned``: also fail at once the trials claimed by a worker that never signed them (it
    died right after claiming); otherwise they are failed a minute after their claim.

    A worker on this host is checked by pid; RDB storages also fail trials whose heartbeat
    stopped. Returns how many trials were failed.
    """
    n = 0 if everyone else fail_stale(storage, study_id)
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(ATTR["worker"], "")
        if not (everyone or _is_orphan(t, owner, unowned)):
            continue
        status = TrialStatus.INTERRUPTED if everyone else TrialStatus.FAILED
        reason = "interrupted" if everyone else f"worker {owner or '?'} died during the trial"
        tid = _optuna.trial_id(t)
        storage.set_trial_user_attr(tid, ATTR["trial_status"], str(status))
        storage.set_trial_user_attr(tid, ATTR["reason"], reason)
        storage.set_trial_state_values(tid, state=TrialState.FAIL)
        n += 1
    return n


def _is_orphan(t, owner: str, unowned: bool) -> bool:
    if not owner:  # claimed but never started: its worker died at once
        return unowned or _claimed_long_ago(t)
    return process_gone(owner, t.datetime_start)  # elsewhere: its heartbeat tells (fail_stale)


def process_gone(owner: str, since=None) -> bool:
    """Whether ``owner`` (host:pid) is a process of this host that has ended, or whose pid a
    process started after ``since`` now has; False for another host's processes."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not _alive(int(pid)) or _started_after(int(pid), since)


def fail_stale(storage, study_id: int) -> int:
    """RDB storages: fail the RUNNING trials whose worker (on any machine) stopped sending
    heartbeats for the grace period (``HPO_HEARTBEAT_GRACE``); returns how many."""
    if not _optuna.is_heartbeat_enabled(storage):
        return 0
    n = 0
    for trial_id in _optuna.stale_trial_ids(storage, study_id):
        owner = storage.get_trial(trial_id).user_attrs.get(ATTR["worker"], "?")
        try:  # our attrs first: Optuna refuses to change a finished trial
            storage.set_trial_user_attr(trial_id, ATTR["trial_status"], str(TrialStatus.FAILED))
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
