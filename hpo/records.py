"""What a study keeps in the storage, by name, and the typed records read back from it.

The one place that knows the attribute keys (``ATTR``), the trial statuses, the ``params_``
columns of a trials table, the shape of a round's record and how trials are ranked. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from hpo.space import Param, SearchSpace, param_from_dict

if TYPE_CHECKING:  # pandas costs a worker process 0.3 s at start-up: imported where used
    import numpy as np
    import pandas as pd

__all__ = [
    "ATTR",
    "DEFAULT_METRIC",
    "FINISHED",
    "PARAM_PREFIX",
    "REASONS",
    "Best",
    "Change",
    "RoundRecord",
    "TRIAL_COLUMNS",
    "TrialStatus",
    "best_of",
    "explored_only",
    "metric_of",
    "oriented",
    "spread",
    "param_columns",
    "params_of",
    "ranked",
    "to_json",
]

# User-attribute keys. Parent study: config, rounds, best, test_score, status.
# Round study: round, parent. Trial: status, reason, traceback, seed, worker, duration, curves.
ATTR = {
    "config": "hpo.config",
    "rounds": "hpo.rounds",
    "best": "hpo.best",
    "test_score": "hpo.test_score",
    "test_scores": "hpo.test_scores",  # one per retrain of the best configuration
    "status": "hpo.status",
    "round": "hpo.round",
    "parent": "hpo.parent",
    "trial_status": "hpo.status",
    "reason": "hpo.reason",
    "traceback": "hpo.traceback",
    "seed": "hpo.seed",
    "worker": "hpo.worker",
    "duration": "hpo.duration",
    "curves": "hpo.curves",
    "explore": "hpo.explore",
    "local": "hpo.local",
    "elapsed": "hpo.elapsed",  # parent: seconds the study ran, resumes included (hpo.budget)
    "warm_start": "hpo.warm_start",  # parent: the study it started from (hpo.warmstart)
    "repeats": "hpo.repeats",  # trial: the score of each repeat
    "value_sd": "hpo.value_sd",  # trial: their standard deviation
    "candidate": "hpo.candidate",  # confirmation trial: the search trial it confirms
    "fragile": "hpo.fragile",  # parent: why the chosen configuration is fragile (empty: not)
}

PARAM_PREFIX = "params_"  # a trials table has one column per parameter: params_<name>
DEFAULT_METRIC = "value"  # the name of an objective's score when it declares no ``metric``


class TrialStatus(StrEnum):
    """hpo's status of a trial (a str: it compares equal to its value and is stored as one)."""

    FINISHED = "finished"  # scored
    PRUNED = "pruned"  # stopped early by the pruner
    DIVERGED = "diverged"  # training blew up (NaN or infinite loss or score): never scored
    FAILED = "failed"  # the objective raised, or its worker died
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: replaced on resume, not a failure
    RUNNING = "running"
    WAITING = "waiting"  # queued by the driver, not claimed yet


# Statuses that count towards a round's budget.
FINISHED = (TrialStatus.FINISHED, TrialStatus.PRUNED, TrialStatus.DIVERGED)

# Columns of a trials table before its params_<name> columns (hpo.storage.trials_frame).
TRIAL_COLUMNS = (
    "round",
    "number",
    "state",
    "status",
    "value",
    "duration",
    "seed",
    "worker",
    "reason",
    "explore",
    "local",
    "repeats",
    "value_sd",
    "candidate",
    "started",
    "completed",
)

REASONS = ("shrunk", "shifted", "extended", "kept")  # what narrowing did to a range


def metric_of(objective: Any) -> str:
    """The name of what ``objective`` returns: its ``metric`` attribute, else ``value``."""
    return getattr(objective, "metric", None) or DEFAULT_METRIC


