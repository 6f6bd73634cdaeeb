"""Train/validation splits and subsets, seeded so that every trial sees the same data."""

from __future__ import annotations

import numpy as np

__all__ = ["split", "subset"]


def _count(val: float | int, n: int) -> int:
    if isinstance(val, bool) or not isinstance(val, int | float | np.integer | np.floating):
        raise ValueError(f"val: must be a fraction in (0, 1) or a count, got {val!r}")
    if isinstance(val, int | np.integer):
        if not 0 < val < n:
            raise ValueError(f"val: a count must be in [1, {n - 1}] for {n} samples, got {val}")
        return int(val)
    if not 0 < val < 1:
        raise ValueError(f"val: a fraction must be in (0, 1), got {val}")
    return min(max(round(val * n), 1), n - 1)


def split(
    X: np.ndarray,
    y: np.ndarray,
    *,
    val: float | int = 0.2,
    seed: int | None = 0,
    stratify: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with ``seed`` and hold out ``val`` (a fraction or a count): X_tr, y_tr, X_val, y_val.

    With ``stratify`` every class gets its share of the validation rows (largest remainder).
    """
    y = np.asarray(y)
    n = len(y)
    if len(X) != n:
        raise ValueError(f"X, y: must have the same length, got {len(X)} and {n}")
    k = _count(val, n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if not stratify:
        val_idx, tr_idx = order[:k], order[k:]
    else:
        classes, inverse = np.unique(y[order], return_inverse=True)
        counts = np.bincount(inverse, minlength=len(classes))
        share = counts * k / n
        take = np.floor(share).astype(int)
        extra = np.argsort(-(share - take), kind="stable")[: k - take.sum()]
        take[extra] += 1
        rank = np.empty(n, dtype=int)  # position of each row within its class, in shuffled order
        for c in range(len(classes)):
            members = np.flatnonzero(inverse == c)
            rank[members] = np.arange(len(members))
        is_val = rank < take[inverse]
        val_idx, tr_idx = order[is_val], order[~is_val]
    return X[tr_idx], y[tr_idx], X[val_idx], y[val_idx]


def subset(
    X: np.ndarray, y: np.ndarray, n: int, *, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows: the first ``n`` when ``seed`` is None (as the textbook does), else seeded."""
    if not (isinstance(n, int | np.integer) and 0 < n <= len(y)):
        raise ValueError(f"n: must be an int in [1, {len(y)}], got {n!r}")
    if seed is None:
        return X[:n], y[:n]
    idx = np.sort(np.random.default_rng(seed).choice(len(y), n, replace=False))
    return X[idx], y[idx]
