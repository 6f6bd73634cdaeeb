"""Objectives: what a trial runs. Any picklable ``f(params) -> float`` works; ``f(params, ctx)``
gets a :class:`TrialContext` to report per-epoch metrics (curves, pruning) and its seed.

:class:`ModelObjective` turns (model factory, data, epochs) into such an objective for a model with
the ``fit(X, y, X_val=, y_val=, epochs=, on_epoch=)`` / ``history_`` / ``diverged_`` contract of
``models.MLP``; hpo itself never imports ``models``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = [
    "Data",
    "Diverged",
    "ModelObjective",
    "TrialContext",
    "call_objective",
    "check_score",
    "curve_score",
]


class Diverged(Exception):
    """Raised by an objective whose training diverged (NaN or infinite loss)."""


@dataclass
class TrialContext:
    """What a running trial offers its objective: its identity, its seed and a reporter."""

    number: int
    round: int
    seed: int
    metric: str = "val_acc"
    _report: Callable[[int, float], bool] | None = None
    repeat: int = 0  # which of the trial's repeats this call is (0-based; hpo.settings repeats)
    confirm: bool = False  # a call of the confirmation round: fresh seeds (and fresh folds)
    curves: dict[str, list[float | None]] = field(default_factory=dict)

    def report(self, step: int, metrics: Mapping[str, float]) -> bool:
        """Record one epoch's metrics; return True when the pruner says stop.

        Non-finite values are kept as None in the curves and never reach the pruner.
        """
        for name, value in metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            curve = self.curves.setdefault(name, [])
            curve.extend([None] * (step - 1 - len(curve)))
            curve.append(float(value) if math.isfinite(value) else None)
        value = metrics.get(self.metric)
        if self._report is None or value is None or not math.isfinite(value):
            return False
        return self._report(step, float(value))


def call_objective(objective: Callable[..., Any], params: dict[str, Any], ctx: TrialContext):
    """Call ``objective(params, ctx)`` when it takes two arguments, else ``objective(params)``."""
    try:
        n = len(inspect.signature(objective).parameters)
    except (TypeError, ValueError):
        n = 1
    return objective(params, ctx) if n >= 2 else objective(params)


def check_score(score: str) -> str:
    """``last`` (the textbook: the last epoch), ``mean_last:K`` (the mean of the last K epochs)
    or ``best`` (the best epoch); raise ValueError naming the field otherwise."""
    if score in ("last", "best"):
        return score
    head, _, k = str(score).partition(":")
    if head == "mean_last" and k.isdigit() and int(k) >= 1:
        return score
    raise ValueError(f"score: must be 'last', 'best' or 'mean_last:K' (K >= 1), got {score!r}")


def curve_score(curve: list[float | None], score: str, minimize: bool = False) -> float:
    """The score of a per-epoch curve (see :func:`check_score`); NaN when it is not finite."""
    values = [math.nan if v is None else float(v) for v in curve]
    if not values:
        return math.nan
    if score == "last":
        return values[-1]
    if score == "best":
        return min(values) if minimize else max(values)
    tail = values[-int(score.partition(":")[2]) :]
    return sum(tail) / len(tail)


@dataclass(frozen=True)
class Data:
    """Train / validation / test arrays. Tuning sees train and validation only."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = ""

    def __post_init__(self):
        for part in ("train", "val", "test"):
            X, y = getattr(self, f"X_{part}"), getattr(self, f"y_{part}")
            if X is None and part == "test":
                continue
            if len(X) != len(y) or len(X) == 0:
                raise ValueError(
                    f"data: X_{part} and y_{part} must be non-empty and of equal length, "
                    f"got {len(X)} and {len(y)}"
                )

    def describe(self) -> str:
        test = 0 if self.X_test is None else len(self.X_test)
        return (
            f"{self.name or 'data'}: {len(self.X_train)} train, {len(self.X_val)} val, {test} test"
        )


