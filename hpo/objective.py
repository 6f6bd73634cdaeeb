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

__all__ = ["Data", "Diverged", "ModelObjective", "TrialContext", "call_objective"]


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
        self.metric, self.eval_train = metric, eval_train

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

        d = self.data
        model = self.factory(**params, random_state=ctx.seed)
        pruned = []

        def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
            stop = ctx.report(epoch, metrics)
            if stop:
                pruned.append(epoch)
            return stop

        model.fit(
            d.X_train,
            d.y_train,
            X_val=d.X_val,
            y_val=d.y_val,
            epochs=self.epochs,
            on_epoch=on_epoch,
            eval_train=self.eval_train,
        )
        if getattr(model, "diverged_", False):
            raise Diverged(getattr(model, "divergence_reason_", None) or "loss is not finite")
        if pruned:
            raise optuna.TrialPruned(f"pruned at epoch {pruned[0]}")
        value = model.history_[self.metric][-1]
        if value is None or not math.isfinite(value):
            raise Diverged(f"{self.metric} is not finite after training")
        return float(value)

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
