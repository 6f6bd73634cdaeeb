"""What a study gives back: its :class:`Result`, read from the storage, or an error saying why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.records import ATTR, DEFAULT_METRIC, Best, RoundRecord, spread
from hpo.storage import parent_attrs, read_rounds, trials_frame

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Interrupted", "Result", "StudyError", "load_result"]


class StudyError(RuntimeError):
    """The study cannot go on (every trial failed, a name clash, ...); the message says why."""


class Interrupted(StudyError):
    """Ctrl-C or SIGTERM stopped the study; finished trials are kept and it can be resumed."""


@dataclass
class Result:
    """What a finished study gives back; ``trials`` is a DataFrame of every trial of every round."""

    name: str
    best_params: dict[str, Any]
    best_value: float | None
    test_score: float | None
    rounds: list[RoundRecord]
    trials: pd.DataFrame
    status: str
    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    metric: str = DEFAULT_METRIC  # what the best value measures, e.g. val_acc
    best_sd: float | None = None  # the spread of the best configuration's repeats
    best_repeats: list[float] | None = None  # the score of each of its repeats
    fragile: list[str] = field(default_factory=list)  # why the choice is not settled
    score: str = "returned"  # which number of the validation curve scores a trial
    confirmed: bool = False  # the best configuration won the confirmation round
    test_scores: list[float] = field(default_factory=list)  # one per retrain (test_score: mean)

    @property
    def test_sd(self) -> float | None:
        """The spread (sd) of the retrains' test scores; None with fewer than two finite ones."""
        return spread(self.test_scores)

    @property
    def optimism(self) -> float | None:
        """The reported validation score minus the retrained test score (maximize; the reverse
        when minimizing is not asked here): how much the search flatters its choice."""
        if self.best_value is None or self.test_score is None:
            return None
        return self.best_value - self.test_score


def load_result(storage, name: str, out: Path | None = None) -> Result:
    """Read a study's result back from the storage (works for finished and stopped studies)."""
    attrs = parent_attrs(storage, name)
    if attrs is None:
        raise StudyError(f"no study named {name!r} in this storage")
    best = Best.from_dict(attrs.get(ATTR["best"]))
    config = attrs.get(ATTR["config"], {})
    out = Path(out or config.get("out", "runs"))
    files = {p.name: p for p in sorted((out / name).glob("*")) if p.is_file()}
    return Result(
        name=name,
        best_params=best.params if best else {},
        best_value=best.value if best else None,
        test_score=attrs.get(ATTR["test_score"]),
        test_scores=list(attrs.get(ATTR["test_scores"]) or ()),
        rounds=read_rounds(attrs),
        trials=trials_frame(storage, name),
        status=attrs.get(ATTR["status"], "?"),
        out=out / name,
        files=files,
        metric=config.get("metric") or DEFAULT_METRIC,
        best_sd=best.sd if best else None,
        best_repeats=best.repeats if best else None,
        fragile=list(attrs.get(ATTR["fragile"]) or []),
        score=config.get("score") or "returned",
        confirmed=bool(best and best.candidate),
    )
