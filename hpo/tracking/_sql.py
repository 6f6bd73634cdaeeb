"""Trial runs written straight into MLflow's SQL tables, a batch of runs per transaction.

MLflow's public API costs 8-20 ms per trial run on a SQLite store (create, terminate, log_batch:
about 40 statements and 7 commits, mostly SQLAlchemy Python). A trial run is final when the
mirror writes it, so here each run is inserted already finished: the run row as
``SqlAlchemyStore.create_run`` + ``set_terminated`` leave it, its tags (``mlflow.runName``,
``mlflow.parentRunId``, ``hpo.complete``), params, metric history and latest metrics (chosen as
MLflow chooses them: highest step, then timestamp, then value), for many runs in one
transaction of ``executemany`` inserts on the store's own engine, using MLflow's own table
definitions. A batch is whole or absent, so ``hpo.complete`` keeps its meaning.

Used only for a local SQL store whose tables have the columns expected here (checked once);
anything else (an HTTP server, another schema) keeps the public API. What MLflow would check, is
checked here: lengths clipped (:mod:`hpo.tracking.runs`), names MLflow accepts, finite values,
no metric (key, step) twice in a run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from hpo.tracking._mlflow import COMPLETE, PARAM_MAX, clip, finite, log
from hpo.tracking.runs import TrialRun

__all__ = ["SqlWriter", "sql_writer", "write_trials"]

BATCH = 50  # runs per transaction: a few ms of lock each time, the UI sees them in small steps
# The columns written here, per table (a schema without them keeps the public API).
COLUMNS = {
    "runs": {
        "run_uuid",
        "name",
        "source_type",
        "source_name",
        "entry_point_name",
        "user_id",
        "status",
        "start_time",
        "end_time",
        "deleted_time",
        "source_version",
        "lifecycle_stage",
        "artifact_uri",
        "experiment_id",
    },
    "tags": {"key", "value", "run_uuid"},
    "params": {"key", "value", "run_uuid"},
    "metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
}
# MLflow's rule for param, metric and tag names (mlflow.utils.validation), and its key limit.
_NAME = re.compile(r"^[/\w.\- :]*$")
KEY_MAX = 250


def sql_writer(client: Any, experiment_id: str) -> SqlWriter | None:
    """A writer on ``client``'s store, or None when the store is not MLflow's plain SQL store
    with the expected tables (then the mirror uses the public API)."""
    try:
        from mlflow.store.tracking.dbmodels import models
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from sqlalchemy import inspect
    except ImportError:
        return None
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if type(store) is not SqlAlchemyStore:  # a subclass (workspaces, ...) may scope its rows
        return None
    tables = {
        t.name: t
        for t in (
            models.SqlRun.__table__,
            models.SqlTag.__table__,
            models.SqlParam.__table__,
            models.SqlMetric.__table__,
            models.SqlLatestMetric.__table__,
        )
    }
    try:
        found = inspect(store.engine)
        for name, wanted in COLUMNS.items():
            have = {c["name"] for c in found.get_columns(name)}
            if not wanted <= have or not wanted <= {c.name for c in tables[name].columns}:
                return None
        experiment = client.get_experiment(experiment_id)
    except Exception:
        return None
    return SqlWriter(store.engine, tables, experiment_id, experiment.artifact_location)


def write_trials(
    client: Any,
    writer: SqlWriter | None,
    experiment_id: str,
    runs: Sequence[TrialRun],
    written: Callable[[TrialRun], None],
) -> None:
    """``BATCH`` runs a transaction with ``writer``; one by one through MLflow's API without it
    and for a run with a traceback (an artifact) or a name MLflow's checks would refuse.
    ``written(run)`` is called once the run is whole in the store."""
    fast, slow = [], []
    for run in runs:
        ok = writer is not None and not run.traceback and acceptable(run)
        (fast if ok else slow).append(run)
    for i in range(0, len(fast), BATCH):
        batch = fast[i : i + BATCH]
        writer.write(batch)
        for run in batch:
            written(run)
    for run in slow:
        write_one(client, experiment_id, run)
        written(run)


def write_one(client: Any, experiment_id: str, run: TrialRun) -> None:
    """One trial run through MLflow's public API: create (tags) -> traceback artifact ->
    terminate -> params, metrics and ``hpo.complete`` (last) by ``log_batch``."""
    created = client.create_run(
        experiment_id, start_time=run.start, tags=run.tags, run_name=run.name
    )
    rid = created.info.run_id
    if run.traceback:
        client.log_text(rid, run.traceback, "traceback.txt")
    client.set_terminated(rid, run.status, end_time=run.end)
    log(client, rid, params=run.params, metrics=run.metrics, complete=True)


def acceptable(run: TrialRun) -> bool:
    """Whether ``run`` passes MLflow's checks on names (else the public API reports it)."""
    names = [*run.tags, *run.params, *(m[0] for m in run.metrics)]
    return all(len(n) <= KEY_MAX and _NAME.match(n) for n in names)


class SqlWriter:
    """Inserts finished trial runs, ``BATCH`` at a time, each batch in one transaction."""

    def __init__(self, engine, tables: dict[str, Any], experiment_id: str, artifact_root: str):
        self.engine, self.tables = engine, tables
        from mlflow.utils.uri import append_to_uri_path  # as SqlAlchemyStore.create_run does

        self.experiment_id, self.artifact_root = int(experiment_id), artifact_root
        self.artifact_uri = append_to_uri_path

    def write(self, runs: Sequence[TrialRun]) -> list[str]:
        """Insert ``runs`` (each under the parent its tags name) in one transaction."""
        rows: dict[str, list[dict]] = {name: [] for name in COLUMNS}
        ids = [uuid.uuid4().hex for _ in runs]
        for rid, run in zip(ids, runs, strict=True):
            self._rows(rows, rid, run)
        with self.engine.begin() as con:
            for name in COLUMNS:  # runs first: the others refer to it
                if rows[name]:
                    con.execute(self.tables[name].insert(), rows[name])
        return ids

    def _rows(self, rows: dict[str, list[dict]], rid: str, run: TrialRun) -> None:
        rows["runs"].append(
            {
                "run_uuid": rid,
                "name": run.name,
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "user_id": "unknown",
                "status": run.status,
                "start_time": run.start,
                "end_time": run.end,
                "deleted_time": None,
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": self.artifact_uri(self.artifact_root, rid, "artifacts"),
                "experiment_id": self.experiment_id,
            }
        )
        tags = {**run.tags, "mlflow.runName": run.name, COMPLETE: "1"}
        rows["tags"] += [{"key": k, "value": v, "run_uuid": rid} for k, v in tags.items()]
        rows["params"] += [
            {"key": str(k), "value": clip(v, PARAM_MAX), "run_uuid": rid}
            for k, v in run.params.items()
        ]
        latest: dict[str, tuple] = {}
        seen: set[tuple[str, int]] = set()
        for key, value, timestamp, step in run.metrics:
            if not finite(value) or (key, step) in seen:
                continue
            seen.add((key, step))
            point = (step, timestamp, float(value))
            rows["metrics"].append(_metric(rid, key, point))
            if key not in latest or point > latest[key]:
                latest[key] = point
        rows["latest_metrics"] += [_metric(rid, k, p) for k, p in latest.items()]


def _metric(rid: str, key: str, point: tuple[int, int, float]) -> dict:
    step, timestamp, value = point
    return {
        "key": key,
        "value": value,
        "timestamp": timestamp,
        "step": step,
        "is_nan": False,
        "run_uuid": rid,
    }
