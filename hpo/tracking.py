"""The MLflow mirror: study run > round runs > trial runs, rebuilt from the Optuna storage.

The storage is the source of truth; MLflow is a faithful, idempotent copy written by one writer
(the driver, or ``hpo sync``). Each run carries a key tag (``hpo.key``: ``NAME``, ``NAME/K`` or
``NAME/K/NUMBER``); a run is whole once its ``hpo.complete`` tag is set, which is written last.
The first sync loads the keys already in MLflow, so a restarted driver adds no duplicates; later
syncs only look at trials not mirrored yet. ``mlflow`` is imported lazily (it costs about a
second), so importing this module is cheap and workers never pay for it.

Example (``storage`` from :func:`hpo.storage.open_storage`)::

    mirror = Mirror("demo")  # MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    mirror.prepare()  # TrackingError when the store is unusable: before any worker starts
    mirror.sync(storage)  # every second while workers run; never raises, warns once
    mirror.finish(storage, artifacts=["runs/demo/trials.csv"])
    print(mirror.experiment_url())  # http://127.0.0.1:5000/#/experiments/1/runs
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from hpo.space import SearchSpace
from hpo.storage import ATTR, best_score, parent_attrs, trial_score, trial_status

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

__all__ = ["DEFAULT_TRACKING_URI", "Mirror", "TrackingError", "TrackingWarning", "resolve_uri"]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow 3's own default, so a plain `mlflow ui` works
PARAM_MAX = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
TAG_MAX = 8000  # MLflow's MAX_TAG_VAL_LENGTH
TRACEBACK_TAG_MAX = 4000  # the tail of a traceback is kept as a tag; the whole is an artifact
COMPLETE = "hpo.complete"  # written last: a run without it is half-written
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_RUN_STATUS = {
    "finished": "FINISHED",
    "pruned": "FINISHED",
    "diverged": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}


class TrackingError(ValueError):
    """The tracking store cannot be used; the one-line message names the URI and the cause."""


class TrackingWarning(UserWarning):
    """MLflow failed during a study; the trials are safe in the storage (`hpo sync` catches up)."""


def resolve_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` (working folder)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class Mirror:
    """Mirrors one hpo study of an Optuna storage into one MLflow experiment.

    ``sync`` and ``finish`` never raise: on an MLflow error they warn once, remember it
    (``failed``, ``last_error``) and retry on the next call. Calls are serialised by a lock, so a
    monitor thread and the main thread may both call them; two *processes* writing the same
    study at once are not coordinated (a duplicate they make is removed by the next reload).
    """

    def __init__(
        self,
        study_name: str,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        artifact_location: str | None = None,
    ):
        self.study_name = study_name
        self.tracking_uri = resolve_uri(tracking_uri)
        self.experiment_name = experiment or study_name
        self.artifact_location = artifact_location
        self.experiment_id: str | None = None
        self.study_run_id: str | None = None
        self.last_error: str | None = None
        self._client: MlflowClient | None = None
        self._lock = threading.Lock()
        self._warned = False
        self._written = 0  # runs written by the current sync or finish
        self._forget()

    def _forget(self) -> None:
        """Drop the cache of what MLflow holds: the next sync reloads it (after any failure)."""
        self._loaded = False
        self._done: set[str] = set()  # keys of complete trial runs
        self._rounds: dict[int, str] = {}  # round -> run id
        self._round_params: dict[int, set[str] | None] = {}  # None once the round run is whole
        self._closed: set[int] = set()  # rounds whose run is terminated
        self._study_params: set[str] | None = set()  # None once the study run is whole
        self._study_status: str | None = None
        self._study_ids: dict[str, int] = {}

    @property
    def failed(self) -> bool:
        """True while the last sync or finish failed (the mirror lags behind the storage)."""
        return self.last_error is not None

    # -- public API -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Get or create the experiment and the study run; raise TrackingError when unusable."""
        with self._lock, _quiet():
            try:
                self._prepare()
            except TrackingError:
                raise
            except Exception as exc:
                raise TrackingError(self._message(exc)) from exc

    def sync(self, storage: optuna.storages.BaseStorage) -> int:
        """Mirror every finished trial not mirrored yet; return the number of runs written."""
        with self._lock, _quiet():
            self._written = 0
            try:
                self._sync(storage)
            except Exception as exc:
                self._fail(exc)
            else:
                self._ok()
            return self._written

    def finish(
        self,
        storage: optuna.storages.BaseStorage,
        *,
        artifacts: Iterable[str | os.PathLike] = (),
        best: Mapping[str, Any] | None = None,
        test_score: float | None = None,
    ) -> bool:
        """Final sync, best configuration, artifacts, study run terminated; True when all done.

        ``best`` (``{"params", "value", "round", "number"}``) and ``test_score`` default to the
        parent study's ``hpo.best`` and ``hpo.test_score``. Safe to call again (idempotent).
        """
        with self._lock, _quiet():
            self._written = 0
            try:
                self._sync(storage)
                attrs = parent_attrs(storage, self.study_name) or {}
                for k in self._rounds:
                    self._close_round(storage, k)
                best = attrs.get(ATTR["best"]) if best is None else best
                test_score = attrs.get(ATTR["test_score"]) if test_score is None else test_score
                self._log_result(best, test_score)
                for path in artifacts:
                    if Path(path).is_file():
                        self._mlflow().log_artifact(self.study_run_id, str(path))
                status = str(attrs.get(ATTR["status"]) or "finished")
                self._mlflow().set_terminated(self.study_run_id, _study_run_status(status, True))
            except Exception as exc:
                self._fail(exc)
                return False
            self._ok()
            return True

    def experiment_url(self, host: str = "127.0.0.1", port: int = 5000) -> str:
        """The runs table of the experiment (MLflow 3's UI opens on an empty traces page)."""
        return f"http://{host}:{port}/#/experiments/{self._experiment_id()}/runs"

    def run_url(self, run_id: str | None = None, host: str = "127.0.0.1", port: int = 5000) -> str:
        """The page of ``run_id`` (default: the study run)."""
        return f"{self.experiment_url(host, port)}/{run_id or self.study_run_id}"

    # -- connection -------------------------------------------------------------------------

    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            # MLflow prints a "View run ... at" line per run on HTTP stores: hundreds per study
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            from mlflow import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _experiment_id(self) -> str:
        if self.experiment_id is None:
            exp = self._mlflow().get_experiment_by_name(self.experiment_name)
            if exp is None:
                raise TrackingError(
                    f"tracking: no experiment {self.experiment_name!r} in "
                    f"{self.tracking_uri}; run the study or `hpo sync` first"
                )
            self.experiment_id = exp.experiment_id
        return self.experiment_id

    def _sqlite_path(self) -> Path | None:
        m = re.match(r"sqlite:///(?:file:)?([^?]+)", self.tracking_uri)
        return Path(m.group(1)) if m and m.group(1) != ":memory:" else None

    def _prepare(self) -> None:
        from mlflow.exceptions import MlflowException

        db = self._sqlite_path()
        location = self.artifact_location
        if db is not None:
            _check_sqlite(self.tracking_uri.removeprefix("sqlite:///"), db)
            if location is None:  # beside the store, not in whatever the working folder is
                slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.experiment_name)
                location = (db.resolve().parent / "mlartifacts" / slug).as_uri()
        client = self._mlflow()
        exp = client.get_experiment_by_name(self.experiment_name)
        if db is not None:
            _fast_sqlite(client)
        if exp is None:
            try:
                exp_id = client.create_experiment(self.experiment_name, location)
            except MlflowException as exc:  # another process created it meanwhile
                exp = client.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    raise exc from None
                exp_id = exp.experiment_id
        elif exp.lifecycle_stage != "active":
            raise TrackingError(
                f"tracking: experiment {self.experiment_name!r} is deleted in {self.tracking_uri}; "
                "restore it (mlflow experiments restore) or purge it (mlflow gc)"
            )
        else:
            exp_id = exp.experiment_id
        self.experiment_id = exp_id
        client.set_experiment_tag(exp_id, "hpo.study", self.study_name)  # also proves writable
        runs = self._search(f"tags.`hpo.kind` = 'study' and {self._study_filter()}")
        runs = [r for r in runs if r.data.tags.get("hpo.study") == self.study_name]
        if runs:
            self.study_run_id = runs[0].info.run_id
        else:
            tags = {"hpo.kind": "study", "hpo.study": self.study_name, "hpo.key": self.study_name}
            run = client.create_run(exp_id, tags=tags, run_name=self.study_name)
            self.study_run_id = run.info.run_id

    def _study_filter(self) -> str:
        if "'" in self.study_name or "\\" in self.study_name:
            return "tags.`hpo.study` != ''"  # exact match checked in Python
        return f"tags.`hpo.study` = '{self.study_name}'"

    def _search(self, filter_string: str) -> list:
        """All active runs of the experiment matching ``filter_string``, oldest first."""
        out, token = [], None
        while True:
            page = self._mlflow().search_runs(
                [self.experiment_id],
                filter_string,
                max_results=1000,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _message(self, exc: BaseException) -> str:
        text = str(exc).strip()
        refused = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", text)
        if refused and self.tracking_uri.startswith("http"):
            return f"tracking: cannot reach {self.tracking_uri} ({refused.group(1).strip()})"
        # a server that dies mid-request: the connection drops without an errno
        dropped = re.search(r"(RemoteDisconnected|Connection aborted|Max retries|timed out)", text)
        if dropped and self.tracking_uri.startswith("http"):
            return f"tracking: cannot reach {self.tracking_uri} ({dropped.group(1)})"
        if isinstance(exc, OSError) and exc.strerror:
            text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
        line = text.splitlines()[0] if text else type(exc).__name__
        line = re.sub(r"^\([\w.]+\)\s*", "", line)  # "(sqlite3.OperationalError) ..."
        return f"tracking: cannot write {self.tracking_uri} ({line[:200]})"

    def _fail(self, exc: BaseException) -> None:
        self.last_error = self._message(exc)
        self._forget()  # a half-done write is found and repaired by the reload
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.last_error}; trials stay in the Optuna storage and `hpo sync` "
                "completes the mirror later",
                TrackingWarning,
                stacklevel=3,
            )

    def _ok(self) -> None:
        self.last_error = None
        self._warned = False  # a new outage gets a new warning

    # -- sync -------------------------------------------------------------------------------

    def _sync(self, storage: optuna.storages.BaseStorage) -> None:
        if self.study_run_id is None:
            self._prepare()
        if not self._loaded:
            self._load()
        attrs = parent_attrs(storage, self.study_name) or {}
        self._sync_study(attrs)
        rounds = attrs.get(ATTR["rounds"]) or []
        config = attrs.get(ATTR["config"]) or {}
        fixed, metric = config.get("fixed") or {}, config.get("metric") or "intermediate_value"
        for i, info in enumerate(rounds):
            k = int(info["round"])
            self._sync_round(storage, k, info, fixed, metric)
            if i < len(rounds) - 1:
                self._close_round(storage, k)

    def _load(self) -> None:
        """Read back what MLflow holds for this study; delete half-written and duplicate trials."""
        client = self._mlflow()
        for run in self._search(self._study_filter()):
            tags, rid = run.data.tags, run.info.run_id
            if tags.get("hpo.study") != self.study_name:
                continue
            kind = tags.get("hpo.kind")
            if kind == "trial":
                key = tags.get("hpo.key", "")
                if COMPLETE not in tags or key in self._done:
                    client.delete_run(rid)
                else:
                    self._done.add(key)
            elif kind == "round" and (k := int(tags["hpo.round"])) not in self._rounds:
                self._rounds[k] = rid
                self._round_params[k] = None if COMPLETE in tags else set(run.data.params)
                if run.info.status != "RUNNING":
                    self._closed.add(k)
            elif kind == "study" and rid == self.study_run_id:
                self._study_params = None if COMPLETE in tags else set(run.data.params)
                self._study_status = tags.get("hpo.status")
        self._loaded = True

    def _sync_study(self, attrs: Mapping[str, Any]) -> None:
        client = self._mlflow()
        if self._study_params is not None and attrs.get(ATTR["config"]) is not None:
            params = _study_params(attrs[ATTR["config"]])
            self._log(self.study_run_id, params=params, skip=self._study_params, complete=True)
            self._study_params = None
        status = attrs.get(ATTR["status"])
        if status and status != self._study_status:
            client.set_tag(self.study_run_id, "hpo.status", _clip(status, TAG_MAX))
            run_status = _study_run_status(status, False)
            if run_status == "RUNNING":
                client.update_run(self.study_run_id, status="RUNNING")
            else:
                client.set_terminated(self.study_run_id, run_status)
            self._study_status = status

    def _sync_round(self, storage, k: int, info: Mapping[str, Any], fixed: Mapping, metric: str):
        client = self._mlflow()
        key = f"{self.study_name}/{k}"
        if k not in self._rounds:
            tags = {
                "hpo.kind": "round",
                "hpo.study": self.study_name,
                "hpo.key": key,
                "hpo.round": str(k),
                "mlflow.parentRunId": self.study_run_id,
            }
            run = client.create_run(self.experiment_id, tags=tags, run_name=f"round-{k}")
            self._rounds[k], self._round_params[k] = run.info.run_id, set()
            self._written += 1
        rid = self._rounds[k]
        if self._round_params[k] is not None:
            params = _round_params(info)
            self._log(rid, params=params, skip=self._round_params[k], complete=True)
            self._round_params[k] = None
        sid = self._study_id(storage, info["study_name"])
        if sid is None:
            return
        trials = storage.get_all_trials(sid, deepcopy=False, states=_DONE)
        new = [t for t in trials if f"{key}/{t.number}" not in self._done]
        for t in new:
            self._write_trial(k, t, rid, fixed, metric)
        if new:  # best_score's step = finished trials so far: its history is the round's progress
            minimize = storage.get_study_directions(sid)[0].name == "MINIMIZE"
            best = best_score(trials, minimize=minimize)
            if best is not None:
                client.log_metric(rid, "best_score", best, step=len(trials))

    def _study_id(self, storage, name: str) -> int | None:
        if name not in self._study_ids:
            try:
                self._study_ids[name] = storage.get_study_id_from_name(name)
            except KeyError:
                return None
        return self._study_ids[name]

    def _close_round(self, storage, k: int) -> None:
        """Terminate round ``k``'s run, ending when its last trial ended."""
        if k in self._closed:
            return
        sid = self._study_id(storage, f"{self.study_name}/round-{k}")
        trials = (
            storage.get_all_trials(sid, deepcopy=False, states=_DONE) if sid is not None else []
        )
        ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
        end = _ms(max(ends)) if ends else None
        self._mlflow().set_terminated(self._rounds[k], "FINISHED", end_time=end)
        self._closed.add(k)

    def _write_trial(self, k: int, t: FrozenTrial, parent: str, fixed: Mapping, metric: str):
        """One trial run: create (tags) -> traceback artifact -> terminate -> batch + complete."""
        from mlflow.entities import Metric

        client = self._mlflow()
        ua = t.user_attrs
        status = trial_status(t)
        key = f"{self.study_name}/{k}/{t.number}"
        tags = {
            "hpo.kind": "trial",
            "hpo.study": self.study_name,
            "hpo.key": key,
            "hpo.round": str(k),
            "hpo.trial": str(t.number),
            "hpo.status": status,
            "mlflow.parentRunId": parent,
        }
        for name in ("reason", "seed", "worker", "duration"):
            if ua.get(ATTR[name]) is not None:
                tags[ATTR[name]] = _clip(ua[ATTR[name]], TAG_MAX)
        tb = ua.get(ATTR["traceback"])
        if tb:
            tags[ATTR["traceback"]] = str(tb)[-TRACEBACK_TAG_MAX:]
        run = client.create_run(
            self.experiment_id,
            start_time=_ms(t.datetime_start),
            tags=tags,
            run_name=f"trial-{t.number:04d}",
        )
        rid = run.info.run_id
        if tb:
            client.log_text(rid, str(tb), "traceback.txt")
        end = _ms(t.datetime_complete or t.datetime_start)
        run_status = _RUN_STATUS.get(status, "FAILED" if t.state == TrialState.FAIL else "FINISHED")
        client.set_terminated(rid, run_status, end_time=end)
        curves = ua.get(ATTR["curves"]) or {}
        if not curves and t.intermediate_values:  # an objective without curves: the pruning metric
            steps = max(t.intermediate_values) + 1
            curves = {metric: [t.intermediate_values.get(s) for s in range(1, steps)]}
        metrics = [
            Metric(name, float(v), end, i + 1)  # curve[i] is epoch i + 1, as in pruning
            for name, curve in curves.items()
            for i, v in enumerate(curve or [])
            if _finite(v)
        ]
        if (score := trial_score(t)) is not None:
            metrics.append(Metric("score", score, end, 0))
        params = {**{str(n): v for n, v in fixed.items()}, **t.params}
        self._log(rid, params=params, metrics=metrics, complete=True)
        self._done.add(key)
        self._written += 1

    def _log(self, run_id, *, params=None, metrics=(), skip=(), complete=False) -> None:
        """``log_batch`` within MLflow's limits (100 params, 1000 entities a call); the
        ``hpo.complete`` tag rides on the last call. Params already logged (``skip``) are left."""
        from mlflow.entities import Param, RunTag

        ps = [
            Param(str(n), _clip(v, PARAM_MAX)) for n, v in (params or {}).items() if n not in skip
        ]
        ms = list(metrics)
        chunks = list(
            zip_longest(
                [ps[i : i + 100] for i in range(0, len(ps), 100)],
                [ms[i : i + 900] for i in range(0, len(ms), 900)],
                fillvalue=[],
            )
        ) or [([], [])]
        for i, (p, m) in enumerate(chunks):
            tags = [RunTag(COMPLETE, "1")] if complete and i == len(chunks) - 1 else []
            if p or m or tags:
                self._mlflow().log_batch(run_id, metrics=m, params=p, tags=tags)

    def _log_result(self, best: Mapping[str, Any] | None, test_score: float | None) -> None:
        """Best configuration as ``best.<name>`` params and ``best_score``/``test_score``."""
        client = self._mlflow()
        run = client.get_run(self.study_run_id)
        have = run.data.params
        if best:
            params = {f"best.{n}": v for n, v in (best.get("params") or {}).items()}
            # Params cannot change: a resumed study with a new best keeps it in tags instead.
            moved = {
                n: v for n, v in params.items() if n in have and have[n] != _clip(v, PARAM_MAX)
            }
            self._log(self.study_run_id, params=params, skip=set(have))
            for n, v in moved.items():
                client.set_tag(self.study_run_id, n, _clip(v, TAG_MAX))
            if best.get("round") is not None and best.get("number") is not None:
                key = f"{self.study_name}/{best['round']}/{best['number']}"
                client.set_tag(self.study_run_id, "hpo.best_key", key)
        for name, value in (("best_score", (best or {}).get("value")), ("test_score", test_score)):
            if _finite(value) and run.data.metrics.get(name) != float(value):
                client.log_metric(self.study_run_id, name, float(value), step=0)


