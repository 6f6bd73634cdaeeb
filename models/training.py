"""The epoch loop behind ``MLP.fit``: shuffled mini-batches, per-epoch metrics, divergence."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    """What a run left: ``history`` has one entry per completed epoch under each metric key."""

    history: dict[str, list[float]] = field(default_factory=dict)
    n_epochs: int = 0
    stopped_early: bool = False
    diverged: bool = False
    reason: str | None = None


def train(
    net,
    optimizer,
    X: np.ndarray,
    t: np.ndarray,
    *,
    rng: np.random.Generator,
    batch_size: int,
    epochs: int,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    on_epoch: Callable[[int, dict], bool | None] | None = None,
    eval_train: bool = False,
) -> TrainResult:
    """Train ``net`` in place for ``epochs`` epochs with a fresh shuffle each epoch.

    After each completed epoch ``on_epoch(epoch, metrics)`` is called (epoch 1-based) with
    ``train_loss``/``train_acc`` (running means over the epoch's batches, or a full inference
    pass when ``eval_train``) and ``val_loss``/``val_acc`` when ``val`` is given; returning True
    stops training. A non-finite loss (a batch loss, or the epoch's evaluation) stops training at
    once: the result is marked diverged with a reason, that epoch is NOT recorded in the history
    and the callback is NOT called for it. Nothing is raised.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _run(net, optimizer, X, t, rng, batch_size, epochs, val, on_epoch, eval_train)


def _run(net, optimizer, X, t, rng, batch_size, epochs, val, on_epoch, eval_train) -> TrainResult:
    result = TrainResult(history={k: [] for k in _keys(val)})
    params, grads = {"all": net.flat_params}, {"all": net.flat_grads}
    n = len(X)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        loss_sum = correct = 0.0
        for b, start in enumerate(range(0, n, batch_size), 1):
            idx = order[start : start + batch_size]
            tb = t[idx]
            loss, scores = net.gradient(X[idx], tb)
            if not math.isfinite(loss):
                return _diverged(result, f"loss is {loss} at epoch {epoch}, batch {b}")
            optimizer.update(params, grads)
            loss_sum += loss * len(idx)
            correct += int(np.count_nonzero(scores.argmax(axis=1) == tb))
        if eval_train:
            metrics = dict(zip(("train_loss", "train_acc"), net.evaluate(X, t), strict=True))
        else:
            metrics = {"train_loss": loss_sum / n, "train_acc": correct / n}
        if val is not None:
            metrics["val_loss"], metrics["val_acc"] = net.evaluate(*val)
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            return _diverged(result, f"{bad[0]} is {metrics[bad[0]]} at epoch {epoch}")
        for key, value in metrics.items():
            result.history[key].append(value)
        result.n_epochs = epoch
        if on_epoch is not None and on_epoch(epoch, dict(metrics)):
            result.stopped_early = True
            break
    if not (result.diverged or np.isfinite(net.flat_params).all()):
        return _diverged(result, f"parameters are not finite after epoch {result.n_epochs}")
    return result


def _keys(val: object) -> list[str]:
    keys = ["train_loss", "train_acc"]
    return [*keys, "val_loss", "val_acc"] if val is not None else keys


def _diverged(result: TrainResult, reason: str) -> TrainResult:
    result.diverged, result.reason = True, reason
    return result
