"""MLflow plumbing for the mirror: the client, the SQLite store's quirks, batching, messages.

Only this package imports ``mlflow``, and lazily (it costs about a second), so importing
:mod:`hpo.tracking` is cheap and worker processes never pay for it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import InputError

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow 3's own default, so a plain `mlflow ui` works
PARAM_MAX = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
TAG_MAX = 8000  # MLflow's MAX_TAG_VAL_LENGTH
COMPLETE = "hpo.complete"  # written last: a run without it is half-written
# MLflow 3's kind of an experiment, as its UI's experiment-kind selector writes it: classic model
# training ("Machine learning"), not a GenAI app. Set once; a kind chosen in the UI is kept.
# (MLflow 3.17's UI takes the kind from its GenAI / Model training switch instead, the URL's
# `?workflowType=machine_learning`; without it an experiment still opens on the traces overview.)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_MODE = "workflowType=machine_learning"  # the UI's GenAI / Model training switch
TRAINING_KIND = "custom_model_development"


class TrackingError(InputError):
    """The tracking store cannot be used; the one-line message names the URI and the cause."""


class TrackingWarning(UserWarning):
    """MLflow failed during a study; the trials are safe in the storage (`hpo sync` catches up)."""


def resolve_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` (working folder)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def make_client(uri: str) -> MlflowClient:
    """An MlflowClient for ``uri``, without MLflow's "View run ... at" line per run."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from mlflow import MlflowClient

    return MlflowClient(uri)


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store (None for other stores and in-memory SQLite)."""
    m = re.match(r"sqlite:///(?:file:)?([^?]+)", uri)
    return Path(m.group(1)) if m and m.group(1) != ":memory:" else None


def tags(kind: str, study: str, key: str, **extra: Any) -> dict[str, str]:
    """The tags that identify an hpo run: its kind, study and key (plus ``extra``, as strings;
    ``parent`` becomes ``mlflow.parentRunId``, the nesting the UI shows)."""
    out = {"hpo.kind": kind, "hpo.study": study, "hpo.key": key}
    for name, value in extra.items():
        if value is not None:
            out["mlflow.parentRunId" if name == "parent" else f"hpo.{name}"] = str(value)
    return out


def search(client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    """All active runs of the experiment matching ``filter_string``, oldest first."""
    out, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string,
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        out.extend(page)
        token = page.token
        if not token:
            return out


def log(client, run_id, *, params=None, metrics=(), skip=(), complete=False) -> None:
    """``log_batch`` within MLflow's limits (100 params, 1000 entities a call); the
    ``hpo.complete`` tag rides on the last call. Params already logged (``skip``) are left.
    ``metrics``: Metric entities or (key, value, timestamp, step) tuples."""
    from mlflow.entities import Metric, Param, RunTag

    ps = [Param(str(n), clip(v, PARAM_MAX)) for n, v in (params or {}).items() if n not in skip]
    mets = [m if isinstance(m, Metric) else Metric(*m) for m in metrics]
    chunks = list(
        zip_longest(
            [ps[i : i + 100] for i in range(0, len(ps), 100)],
            [mets[i : i + 900] for i in range(0, len(mets), 900)],
            fillvalue=[],
        )
    ) or [([], [])]
    for i, (p, m) in enumerate(chunks):
        tags = [RunTag(COMPLETE, "1")] if complete and i == len(chunks) - 1 else []
        if p or m or tags:
            client.log_batch(run_id, metrics=m, params=p, tags=tags)


def message(uri: str, exc: BaseException) -> str:
    """One line for an MLflow failure: which store, and the cause."""
    text = str(exc).strip()
    refused = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", text)
    if refused and uri.startswith("http"):
        return f"tracking: cannot reach {uri} ({refused.group(1).strip()})"
    # a server that dies mid-request: the connection drops without an errno
    dropped = re.search(r"(RemoteDisconnected|Connection aborted|Max retries|timed out)", text)
    if dropped and uri.startswith("http"):
        return f"tracking: cannot reach {uri} ({dropped.group(1)})"
    if "MLFLOW_ALLOW_FILE_STORE" in text:  # a recent MLflow refuses its file store
        return (
            f"tracking: MLflow refuses the file store {uri}; use a database store "
            "(e.g. sqlite:///mlflow.db, the default) or set MLFLOW_ALLOW_FILE_STORE=true"
        )
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    line = text.splitlines()[0] if text else type(exc).__name__
    line = re.sub(r"^\([\w.]+\)\s*", "", line)  # "(sqlite3.OperationalError) ..."
    return f"tracking: cannot write {uri} ({line[:200]})"


# While the mirror prepares (before any trial): an unreachable server is reported in seconds, not
# after MLflow's default 7 retries with exponential backoff and 120 s timeouts (minutes). A value
# the user set is kept; later syncs use MLflow's defaults (they warn and retry on their own).
FAIL_FAST = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


@contextmanager
def fail_fast() -> Iterator[None]:
    """MLflow's HTTP retries and timeout cut short (:data:`FAIL_FAST`) inside the block."""
    added = [name for name in FAIL_FAST if name not in os.environ]
    for name in added:
        os.environ[name] = FAIL_FAST[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextmanager
def quiet(names: tuple[str, ...] = ("mlflow.store.db.utils", "alembic")) -> Iterator[None]:
    """Silence MLflow's store logging while the mirror works: a new store's schema creation
    lines, and the traceback it logs for each database error, which the mirror reports in one
    line (TrackingError, or one TrackingWarning)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def check_sqlite(target: str, path: Path) -> None:
    """Open the store's file and take its write lock once, so that an unusable store fails at
    once (MLflow retries opening a SQLite file for about 100 s before it gives up)."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    uri = target.startswith("file:")
    con = sqlite3.connect(target if uri else str(path), uri=uri, timeout=10)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.rollback()
    finally:
        con.close()


def _synchronous_normal(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def fast_sqlite(client: MlflowClient) -> None:
    """WAL journal + ``synchronous=NORMAL`` on the mirror's connections: a commit no longer waits
    for fsync (a run costs about 3x less here) and readers such as `mlflow ui` do not block the
    writer. WAL is a persistent property of the file; a power cut may lose the last runs, which
    the next sync rewrites from the storage. Best effort: it reaches into MLflow's store."""
    from sqlalchemy import event

    engine = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(engine, "engine", None)
    if engine is None or event.contains(engine, "connect", _synchronous_normal):
        return
    try:  # needs a moment alone with the file: skipped while another process reads it
        with engine.connect() as con:
            mode = con.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()
    except Exception:
        return
    if str(mode).lower() != "wal":  # NORMAL is only safe with WAL
        return
    event.listen(engine, "connect", _synchronous_normal)
    engine.dispose()  # pooled connections reconnect with the setting


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clip(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ms(dt: datetime | None) -> int:
    return int((dt.timestamp() if dt is not None else time.time()) * 1000)


def study_pages(uri: str, host: str, port: int) -> list[tuple[str, str]]:
    """(experiment name, runs-table URL) of every experiment the hpo mirror wrote to."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return []  # no store yet: do not create one just to find it empty
    return [
        (exp.name, runs_url(exp.experiment_id, host, port))
        for exp in make_client(uri).search_experiments(max_results=1000)
        if exp.tags.get("hpo.study")
    ]


def runs_url(
    experiment_id: str, host: str = "127.0.0.1", port: int = 5000, run_id: str | None = None
) -> str:
    """The runs table of an experiment (or one run's page) in the UI's model-training mode:
    MLflow 3.17 otherwise opens an experiment on its traces overview, empty here."""
    run = f"/{run_id}" if run_id else ""
    return f"http://{host}:{port}/#/experiments/{experiment_id}/runs{run}?{TRAINING_MODE}"
