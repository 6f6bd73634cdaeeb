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
    print(mirror.experiment_url())  # .../#/experiments/1/runs?workflowType=machine_learning
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

import hpo.tracking._mlflow as ml
from hpo.records import ATTR, DEFAULT_METRIC, RoundRecord
from hpo.storage import best_score, parent_attrs, read_rounds, round_name
from hpo.tracking._mlflow import (
    COMPLETE,
    TAG_MAX,
    TrackingError,
    TrackingWarning,
    resolve_uri,
)
from hpo.tracking._sql import sql_writer, write_trials
from hpo.tracking.experiment import check_deleted, open_experiment
from hpo.tracking.follow import Follower
from hpo.tracking.result import link_source, log_result
from hpo.tracking.runs import TrialRun, round_params, study_params, study_run_status, trial_run

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

    from hpo.tracking._sql import SqlWriter

__all__ = ["Mirror"]

_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def keep_import_filters() -> None:
    """Set, before the prepare thread imports MLflow and ``requests``, the filter requests sets
    on import (urllib3's SOCKS DependencyWarning ignored). A ``catch_warnings`` that another
    thread (pandas, matplotlib) leaves meanwhile restores the filters it saw on entry, which can
    drop requests' own: the warning then reached stderr before a command's one-line error."""
    warnings.filterwarnings("ignore", module=r"urllib3\.contrib\.socks")