def to_json(value: Any) -> Any:
    """Round-trip a value through JSON (Optuna user attrs must be JSON-serialisable)."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class Change:
    """What narrowing did to one parameter, and why, in one line a user can read."""

    name: str
    old: Param
    new: Param
    reason: str  # one of REASONS
    detail: str
    trend: int = 0  # +1 / -1: moved up / down because the score climbs toward that edge
    settled: bool = False  # kept on evidence (not for the lack of it): the search converged
    evidence: bool = False  # the round's scores showed this parameter matters (hpo.evidence)
    # its own test passed before the correction over all the parameters, or a trial of the round
    # stood far out of its noise (hpo.evidence.stands_out): something a model can learn from
    signal: bool = False
    standout: bool = False  # a trial of the round stood far out of its noise: the strong signal
    widened: bool = False  # no evidence and the ranges looked wrong: widened toward the limits
    # reached a width past an edge toward a kept choice's region (its own scores climb there)
    reaches: bool = False
    surveyed: bool = False  # round 1 surveyed the hard limits: the next learns from a standout

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"Change.reason must be one of {REASONS}, but got {self.reason!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (params in their ``to_dict`` form)."""
        return {**dataclasses.asdict(self), "old": self.old.to_dict(), "new": self.new.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Change:
        """Inverse of :meth:`to_dict`."""
        old, new = param_from_dict(d["old"]), param_from_dict(d["new"])
        trend = int(d.get("trend", 0))
        flags = {  # every flag (a field whose default is a bool), so none is left out
            f.name: bool(d.get(f.name, False))
            for f in dataclasses.fields(cls)
            if isinstance(f.default, bool)
        }
        return cls(d["name"], old, new, d["reason"], d["detail"], trend, **flags)


@dataclass(frozen=True)
class RoundRecord:
    """One round as the parent study records it: its Optuna study, space, and why it is so."""

    round: int
    study_name: str
    space: SearchSpace
    changes: Mapping[str, Change] = field(default_factory=dict)  # empty for round 1
    # the confirmation round: the search trials it re-evaluates ({params, round, number, value})
    # and the status the search ended with
    candidates: tuple[dict[str, Any], ...] = ()
    ended: str = ""

    @property
    def confirm(self) -> bool:
        return bool(self.candidates)

    @property
    def learns(self) -> bool:
        """Whether the round's trials may learn from the scores so far (a model-based sampler,
        the local trials near the best): all but a round right after a widening or a survey
        without a signal, whose trials would model the noise of the ranges just left or of the
        limits (or refine around a noise winner there). A round whose narrowing kept its ranges
        without a signal still learns: a first hit on a narrow peak inside the ranges is rarely a
        signal yet. A round whose range reached past an edge toward a kept choice's region does
        not: a model of the trials so far would keep that choice where it scored low, never in
        the region reached."""
        if any(c.reaches for c in self.changes.values()):
            return False
        surveyed = any(c.surveyed for c in self.changes.values())
        return not (self.widened or surveyed) or any(c.signal for c in self.changes.values())

    @property
    def stood_out(self) -> bool:
        """A trial of the round before this one stood far out of its noise (hpo.evidence)."""
        return any(c.standout for c in self.changes.values())

    @property
    def widened(self) -> bool:
        """The narrowing before this round found the ranges wrong and widened them."""
        return any(c.widened for c in self.changes.values())

    @property
    def label(self) -> str:
        """``confirm`` for the confirmation round, else ``round-K``."""
        return "confirm" if self.confirm else f"round-{self.round}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "round": self.round,
            "study_name": self.study_name,
            "space": self.space.to_dict(),
            "changes": {n: c.to_dict() for n, c in self.changes.items()},
        }
        if self.candidates:
            out.update(candidates=to_json(list(self.candidates)), ended=self.ended)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundRecord:
        changes = {n: Change.from_dict(c) for n, c in (d.get("changes") or {}).items()}
        space = SearchSpace.from_dict(d["space"])
        candidates = tuple(d.get("candidates") or ())
        return cls(int(d["round"]), d["study_name"], space, changes, candidates, d.get("ended", ""))

    def why(self, name: str) -> str:
        """The reason of parameter ``name``'s range, e.g. ``shifted`` (``start`` in round 1)."""
        change = self.changes.get(name)
        return change.reason if change is not None else "start"


@dataclass(frozen=True)
class Best:
    """The best finished trial of a study: what the study reports."""

    params: dict[str, Any]
    value: float
    round: int
    number: int
    sd: float | None = None  # the spread of its repeats (None: evaluated once)
    repeats: list[float] | None = None  # the score of each repeat
    candidate: dict[str, Any] | None = None  # confirmed: the search trial ({round, number, value})

    def to_dict(self) -> dict[str, Any]:
        return to_json({k: v for k, v in self.__dict__.items() if v is not None})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Best | None:
        if not d:
            return None
        sd = None if d.get("sd") is None else float(d["sd"])
        return cls(
            dict(d["params"]),
            float(d["value"]),
            int(d["round"]),
            int(d["number"]),
            sd,
            d.get("repeats"),
            d.get("candidate"),
        )


