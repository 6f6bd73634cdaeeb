"""Picklable objectives with known optima for the engine tests (imported by worker processes)."""

from __future__ import annotations

import math
import os
import time
import uuid


def bowl(params):
    """Maximum 0 at lr = 1e-3, y = 0.3."""
    return -((math.log10(params["lr"]) + 3) ** 2) - (params["y"] - 0.3) ** 2


def far_bowl(params):
    """Maximum 0 at lr = 1e-1: outside a starting range of 10^U(-6, -2)."""
    return -((math.log10(params["lr"]) + 1) ** 2)


def needle(params):
    """A narrow peak (1.0) at lr = 1e-3, 0.1 decade wide: most trials score about 0."""
    return math.exp(-(((math.log10(params["lr"]) + 3) / 0.1) ** 2))


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


def _until_exists(path, timeout=60.0):
    """Wait (bounded) until ``path`` exists, so a test that never opens its gate cannot hang."""
    end = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.01)


def _curves(params, ctx):
    """Three epochs of made-up curves that depend on the params (so each trial's differ)."""
    for epoch in range(1, 4):
        ctx.report(
            epoch,
            {"val_acc": params["y"] * epoch / 3, "train_loss": params["lr"] * 1e3 / epoch},
        )


def curves(params, ctx):
    """Reports val_acc and train_loss for three epochs, scores ``bowl``."""
    _curves(params, ctx)
    return bowl(params)


class CurvesGated:
    """``curves``, but trials numbered ``free`` and up wait until the file ``gate`` exists: a study
    cannot end before the test opens the gate, whatever the timing."""

    def __init__(self, gate, free):
        self.gate, self.free = str(gate), free

    def __call__(self, params, ctx):
        if ctx.number >= self.free:
            _until_exists(self.gate)
        return curves(params, ctx)


class CurvesKilling:
    """``curves``; the first trial of round ``at_round`` kills the process group whose id is in
    the file ``pid_file`` (a tracking server), so the rest of the study runs without it."""

    def __init__(self, pid_file, at_round=2):
        self.pid_file, self.at_round = str(pid_file), at_round

    def __call__(self, params, ctx):
        import contextlib
        import signal

        if ctx.round == self.at_round and ctx.number == 0:
            with open(self.pid_file) as f:
                pgid = int(f.read())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        return curves(params, ctx)


def _wait_for(path, timeout=60.0):
    """Wait (bounded) until ``path`` exists; a test that forgets to open the gate cannot hang."""
    end = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.01)


class Gated:
    """The first ``free`` calls return at once; later ones wait until the file ``gate`` exists.

    Appends 'start ROUND NUMBER PID TOKEN' when a call starts and 'end ROUND NUMBER PID' when it
    ends, so a test can tell how many trials are in flight without timing anything. A call's
    place is where its own start line (TOKEN is unique) sits in the log, not how many start lines
    it reads: another worker's start written between the two must not make a free call wait.
    """

    def __init__(self, log, gate, free=0):
        self.log, self.gate, self.free = str(log), str(gate), free

    def __call__(self, params, ctx):
        mine = f"start {ctx.round} {ctx.number} {os.getpid()} {uuid.uuid4().hex}\n"
        with open(self.log, "a") as f:  # one short append: whole lines, in one order for all
            f.write(mine)
        with open(self.log) as f:
            place = [line for line in f if line.startswith("start")].index(mine) + 1
        if place > self.free:
            _wait_for(self.gate)
        with open(self.log, "a") as f:
            f.write(f"end {ctx.round} {ctx.number} {os.getpid()}\n")
        return bowl(params)


