"""Optuna storages and the layout of a study inside one: the single source of truth for trials.

A study named ``NAME`` is stored as one *parent* Optuna study ``NAME`` (no trials; its user attrs
hold the configuration, the ranges of every round and the result) plus one Optuna study per round,
``NAME/round-K``, holding that round's trials. Everything else (the MLflow mirror, reports,
resume) is read back from here.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from hpo._optuna import BaseJournalFileLock
from hpo.errors import InputError, env_number
from hpo.journal import Backend, JournalRepaired, cut, repair
from hpo.rdb import RetryingRDBStorage
from hpo.records import ATTR, TRIAL_COLUMNS, RoundRecord, TrialStatus

if TYPE_CHECKING:  # pandas costs a worker process 0.3 s at start-up: imported where used
    import pandas as pd

__all__ = [
    "StorageError",
    "best_score",
    "check_spec",
    "describe",
    "heartbeat_settings",
    "new_paths",
    "open_storage",
    "parent_attrs",
    "read_rounds",
    "remove_new",
    "round_name",
    "round_names",
    "set_parent_attr",
    "trial_score",
    "trial_status",
    "trials_frame",
]


class StorageError(InputError):
    """A storage URL or path that cannot be used; the message says why and what is accepted."""


def _is_url(spec: str) -> bool:
    return "://" in spec


def describe(spec: str) -> str:
    """Human-readable form of a storage spec, without any password."""
    if _is_url(spec) and "@" in spec:
        scheme, rest = spec.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return spec


def check_spec(spec: str | Path) -> None:
    """Check a storage spec without creating or writing anything; raise StorageError if unusable."""
    spec = str(spec)
    if _is_url(spec):
        scheme = spec.split("://", 1)[0]
        if not scheme.startswith(("sqlite", "postgresql", "mysql")):
            raise StorageError(
                f"storage: unsupported scheme {scheme!r}; use a file path (journal), "
                "sqlite:///FILE, postgresql+psycopg://USER@HOST/DB or mysql://..."
            )
        return
    path = Path(spec)
    if path.exists():
        if path.is_dir():
            raise StorageError(
                f"storage: {spec!r} is a folder; give a file path such as "
                f"{str(path / 'optuna.journal')!r}"
            )
        if not path.is_file():  # a device such as /dev/full would be read forever
            raise StorageError(f"storage: {spec!r} is not a regular file; give a file path")
        if not os.access(path, os.W_OK):
            raise StorageError(f"storage: {spec!r} is not writable")
        return
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise StorageError(
            f"storage: cannot create {spec!r} ({str(ancestor)!r} is not a writable folder)"
        )


def open_storage(spec: str | Path, *, create: bool = True) -> optuna.storages.BaseStorage:
    """Open a storage from a URL or a file path.

    - ``path/to/file.journal`` (or any path without ``://``): Optuna's journal file storage, safe
      for several processes on one machine; the embedded default.
    - ``sqlite:///file.db``, ``postgresql+psycopg://user@host/db``, ...: Optuna's RDB storage,
      with heartbeats so that a dead worker's trial is detected.
    """
    spec = str(spec)
    check_spec(spec)
    if not _is_url(spec):
        path = Path(spec)
        if not create and not path.exists():
            raise StorageError(f"storage: no journal file at {spec!r}")
        parent = path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"storage: cannot create folder {str(parent)!r} ({exc.strerror})"
            ) from None
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise StorageError(f"storage: {spec!r} is not writable")
        try:  # root passes os.access everywhere; /proc and read-only mounts still refuse
            repair(path, f"{path}.flock")  # a record cut short by a crash: dropped, said so
            backend = Backend(spec, lock_obj=FlockLock(path))
            return optuna.storages.JournalStorage(backend)
        except OSError as exc:
            raise StorageError(f"storage: cannot write {spec!r} ({exc.strerror})") from None
    scheme = spec.split("://", 1)[0]
    interval, grace = heartbeat_settings()
    try:
        return _rdb_storage(spec, interval, grace, scheme)
    except ModuleNotFoundError as exc:
        raise StorageError(
            f"storage: the driver for {scheme!r} is not installed ({exc.name}); "
            "for PostgreSQL run: pip install 'hpo[postgres]'"
        ) from exc
    except Exception as exc:  # SQLAlchemy raises many types for an unreachable server
        raise StorageError(f"storage: cannot open {describe(spec)} ({_first_line(exc)})") from exc


def _rdb_storage(spec: str, interval: int, grace: int, scheme: str, attempts: int = 3):
    import warnings

    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RetryingRDBStorage(  # rides out a database restart
                    spec,
                    heartbeat_interval=interval,
                    grace_period=grace,
                    engine_kwargs=None if scheme.startswith("sqlite") else {"pool_pre_ping": True},
                )
        except (IntegrityError, ProgrammingError):
            # processes creating the tables of an empty database at once: one wins, the rest retry
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def new_paths(spec: str | Path) -> list[Path]:
    """The journal file and the folders that opening ``spec`` would create, deepest first (none
    for a URL): what :func:`remove_new` may take away again."""
    if _is_url(str(spec)):
        return []
    path, out = Path(spec), []
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def remove_new(paths: list[Path] | None) -> None:
    """Undo the opening of a journal that was not there (``new_paths``) while it is still empty:
    a start-up that fails after opening the storage leaves nothing behind."""
    if not paths or (paths[0].exists() and paths[0].stat().st_size > 0):
        return
    for file in (paths[0], Path(f"{paths[0]}.flock")):
        file.unlink(missing_ok=True)
    for folder in paths[1:]:
        try:
            folder.rmdir()
        except OSError:  # not empty (someone else's files): leave it
            return


def heartbeat_settings() -> tuple[int, int]:
    """RDB heartbeats: (interval, grace period) in seconds, from ``HPO_HEARTBEAT_INTERVAL`` (default
    10) and ``HPO_HEARTBEAT_GRACE`` (default 3 intervals). A RUNNING trial whose worker has not
    sent a heartbeat for the grace period is failed by the driver; set both the same everywhere."""
    accepted = "a whole number of seconds >= 1"
    interval = env_number("HPO_HEARTBEAT_INTERVAL", int, StorageError, accepted) or 10
    grace = env_number("HPO_HEARTBEAT_GRACE", int, StorageError, accepted) or 3 * interval
    return interval, grace


class FlockLock(BaseJournalFileLock):
    """Journal lock held with ``flock``: the kernel releases it when its holder dies, so a worker
    killed mid-write never leaves a stale lock file behind (Optuna's file locks wait 30 s); and
    whoever takes it first cuts off a record such a writer left incomplete (:mod:`hpo.journal`)."""

    def __init__(self, path: str | Path) -> None:
        self._path = f"{path}.flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        with contextlib.suppress(FileNotFoundError):  # a writer died mid-record: cut it off
            if note := cut(self._path.removesuffix(".flock")):
                warnings.warn(note, JournalRepaired, stacklevel=2)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def round_name(study: str, k: int) -> str:
    """Name of round ``k`` (1-based) of ``study``."""
    return f"{study}/round-{k}"


def _study_id(storage: optuna.storages.BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def parent_attrs(storage: optuna.storages.BaseStorage, study: str) -> dict[str, Any] | None:
    """The parent study's user attrs, or None when no study of that name is stored."""
    sid = _study_id(storage, study)
    if sid is None:
        return None
    return storage.get_study_user_attrs(sid)


def set_parent_attr(storage: optuna.storages.BaseStorage, study: str, key: str, value: Any):
    sid = storage.get_study_id_from_name(study)
    storage.set_study_user_attr(sid, ATTR.get(key, key), value)


def read_rounds(attrs: dict[str, Any] | None) -> list[RoundRecord]:
    """The round records among a parent study's user attrs (none when ``attrs`` is None)."""
    return [RoundRecord.from_dict(r) for r in (attrs or {}).get(ATTR["rounds"], [])]


def round_names(storage: optuna.storages.BaseStorage, study: str) -> list[str]:
    """Names of the rounds of ``study`` that exist in the storage, in order."""
    attrs = parent_attrs(storage, study) or {}
    return [r["study_name"] for r in attrs.get(ATTR["rounds"], [])]


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def trials_frame(storage: optuna.storages.BaseStorage, study: str) -> pd.DataFrame:
    """All trials of all rounds of ``study``, one row each.

    Columns: round, number, state (Optuna's), status (hpo's: finished, pruned, diverged, failed,
    interrupted, running, waiting), value (NaN unless the trial finished with a finite score),
    duration (seconds in the objective), seed, worker, reason, explore, repeats (each repeat's
    score when a trial is evaluated more than once), value_sd (their sd), candidate (in the
    confirmation round: the search trial confirmed), started, completed, then ``params_<name>``.
    """
    rows = []
    for k, name in enumerate(round_names(storage, study), start=1):
        sid = _study_id(storage, name)
        if sid is None:
            continue
        for t in storage.get_all_trials(sid, deepcopy=False):
            ua = t.user_attrs
            value = trial_score(t)
            row = {
                "round": k,
                "number": t.number,
                "state": t.state.name,
                "status": str(trial_status(t)),
                "value": value if value is not None else math.nan,
                "duration": ua.get(ATTR["duration"], math.nan),
                "seed": ua.get(ATTR["seed"]),
                "worker": ua.get(ATTR["worker"]),
                "reason": ua.get(ATTR["reason"]),
                "explore": bool(ua.get(ATTR["explore"], False)),
                "local": bool(ua.get(ATTR["local"], False)),
                "repeats": ua.get(ATTR["repeats"]),
                "value_sd": ua.get(ATTR["value_sd"], math.nan),
                "candidate": ua.get(ATTR["candidate"]),
                "started": t.datetime_start,
                "completed": t.datetime_complete,
            }
            for p, v in t.params.items():
                row[f"params_{p}"] = v
            rows.append(row)
    import pandas as pd

    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(TRIAL_COLUMNS))
    return frame


_STATUS_OF_STATE = {
    "COMPLETE": TrialStatus.FINISHED,
    "PRUNED": TrialStatus.PRUNED,
    "FAIL": TrialStatus.FAILED,
    "RUNNING": TrialStatus.RUNNING,
    "WAITING": TrialStatus.WAITING,
}


def trial_status(t: optuna.trial.FrozenTrial) -> TrialStatus:
    """hpo's status of a trial: what its worker recorded, else the one its Optuna state implies.
    A worker writes the status before the state (Optuna refuses attributes on a finished trial):
    while the state is RUNNING or WAITING, the trial is that, whatever status is written (its
    worker may have stopped between the two writes: the trial was never scored)."""
    recorded = t.user_attrs.get(ATTR["trial_status"])
    if recorded and not t.state.is_finished():
        recorded = None
    return TrialStatus(recorded) if recorded else _STATUS_OF_STATE[t.state.name]


def trial_score(t: optuna.trial.FrozenTrial) -> float | None:
    """The trial's finite score, or None. Optuna gives a pruned trial its last intermediate
    value: only COMPLETE trials score, so no ranking ever sees a pruned or diverged one."""
    if t.state != optuna.trial.TrialState.COMPLETE or not t.values:
        return None
    return _finite(t.values[0])


def best_score(trials, direction: str = "maximize") -> float | None:
    """The best finite score among Optuna ``trials`` (scored as :func:`trial_score`), or None."""
    scores = [v for v in map(trial_score, trials) if v is not None]
    if not scores:
        return None
    return min(scores) if direction == "minimize" else max(scores)