def param_columns(frame: pd.DataFrame) -> list[str]:
    """The ``params_<name>`` columns of a trials table, in order."""
    return [c for c in frame.columns if c.startswith(PARAM_PREFIX)]


def params_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A table row's parameters as ``{name: plain Python value}``; missing (NaN) ones left out."""
    out = {}
    for column, value in row.items():
        if not str(column).startswith(PARAM_PREFIX):
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        out[str(column)[len(PARAM_PREFIX) :]] = value.item() if hasattr(value, "item") else value
    return out


def explored_only(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` holds trials and every one is an exploration trial (drawn from the hard
    limits: round 1 of a study that surveyed them); False without an ``explore`` column."""
    return len(frame) > 0 and "explore" in frame.columns and bool(frame["explore"].eq(True).all())


def ranked(
    frame: pd.DataFrame, direction: str = "maximize", cautious: bool = False
) -> pd.DataFrame:
    """The scored trials of a trials table, best first (ties keep row order).

    Scored: Optuna state COMPLETE with a finite value; pruned and diverged trials never rank.
    Works on hpo's trials table and on ``optuna.Study.trials_dataframe()`` alike. ``cautious``:
    ranked on the value less one sd of its repeats (``value_sd``), so that of two
    configurations with about the same mean the one whose repeats agree wins.
    """
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
    states = [str(getattr(s, "name", s)).upper() for s in frame["state"]]
    rows = np.flatnonzero((np.array(states) == "COMPLETE") & np.isfinite(values))
    key = -values[rows] if direction == "maximize" else values[rows]
    if cautious and "value_sd" in frame.columns:
        sd = pd.to_numeric(frame["value_sd"], errors="coerce").to_numpy(dtype=float)[rows]
        key = key + np.where(np.isfinite(sd), sd, 0.0)
    return frame.iloc[rows[np.argsort(key, kind="stable")]]


def oriented(scored: pd.DataFrame, direction: str) -> np.ndarray:
    """The values of ``scored`` (as :func:`ranked` gives them) with higher always better."""
    values = scored["value"].to_numpy(dtype=float)
    return values if direction == "maximize" else -values


def best_of(
    frame: pd.DataFrame, direction: str = "maximize", cautious: bool = False
) -> Best | None:
    """The best scored trial of a trials table (columns round, number, value, params_*);
    ``cautious``: as :func:`ranked`."""
    top = ranked(frame, direction, cautious)
    if top.empty:
        return None
    row = top.iloc[0]
    best = Best(params_of(row), float(row["value"]), int(row["round"]), int(row["number"]))
    sd, repeats, candidate = (row.get(c) for c in ("value_sd", "repeats", "candidate"))
    if isinstance(sd, float) and math.isfinite(sd):
        best = dataclasses.replace(best, sd=sd)
    if isinstance(repeats, list) and len(repeats) > 1:
        best = dataclasses.replace(best, repeats=[float(v) for v in repeats])
    if isinstance(candidate, dict):
        best = dataclasses.replace(best, candidate=candidate)
    return best


def spread(values) -> float | None:
    """The sd (n - 1) of the finite ``values``: the spread of repeats or retrains; None with
    fewer than two finite ones."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return statistics.stdev(finite) if len(finite) >= 2 else None


def learning_since(rounds: Iterable[RoundRecord], k: int) -> int:
    """The first round whose trials (other than exploration trials) a model may learn from in
    round ``k``: the last round up to ``k`` that widened its ranges, unless a trial of the round
    before it stood far out of the noise. The trials of the ranges it left are forgotten: they
    crowd the region found wrong and would pull a model back into it. A widening after a trial
    stood out forgets nothing: a narrow peak hit once (too rarely for any parameter's test to
    pass) is the one lead there is, and the trials around it are what a model refines it from.
    A parameter's own test passing at alpha alone (before Holm's correction: noise often does)
    is too weak for that."""
    return max(
        (r.round for r in rounds if r.round <= k and r.widened and not r.stood_out), default=1
    )
