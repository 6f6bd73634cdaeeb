"""Every use of Optuna's private API, in one place, each with the reason we need it.

Optuna is pinned below its next major version (pyproject.toml); ``tests/hpo/test_optuna_compat.py``
uses each one on a real storage, so an Optuna release that drops or changes one fails the suite
loudly instead of breaking a study at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# A worker claims trials itself (the driver's queue), so it must run the heartbeat thread that
# ``study.optimize`` would run, and know whether the storage has heartbeats at all.
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled

# Our journal lock (hpo.storage.FlockLock) subclasses this base: Optuna exports its two file locks
# but not their base class, and the journal backend accepts any subclass as ``lock_obj``.
from optuna.storages.journal._file import BaseJournalFileLock

if TYPE_CHECKING:
    import optuna

__all__ = [
    "BaseJournalFileLock",
    "get_heartbeat_thread",
    "grid_of",
    "is_heartbeat_enabled",
    "stale_trial_ids",
    "storage_of",
    "trial_id",
]


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a Study really uses: ``optuna.load_study`` wraps an RDB storage in a cache,
    and claiming a trial through the unwrapped one leaves that cache stale."""
    return study._storage


def trial_id(trial: optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial: the claim, the orphan clean-up and the state changes go
    through the storage API, which takes ids; FrozenTrial keeps it private."""
    return trial._trial_id


def stale_trial_ids(storage: optuna.storages.BaseStorage, study_id: int) -> list[int]:
    """RUNNING trials whose heartbeat stopped. ``optuna.storages.fail_stale_trials`` needs a
    Study and fails them without saying whose they were; we record the worker as the reason."""
    return storage._get_stale_trial_ids(study_id)


def grid_of(sampler: optuna.samplers.GridSampler) -> tuple[list[Any], dict[str, Any]]:
    """(every grid point, the search space) of a grid sampler: enqueued trials bypass its own
    point assignment, so the runner assigns points by trial number."""
    return sampler._all_grids, sampler._search_space
