"""Narrowing of categorical parameters, for :func:`hpo.narrowing.narrow`: a choice is dropped only
on evidence that it is worse, and while a choice is kept the numeric ranges keep the region where
its best trial lies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpo.evidence import shuffles, worse_than
from hpo.records import PARAM_PREFIX, Change
from hpo.space import Categorical, SearchSpace

__all__ = ["NONE", "narrow_categorical", "rival_bests", "same_choice"]

NONE = object()  # no incumbent value for a parameter


def narrow_categorical(
    name: str,
    param: Categorical,
    labels: list[Any],
    score: np.ndarray,
    policy,
    incumbent: Any,
    n_params: int = 1,
) -> tuple[Change, bool]:
    """Drop a choice only when enough of its trials score clearly below the best choice's: at
    alpha / 2m for the m = ``n_params`` parameters of the space (Bonferroni's), so that a noise
    round rarely drops any choice."""
    member = [[Categorical((c,)).contains(v) for v in labels] for c in param.choices]
    if not any(map(any, member)):
        return Change(name, param, param, "kept", "kept: no trial used a known choice"), False
    best = next(i for i in range(len(labels)) if any(m[i] for m in member))
    b = next(j for j, m in enumerate(member) if m[best])
    rival = score[np.array(member[b])]
    dropped, notes, evidence, unjudged = {}, [], False, False
    level, perms = policy.alpha / (2 * n_params), shuffles(policy, n_params)
    for j, c in enumerate(param.choices):
        if j == b:
            continue
        mine = score[np.array(member[j])]
        if min(len(mine), len(rival)) < policy.min_choice_trials:
            notes.append(f"{c!r} {len(mine)} trials")
            unjudged = True
            continue
        p = worse_than(mine, rival, perms)
        gap = float(np.median(rival) - np.median(mine))
        clear = p < level and gap >= 0.1 * float(np.ptp(score))  # a gap that matters
        evidence |= clear
        if clear and not (incumbent is not NONE and same_choice(c, incumbent)):
            dropped[j] = f"{c!r} ({len(mine)} trials, median {np.median(mine):.3g}, p={p:.3f})"
        else:
            notes.append(f"{c!r} p={p:.2f}")
    lead = f"best choice {param.choices[b]!r} (median {np.median(rival):.3g})"
    if not dropped:
        why = f"kept: no choice is clearly worse than the {lead}"
        need = f"need p < {level:.2g} and {policy.min_choice_trials} trials each"
        detail = f"{why}: {'; '.join(notes)} ({need})"
        return Change(name, param, param, "kept", detail, settled=not unjudged), evidence
    keep = tuple(c for j, c in enumerate(param.choices) if j not in dropped)
    detail = f"dropped {', '.join(dropped.values())}: clearly below the {lead}"
    return Change(name, param, Categorical(keep), "shrunk", detail), True


def same_choice(a: Any, b: Any) -> bool:
    return Categorical((a,)).contains(b)


def rival_bests(space: SearchSpace, changes: Mapping[str, Change], scored) -> list[int]:
    """Rows (in ranked order) of the best trial of each choice a categorical keeps, among the
    round's better half: a numeric range narrowed around the leading choice's best trials alone
    would leave out the region where another choice does best (adam's lr is not sgd's)."""
    rows: set[int] = set()
    half = len(scored) // 2
    for name, param in space.items():
        kept = changes.get(name)
        column = PARAM_PREFIX + name
        if not isinstance(param, Categorical) or kept is None or column not in scored.columns:
            continue
        if len(kept.new.choices) < 2:
            continue
        labels = scored[column].tolist()
        for c in kept.new.choices:
            i = next((i for i, v in enumerate(labels) if same_choice(c, v)), None)
            if i is not None and 0 < i < half:
                rows.add(i)
    return sorted(rows)
