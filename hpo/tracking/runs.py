"""What each MLflow run of a study holds, computed from the storage's records (pure, no MLflow).

A study run holds the config as params; a round run its ranges and the reason for each; a trial
run its params (with the study's fixed settings), tags (status, seed, worker, reason), per-epoch
curves as metrics with their epoch as step, and its score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.records import ATTR, RoundRecord, TrialStatus
from hpo.storage import trial_score, trial_status
from hpo.tracking._mlflow import TAG_MAX, clip, finite, ms, tags

__all__ = ["TrialRun", "round_params", "study_params", "study_run_status", "trial_run"]

TRACEBACK_TAG_MAX = 4000  # the tail of a traceback is kept as a tag; the whole is an artifact
_RUN_STATUS = {
    TrialStatus.FINISHED: "FINISHED",
    TrialStatus.PRUNED: "FINISHED",
    TrialStatus.DIVERGED: "FINISHED",
    TrialStatus.FAILED: "FAILED",
    TrialStatus.INTERRUPTED: "KILLED",
}


@dataclass(frozen=True)
class TrialRun:
    """One trial's run: metrics are (name, value, timestamp ms, step) tuples."""

    name: str
    tags: dict[str, str]
    params: dict[str, Any]
    metrics: list[tuple[str, float, int, int]]
    start: int
    end: int
    status: str
    traceback: str | None


def trial_run(
    study: str, k: int, t: FrozenTrial, parent: str, fixed: Mapping[str, Any], metric: str
) -> TrialRun:
    """The run of trial ``t`` of round ``k``, nested under the round run ``parent``."""
    ua = t.user_attrs
    status = trial_status(t)
    key = f"{study}/{k}/{t.number}"
    run_tags = tags("trial", study, key, round=k, trial=t.number, status=status, parent=parent)
    for name in ("reason", "seed", "worker", "duration", "explore", "local"):
        if ua.get(ATTR[name]) is not None:
            run_tags[ATTR[name]] = clip(ua[ATTR[name]], TAG_MAX)
    tb = ua.get(ATTR["traceback"])
    if tb:
        run_tags[ATTR["traceback"]] = str(tb)[-TRACEBACK_TAG_MAX:]
    end = ms(t.datetime_complete or t.datetime_start)
    curves = ua.get(ATTR["curves"]) or {}
    if not curves and t.intermediate_values:  # an objective without curves: the pruning metric
        steps = max(t.intermediate_values) + 1
        curves = {metric: [t.intermediate_values.get(s) for s in range(1, steps)]}
    metrics = [
        (name, float(v), end, i + 1)  # curve[i] is epoch i + 1, as in pruning
        for name, curve in curves.items()
        for i, v in enumerate(curve or [])
        if finite(v)
    ]
    if (score := trial_score(t)) is not None:
        metrics.append(("score", score, end, 0))
    repeats = ua.get(ATTR["repeats"]) or []  # each repeat's score, its index as step
    metrics += [("repeat_score", float(v), end, r) for r, v in enumerate(repeats) if finite(v)]
    if finite(ua.get(ATTR["value_sd"])):
        metrics.append(("score_sd", float(ua[ATTR["value_sd"]]), end, 0))
    if (cand := ua.get(ATTR["candidate"])) is not None:  # confirmation: the trial it confirms
        run_tags[ATTR["candidate"]] = f"{study}/{cand['round']}/{cand['number']}"
    return TrialRun(
        name=f"trial-{t.number:04d}",
        tags=run_tags,
        params={**{str(n): v for n, v in fixed.items()}, **t.params},
        metrics=metrics,
        start=ms(t.datetime_start),
        end=end,
        status=_RUN_STATUS.get(status, "FAILED" if t.state == TrialState.FAIL else "FINISHED"),
        traceback=str(tb) if tb else None,
    )


def study_run_status(status: str, final: bool) -> str:
    """hpo.status of the parent study -> MLflow run status (``final``: at the study's end)."""
    if status == "interrupted":
        return "KILLED"
    if status.startswith("failed"):
        return "FAILED"
    if status == "running":
        return "FINISHED" if final else "RUNNING"
    return "FINISHED"  # finished, stopped: <why>


def study_params(config: Mapping[str, Any]) -> dict[str, Any]:
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


def round_params(record: RoundRecord) -> dict[str, str]:
    """``range.<p>`` for every parameter, ``reason.<p>``/``detail.<p>`` for every change."""
    out = {f"range.{p}": str(param) for p, param in record.space.items()}
    for p, change in record.changes.items():
        out[f"reason.{p}"], out[f"detail.{p}"] = change.reason, change.detail
    return out