class Mirror:
    """Mirrors one hpo study of an Optuna storage into one MLflow experiment.

    ``sync`` and ``finish`` never raise: on an MLflow error they warn once, remember it
    (``failed``, ``last_error``) and retry on the next call. Calls are serialised by a lock, so a
    monitor thread and the main thread may both call them; two *processes* writing the same
    study at once are not coordinated (a duplicate they make is removed by the next reload).
    On a SQL store, trial runs go straight into MLflow's tables (:mod:`hpo.tracking._sql`)
    unless ``sql`` is False.
    """

    sql = True

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
        self._writer: SqlWriter | None = None
        self._writer_checked = False
        self._preparing: threading.Thread | None = None  # prepare(wait=False) in progress
        self._follower: Follower | None = None
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
        self._names: dict[int, str] = {}  # round -> its Optuna study's name

    @property
    def failed(self) -> bool:
        """True while the last sync or finish failed (the mirror lags behind the storage)."""
        return self.last_error is not None

    # -- public API -------------------------------------------------------------------------

    def prepare(self, *, wait: bool = True) -> None:
        """Get or create the experiment and the study run; raise TrackingError when unusable.

        ``wait=False`` on a SQLite store: only its write lock is taken now (an unusable file
        fails here); importing MLflow and the rest run in a thread joined by the first sync or
        finish, where a failure is a sync failure (a warning; the next sync retries).
        """
        db = ml.sqlite_path(self.tracking_uri)
        if not wait and db is not None:
            try:
                ml.check_sqlite(self.tracking_uri.removeprefix("sqlite:///"), db)
                check_deleted(self.tracking_uri, self.experiment_name)
            except TrackingError:
                raise
            except Exception as exc:
                raise TrackingError(self._message(exc)) from exc
            keep_import_filters()
            self._preparing = threading.Thread(
                target=self._prepare_behind, name="hpo-mlflow-prepare", daemon=True
            )
            self._preparing.start()
            return
        with self._lock, ml.quiet(), ml.fail_fast():
            try:
                self._prepare()
            except TrackingError:
                raise
            except Exception as exc:
                raise TrackingError(self._message(exc)) from exc

    def sync(self, storage: optuna.storages.BaseStorage) -> int:
        """Mirror every finished trial not mirrored yet; return the number of runs written."""
        self._join()
        with self._lock, ml.quiet():
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
        Stops :meth:`follow` first.
        """
        self.unfollow()
        self._join()
        with self._lock, ml.quiet():
            self._written = 0
            try:
                self._sync(storage)
                attrs = parent_attrs(storage, self.study_name) or {}
                for k in self._rounds:
                    self._close_round(storage, k)
                best = attrs.get(ATTR["best"]) if best is None else best
                test_score = attrs.get(ATTR["test_score"]) if test_score is None else test_score
                tests = attrs.get(ATTR["test_scores"]) or ()
                log_result(
                    self._mlflow(), self.study_run_id, self.study_name, best, test_score, tests
                )
                if source := (attrs.get(ATTR["warm_start"]) or {}).get("source"):
                    config = (parent_attrs(storage, source) or {}).get(ATTR["config"]) or {}
                    link_source(self._mlflow(), self.study_run_id, source, config.get("experiment"))
                fragile = "; ".join(attrs.get(ATTR["fragile"]) or []) or "no"
                self._mlflow().set_tag(self.study_run_id, "hpo.fragile", ml.clip(fragile, TAG_MAX))
                for path in artifacts:
                    if Path(path).is_file():
                        self._mlflow().log_artifact(self.study_run_id, str(path))
                status = str(attrs.get(ATTR["status"]) or "finished")
                self._mlflow().set_terminated(self.study_run_id, study_run_status(status, True))
            except Exception as exc:
                self._fail(exc)
                return False
            self._ok()
            return True

    def follow(self, storage: optuna.storages.BaseStorage, interval: float = 1.0) -> None:
        """Sync every ``interval`` seconds in a thread of its own until :meth:`unfollow` or
        :meth:`finish`: the study's rounds never wait for MLflow, which catches up behind."""
        if self._follower is None:
            self._follower = Follower(lambda: self.sync(storage), interval)

    def unfollow(self) -> None:
        """Stop :meth:`follow`'s thread (after the sync it may be in)."""
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def experiment_url(self, host: str = "127.0.0.1", port: int = 5000) -> str:
        """The runs table of the experiment (MLflow 3's UI opens on an empty traces page)."""
        return ml.runs_url(self._experiment_id(), host, port)

    def run_url(self, run_id: str | None = None, host: str = "127.0.0.1", port: int = 5000) -> str:
        """The page of ``run_id`` (default: the study run)."""
        return ml.runs_url(self._experiment_id(), host, port, run_id or self.study_run_id)

    # -- connection -------------------------------------------------------------------------

    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            self._client = ml.make_client(self.tracking_uri)
        return self._client

    def _prepare_behind(self) -> None:
        with self._lock, ml.quiet():
            try:
                self._prepare()
            except Exception as exc:
                self._fail(exc)

    def _join(self) -> None:
        if self._preparing is not None:
            self._preparing.join()
            self._preparing = None

    def _sql(self) -> SqlWriter | None:
        """The direct writer of trial runs, or None (public API): checked once per mirror."""
        if not self._writer_checked and self.sql and self.experiment_id is not None:
            self._writer = sql_writer(self._mlflow(), self.experiment_id)
            self._writer_checked = True
        return self._writer

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

    def _prepare(self) -> None:
        client = self._mlflow()
        self.experiment_id = open_experiment(
            client, self.tracking_uri, self.experiment_name, self.study_name, self.artifact_location
        )
        runs = self._search(f"tags.`hpo.kind` = 'study' and {self._study_filter()}")
        runs = [r for r in runs if r.data.tags.get("hpo.study") == self.study_name]
        if runs:
            self.study_run_id = runs[0].info.run_id
        else:
            tags = ml.tags("study", self.study_name, self.study_name)
            run = client.create_run(self.experiment_id, tags=tags, run_name=self.study_name)
            self.study_run_id = run.info.run_id

    def _study_filter(self) -> str:
        if "'" in self.study_name or "\\" in self.study_name:
            return "tags.`hpo.study` != ''"  # exact match checked in Python
        return f"tags.`hpo.study` = '{self.study_name}'"

    def _search(self, filter_string: str) -> list:
        return ml.search(self._mlflow(), self.experiment_id, filter_string)

    def _message(self, exc: BaseException) -> str:
        return ml.message(self.tracking_uri, exc)

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
        rounds = read_rounds(attrs)
        config = attrs.get(ATTR["config"]) or {}
        fixed, metric = config.get("fixed") or {}, config.get("metric") or DEFAULT_METRIC
        for i, record in enumerate(rounds):
            self._sync_round(storage, record, fixed, metric)
            if i < len(rounds) - 1:
                self._close_round(storage, record.round)

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
            params = study_params(attrs[ATTR["config"]])
            self._log(self.study_run_id, params=params, skip=self._study_params, complete=True)
            self._study_params = None
        status = attrs.get(ATTR["status"])
        if status and status != self._study_status:
            client.set_tag(self.study_run_id, "hpo.status", ml.clip(status, TAG_MAX))
            run_status = study_run_status(status, False)
            if run_status == "RUNNING":
                client.update_run(self.study_run_id, status="RUNNING")
            else:
                client.set_terminated(self.study_run_id, run_status)
            self._study_status = status

    def _sync_round(self, storage, record: RoundRecord, fixed: Mapping, metric: str):
        client, k = self._mlflow(), record.round
        key = f"{self.study_name}/{k}"
        if k not in self._rounds:
            tags = ml.tags("round", self.study_name, key, round=k, parent=self.study_run_id)
            run = client.create_run(self.experiment_id, tags=tags, run_name=record.label)
            self._rounds[k], self._round_params[k] = run.info.run_id, set()
            self._written += 1
        rid = self._rounds[k]
        self._names[k] = record.study_name  # NAME/round-K, or NAME/confirm
        if self._round_params[k] is not None:
            params = round_params(record)
            self._log(rid, params=params, skip=self._round_params[k], complete=True)
            self._round_params[k] = None
        sid = self._study_id(storage, record.study_name)
        if sid is None:
            return
        trials = storage.get_all_trials(sid, deepcopy=False, states=_DONE)
        new = [t for t in trials if f"{key}/{t.number}" not in self._done]
        runs = [trial_run(self.study_name, k, t, rid, fixed, metric) for t in new]
        write_trials(client, self._sql(), self.experiment_id, runs, self._written_run)
        if new:  # best_score's step = finished trials so far: its history is the round's progress
            direction = storage.get_study_directions(sid)[0].name.lower()
            best = best_score(trials, direction)
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
        sid = self._study_id(storage, self._names.get(k) or round_name(self.study_name, k))
        trials = (
            storage.get_all_trials(sid, deepcopy=False, states=_DONE) if sid is not None else []
        )
        ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
        end = ml.ms(max(ends)) if ends else None
        self._mlflow().set_terminated(self._rounds[k], "FINISHED", end_time=end)
        self._closed.add(k)

    def _written_run(self, run: TrialRun) -> None:
        self._done.add(run.tags["hpo.key"])
        self._written += 1

    def _log(self, run_id, **kw) -> None:
        ml.log(self._mlflow(), run_id, **kw)
