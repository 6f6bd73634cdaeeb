"""The confirmation round and the verdict on the chosen configuration (pure: no I/O).

After the last search round the top ``confirm`` distinct configurations are evaluated again, each
``confirm_repeats`` times with fresh seeds (fresh folds for a ModelObjective with ``folds``), and
the best mean less one sd of the repeats wins: the maximum of many noisy scores is the luckiest
draw, not the best configuration, and of two about as good the one whose repeats agree is the
safer choice. The final retrain (``retrains`` seeds) then checks the choice: a choice whose
repeats or retrains disagree, or whose retrain diverges or falls far below its validation score,
is reported as fragile rather than as a settled number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hpo.records import Best, params_of, ranked, spread, to_json

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FRAGILE_DROP", "FRAGILE_SD", "candidates", "confirm_name", "fragility"]

FRAGILE_SD = 0.05  # repeats of the chosen configuration this far apart (sd) disagree
FRAGILE_DROP = 0.10  # a retrain scoring this much worse than the validation score is fragile


def confirm_name(study: str) -> str:
    """Name of the confirmation round's Optuna study."""
    return f"{study}/confirm"


def candidates(trials: pd.DataFrame, direction: str, n: int) -> list[dict[str, Any]]:
    """The best ``n`` distinct configurations among the scored ``trials``, best first, as
    ``{index, params, round, number, value}``."""
    out, seen = [], set()
    for _, row in ranked(trials, direction).iterrows():
        params = params_of(row)
        key = tuple(sorted((k, repr(v)) for k, v in params.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(
            {
                "index": len(out),
                "params": params,
                "round": int(row["round"]),
                "number": int(row["number"]),
                "value": float(row["value"]),
            }
        )
        if len(out) == n:
            break
    return to_json(out)


def fragility(
    best: Best | None, test_score: float | None, direction: str, test_scores: Sequence[float] = ()
) -> list[str]:
    """Why the chosen configuration cannot be taken as settled (empty: nothing found);
    ``test_scores``: each retrain's, when it was retrained more than once."""
    if best is None:
        return []
    notes = []
    if best.sd is not None and best.sd > FRAGILE_SD:
        notes.append(f"its repeats disagree (sd {best.sd:.3f} > {FRAGILE_SD})")
    diverged = sum(not math.isfinite(t) for t in test_scores)
    if 0 < diverged < len(test_scores):
        notes.append(f"{diverged} of {len(test_scores)} retrains diverged")
    if (sd := spread(test_scores)) is not None and sd > FRAGILE_SD:
        notes.append(f"its retrains disagree (sd {sd:.3f} > {FRAGILE_SD})")
    if test_score is not None and not math.isfinite(test_score):
        notes.append("the retrain on train + validation diverged")
    elif test_score is not None:
        drop = best.value - test_score if direction == "maximize" else test_score - best.value
        if drop > FRAGILE_DROP:
            notes.append(
                f"the retrain scores {test_score:.3f} on the test split, {drop:.3f} below "
                f"its validation score {best.value:.3f}"
            )
    return notes