class HangsOnce:
    """The first call writes its pid to ``marker`` and waits to be killed; others run at once."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __call__(self, params):
        try:
            fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return bowl(params)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        _wait_for(self.marker + ".never")
        return bowl(params)


def non_finite_when_large(params, ctx):
    """Diverges for lr >= 0.1 in three ways (NaN score, infinite score, Diverged); NaN curves."""
    from hpo.objective import Diverged

    lr = params["lr"]
    bad = lr >= 0.1
    for epoch in range(1, 3):
        nan_or = lambda v: math.nan if bad else v  # noqa: E731
        ctx.report(epoch, {"val_acc": nan_or(0.5), "train_loss": nan_or(1.0)})
    if lr >= 0.5:
        return math.nan
    if lr >= 0.2:
        return math.inf
    if bad:
        raise Diverged("loss is nan at epoch 1")
    return bowl({"lr": lr, "y": 0.3})


def fails_when_y_large(params):
    """An objective with a bug for some inputs: those trials fail, the others score."""
    if params["y"] > 0.6:
        raise ZeroDivisionError("bug for large y")
    return bowl(params)


class Gate:
    """For the multi-process tests: records ``start-<round>-<number>-<pid>`` in ``folder`` when a
    trial starts, then waits until ``need`` processes have started trials of the round (so every
    worker provably takes part), and scores ``bowl``. With ``HPO_TEST_HANG=1`` in its environment
    a worker hangs in its trial instead, to be killed."""

    def __init__(self, folder, need=1, timeout=60.0):
        self.folder, self.need, self.timeout = str(folder), need, timeout

    def __call__(self, params, ctx):
        from pathlib import Path

        folder = Path(self.folder)
        (folder / f"start-{ctx.round}-{ctx.number}-{os.getpid()}").touch()
        if os.environ.get("HPO_TEST_HANG"):
            time.sleep(self.timeout)
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            pids = {p.name.split("-")[3] for p in folder.glob(f"start-{ctx.round}-*")}
            if len(pids) >= self.need:
                break
            time.sleep(0.02)
        return bowl(params)


def branchy(params):
    """Maximum 0 at lr = 1e-3, optimizer = momentum, momentum = 0.9; sgd is at best -0.5. Fails
    (the trial fails) when it is given a parameter whose condition does not hold."""
    if params["optimizer"] == "sgd" and "momentum" in params:
        raise AssertionError(f"inactive momentum given: {params}")
    score = -((math.log10(params["lr"]) + 3) ** 2)
    if params["optimizer"] == "sgd":
        return score - 0.5
    return score - 10 * (params["momentum"] - 0.9) ** 2


class Slow:
    """``bowl`` after ``work`` seconds of sleep, with a ``final`` retrain that scores the best."""

    def __init__(self, work=0.2):
        self.work = work

    def __call__(self, params):
        time.sleep(self.work)
        return bowl(params)

    def final(self, params, seed):
        return {"test_score": bowl(params)}


def noisy_truth(params):
    """The true score of ``noisy``: a peak at x = 0.5."""
    return 1.0 - abs(params["x"] - 0.5)


def noisy(params, ctx):
    """``noisy_truth`` plus seeded Gaussian noise (sd 0.1): the raw maximum of many trials is
    mostly a lucky draw."""
    import numpy as np

    return noisy_truth(params) + float(np.random.default_rng(ctx.seed).normal(0.0, 0.1))


class ConfirmGated:
    """``noisy``, logging 'start|end ROUND NUMBER REPEAT CONFIRM' for each call; confirmation
    trials numbered ``free`` and up wait until the file ``gate`` exists."""

    def __init__(self, log, gate, free=1):
        self.log, self.gate, self.free = str(log), str(gate), free

    def __call__(self, params, ctx):
        tag = f"{ctx.round} {ctx.number} {ctx.repeat} {int(ctx.confirm)}"
        with open(self.log, "a") as f:
            f.write(f"start {tag}\n")
        if ctx.confirm and ctx.number >= self.free:
            _wait_for(self.gate)
        with open(self.log, "a") as f:
            f.write(f"end {tag}\n")
        return noisy(params, ctx)


def quick_x(params):
    return -abs(params["x"] - 0.5)


def kinds(params):
    """Maximum 0 at kind 'a', lr = 1e-3; kind 'b' is 30 lower everywhere."""
    return -((math.log10(params["lr"]) + 3) ** 2) - (0.0 if params["kind"] == "a" else 30.0)


def plateau(params):
    """A broad 0.7 plateau across a starting lr range of 10^U(-4, -1) (its top at lr 1e-2) and
    the maximum, 1.0, a narrow peak at lr = 1.0, outside it; y has no effect."""
    u = math.log10(params["lr"])
    return max(0.7 * math.exp(-0.5 * (u + 2) ** 2), math.exp(-0.5 * (u / 0.3) ** 2))
