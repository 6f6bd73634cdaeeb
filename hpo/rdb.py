"""An RDB storage that rides out a database restart: a call that lost its connection is retried.

Optuna's RDBStorage runs each call in a transaction of its own and the engine checks pooled
connections before use (``pool_pre_ping``), so after a restart of PostgreSQL the same call on a
new connection is what was asked. Retried for up to ``HPO_DB_RETRY`` seconds (default 60), with
a growing pause; other errors are raised at once. A lost connection is recognised anywhere in
the exception's chain (Optuna catches some and goes on, then fails on the dead transaction).
One known limit: a call whose commit reached the server just before the connection broke runs
twice (a trial enqueued twice, say).
"""

from __future__ import annotations

import functools
import os
import time

import optuna

__all__ = ["RetryingRDBStorage"]

RETRIED = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
    "record_heartbeat",
    # Optuna's private ones: hpo._optuna.stale_trial_ids, and the cache optuna.load_study puts
    # in front of an RDB storage calls these instead of the public ones
    "_get_stale_trial_ids",
    "_create_new_trial",
    "_set_trial_param",
    "_get_best_trial_id",
    "_get_trials",
)


def _lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` comes of a lost connection, anywhere in its chain: Optuna wraps errors
    in StorageInternalError, and some of its calls catch an OperationalError and go on in the
    same transaction, so that the error raised is SQLAlchemy's PendingRollbackError, whose
    context is the lost connection."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (OperationalError, InterfaceError)):
            return True
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True
        todo += [e.__cause__, e.__context__]
    return False


def _retrying(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        deadline = time.monotonic() + float(os.environ.get("HPO_DB_RETRY") or 60)
        pause = 0.2
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if not _lost_connection(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)  # the server restarting: try again on a new connection
            pause = min(2 * pause, 2.0)

    return call


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose calls survive a lost connection (see the module)."""


for _name in RETRIED:
    setattr(RetryingRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))
