"""Picklable objectives with known optima for the engine tests (imported by worker processes)."""

from __future__ import annotations

import math
import os
import time


def bowl(params):
    """Maximum 0 at lr = 1e-3, y = 0.3."""
    return -((math.log10(params["lr"]) + 3) ** 2) - (params["y"] - 0.3) ** 2


def far_bowl(params):
    """Maximum 0 at lr = 1e-1: outside a starting range of 10^U(-6, -2)."""
    return -((math.log10(params["lr"]) + 1) ** 2)


def quick(params):
    return -abs(math.log10(params["lr"]) + 3)


class Logged:
    """Appends 'round number pid' for every call to a file, then takes ``work`` seconds of CPU."""

    def __init__(self, path, work=0.0):
        self.path, self.work = str(path), work

    def __call__(self, params, ctx):
        end = time.perf_counter() + self.work
        while time.perf_counter() < end:
            pass
        with open(self.path, "a") as f:
            f.write(f"{ctx.round} {ctx.number} {os.getpid()}\n")
        return bowl(params)


def always_fails(params):
    raise RuntimeError("objective bug")


def diverges_when_large(params, ctx):
    from hpo.objective import Diverged

    for epoch in range(1, 4):
        ctx.report(epoch, {"val_acc": 0.5, "train_loss": 1.0 if params["lr"] < 0.1 else math.nan})
    if params["lr"] >= 0.1:
        raise Diverged("loss is nan at epoch 1")
    return bowl({"lr": params["lr"], "y": 0.3})
