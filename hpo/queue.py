"""A round's queue of trials: the driver enqueues exactly the budget, workers claim from it.

The driver enqueues the round's budget as WAITING trials; a worker only ever claims a WAITING
trial (an atomic storage operation), so W workers record exactly the budget, with no surplus
trial and no duplicate. A failed trial is replaced by a new WAITING one until the failure limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from hpo import _optuna
from hpo.records import ATTR, FINISHED
from hpo.storage import trial_status

__all__ = [
    "RoundStudy",
    "counts",
    "fill_candidates",
    "pop_waiting",
    "replace_failed",
    "too_many_failures",
]


@dataclass(frozen=True)
class RoundStudy:
    """A round's Optuna study with its storage and id, which Optuna keeps private."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    id: int

    @classmethod
    def of(cls, study: optuna.Study) -> RoundStudy:
        storage = _optuna.storage_of(study)
        return cls(study, storage, storage.get_study_id_from_name(study.study_name))


def pop_waiting(rs: RoundStudy) -> int | None:
    """Claim one WAITING trial of the round (atomic in every Optuna storage): its id, or None."""
    for t in rs.storage.get_all_trials(rs.id, deepcopy=False, states=(TrialState.WAITING,)):
        tid = _optuna.trial_id(t)
        try:
            if rs.storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                return tid
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def counts(storage, study_id: int) -> dict[str, int]:
    """Trials of a round by hpo status (finished/pruned/diverged/failed/...), plus 'done'."""
    out: dict[str, int] = {}
    for t in storage.get_all_trials(study_id, deepcopy=False):
        status = str(trial_status(t))
        out[status] = out.get(status, 0) + 1
    out["done"] = sum(out.get(s, 0) for s in FINISHED)
    return out


def too_many_failures(c: dict[str, int], n_trials: int, max_failures: int) -> bool:
    """A round whose first ``max_failures`` trials all failed, or with as many failures as its
    budget, stops: a study whose every trial fails must not run its whole budget."""
    failed = c.get("failed", 0)
    return (c["done"] == 0 and failed >= max_failures) or failed >= max(n_trials, max_failures)


def replace_failed(rs: RoundStudy, n_trials: int, max_failures: int) -> bool:
    """Enqueue WAITING trials so that done + running + waiting reaches ``n_trials``.

    Only the driver calls this, between runs of the workers: a single writer of the queue, so
    two workers replacing failures at once can never push the round past its budget.

    Returns False (and enqueues nothing) once the round has ``max_failures`` failures and nothing
    finished, or as many failures as its budget: a study whose every trial fails stops early.
    Interrupted trials (Ctrl-C, SIGTERM) are replaced but are not failures of the objective.
    """
    c = counts(rs.storage, rs.id)
    if too_many_failures(c, n_trials, max_failures):
        return False
    missing = n_trials - c["done"] - c.get("running", 0) - c.get("waiting", 0)
    for _ in range(max(missing, 0)):
        rs.study.enqueue_trial({}, skip_if_exists=False)
    return True


def fill_candidates(rs: RoundStudy, candidates: list[dict], max_failures: int) -> bool:
    """The confirmation round's queue: one trial per candidate configuration, its params fixed;
    a candidate whose trial failed or was interrupted gets a new one (as :func:`replace_failed`,
    the driver alone writes it). Returns False once too many trials failed."""
    c = counts(rs.storage, rs.id)
    if too_many_failures(c, len(candidates), max_failures):
        return False
    taken = set()
    for t in rs.storage.get_all_trials(rs.id, deepcopy=False):
        if str(trial_status(t)) in (*FINISHED, "running", "waiting"):
            taken.add((t.user_attrs.get(ATTR["candidate"]) or {}).get("index"))
    for cand in candidates:
        if cand["index"] not in taken:
            rs.study.enqueue_trial(
                cand["params"], user_attrs={ATTR["candidate"]: cand}, skip_if_exists=False
            )
    return True
