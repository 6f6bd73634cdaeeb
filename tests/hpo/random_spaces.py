"""Random search spaces and objectives with known optima (imported by worker processes): every
parameter kind, with and without hard limits, conditions, single-choice categoricals, odd choice
types; objectives that are noisy, fail, diverge or report curves, in either direction."""

from __future__ import annotations

import math
import random

import optuna

from hpo.space import Categorical, IntRange, LogUniform, SearchSpace, Uniform

CHOICES = (("a", "b", "c"), (1, 2, 3), (0.5, 1.5), (True, False), (None, "x"), ("only",))


def random_space(rng: random.Random) -> tuple[SearchSpace, dict]:
    """A space of 1-6 parameters and, per parameter, where its optimum lies."""
    params, optimum, parents = {}, {}, []
    for i in range(rng.randint(1, 6)):
        name, kind = f"p{i}", rng.choice(["log", "uniform", "int", "int-log", "categorical"])
        when = None
        if parents and rng.random() < 0.3:
            parent, choices = rng.choice(parents)
            when = {parent: choices[0]}
        limited = rng.random() < 0.6
        if kind == "log":
            lo = 10 ** rng.uniform(-9, 2)
            hi = lo * 10 ** rng.uniform(0.3, 5)
            lim = (lo / 10 ** rng.uniform(0, 4), hi * 10 ** rng.uniform(0, 4)) if limited else None
            params[name] = LogUniform(lo, hi, limits=lim, when=when)
            optimum[name] = ("log", lim or (lo / 100, hi * 100), rng.uniform(-0.5, 1.5))
        elif kind == "uniform":
            lo = rng.uniform(-100, 100)
            hi = lo + 10 ** rng.uniform(-3, 3)
            lim = (lo - rng.uniform(0, hi - lo), hi + rng.uniform(0, hi - lo)) if limited else None
            params[name] = Uniform(lo, hi, limits=lim, when=when)
            optimum[name] = ("linear", lim or (lo, hi), rng.uniform(-0.5, 1.5))
        elif kind.startswith("int"):
            lo = rng.randint(1, 50)
            hi = lo + rng.randint(1, 500)
            lim = (rng.randint(1, lo), hi + rng.randint(0, 2000)) if limited else None
            log = kind == "int-log"
            params[name] = IntRange(lo, hi, log=log, limits=lim, when=when)
            optimum[name] = ("log" if log else "linear", lim or (lo, hi), rng.uniform(-0.3, 1.3))
        else:
            choices = rng.choice(CHOICES)[: rng.randint(1, 3)]
            params[name] = Categorical(choices, when=when)
            optimum[name] = ("categorical", choices, rng.randrange(len(choices)))
            if len(choices) > 1 and when is None:
                parents.append((name, choices))
    return SearchSpace(**params), optimum


class Objective:
    """A product of bumps around ``optimum`` (1.0 at best), plus noise; some trials fail or
    return NaN; every trial reports 3 epochs of curves (the pruner may stop it)."""

    def __init__(self, optimum: dict, noise: float, fail: float, nan: float, minimize: bool):
        self.optimum, self.noise, self.fail, self.nan = optimum, noise, fail, nan
        self.minimize = minimize

    def value(self, p: dict) -> float:
        v = 1.0
        for name, (kind, where, at) in self.optimum.items():
            if name not in p:  # a conditional parameter that is not active
                continue
            x = p[name]
            if kind == "categorical":
                v *= 1.0 if x == where[at] else 0.7
                continue
            lo, hi = where
            if kind == "log":
                lo, hi, x = math.log10(lo), math.log10(hi), math.log10(x)
            centre = lo + at * (hi - lo)
            v *= math.exp(-0.5 * ((x - centre) / (0.15 * (hi - lo))) ** 2)
        return v

    def __call__(self, p: dict, ctx) -> float:
        r = random.Random(f"{ctx.seed} {ctx.round} {ctx.number}")
        if r.random() < self.fail:
            raise RuntimeError("a random failure")
        if r.random() < self.nan:
            return math.nan
        v = self.value(p) + r.gauss(0, self.noise)
        v = -v if self.minimize else v
        for epoch in (1, 2, 3):
            if ctx.report(epoch, {ctx.metric: v * epoch / 3, "other": 1.0}):
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        return v
