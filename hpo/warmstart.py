"""Warm start: a new study begins where a finished one of the same storage ended.

``Study(..., warm_start="NAME")`` (``hpo run FILE --from NAME``): round 1 samples the source's
final ranges (a parameter whose starting range the study file changed keeps the file's; one added
since starts from the file; one removed is ignored), local trials start near the source's best,
and the source's finished trials join round 1's for the first narrowing only. They stay in their
own study: never re-run, never counted in this study's budget, best or trials table (exactly the
budget is still run); the parent study records the import (``hpo.warm_start``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.errors import InputError
from hpo.records import ATTR, TrialStatus
from hpo.space import SearchSpace
from hpo.storage import parent_attrs, read_rounds, trials_frame

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["WarmStartError", "imported", "plan", "source_best", "start_space"]


class WarmStartError(InputError):
    """The study to start from is missing, unfinished or incompatible (one line, exit code 2)."""


def plan(storage, settings) -> dict[str, Any] | None:
    """What the new study takes from ``settings.warm_start`` (checked: it exists, has ended and
    optimises the same way), as stored in the parent study; None without a warm start."""
    name = settings.warm_start
    if name is None:
        return None
    attrs = parent_attrs(storage, name)
    if attrs is None:
        raise WarmStartError(f"warm_start: no study {name!r} in {settings.storage}")
    status = str(attrs.get(ATTR["status"], ""))
    rounds = read_rounds(attrs)
    if not rounds or not (status == "finished" or status.startswith("stopped")):
        raise WarmStartError(f"warm_start: study {name!r} is {status or 'empty'}, not finished")
    config = attrs.get(ATTR["config"]) or {}
    if config.get("direction") != settings.direction:
        raise WarmStartError(
            f"warm_start: study {name!r} is to {config.get('direction')}, this one to "
            f"{settings.direction}"
        )
    first, final = SearchSpace.from_dict(config["space"]), rounds[-1].space
    carried = [
        n
        for n, p in settings.space.items()
        if n in final and first.get(n) == p and type(final[n]) is type(p)
    ]
    start = settings.space.replace(**{n: final[n] for n in carried})
    frame = trials_frame(storage, name)
    best = (attrs.get(ATTR["best"]) or {}).get("params") or {}
    return {
        "source": name,
        "space": start.to_dict(),
        "carried": carried,  # final ranges of the source
        "new": [n for n in settings.space if n not in carried],  # the file's own ranges
        "dropped": [n for n in final if n not in settings.space],
        "retyped": [n for n in final if n in settings.space and not _same_type(n, final, start)],
        "trials": int((frame["status"] == TrialStatus.FINISHED).sum()) if len(frame) else 0,
        "best": {n: v for n, v in best.items() if n in settings.space},
    }


def _same_type(name: str, a: SearchSpace, b: SearchSpace) -> bool:
    return type(a[name]) is type(b[name])


def _warm(storage, name: str) -> dict[str, Any]:
    return (parent_attrs(storage, name) or {}).get(ATTR["warm_start"]) or {}


def start_space(storage, settings) -> SearchSpace:
    """Round 1's space: the warm start's (stored when the study was created), else the file's."""
    stored = _warm(storage, settings.name).get("space")
    return SearchSpace.from_dict(stored) if stored else settings.space


def source_best(storage, name: str) -> dict[str, Any] | None:
    """The source's best parameters (within this study's space), for round 1's local trials."""
    return _warm(storage, name).get("best") or None


def imported(storage, name: str, frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Round ``k``'s trials for narrowing: round 1's joined by the source's finished trials
    (column ``imported``; parameters this study no longer has left out), else unchanged."""
    warm = _warm(storage, name)
    source = warm.get("source")
    if k != 1 or source is None:
        return frame
    import pandas as pd

    theirs = trials_frame(storage, source)
    if not len(theirs):
        return frame
    theirs = theirs[theirs["status"] == TrialStatus.FINISHED]
    keep = {f"params_{n}" for n in warm["space"] if n not in warm.get("retyped", ())}
    gone = [c for c in theirs.columns if c.startswith("params_") and c not in keep]
    theirs = theirs.drop(columns=gone).assign(round=0, explore=False, local=False, imported=True)
    return pd.concat([frame.assign(imported=False), theirs], ignore_index=True)