# -- helpers --------------------------------------------------------------------------------


@contextmanager
def _quiet(names: tuple[str, ...] = ("mlflow.store.db.utils", "alembic")) -> Iterator[None]:
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


def _check_sqlite(target: str, path: Path) -> None:
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


def _fast_sqlite(client: MlflowClient) -> None:
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


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clip(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ms(dt: datetime | None) -> int:
    return int((dt.timestamp() if dt is not None else time.time()) * 1000)


def _study_run_status(status: str, final: bool) -> str:
    """hpo.status of the parent study -> MLflow run status (``final``: at the study's end)."""
    if status == "interrupted":
        return "KILLED"
    if status.startswith("failed"):
        return "FAILED"
    if status == "running":
        return "FINISHED" if final else "RUNNING"
    return "FINISHED"  # finished, stopped: <why>


def _study_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as params (nested dicts flattened as ``a.b``), fixed settings by their names."""
    out: dict[str, Any] = {}
    for name, value in config.items():
        if name == "fixed":
            continue
        if isinstance(value, Mapping):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    for name, value in (config.get("fixed") or {}).items():
        out[f"fixed.{name}" if name in out else str(name)] = value
    return out


def _round_params(info: Mapping[str, Any]) -> dict[str, str]:
    """``range.<p>`` for every parameter, ``reason.<p>``/``detail.<p>`` for every change."""
    space = SearchSpace.from_dict(info.get("space") or {})
    out = {f"range.{p}": str(param) for p, param in space.items()}
    for p, change in (info.get("changes") or {}).items():
        for field in ("reason", "detail"):
            if isinstance(change, Mapping) and change.get(field) is not None:
                out[f"{field}.{p}"] = change[field]
    return out
