"""The rounds loop of one study: run a round, read its trials once, narrow, start the next.

Everything the driver decides is written to the storage before it acts on it (the rounds, the
best trial, the status), so an interrupted study resumes where it stopped. It reports progress
through a callback and never prints.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from hpo.budget import Budget
from hpo.distributed import wait_for_round
from hpo.liveness import fail_orphans
from hpo.narrowing import converged, narrow
from hpo.queue import RoundStudy, counts, replace_failed
from hpo.records import ATTR, FINISHED, RoundRecord, TrialStatus, best_of, to_json
from hpo.result import Interrupted, StudyError, load_result
from hpo.runner import is_worker_death, run_workers, shutdown_pool
from hpo.settings import Settings
from hpo.space import SearchSpace
from hpo.storage import best_score, parent_attrs, read_rounds, round_name, trials_frame
from hpo.trials import trial_seed
from hpo.warmstart import imported, source_best, start_space

__all__ = ["Driver", "Progress"]


@dataclass
class Progress:
    """A snapshot for progress displays: the current round and the whole study so far."""

    round: int
    rounds: int
    done: int
    total: int
    running: int
    failed: int
    best: float | None  # the best score of the whole study so far, this round's trials included
    elapsed: float
    event: str = "tick"  # tick, round_start, round_end, narrowed, final
    left: float | None = None  # estimated seconds to the last round's end; None: no trial ended


class Driver:
    """Runs the rounds of one study (``settings``) on an opened storage."""

    def __init__(self, settings: Settings, storage, mirror=None, progress=None):
        self.s, self.storage, self.mirror = settings, storage, mirror
        self.progress: Callable[[Progress], None] | None = progress
        self.t0 = time.monotonic()
        self.durations: dict[int, list[float]] = {}  # round -> seconds of its ended trials
        self.budget = Budget(settings.name, settings.stop, settings.direction, storage)

    def rounds(self) -> list[RoundRecord]:
        return read_rounds(parent_attrs(self.storage, self.s.name))

    def set(self, key: str, value: Any) -> None:
        sid = self.storage.get_study_id_from_name(self.s.name)
        self.storage.set_study_user_attr(sid, ATTR[key], to_json(value))

    def loop(self) -> None:
        s = self.s
        self.set("status", "running")
        if not self.rounds():
            self.start_round(RoundRecord(1, round_name(s.name, 1), start_space(self.storage, s)))
        try:
            while True:
                record = self.rounds()[-1]
                self.run_round(record.round, record.space)
                why = self.after_round(record)
                if why is not None:
                    self.set("status", why)
                    break
        except KeyboardInterrupt:
            self.interrupt()
            raise Interrupted(f"study {s.name!r} interrupted; finished trials are kept") from None
        except StudyError as exc:
            self.set("status", f"stopped: {exc}")
            self.sync()
            raise
        self.final()

    def after_round(self, record: RoundRecord) -> str | None:
        """Narrow and start the next round; or the study's final status when it ends here."""
        s, k = self.s, record.round
        trials = trials_frame(self.storage, s.name)  # read once per round
        frame = trials[trials["round"] == k]
        best = best_of(trials, s.direction)
        if best is not None:
            self.set("best", best.to_dict())
        self.budget.save()
        complete = frame["status"].isin(FINISHED).sum() >= s.trials
        if (why := self.budget.why()) and not (k >= s.rounds and complete):
            return f"stopped: {why}"  # before the all-failed check: a round may not have begun
        if not (frame["status"] == TrialStatus.FINISHED).any():
            raise StudyError(self.all_failed_message(k, frame))
        if k >= s.rounds:
            return "finished"
        new_space, changes = narrow(
            record.space,
            imported(self.storage, s.name, frame, k),  # round 1: with a warm start's trials
            direction=s.direction,
            policy=s.narrowing,
            incumbent=best.params if best is not None else None,
            history=[r.changes for r in self.rounds()],
        )
        why = self.should_stop(k, changes, trials)
        if why:
            return f"stopped: {why}"
        self.start_round(RoundRecord(k + 1, round_name(s.name, k + 1), new_space, changes))
        return None

    def start_round(self, record: RoundRecord) -> None:
        rounds = [r.to_dict() for r in self.rounds()] + [record.to_dict()]
        self.set("rounds", rounds)
        self.emit(record.round, "narrowed" if record.round > 1 else "round_start")

    def run_round(self, k: int, space: SearchSpace) -> None:
        s = self.s
        study = optuna.create_study(
            study_name=round_name(s.name, k),
            storage=self.storage,
            direction=s.direction,
            load_if_exists=True,
        )
        study.set_user_attr(ATTR["round"], k)
        study.set_user_attr(ATTR["parent"], s.name)
        rs = RoundStudy.of(study)
        fail_orphans(self.storage, rs.id)  # left RUNNING by a crash: failed, replaced
        best = (parent_attrs(self.storage, s.name) or {}).get(ATTR["best"])
        near = best["params"] if best else source_best(self.storage, s.name)  # warm start
        job = self.budget.limit(s.round_job(k, space, near))
        restarts = 0
        # stop_round: time budget or target reached (checked before any trial is enqueued)
        stop = self.budget.stop_round
        while not stop(self.storage, rs.id) and replace_failed(rs, s.trials, s.max_failures):
            if counts(self.storage, rs.id)["done"] >= s.trials:
                break
            with _Monitor(self, k, rs.id):
                try:
                    run_workers(job, s.trials, s.workers, s.backend)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # a worker process died: fail its trial, go on
                    if not is_worker_death(exc) or restarts >= 3 * s.trials:
                        raise
                    restarts += 1
                    # loky ends the whole pool: a worker may die between claiming a trial and
                    # signing it; such a trial is failed now rather than after a minute
                    fail_orphans(self.storage, rs.id, unowned=True)
                wait_for_round(self.storage, rs.id)  # trials of `hpo worker`s elsewhere
            fail_orphans(self.storage, rs.id)
        self.emit(k, "round_end")

    def should_stop(self, k: int, changes, trials: pd.DataFrame) -> str | None:
        stop = self.s.stop
        if stop.when_unchanged and converged(changes):
            return f"ranges unchanged after round {k}"
        if stop.patience is not None and k > stop.patience:
            ok = trials[trials["status"] == TrialStatus.FINISHED]
            sign = 1 if self.s.direction == "maximize" else -1
            per_round = (sign * ok.groupby("round")["value"].max()).cummax()
            before = per_round.get(k - stop.patience)
            if before is not None and per_round.get(k, -math.inf) - before <= stop.min_delta:
                return f"best score did not improve for {stop.patience} round(s)"
        return None

    def all_failed_message(self, k: int, frame: pd.DataFrame) -> str:
        failed = frame[frame["status"].isin((TrialStatus.FAILED, TrialStatus.INTERRUPTED))]
        first = failed["reason"].dropna().iloc[0] if not failed["reason"].dropna().empty else "?"
        return (
            f"no trial of round {k} finished ({len(failed)} failed, "
            f"{(frame['status'] == TrialStatus.DIVERGED).sum()} diverged); first error: {first}"
        )

    def final(self) -> None:
        """Retrain the best configuration once and score it on the test split; write the report
        and the study's own figures; finish the MLflow mirror."""
        attrs = parent_attrs(self.storage, self.s.name)
        best = attrs.get(ATTR["best"])
        final = getattr(self.s.objective, "final", None)
        if best and callable(final) and ATTR["test_score"] not in attrs:
            self.emit(self.rounds()[-1].round, "final")
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):  # as in the workers: the same numbers whatever the backend
                scores = final(best["params"], trial_seed(self.s.seed, 0, best["number"]))
            if "test_score" in scores:
                self.set("test_score", scores["test_score"])
        from hpo.report import curves_of, write_report

        files = write_report(self.storage, self.s.name, self.s.out)
        if self.s.figures is not None:  # the study's own figures, e.g. 6-3's 4 x 4 grid
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
        shutdown_pool()
        rounds = self.rounds()
        if rounds:
            sid = self.storage.get_study_id_from_name(rounds[-1].study_name)
            fail_orphans(self.storage, sid, everyone=True)
        self.set("status", "interrupted")
        self.budget.save()
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
        trials = [] if study_id is None else self.storage.get_all_trials(study_id, deepcopy=False)
        self.durations[k] = [
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in trials
            if t.datetime_start is not None and t.datetime_complete is not None
        ]
        self.progress(
            Progress(
                round=k,
                rounds=self.s.rounds,
                done=c["done"],
                total=self.s.trials,
                running=c.get("running", 0),
                failed=c.get("failed", 0) + c.get("interrupted", 0),
                best=self.best_so_far(trials),
                elapsed=time.monotonic() - self.t0,
                event=event,
                left=self.time_left(k, c["done"]),
            )
        )

    def best_so_far(self, trials) -> float | None:
        """The study's best score: the stored best (updated at each round's end) or a better
        one among this round's ``trials``."""
        stored = (parent_attrs(self.storage, self.s.name) or {}).get(ATTR["best"]) or {}
        scores = [stored.get("value"), best_score(trials, self.s.direction)]
        scores = [v for v in scores if v is not None]
        if not scores:
            return None
        return min(scores) if self.s.direction == "minimize" else max(scores)

    def time_left(self, k: int, done: int) -> float | None:
        """Seconds to the end of the last round, from the mean trial duration so far: the rest
        of round ``k`` and the later rounds, each in waves of ``workers`` trials (the stop policy
        may end the study sooner). None before any trial has ended."""
        seen = [d for ds in self.durations.values() for d in ds]
        if not seen:
            return None
        workers = self.s.workers or os.cpu_count() or 1
        waves = math.ceil(max(self.s.trials - done, 0) / workers)
        waves += (self.s.rounds - k) * math.ceil(self.s.trials / workers)
        return sum(seen) / len(seen) * waves


class _Monitor:
    """While workers run: a thread that refreshes the progress display and the MLflow mirror."""

    def __init__(self, driver: Driver, k: int, study_id: int, interval: float = 0.5):
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
