"""The mirror's MLflow experiment: found or created, beside a SQLite store, marked as hpo's."""

from __future__ import annotations

import re
from typing import Any

import hpo.tracking._mlflow as ml
from hpo.tracking._mlflow import TrackingError

__all__ = ["check_deleted", "open_experiment"]


def _deleted(name: str, uri: str) -> TrackingError:
    return TrackingError(
        f"tracking: experiment {name!r} is deleted in {uri}; "
        "restore it (mlflow experiments restore) or purge it (mlflow gc)"
    )


def check_deleted(uri: str, name: str) -> None:
    """TrackingError when experiment ``name`` is deleted in the SQLite store ``uri``: read with
    sqlite3 in milliseconds, before MLflow is even imported (nothing to check in a new store)."""
    import sqlite3

    db = ml.sqlite_path(uri)
    target = uri.removeprefix("sqlite:///")
    is_uri = target.startswith("file:")
    con = sqlite3.connect(target if is_uri else str(db), uri=is_uri)
    try:
        row = con.execute(
            "SELECT lifecycle_stage FROM experiments WHERE name = ?", (name,)
        ).fetchone()
    except sqlite3.OperationalError:  # no table yet: a new store
        row = None
    finally:
        con.close()
    if row is not None and row[0] != "active":
        raise _deleted(name, uri)


def open_experiment(client: Any, uri: str, name: str, study: str, location: str | None) -> str:
    """The id of experiment ``name`` (created when missing; refused when deleted), tagged with
    ``study`` and, unless set already, as a model-training experiment. A SQLite store gets its
    artifacts beside it (not in the working folder), WAL and a fast commit."""
    from mlflow.exceptions import MlflowException

    db = ml.sqlite_path(uri)
    if db is not None:
        ml.check_sqlite(uri.removeprefix("sqlite:///"), db)
        if location is None:  # beside the store, not in whatever the working folder is
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
            location = (db.resolve().parent / "mlartifacts" / slug).as_uri()
    exp = client.get_experiment_by_name(name)
    if db is not None:
        ml.fast_sqlite(client)
    if exp is None:
        try:
            exp_id = client.create_experiment(name, location)
        except MlflowException as exc:  # another process created it meanwhile
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise exc from None
            exp_id = exp.experiment_id
    elif exp.lifecycle_stage != "active":
        raise _deleted(name, uri)
    else:
        exp_id = exp.experiment_id
    client.set_experiment_tag(exp_id, "hpo.study", study)  # also proves the store writable
    if exp is None or ml.EXPERIMENT_KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp_id, ml.EXPERIMENT_KIND_TAG, ml.TRAINING_KIND)
    return exp_id
