"""Scale out: `hpo worker` processes on other machines join a study through a shared database.

The machine that started the study (the driver) decides everything: it enqueues each round's
budget as WAITING trials, narrows the ranges and starts the next round, recording the rounds in the
parent study's user attrs. A worker only follows: it polls the storage, claims WAITING trials of
the current round with the same atomic claim as the driver's own workers (so the budget stays
exact), and stops when the study's status is no longer "running", or (DriverGone) when its
driver's lease expired (:mod:`hpo.lease`): its trial in flight is then recorded interrupted.
The driver waits for trials running elsewhere before it narrows, and fails those whose worker
stopped sending heartbeats.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

from optuna.trial import TrialState

from hpo.lease import DriverGone, Watch
from hpo.liveness import fail_orphans
from hpo.queue import counts
from hpo.records import ATTR, learning_since
from hpo.runner import worker
from hpo.settings import Settings
from hpo.storage import open_storage, parent_attrs, read_rounds, trials_frame

__all__ = ["DriverGone", "follow", "wait_for_round"]

POLL = 1.0  # seconds between two looks at the storage: how a remote worker learns of a new round


def wait_for_round(storage, study_id: int, poll: float = 0.5) -> None:
    """Driver side: wait while trials of the round run elsewhere and none is WAITING, failing the
    trials of dead workers (pid on this host, heartbeat anywhere) as they are found."""
    while True:
        fail_orphans(storage, study_id)
        c = counts(storage, study_id)
        if not c.get("running") or c.get("waiting"):
            return
        time.sleep(poll)


def follow(study: Settings, *, poll: float = POLL, log: Callable[[str], Any] | None = None) -> int:
    """Worker side: take trials of ``study``'s current round until its driver finishes or stops it.

    ``study`` comes from the same study file as the driver's (the objective and the search space
    live there); its settings are replaced by those the driver stored. Returns the trials run.
    """
    log = log or (lambda _msg: None)
    storage = open_storage(study.storage)
    attrs = parent_attrs(storage, study.name)
    if attrs is None:
        log(f"waiting for a driver to start study {study.name!r}")
    while attrs is None or ATTR["config"] not in attrs:
        time.sleep(poll)
        attrs = parent_attrs(storage, study.name)
    study = as_stored(study, attrs[ATTR["config"]])
    with Watch(storage, study.name, poll) as watch:  # the driver's lease, every poll
        try:
            return _take_trials(study, storage, poll, log)
        except KeyboardInterrupt:
            if watch.message is None:
                raise
            raise DriverGone(watch.message) from None


def _take_trials(study: Settings, storage, poll: float, log: Callable[[str], Any]) -> int:
    ran, joined = 0, set()
    session = uuid.uuid4().hex  # this run's: its worker storage is kept across rounds (runner)
    while True:
        attrs = parent_attrs(storage, study.name)
        status = attrs.get(ATTR["status"], "running")
        if status != "running":
            log(f"study {study.name!r} is {status}: {ran} trial(s) run here")
            return ran
        rounds = read_rounds(attrs)
        if rounds and _has_waiting(storage, rounds[-1].study_name):
            k = rounds[-1].round
            if k not in joined:
                joined.add(k)
                log(f"round {k}/{study.rounds}: taking trials")
            r, best = rounds[-1], attrs.get(ATTR["best"])
            near = best["params"] if best else None
            job = (
                study.confirm_job(k, r.study_name)
                if r.confirm
                else study.round_job(
                    k,
                    r.space,
                    near,
                    trials_frame(storage, study.name),
                    r.learns,
                    learning_since(rounds, k),
                )
            )
            job = dataclasses.replace(job, session=session)
            ran += worker(job, len(r.candidates) or study.trials)
            continue
        time.sleep(poll)


def as_stored(study: Settings, config: dict[str, Any]) -> Settings:
    """``study`` with the settings its driver stored (command-line overrides included)."""
    return dataclasses.replace(
        study,
        direction=config["direction"],
        sampler=config["sampler"],
        pruner=config["pruner"],
        rounds=config["rounds"],
        trials=config["trials"],
        seed=config["seed"],
        fixed=config.get("fixed"),
        **{k: config[k] for k in ("repeats", "confirm", "confirm_repeats") if k in config},
        tracking=False,  # the driver is the only MLflow writer: the mirror stays exactly once
    )


def _has_waiting(storage, name: str) -> bool:
    try:
        sid = storage.get_study_id_from_name(name)
    except KeyError:  # the driver has recorded the round but not created it yet
        return False
    return bool(storage.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING,)))