class ModelObjective:
    """Train ``factory(**params, random_state=seed)`` for ``epochs`` and return a validation metric.

    ``score`` says which number of the metric's curve is the trial's score: ``last`` (the last
    epoch, the textbook's), ``mean_last:K`` (the mean of the last K epochs: a curve that ends on a
    spike no longer wins on it) or ``best``. ``folds=K``: k-fold cross-validation for small data;
    train and validation images are pooled and cut into K folds (a fixed shuffle), and a trial's
    repeat ``r`` validates on fold ``r % K`` (``Study(repeats=K)``: every fold once). In the
    confirmation round the folds are reshuffled with the trial's seed: fresh folds.

    ``factory`` must be picklable (a class such as ``models.MLP``, a ``functools.partial`` of one,
    or a module-level function). Training that diverges raises :class:`Diverged`, so the trial is
    recorded as diverged with its reason and never scored.

    >>> from functools import partial
    >>> from models import MLP
    >>> objective = ModelObjective(partial(MLP, hidden=(50,)), data, epochs=5)  # doctest: +SKIP
    """

    def __init__(
        self,
        factory: Callable[..., Any],
        data: Data,
        *,
        epochs: int,
        metric: str = "val_acc",
        eval_train: bool = False,
        score: str = "last",
        folds: int | None = None,
    ):
        if not callable(factory):
            raise ValueError(f"factory: must be callable, got {type(factory).__name__}")
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs: must be a positive integer, got {epochs!r}")
        if metric not in ("val_acc", "val_loss", "train_acc", "train_loss"):
            raise ValueError(
                f"metric: must be one of val_acc, val_loss, train_acc, train_loss; got {metric!r}"
            )
        self.factory, self.data, self.epochs = factory, data, epochs
        if folds is not None and (not isinstance(folds, int) or folds < 2):
            raise ValueError(f"folds: must be an integer >= 2 or None, got {folds!r}")
        self.metric, self.eval_train = metric, eval_train
        self.score, self.folds = check_score(score), folds

    def __getstate__(self) -> dict[str, Any]:
        """Workers get the objective without the test split: tuning cannot see it, and a round
        ships 3 MB less to each worker at the 6-5 sizes."""
        state = dict(self.__dict__)
        state["data"] = replace(self.data, X_test=None, y_test=None)
        return state

    @property
    def direction(self) -> str:
        return "minimize" if self.metric.endswith("loss") else "maximize"

    def __call__(self, params: dict[str, Any], ctx: TrialContext) -> float:
        import optuna

        X_tr, y_tr, X_val, y_val = self.split(ctx)
        model = self.factory(**params, random_state=ctx.seed)
        pruned = []

        def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
            stop = ctx.report(epoch, metrics)
            if stop:
                pruned.append(epoch)
            return stop

        model.fit(
            X_tr,
            y_tr,
            X_val=X_val,
            y_val=y_val,
            epochs=self.epochs,
            on_epoch=on_epoch,
            eval_train=self.eval_train,
        )
        if getattr(model, "diverged_", False):
            raise Diverged(getattr(model, "divergence_reason_", None) or "loss is not finite")
        if pruned:
            raise optuna.TrialPruned(f"pruned at epoch {pruned[0]}")
        value = curve_score(model.history_[self.metric], self.score, self.direction == "minimize")
        if not math.isfinite(value):
            raise Diverged(f"{self.metric} is not finite after training")
        return float(value)

    def split(self, ctx: TrialContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(X_train, y_train, X_val, y_val) of this call: the given split, or with ``folds`` the
        fold ``ctx.repeat % folds`` of the pooled images (reshuffled in the confirmation round)."""
        d = self.data
        if self.folds is None:
            return d.X_train, d.y_train, d.X_val, d.y_val
        X = np.concatenate([d.X_train, d.X_val])
        y = np.concatenate([d.y_train, d.y_val])
        order = np.random.default_rng(ctx.seed if ctx.confirm else 0).permutation(len(y))
        held = np.array_split(order, self.folds)[ctx.repeat % self.folds]
        mask = np.ones(len(y), dtype=bool)
        mask[held] = False
        return X[mask], y[mask], X[held], y[held]

    def final(self, params: dict[str, Any], seed: int) -> dict[str, float]:
        """Retrain on train + validation with the chosen params and score once on the test split."""
        d = self.data
        if d.X_test is None:
            return {}
        X = np.concatenate([d.X_train, d.X_val])
        y = np.concatenate([d.y_train, d.y_val])
        model = self.factory(**params, random_state=seed)
        model.fit(X, y, epochs=self.epochs)
        if getattr(model, "diverged_", False):
            return {"test_score": math.nan}
        return {
            "test_score": float(model.score(d.X_test, d.y_test)),
            "train_score": float(model.score(X, y)),
        }
