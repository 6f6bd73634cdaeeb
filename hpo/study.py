"""Study: the 6-5 procedure as a loop of rounds, each narrowing the ranges around the best trials.

>>> from hpo import LogUniform, SearchSpace, Study
>>> space = SearchSpace(x=LogUniform(1e-4, 1.0))
>>> study = Study("demo", space, lambda p: -abs(p["x"] - 0.01), rounds=2, trials=8, workers=1,
...               tracking=False, storage=None)
>>> result = study.run()                                            # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from hpo.distributed import wait_for_round
from hpo.narrowing import NarrowingPolicy, converged, narrow
from hpo.runner import (
    PRUNERS,
    SAMPLERS,
    RoundJob,
    counts,
    fail_orphans,
    replace_failed,
    run_workers,
    trial_seed,
    warm_up,
)
from hpo.space import Categorical, SearchSpace
from hpo.storage import (
    ATTR,
    StorageError,
    best_score,
    check_spec,
    describe,
    open_storage,
    parent_attrs,
    round_name,
    to_json,
    trials_frame,
)

__all__ = ["Interrupted", "Progress", "Result", "StopPolicy", "Study", "StudyError"]

BACKENDS = ("loky", "dask", "threading", "sequential")


class StudyError(RuntimeError):
    """The study cannot go on (every trial failed, a name clash, ...); the message says why."""


class Interrupted(StudyError):
    """Ctrl-C or SIGTERM stopped the study; finished trials are kept and it can be resumed."""


@dataclass(frozen=True)
class StopPolicy:
    """When to stop before the last round: ranges unchanged, or no gain for ``patience`` rounds."""

    when_unchanged: bool = True
    patience: int | None = None
    min_delta: float = 0.0

    def __post_init__(self):
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(
                f"stop.patience: must be a positive integer or None, got {self.patience!r}"
            )
        if not (isinstance(self.min_delta, (int, float)) and self.min_delta >= 0):
            raise ValueError(f"stop.min_delta: must be a number >= 0, got {self.min_delta!r}")


@dataclass
class Progress:
    """A snapshot for progress displays: the current round and the whole study so far."""

    round: int
    rounds: int
    done: int
    total: int
    running: int
    failed: int
    best: float | None
    elapsed: float
    event: str = "tick"  # tick, round_start, round_end, narrowed, final


@dataclass
class Result:
    """What a finished study gives back; ``trials`` is a DataFrame of every trial of every round."""

    name: str
    best_params: dict[str, Any]
    best_value: float | None
    test_score: float | None
    rounds: list[dict[str, Any]]
    trials: pd.DataFrame
    status: str
    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    metric: str = "value"  # what the best value measures, e.g. val_acc


def _absolute_uri(uri: str | None) -> str:
    """The tracking URI with a relative SQLite path made absolute, so a resume finds it."""
    from hpo.tracking import resolve_uri

    uri = resolve_uri(uri)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")


def _check_grid(space: SearchSpace, rounds: int, trials: int) -> None:
    """The grid sampler runs each combination of Categorical choices once, in a single round."""
    other = [f"{n}: {type(p).__name__}" for n, p in space.items() if not isinstance(p, Categorical)]
    if other:
        raise ValueError(f"sampler 'grid': every parameter must be Categorical, got {other[0]}")
    size = math.prod(len(p.choices) for p in space.values())
    if rounds != 1 or not isinstance(trials, int) or not 1 <= trials <= size:
        raise ValueError(
            f"sampler 'grid': needs rounds=1 and trials <= the grid size {size}, "
            f"got rounds={rounds!r}, trials={trials!r}"
        )


class Study:
    """A search space, an objective and how to search: rounds of parallel trials with narrowing.

    ``objective`` is any picklable callable ``f(params) -> float`` or ``f(params, ctx)`` (see
    :class:`hpo.objective.ModelObjective` for a network trained for a few epochs). Everything is
    validated here, before anything is written.
    """

    def __init__(
        self,
        name: str,
        space: SearchSpace,
        objective: Callable[..., Any],
        *,
        direction: str | None = None,
        sampler: str = "random",
        pruner: str | None = None,
        rounds: int = 3,
        trials: int = 20,
        workers: int | None = None,
        seed: int = 0,
        storage: str | None = None,
        out: str | Path = "runs",
        narrowing: NarrowingPolicy | None = None,
        stop: StopPolicy | None = None,
        tracking: bool = True,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        fixed: dict[str, Any] | None = None,
        backend: str = "loky",
        max_failures: int = 5,
        source: str | None = None,
        figures: Callable[..., Any] | None = None,
    ):
        if (
            not isinstance(name, str)
            or not name
            or any(c in name for c in "/\\\n")
            or name != name.strip()
        ):
            raise ValueError(f"name: must be a non-empty string without '/', got {name!r}")
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space: must be a hpo.SearchSpace, got {type(space).__name__}")
        if not callable(objective):
            raise ValueError(f"objective: must be callable, got {type(objective).__name__}")
        direction = direction or getattr(objective, "direction", "maximize")
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction: must be 'maximize' or 'minimize', got {direction!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
        if sampler == "grid":
            _check_grid(space, rounds, trials)
        if pruner not in (None, *PRUNERS):
            raise ValueError(f"pruner: must be one of {', '.join(PRUNERS)}; got {pruner!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: must be one of {', '.join(BACKENDS)}; got {backend!r}")
        _check_int("rounds", rounds, 1)
        _check_int("trials", trials, 1)
        _check_int("seed", seed, 0)
        _check_int("max_failures", max_failures, 1)
        if workers is not None:
            _check_int("workers", workers, 1)
        if narrowing is not None and not isinstance(narrowing, NarrowingPolicy):
            raise ValueError("narrowing: must be a hpo.NarrowingPolicy")
        if stop is not None and not isinstance(stop, StopPolicy):
            raise ValueError("stop: must be a hpo.StopPolicy")
        if figures is not None and not callable(figures):
            raise ValueError("figures: must be a callable (result, curves, out_dir) -> paths")
        self._args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if fixed is not None:
            try:
                fixed = to_json(fixed)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"fixed: must be JSON-serialisable settings ({exc})") from None
        self.name, self.space, self.objective = name, space, objective
        self.direction, self.sampler, self.pruner = direction, sampler, pruner
        self.rounds, self.trials, self.seed = rounds, trials, seed
        self.workers = workers or os.cpu_count() or 1
        self.out = Path(out)
        self.storage = storage or str(self.out / "optuna.journal")
        check_spec(self.storage)
        self.narrowing = narrowing or NarrowingPolicy()
        self.stop = stop or StopPolicy()
        self.tracking, self.tracking_uri = tracking, tracking_uri
        self.experiment = experiment or name
        self.fixed = fixed or {}
        self.backend, self.max_failures, self.source = backend, max_failures, source
        self.figures = figures

    def with_options(self, **changes: Any) -> Study:
        """A copy with some settings changed (validated again), e.g. from command-line options."""
        kw = dict(self._args)
        kw.update({k: v for k, v in changes.items() if v is not None})
        return Study(kw.pop("name"), kw.pop("space"), kw.pop("objective"), **kw)

    # ------------------------------------------------------------------ running
    def _existing_storage(self):
        """The storage if it already exists, else None: nothing is created."""
        if "://" not in self.storage and not Path(self.storage).exists():
            return None
        return open_storage(self.storage)

    def exists(self) -> bool:
        """Whether a study of this name is already in the storage (only reads the storage)."""
        storage = self._existing_storage()
        return storage is not None and parent_attrs(storage, self.name) is not None

    def run(
        self, *, resume: bool = False, progress: Callable[[Progress], None] | None = None
    ) -> Result:
        """Run every round (or, with ``resume``, finish an interrupted study); return the result."""
        storage = self._existing_storage()  # opened once: a journal is replayed on opening
        attrs = parent_attrs(storage, self.name) if storage is not None else None
        if attrs is not None and not resume:
            raise StudyError(
                f"study {self.name!r} already exists in {self.storage}; "
                f"resume it with `hpo resume {self.name}` or choose another name"
            )
        if attrs is None and resume:
            raise StudyError(f"no study named {self.name!r} in {self.storage}")
        if storage is None:  # an unwritable storage fails here, before MLflow
            storage = open_storage(self.storage)
        mirror = self._mirror()
        if mirror is not None:
            warming = warm_up(self.workers, self.backend)  # no trial: just the processes
            try:
                mirror.prepare()  # an unusable tracking store fails here, before any study
            finally:
                if warming is not None:
                    warming.join()
        if attrs is None:
            try:
                parent = optuna.create_study(
                    study_name=self.name, storage=storage, direction=self.direction
                )
                parent.set_user_attr(ATTR["config"], self.config())
                parent.set_user_attr(ATTR["rounds"], [])
            except OSError as exc:  # a full disk: no trial has started yet
                raise StorageError(
                    f"storage: cannot write {describe(self.storage)} ({exc.strerror or exc})"
                ) from None
        _Driver(self, storage, mirror, progress).loop()
        return load_result(storage, self.name, self.out)

    def config(self) -> dict[str, Any]:
        """The settings stored with the study (and logged to MLflow)."""
        return to_json(
            {
                "direction": self.direction,
                "sampler": self.sampler,
                "pruner": self.pruner,
                "rounds": self.rounds,
                "trials": self.trials,
                "workers": self.workers,
                "seed": self.seed,
                "metric": getattr(self.objective, "metric", "value"),
                "fixed": self.fixed,
                "narrowing": asdict(self.narrowing),
                "stop": asdict(self.stop),
                "source": self.source,
                "experiment": self.experiment,
                "out": str(self.out),
                "space": self.space.to_dict(),
                "backend": self.backend,
                "tracking_uri": _absolute_uri(self.tracking_uri) if self.tracking else None,
            }
        )

    def round_job(self, k: int, space: SearchSpace) -> RoundJob:
        """What a worker needs to take trials of round ``k`` (the driver's and `hpo worker`'s)."""
        return RoundJob(
            # a journal path made absolute: Dask workers may run in another folder (same disk)
            storage=self.storage if "://" in self.storage else str(Path(self.storage).resolve()),
            study_name=round_name(self.name, k),
            round=k,
            space_dict=space.to_dict(),
            objective=self.objective,
            direction=self.direction,
            sampler=self.sampler,
            pruner=self.pruner,
            max_steps=self.fixed.get("epochs"),
            seed=self.seed,
            metric=getattr(self.objective, "metric", "val_acc"),
            max_failures=self.max_failures,
        )

    def _mirror(self):
        if not self.tracking:
            return None
        from hpo.tracking import Mirror

        return Mirror(self.name, tracking_uri=self.tracking_uri, experiment=self.experiment)


class _Driver:
    """The rounds loop of one study; everything it decides is written to the storage first."""

    def __init__(self, study: Study, storage, mirror, progress):
        self.s, self.storage, self.mirror, self.progress = study, storage, mirror, progress
        self.t0 = time.monotonic()

    def rounds(self) -> list[dict[str, Any]]:
        return parent_attrs(self.storage, self.s.name)[ATTR["rounds"]]

    def set(self, key: str, value: Any) -> None:
        sid = self.storage.get_study_id_from_name(self.s.name)
        self.storage.set_study_user_attr(sid, ATTR[key], to_json(value))

    def loop(self) -> None:
        s = self.s
        self.set("status", "running")
        if not self.rounds():
            self.start_round(1, s.space, {})
        try:
            while True:
                record = self.rounds()[-1]
                k = record["round"]
                space = SearchSpace.from_dict(record["space"])
                self.run_round(k, space)
                trials = trials_frame(self.storage, s.name)  # read once per round
                frame = trials[trials["round"] == k]
                self.update_best(trials)
                finished = frame[frame["status"].isin(("finished",))]
                if finished.empty:
                    raise StudyError(self.all_failed_message(k, frame))
                if k >= s.rounds:
                    self.set("status", "finished")
                    break
                new_space, changes = narrow(space, frame, direction=s.direction, policy=s.narrowing)
                why = self.should_stop(k, changes, trials)
                if why:
                    self.set("status", f"stopped: {why}")
                    break
                self.start_round(k + 1, new_space, {n: c.to_dict() for n, c in changes.items()})
        except KeyboardInterrupt:
            self.interrupt()
            raise Interrupted(f"study {s.name!r} interrupted; finished trials are kept") from None
        except StudyError as exc:
            self.set("status", f"stopped: {exc}")
            self.sync()
            raise
        self.final()

    def start_round(self, k: int, space: SearchSpace, changes: dict[str, Any]) -> None:
        name = round_name(self.s.name, k)
        rounds = self.rounds()
        rounds.append(
            {"round": k, "study_name": name, "space": space.to_dict(), "changes": changes}
        )
        self.set("rounds", rounds)
        self.emit(k, "narrowed" if k > 1 else "round_start")

    def run_round(self, k: int, space: SearchSpace) -> None:
        s = self.s
        name = round_name(s.name, k)
        study = optuna.create_study(
            study_name=name, storage=self.storage, direction=s.direction, load_if_exists=True
        )
        study.set_user_attr(ATTR["round"], k)
        study.set_user_attr(ATTR["parent"], s.name)
        fail_orphans(self.storage, study._study_id)  # left RUNNING by a crash: failed, replaced
        job = s.round_job(k, space)
        restarts = 0
        while replace_failed(study, s.trials, s.max_failures):
            c = counts(self.storage, study._study_id)
            if c["done"] >= s.trials:
                break
            with _Monitor(self, k, study._study_id):
                try:
                    run_workers(job, s.trials, s.workers, s.backend)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # a worker process died: fail its trial, go on
                    if not _is_worker_death(exc) or restarts >= 3 * s.trials:
                        raise
                    restarts += 1
                    # loky ends the whole pool: a worker may die between claiming a trial and
                    # signing it; such a trial is failed now rather than after a minute
                    fail_orphans(self.storage, study._study_id, unowned=True)
                wait_for_round(self.storage, study._study_id)  # trials of `hpo worker`s elsewhere
            fail_orphans(self.storage, study._study_id)
        self.emit(k, "round_end")

    def update_best(self, trials: pd.DataFrame) -> None:
        ok = trials[(trials["status"] == "finished") & trials["value"].notna()]
        if ok.empty:
            return
        i = ok["value"].idxmax() if self.s.direction == "maximize" else ok["value"].idxmin()
        row = ok.loc[i]
        params = {
            c[7:]: _plain(row[c])
            for c in ok.columns
            if c.startswith("params_") and not _isnan(row[c])
        }
        best = {
            "params": params,
            "value": float(row["value"]),
            "round": int(row["round"]),
            "number": int(row["number"]),
        }
        self.set("best", best)

    def should_stop(self, k: int, changes, trials: pd.DataFrame) -> str | None:
        stop = self.s.stop
        if stop.when_unchanged and converged(changes):
            return f"ranges unchanged after round {k}"
        if stop.patience is not None and k > stop.patience:
            ok = trials[trials["status"] == "finished"]
            sign = 1 if self.s.direction == "maximize" else -1
            per_round = (sign * ok.groupby("round")["value"].max()).cummax()
            before = per_round.get(k - stop.patience)
            if before is not None and per_round.get(k, -math.inf) - before <= stop.min_delta:
                return f"best score did not improve for {stop.patience} round(s)"
        return None

    def all_failed_message(self, k: int, frame: pd.DataFrame) -> str:
        failed = frame[frame["status"].isin(("failed", "interrupted"))]
        first = failed["reason"].dropna().iloc[0] if not failed["reason"].dropna().empty else "?"
        return (
            f"no trial of round {k} finished ({len(failed)} failed, "
            f"{(frame['status'] == 'diverged').sum()} diverged); first error: {first}"
        )

    def final(self) -> None:
        attrs = parent_attrs(self.storage, self.s.name)
        best = attrs.get(ATTR["best"])
        final = getattr(self.s.objective, "final", None)
        if best and callable(final) and ATTR["test_score"] not in attrs:
            self.emit(self.rounds()[-1]["round"], "final")
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):  # as in the workers: the same numbers whatever the backend
                scores = final(best["params"], trial_seed(self.s.seed, 0, best["number"]))
            if "test_score" in scores:
                self.set("test_score", scores["test_score"])
        from hpo.report import write_report

        files = write_report(self.storage, self.s.name, self.s.out)
        if self.s.figures is not None:  # the study's own figures, e.g. 6-3's 4 x 4 grid
            from hpo.report import curves_of

            result = load_result(self.storage, self.s.name, self.s.out)
            for path in self.s.figures(result, curves_of(self.storage, self.s.name), result.out):
                files[Path(path).name] = Path(path)
        if self.mirror is not None:
            attrs = parent_attrs(self.storage, self.s.name)
            self.mirror.finish(
                self.storage,
                artifacts=list(files.values()),
                best=attrs.get(ATTR["best"]),
                test_score=attrs.get(ATTR["test_score"]),
            )

    def interrupt(self) -> None:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True, kill_workers=True)
        rounds = self.rounds()
        if rounds:
            sid = self.storage.get_study_id_from_name(rounds[-1]["study_name"])
            fail_orphans(self.storage, sid, everyone=True)
        self.set("status", "interrupted")
        self.sync()

    def sync(self) -> None:
        if self.mirror is not None:
            self.mirror.sync(self.storage)

    def emit(self, k: int, event: str, study_id: int | None = None) -> None:
        if self.progress is None:
            return
        if study_id is None:
            try:
                study_id = self.storage.get_study_id_from_name(round_name(self.s.name, k))
            except KeyError:
                study_id = None
        c = counts(self.storage, study_id) if study_id is not None else {"done": 0}
        best = (parent_attrs(self.storage, self.s.name) or {}).get(ATTR["best"])
        self.progress(
            Progress(
                round=k,
                rounds=self.s.rounds,
                done=c["done"],
                total=self.s.trials,
                running=c.get("running", 0),
                failed=c.get("failed", 0) + c.get("interrupted", 0),
                best=best["value"]
                if best
                else _round_best(self.storage, study_id, self.s.direction),
                elapsed=time.monotonic() - self.t0,
                event=event,
            )
        )


def _round_best(storage, study_id, direction) -> float | None:
    if study_id is None:
        return None
    trials = storage.get_all_trials(study_id, deepcopy=False)
    return best_score(trials, minimize=direction == "minimize")


class _Monitor:
    """While workers run: a thread that refreshes the progress display and the MLflow mirror."""

    def __init__(self, driver: _Driver, k: int, study_id: int, interval: float = 0.5):
        self.d, self.k, self.sid, self.interval = driver, k, study_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="hpo-monitor", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.d.sync()

    def loop(self) -> None:
        last_sync = 0.0
        while not self.stop.wait(self.interval):
            self.d.emit(self.k, "tick", self.sid)
            if time.monotonic() - last_sync >= 1.0:
                self.d.sync()
                last_sync = time.monotonic()


def _is_worker_death(exc: BaseException) -> bool:
    from joblib.externals.loky.process_executor import BrokenProcessPool, TerminatedWorkerError

    return isinstance(exc, (TerminatedWorkerError, BrokenProcessPool))


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def load_result(storage, name: str, out: Path | None = None) -> Result:
    """Read a study's result back from the storage (works for finished and stopped studies)."""
    attrs = parent_attrs(storage, name)
    if attrs is None:
        raise StudyError(f"no study named {name!r} in this storage")
    best = attrs.get(ATTR["best"]) or {}
    config = attrs.get(ATTR["config"], {})
    out = Path(out or config.get("out", "runs"))
    files = {p.name: p for p in sorted((out / name).glob("*")) if p.is_file()}
    return Result(
        name=name,
        best_params=best.get("params", {}),
        best_value=best.get("value"),
        test_score=attrs.get(ATTR["test_score"]),
        rounds=attrs.get(ATTR["rounds"], []),
        trials=trials_frame(storage, name),
        status=attrs.get(ATTR["status"], "?"),
        out=out / name,
        files=files,
        metric=config.get("metric") or "value",
    )
