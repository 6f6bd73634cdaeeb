"""hpo.rdb: a call that lost its database connection is retried, however Optuna wraps the error;
any other error is raised at once."""

from __future__ import annotations

import pytest
from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import IntegrityError, OperationalError, PendingRollbackError, SQLAlchemyError

from hpo.rdb import _lost_connection, _retrying

SHUTDOWN = Exception("terminating connection due to administrator command")


def _wrapped(first: Exception) -> StorageInternalError:
    """What Optuna's RDBStorage._get_trials raised in a chaos soak when PostgreSQL restarted
    mid-query: it caught the OperationalError, went on in the same (dead) transaction, got
    PendingRollbackError, and _create_scoped_session wrapped that in StorageInternalError."""
    try:
        try:
            raise first
        except SQLAlchemyError:
            raise PendingRollbackError("Can't reconnect until invalid transaction is rolled back")  # noqa: B904
    except SQLAlchemyError as e:
        try:
            raise StorageInternalError("An exception is raised during the commit.") from e
        except StorageInternalError as wrapped:
            return wrapped


def test_a_lost_connection_is_found_anywhere_in_the_chain():
    lost = OperationalError("SELECT", {}, SHUTDOWN)
    assert _lost_connection(lost)
    assert _lost_connection(_wrapped(lost))  # the chaos soak's failure (it was raised at once)
    # a transaction spoiled by bad data, not by the connection: not retried
    assert not _lost_connection(_wrapped(IntegrityError("INSERT", {}, Exception("duplicate key"))))
    assert not _lost_connection(ValueError("no"))


class _Flaky:
    def __init__(self, errors):
        self.errors, self.calls = list(errors), 0

    def call(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "trials"


def test_the_call_is_retried_after_a_lost_connection_and_not_after_other_errors(monkeypatch):
    monkeypatch.setenv("HPO_DB_RETRY", "30")
    flaky = _Flaky([_wrapped(OperationalError("SELECT", {}, SHUTDOWN))])
    assert _retrying(_Flaky.call)(flaky) == "trials"
    assert flaky.calls == 2
    bad = _wrapped(IntegrityError("INSERT", {}, Exception("duplicate key")))
    flaky = _Flaky([bad])
    with pytest.raises(StorageInternalError) as exc:
        _retrying(_Flaky.call)(flaky)
    assert exc.value is bad and flaky.calls == 1
