"""The rounds loop of one study: run a round, read its trials once, narrow, start the next.

Everything the driver decides is written to the storage before it acts on it (the rounds, the
best trial, the status), so an interrupted study resumes where it stopped. It reports progress
through a callback and never prints.
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from hpo.budget import Budget, stop_claiming
from hpo.confirm import candidates, confirm_name, fragility
from hpo.distributed import wait_for_round
from hpo.evidence import clear_lead
from hpo.liveness import fail_orphans
from hpo.narrowing import converged, narrow
from hpo.queue import RoundStudy, counts, fill_candidates, replace_failed
from hpo.records import (
    ATTR,
    FINISHED,
    Best,
    RoundRecord,
    TrialStatus,
    best_of,
    learning_since,
    oriented,
    ranked,
    to_json,
)
from hpo.result import Interrupted, StudyError, load_result
from hpo.runner import is_worker_death, run_workers, shutdown_pool
from hpo.settings import Settings
from hpo.storage import best_score, parent_attrs, read_rounds, round_name, trials_frame
from hpo.trials import repeat_seed, trial_seed
from hpo.warmstart import imported, source_best, start_space

STALLS = 3  # passes of the workers in a row that change no trial of the round: a fault

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
    confirm: bool = False  # the confirmation round


class Driver:
    """Runs the rounds of one study (``settings``) on an opened storage."""

    def __init__(self, settings: Settings, storage, mirror=None, progress=None):
        self.s, self.storage, self.mirror = settings, storage, mirror
        self.progress: Callable[[Progress], None] | None = progress
        self.t0 = time.monotonic()
        self.durations: dict[int, list[float]] = {}  # round -> seconds of its ended trials
        self.budget = Budget(settings.name, settings.stop, settings.direction, storage)
        self.confirming: int | None = None  # the confirmation round's number, once it runs
        self.session = uuid.uuid4().hex  # workers keep their storage for this run alone (runner)

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
                self.run_round(record)
                why = self.after_round(record)
                if why is not None and not record.confirm and self.start_confirm(record, why):
                    continue
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
        if record.confirm:  # the best mean less one sd of the confirmation repeats wins
            best = best_of(frame, s.direction, cautious=True)
            if best is not None:
                self.set("best", best.to_dict())
            return record.ended
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
            # the last round refines a clear lead (judged only for it)
            final=k + 1 == s.rounds
            and clear_lead(oriented(ranked(trials, s.direction), s.direction)),
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

    def start_confirm(self, last: RoundRecord, why: str) -> bool:
        """After the last search round: the confirmation round of the top ``confirm`` distinct
        configurations, if any; ``why`` is the study's status once it is done."""
        if not self.s.confirm:
            return False
        trials = trials_frame(self.storage, self.s.name)
        top = candidates(trials, self.s.direction, self.s.confirm)
        if not top:
            return False
        k = last.round + 1
        name = confirm_name(self.s.name)
        self.start_round(RoundRecord(k, name, self.s.space, candidates=tuple(top), ended=why))
        return True

    def run_round(self, record: RoundRecord) -> None:
        s, k = self.s, record.round
        study = optuna.create_study(
            study_name=record.study_name,
            storage=self.storage,
            direction=s.direction,
            load_if_exists=True,
        )
        study.set_user_attr(ATTR["round"], k)
        study.set_user_attr(ATTR["parent"], s.name)
        rs = RoundStudy.of(study)
        # left RUNNING by a crash: failed, replaced; a trial claimed but never signed too (no
        # worker of this run exists yet, and a dead run's worker can no longer sign it; an
        # `hpo worker` caught between its claim and its signature loses that trial to a new one)
        fail_orphans(self.storage, rs.id, unowned=True)
        best = (parent_attrs(self.storage, s.name) or {}).get(ATTR["best"])
        near = best["params"] if best else source_best(self.storage, s.name)  # warm start
        if record.confirm:
            self.confirming = k
            job, n = s.confirm_job(k, record.study_name), len(record.candidates)
            refill = lambda: fill_candidates(rs, list(record.candidates), s.max_failures)  # noqa: E731
        else:
            # what a TPE round learns from, and where local trials may centre (hpo.explore)
            trials = trials_frame(self.storage, s.name)
            since = learning_since(self.rounds(), k)
            job = s.round_job(k, record.space, near, trials, record.learns, since)
            n = s.trials
            refill = lambda: replace_failed(rs, n, s.max_failures)  # noqa: E731
        job = replace(self.budget.limit(job), session=self.session)
        restarts = stalls = 0
        # stop_round: time budget or target reached (checked before any trial is enqueued)
        stop = self.budget.stop_round
        while not stop(self.storage, rs.id) and refill():
            before = counts(self.storage, rs.id)
            if before["done"] >= n:
                break
            # passes of the workers that change no trial: a fault, not a reason to spin
            if stalls >= STALLS:
                waiting = before.get("waiting", 0)
                raise StudyError(
                    f"round {k}: the workers took none of its {waiting} waiting trial(s) in "
                    f"{STALLS} passes in a row; stopped rather than spin (finished trials kept)"
                )
            with _Monitor(self, k, rs.id):
                try:
                    run_workers(job, n, s.workers, s.backend)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # a worker process died: fail its trial, go on
                    if not is_worker_death(exc) or restarts >= 3 * n:
                        raise
                    restarts += 1
                    # loky ends the whole pool: a worker may die between claiming a trial and
                    # signing it; such a trial is failed now rather than after a minute
                    fail_orphans(self.storage, rs.id, unowned=True)
                wait_for_round(self.storage, rs.id)  # trials of `hpo worker`s elsewhere
            fail_orphans(self.storage, rs.id)
            # a pass the workers' own rule ended (deadline, target) is no stall: stop_round decides
            idle = counts(self.storage, rs.id) == before
            stalls = stalls + 1 if idle and not stop_claiming(job, self.storage, rs.id) else 0
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

            seed = trial_seed(self.s.seed, 0, best["number"])  # retrain r: repeat_seed(seed, r)
            with threadpool_limits(1):  # as in the workers: the same numbers whatever the backend
                runs = [final(best["params"], repeat_seed(seed, r)) for r in range(self.s.retrains)]
            tests = [float(r["test_score"]) for r in runs if "test_score" in r]
            if tests:
                finite = [t for t in tests if math.isfinite(t)]
                self.set("test_scores", tests)
                self.set("test_score", statistics.fmean(finite) if finite else math.nan)
        attrs = parent_attrs(self.storage, self.s.name)
        if best and ATTR["fragile"] not in attrs:  # the retrain is part of the answer
            test, tests = attrs.get(ATTR["test_score"]), attrs.get(ATTR["test_scores"]) or ()
            notes = fragility(Best.from_dict(best), test, self.s.direction, tests)
            self.set("fragile", notes)
        from hpo.report import curves_of, write_report

        files = write_report(self.storage, self.s.name, self.s.out)
        if self.s.figures is not None:  # the study's own figures, e.g. 6-3's 4 x 4 grid
            result = load_result(self.storage, self.s.name, self.s.out)
            for path in self.s.figures(result, curves_of(self.storage, self.s.name), result.out):
                files[Path(path).name] = Path(path)
        if self.mirror is not None:  # it reads the best and the test score from the storage
            self.mirror.finish(self.storage, artifacts=list(files.values()))

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
            names = {r.round: r.study_name for r in self.rounds()}
            try:
                study_id = self.storage.get_study_id_from_name(
                    names.get(k, round_name(self.s.name, k))
                )
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
                total=self.s.confirm if k == self.confirming else self.s.trials,
                running=c.get("running", 0),
                failed=c.get("failed", 0) + c.get("interrupted", 0),
                best=self.best_so_far(trials),
                elapsed=time.monotonic() - self.t0,
                event=event,
                left=self.time_left(k, c["done"]),
                confirm=k == self.confirming,
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
        """Seconds to the end of the study's trials, from the mean trial duration so far: the
        rest of round ``k``, the later rounds and the confirmation round (a trial of which takes
        ``confirm_repeats / repeats`` search trials), each in waves of ``workers`` trials (the
        stop policy may end the study sooner). None before any trial has ended."""
        seen = [d for j, ds in self.durations.items() if j != self.confirming for d in ds]
        if not seen:
            return None
        s = self.s
        workers = s.workers or os.cpu_count() or 1
        ratio = s.confirm_repeats / s.repeats
        if k == self.confirming:
            return sum(seen) / len(seen) * ratio * math.ceil(max(s.confirm - done, 0) / workers)
        waves = math.ceil(max(s.trials - done, 0) / workers)
        waves += (s.rounds - k) * math.ceil(s.trials / workers)
        waves += ratio * math.ceil(s.confirm / workers)
        return sum(seen) / len(seen) * waves


class _Monitor:
    """While workers run: a thread that refreshes the progress display (the MLflow mirror
    follows the storage in a thread of its own: a round never waits for it)."""

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

    def loop(self) -> None:
        while not self.stop.wait(self.interval):
            self.d.emit(self.k, "tick", self.sid)
