"""Budgets and targets: a study stops when its wall time runs out or its target score is reached.

The worker side stops *claiming* trials once the deadline has passed or a trial of the round
reached the target (the trial in flight is finished, not killed); the driver side checks between
runs of the workers and between rounds, turns the round's unclaimed trials into ``interrupted``
ones (never started) and stops the study with the reason. The study's elapsed time is kept in the
parent study, so a resumed study goes on counting from where it stopped.
"""

from __future__ import annotations

import math
import re
import time

from optuna.trial import TrialState

from hpo import _optuna
from hpo.records import ATTR, TrialStatus
from hpo.storage import best_score, parent_attrs, trial_score

__all__ = ["Budget", "format_duration", "parse_duration", "stop_claiming"]

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``10m``, ``90s``, ``1h30m``, ``1.5h`` or a plain number of seconds (> 0)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        match = _DURATION.fullmatch(s)
        if not s or match is None:
            try:
                seconds = float(s)
            except ValueError:
                seconds = math.nan
        else:
            h, m, sec = (float(g) if g else 0.0 for g in match.groups())
            seconds = 3600 * h + 60 * m + sec
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"must be a duration > 0 such as 90s, 10m or 1h30m, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``10m``, ``1h30m``, ``1m30s``, ``2.5s``: the shortest form of a duration."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{int(h)}h" if h else "", f"{int(m)}m" if m else "", f"{s:g}s" if s else ""]
    return "".join(parts) or "0s"


def reached(value: float | None, target: float | None, direction: str) -> bool:
    """Whether score ``value`` reaches ``target`` (>= when maximizing, <= when minimizing)."""
    if value is None or target is None:
        return False
    return value >= target if direction == "maximize" else value <= target


def stop_claiming(job, storage, study_id: int) -> bool:
    """Worker side, before claiming a trial: the deadline passed, or a trial of the round reached
    the target (the driver stops the study after this round)."""
    if job.deadline is not None and time.time() >= job.deadline:
        return True
    if job.target is None:
        return False
    done = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    return any(reached(trial_score(t), job.target, job.direction) for t in done)


class Budget:
    """Driver side: the study's wall time (resumed studies included) against ``stop``."""

    def __init__(self, name: str, stop, direction: str, storage):
        self.name, self.stop, self.direction, self.storage = name, stop, direction, storage
        before = (parent_attrs(storage, name) or {}).get(ATTR["elapsed"], 0.0)
        self.before, self.t0 = float(before or 0.0), time.monotonic()

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.t0

    def save(self) -> None:
        """Keep the elapsed time in the parent study (a resume goes on counting from it)."""
        sid = self.storage.get_study_id_from_name(self.name)
        self.storage.set_study_user_attr(sid, ATTR["elapsed"], round(self.elapsed(), 3))

    def limit(self, job):
        """``job`` with the wall-clock deadline and the target its workers stop claiming at."""
        import dataclasses

        budget = getattr(self.stop, "time_budget", None)
        deadline = None if budget is None else time.time() + budget - self.elapsed()
        return dataclasses.replace(job, deadline=deadline, target=self.stop.target)

    def why(self, round_trials=()) -> str | None:
        """``time budget 10m reached`` or ``target 0.9 reached`` (the study's best so far, this
        round's ``trials`` included), else None."""
        budget, target = getattr(self.stop, "time_budget", None), getattr(self.stop, "target", None)
        if budget is not None and self.elapsed() >= budget:
            return f"time budget {format_duration(budget)} reached"
        if target is not None:
            best = (parent_attrs(self.storage, self.name) or {}).get(ATTR["best"]) or {}
            scores = [best.get("value"), best_score(round_trials, self.direction)]
            if any(reached(v, target, self.direction) for v in scores):
                return f"target {target:g} reached"
        return None

    def stop_round(self, storage, study_id: int) -> bool:
        """Between runs of the workers: True when the study must stop; the round's unclaimed
        trials are then recorded as interrupted, never started."""
        trials = storage.get_all_trials(study_id, deepcopy=False)
        why = self.why(trials)
        if why is None:
            return False
        for t in trials:
            if t.state != TrialState.WAITING:
                continue
            tid = _optuna.trial_id(t)
            storage.set_trial_user_attr(tid, ATTR["trial_status"], str(TrialStatus.INTERRUPTED))
            storage.set_trial_user_attr(tid, ATTR["reason"], f"not started: {why}")
            storage.set_trial_state_values(tid, state=TrialState.FAIL)
        self.save()
        return True
