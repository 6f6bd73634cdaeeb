"""Hard search spaces for narrowing: objectives with known optima, five strategies, equal budgets.

Each task has a noise-free ``value(params)`` in [0, 1] whose maximum is exactly 1.0 at a known
configuration, starting ranges with hard limits, and a noisy twin (``-noisy``: + N(0, 0.05),
seeded by the trial). A run is scored by the noise-free value of the configuration the study
reports as best, so a lucky noisy trial earns nothing.

  far      lr's optimum (1.0) is 2 decades above the starting range 1e-6..1e-2 and the score is a
           product: until lr gets close every score is near 0, so the best trials say nothing
           about momentum, width or activation, which are narrowed at random meanwhile.
  inside   the optimum (lr 1e-3, dropout 0.3) is inside the starting ranges; three parameters
           have no effect at all: narrowing should not lose the optimum while chasing noise.
  ridge    a diagonal ridge: the best log lr rises with log batch size (lr ~ batch); a box
           around the best trials must follow the diagonal to the unique optimum (0.01, 256).
  branch   each optimizer has its own best lr (sgd 0.1, momentum 0.01, adam 1e-3 with the highest
           peak); adam's optimum sits near the lower edge of the starting lr range, so shrinking
           the categorical early on sgd/momentum loses the best branch.
  sixfive  a smooth 6-5 surrogate: a long rising slope in lr to 0.05, a cliff to 0.1 (diverged)
           above 0.5; weight decay is a plateau below 1e-4 and hurts above 1e-3.
  sharp    a sharp optimum inside the starting ranges (lr within 0.15 decade of 3e-4, width
           tied to the layer count): 30 random trials rarely see it, so round 1 looks like noise.
  choice   the best choice ('b', 1.0) needs a batch size 3 doublings above the starting range,
           while the other ('a', 0.8) peaks inside it: narrowing on 'a' misses 'b'.

  low      lr's optimum (1e-7) is 3 decades below the starting range 1e-4..1e-1: a climb downward.
  many     eight parameters of every kind; only lr (inside) and momentum matter.
  edge     the optimum lies on the hard limits (dropout 0.0, lr 10): a range must stop there.
  deep     a linear int (layers) whose optimum 14 lies far above its starting range 1..6.
  cond     conditional parameters: momentum exists only for sgd (peak 0.9), eps only for adam.
  apart    two dominant parameters outside the start in opposite directions (lr 3 decades
           below, weight decay 3 decades above), next to an int and a 3-way choice.
  inverse  lr ~ 1 / batch size, both optimal past their starting ranges, and a momentum.
  reach    each optimizer has its own best lr: sgd's (0.85) near the top of the starting range,
           adam's (1.0) 1.5 decades above it, where adam scores about 0.01: adam must not be
           dropped before lr's range has moved past the edge.

  plateau  a broad plateau (0.7) across the starting lr range, the peak (1.0) a decade above it
           and narrow (0.3 decade): no climb leads there, only exploration finds it.
  twin     two modes inside the start: lr 1e-4 with batch 32 (0.9) and lr 0.1 with batch 256
           (1.0); a box around the first round's best trials may keep only one of them.
  sixchoice  six choices, each with its own best lr a decade below the last (peaks 0.6 .. 1.0):
           the best ('f', lr 1e-6) lies 2 decades below the start, and scores about 0 inside it.
  cliff    lr's optimum (0.2) 1.3 decades above the start, just below a cliff (diverged: 0 above
           0.3): a climb must stop at the cliff.
  ratio    only the step lr / (1 - momentum) and momentum matter; momentum's best (0.95) lies
           past its start 0..0.9, so lr must move with it.

sharp and choice were added after the rules were chosen on the first five (out-of-sample checks);
low, many, edge, deep and cond after every rule was chosen, and no rule was changed for them;
apart, inverse and reach came from a later check on unseen spaces: the rule that no choice is
dropped while a range moves past an edge was made for reach, and no rule for the other two.
plateau, twin, sixchoice, cliff and ratio came from a second check on unseen spaces, after
every rule was chosen; no rule has been changed for them.

Strategies (default budget 120 trials, 2 workers (--workers: every strategy's; --study workers=N:
narrowing's alone), no tracking, stopping on unchanged ranges off):
random-start / random-limits / tpe-limits (one round over the starting ranges or the hard
limits), narrowing (the Study defaults: TPE that learns across rounds) / narrowing-random (random
sampling inside the rounds, the textbook's), both --rounds x --trials, 4 x 30, over the starting
ranges, with NarrowingPolicy(**--policy) and Study(**--study) overrides.

    python -m studies.hard_spaces [--only far --strategy narrowing --policy push=1.0 --seeds 0,1]
    python -m studies.hard_spaces --docs docs  # the table in docs/results.md (--section NAME)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import itertools
import json
import math
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hpo import NarrowingPolicy, StopPolicy, Study
from hpo.space import Categorical, IntRange, LogUniform, SearchSpace, Uniform
from studies import scratch_dir
from studies.paired import FLOOR

SCRATCH = scratch_dir("hpo-hard")


def _bump(d: float, sd: float) -> float:
    """exp(-d^2 / 2 sd^2): exactly 1.0 at d == 0."""
    return math.exp(-0.5 * (d / sd) ** 2)


def far(p: dict) -> float:
    act = {"relu": 1.0, "tanh": 0.85, "sigmoid": 0.7}[p["activation"]]
    return (
        _bump(math.log10(p["lr"]), 0.7)
        * _bump(p["momentum"] - 0.9, 0.3)
        * _bump(math.log2(p["width"] / 128), 1.5)
        * act
    )


def inside(p: dict) -> float:  # weight_decay, warmup and init have no effect
    return _bump(math.log10(p["lr"] / 1e-3), 0.5) * _bump(p["dropout"] - 0.3, 0.15)


def ridge(p: dict) -> float:
    v = math.log2(p["batch"] / 256)  # across the ridge 0.2 decade, along it 3 doublings
    return _bump(math.log10(p["lr"] / 0.01) - 0.3 * v, 0.2) * _bump(v, 3.0)


BRANCHES = {"sgd": (0.1, 0.8), "momentum": (0.01, 0.9), "adam": (1e-3, 1.0)}  # best lr, peak


def _own_lr(table: dict, choice: str, lr: float, sd: float) -> float:
    """A choice with its own best lr: its peak x a bump (``sd`` decades) around that lr."""
    best_lr, peak = table[choice]
    return peak * _bump(math.log10(lr / best_lr), sd)


def branch(p: dict) -> float:
    return _own_lr(BRANCHES, p["optimizer"], p["lr"], 0.4)


def sixfive(p: dict) -> float:
    u = math.log10(p["lr"] / 0.05)
    if u > 1.0:  # lr above 0.5: diverged, chance accuracy
        return 0.1
    slope = _bump(u, 1.2 if u <= 0 else 0.5)  # long rise from below, steeper fall above
    decay = math.exp(-0.1 * max(0.0, math.log10(p["weight_decay"] / 1e-4)) ** 2)
    return 0.1 + 0.9 * slope * decay


def sharp(p: dict) -> float:
    d = math.log2(p["width"] / (32 * p["layers"]))
    return _bump(math.log10(p["lr"] / 3e-4), 0.15) * _bump(d, 0.7) * _bump(p["layers"] - 4, 1.5)


def choice(p: dict) -> float:
    best_batch, peak = {"a": (16, 0.8), "b": (2048, 1.0)}[p["kind"]]
    return (
        peak
        * _bump(math.log2(p["batch"] / best_batch), 1.0)
        * _bump(math.log10(p["lr"] / 1e-2), 0.7)
    )


def low(p: dict) -> float:
    return _bump(math.log10(p["lr"] / 1e-7), 0.5) * _bump(p["dropout"] - 0.5, 0.2)


def many(p: dict) -> float:  # weight_decay, warmup, layers, units, act and init have no effect
    return _bump(math.log10(p["lr"] / 3e-3), 0.4) * _bump(p["momentum"] - 0.6, 0.15)


def edge(p: dict) -> float:
    return _bump(p["dropout"], 0.2) * _bump(math.log10(p["lr"] / 10.0), 1.0)


def deep(p: dict) -> float:
    return _bump(p["layers"] - 14, 2.5) * _bump(math.log2(p["units"] / 64), 1.0)


def cond(p: dict) -> float:
    if p["opt"] == "sgd":  # momentum is defined only here, eps only for adam
        return 0.9 * _bump(math.log10(p["lr"] / 0.1), 0.5) * _bump(p["momentum"] - 0.95, 0.05)
    return _bump(math.log10(p["lr"] / 3e-4), 0.3) * _bump(math.log10(p["eps"] / 1e-6), 1.0)


def apart(p: dict) -> float:
    act = {"relu": 1.0, "gelu": 0.9, "tanh": 0.75}[p["act"]]
    return (
        _bump(math.log10(p["lr"] / 1e-6), 0.6)
        * _bump(math.log10(p["wd"] / 1e-1), 0.8)
        * _bump(p["layers"] - 3, 2.0)
        * act
    )


def inverse(p: dict) -> float:
    v = math.log2(p["batch"] / 1024)  # the best log lr falls as log batch rises
    return (
        _bump(math.log10(p["lr"] / 1e-4) + 0.3 * v, 0.25)
        * _bump(v, 2.0)
        * _bump(p["mom"] - 0.5, 0.3)
    )


REACH = {"sgd": (1e-2, 0.85), "adam": (1.0, 1.0)}  # best lr, peak


def reach(p: dict) -> float:
    return _own_lr(REACH, p["opt"], p["lr"], 0.5) * _bump(p["dropout"] - 0.2, 0.25)


def plateau(p: dict) -> float:  # width has no effect
    u = math.log10(p["lr"])  # a broad 0.7 plateau at lr 1e-2, a narrow peak at lr 1.0
    return max(0.7 * _bump(u + 2, 1.0), _bump(u, 0.3)) * _bump(p["momentum"] - 0.9, 0.4)


def twin(p: dict) -> float:
    u, v = math.log10(p["lr"]), math.log2(p["batch"])
    low = 0.9 * _bump(u + 4, 0.4) * _bump(v - 5, 1.5)  # lr 1e-4, batch 32
    high = _bump(u + 1, 0.4) * _bump(v - 8, 1.5)  # lr 0.1, batch 256
    return max(low, high) * _bump(p["dropout"] - 0.2, 0.3)


LADDER = {  # best lr, peak: each choice a decade below the last
    "a": (1e-1, 0.6),
    "b": (1e-2, 0.7),
    "c": (1e-3, 0.8),
    "d": (1e-4, 0.85),
    "e": (1e-5, 0.9),
    "f": (1e-6, 1.0),
}


def sixchoice(p: dict) -> float:
    return _own_lr(LADDER, p["act"], p["lr"], 0.4) * _bump(math.log2(p["units"] / 256), 1.5)


def cliff(p: dict) -> float:
    if p["lr"] > 0.3:  # diverged
        return 0.0
    return _bump(math.log10(p["lr"] / 0.2), 0.8) * _bump(math.log2(p["batch"] / 64), 2.0)


def ratio(p: dict) -> float:  # wd has no effect
    effective = math.log10(p["lr"] / (1.0 - p["mom"]))  # the step size lr / (1 - momentum)
    return _bump(effective + 1, 0.3) * _bump(p["mom"] - 0.95, 0.08)


@dataclasses.dataclass(frozen=True)
class Task:
    """A picklable objective ``f(params, ctx)``: ``value(params)`` plus N(0, sd) seeded by the
    trial. The space is kept as its dict (a SearchSpace does not pickle)."""

    name: str
    value: Callable[[dict], float]
    space_dict: dict
    optimum: dict
    sd: float = 0.0

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space_dict)

    def __call__(self, params: dict, ctx: Any) -> float:
        noise = np.random.default_rng(ctx.seed).normal(0.0, self.sd) if self.sd else 0.0
        return self.value(params) + float(noise)


SPACES = {  # name: (value, starting space, a configuration where value == 1.0)
    "far": (
        far,
        SearchSpace(
            lr=LogUniform(1e-6, 1e-2, limits=(1e-8, 1e2)),
            momentum=Uniform(0.0, 0.99, limits=(0.0, 0.999)),
            width=IntRange(16, 1024, log=True, limits=(4, 4096)),
            activation=Categorical(("relu", "tanh", "sigmoid")),
        ),
        {"lr": 1.0, "momentum": 0.9, "width": 128, "activation": "relu"},
    ),
    "inside": (
        inside,
        SearchSpace(
            lr=LogUniform(1e-5, 1e-1, limits=(1e-8, 10.0)),
            dropout=Uniform(0.0, 0.8, limits=(0.0, 0.95)),
            weight_decay=LogUniform(1e-8, 1e-2, limits=(1e-10, 1.0)),
            warmup=Uniform(0.0, 0.5, limits=(0.0, 1.0)),
            init=Categorical(("he", "xavier", "normal")),
        ),
        {"lr": 1e-3, "dropout": 0.3, "weight_decay": 1e-5, "warmup": 0.1, "init": "he"},
    ),
    "ridge": (
        ridge,
        SearchSpace(
            lr=LogUniform(1e-5, 1e-1, limits=(1e-7, 10.0)),
            batch=IntRange(8, 512, log=True, limits=(1, 4096)),
        ),
        {"lr": 0.01, "batch": 256},
    ),
    "branch": (
        branch,
        SearchSpace(
            optimizer=Categorical(("sgd", "momentum", "adam")),
            lr=LogUniform(5e-4, 1.0, limits=(1e-7, 10.0)),
        ),
        {"optimizer": "adam", "lr": 1e-3},
    ),
    "sixfive": (
        sixfive,
        SearchSpace(
            lr=LogUniform(1e-6, 1e-2, limits=(1e-8, 10.0)),
            weight_decay=LogUniform(1e-8, 1e-4, limits=(1e-10, 1.0)),
        ),
        {"lr": 0.05, "weight_decay": 1e-6},  # any weight decay <= 1e-4 scores 1.0 too
    ),
    "sharp": (
        sharp,
        SearchSpace(
            lr=LogUniform(1e-6, 1e-1, limits=(1e-8, 10.0)),
            width=IntRange(8, 1024, log=True, limits=(4, 4096)),
            layers=IntRange(1, 8, limits=(1, 12)),
        ),
        {"lr": 3e-4, "width": 128, "layers": 4},
    ),
    "choice": (
        choice,
        SearchSpace(
            kind=Categorical(("a", "b")),
            batch=IntRange(8, 256, log=True, limits=(1, 8192)),
            lr=LogUniform(1e-4, 1.0, limits=(1e-7, 10.0)),
        ),
        {"kind": "b", "batch": 2048, "lr": 1e-2},
    ),
    "low": (
        low,
        SearchSpace(
            lr=LogUniform(1e-4, 1e-1, limits=(1e-10, 10.0)),
            dropout=Uniform(0.0, 0.8, limits=(0.0, 0.95)),
            weight_decay=LogUniform(1e-8, 1e-2, limits=(1e-10, 1.0)),
        ),
        {"lr": 1e-7, "dropout": 0.5, "weight_decay": 1e-5},
    ),
    "many": (
        many,
        SearchSpace(
            lr=LogUniform(1e-5, 1e-1, limits=(1e-8, 10.0)),
            momentum=Uniform(0.0, 0.99, limits=(0.0, 0.999)),
            weight_decay=LogUniform(1e-8, 1e-2, limits=(1e-10, 1.0)),
            warmup=Uniform(0.0, 0.5, limits=(0.0, 1.0)),
            layers=IntRange(1, 8, limits=(1, 16)),
            units=IntRange(16, 1024, log=True, limits=(4, 4096)),
            act=Categorical(("relu", "tanh", "gelu")),
            init=Categorical(("he", "xavier")),
        ),
        {"lr": 3e-3, "momentum": 0.6, "weight_decay": 1e-5, "warmup": 0.1, "layers": 2}
        | {"units": 64, "act": "relu", "init": "he"},
    ),
    "edge": (
        edge,
        SearchSpace(
            dropout=Uniform(0.1, 0.6, limits=(0.0, 0.9)),
            lr=LogUniform(1e-4, 1e-1, limits=(1e-6, 10.0)),
        ),
        {"dropout": 0.0, "lr": 10.0},
    ),
    "deep": (
        deep,
        SearchSpace(
            layers=IntRange(1, 6, limits=(1, 20)),
            units=IntRange(16, 256, log=True, limits=(4, 4096)),
        ),
        {"layers": 14, "units": 64},
    ),
    "cond": (
        cond,
        SearchSpace(
            opt=Categorical(("sgd", "adam")),
            lr=LogUniform(1e-5, 1.0, limits=(1e-7, 10.0)),
            momentum=Uniform(0.0, 0.99, limits=(0.0, 0.999), when={"opt": "sgd"}),
            eps=LogUniform(1e-10, 1e-4, limits=(1e-12, 1e-1), when={"opt": "adam"}),
        ),
        {"opt": "adam", "lr": 3e-4, "eps": 1e-6},
    ),
    "apart": (
        apart,
        SearchSpace(
            lr=LogUniform(1e-3, 1.0, limits=(1e-9, 10.0)),
            wd=LogUniform(1e-8, 1e-4, limits=(1e-10, 10.0)),
            layers=IntRange(1, 6, limits=(1, 12)),
            act=Categorical(("relu", "gelu", "tanh")),
        ),
        {"lr": 1e-6, "wd": 0.1, "layers": 3, "act": "relu"},
    ),
    "inverse": (
        inverse,
        SearchSpace(
            lr=LogUniform(1e-3, 1.0, limits=(1e-8, 10.0)),
            batch=IntRange(8, 128, log=True, limits=(1, 8192)),
            mom=Uniform(0.0, 0.99, limits=(0.0, 0.999)),
        ),
        {"lr": 1e-4, "batch": 1024, "mom": 0.5},
    ),
    "reach": (
        reach,
        SearchSpace(
            opt=Categorical(("sgd", "adam")),
            lr=LogUniform(1e-5, 3e-2, limits=(1e-8, 100.0)),
            dropout=Uniform(0.0, 0.8, limits=(0.0, 0.95)),
        ),
        {"opt": "adam", "lr": 1.0, "dropout": 0.2},
    ),
    "plateau": (
        plateau,
        SearchSpace(
            lr=LogUniform(1e-4, 1e-1, limits=(1e-7, 10.0)),
            momentum=Uniform(0.0, 0.99, limits=(0.0, 0.999)),
            width=IntRange(16, 512, log=True, limits=(4, 4096)),
        ),
        {"lr": 1.0, "momentum": 0.9, "width": 64},
    ),
    "twin": (
        twin,
        SearchSpace(
            lr=LogUniform(1e-5, 1.0, limits=(1e-8, 10.0)),
            batch=IntRange(8, 512, log=True, limits=(1, 4096)),
            dropout=Uniform(0.0, 0.8, limits=(0.0, 0.95)),
        ),
        {"lr": 0.1, "batch": 256, "dropout": 0.2},
    ),
    "sixchoice": (
        sixchoice,
        SearchSpace(
            act=Categorical(tuple(LADDER)),
            lr=LogUniform(1e-4, 1.0, limits=(1e-8, 10.0)),
            units=IntRange(16, 1024, log=True, limits=(4, 4096)),
        ),
        {"act": "f", "lr": 1e-6, "units": 256},
    ),
    "cliff": (
        cliff,
        SearchSpace(
            lr=LogUniform(1e-5, 1e-2, limits=(1e-8, 10.0)),
            batch=IntRange(8, 512, log=True, limits=(1, 4096)),
        ),
        {"lr": 0.2, "batch": 64},
    ),
    "ratio": (
        ratio,
        SearchSpace(
            lr=LogUniform(1e-4, 1e-1, limits=(1e-7, 10.0)),
            mom=Uniform(0.0, 0.9, limits=(0.0, 0.999)),
            wd=LogUniform(1e-6, 1e-2, limits=(1e-10, 1.0)),
        ),
        {"lr": 5e-3, "mom": 0.95, "wd": 1e-4},
    ),
}
TASKS = {
    f"{name}{suffix}": Task(f"{name}{suffix}", value, space.to_dict(), optimum, sd)
    for name, (value, space, optimum) in SPACES.items()
    for suffix, sd in (("", 0.0), ("-noisy", 0.05))
}
STRATEGIES = {  # name: (sampler, over the hard limits, narrowing rounds); None: the default
    "random-start": ("random", False, False),
    "random-limits": ("random", True, False),
    "tpe-limits": ("tpe", True, False),
    "narrowing": (None, False, True),  # Study(name, space, objective): TPE across rounds
    "narrowing-random": ("random", False, True),  # random inside the rounds (the textbook's)
}


def to_limits(space: SearchSpace) -> SearchSpace:
    """Every numeric range replaced by its hard limits (same type and scale)."""
    return space.replace(
        **{
            n: dataclasses.replace(p, low=p.limits[0], high=p.limits[1])
            for n, p in space.items()
            if not isinstance(p, Categorical)
        }
    )


def run_one(task: Task, strategy: str, seed: int, args) -> dict:
    sampler, limits, narrowing = STRATEGIES[strategy]
    name = f"{task.name}-{strategy}-s{seed}"
    journal = SCRATCH / f"{name}.journal"
    journal.unlink(missing_ok=True)  # every run starts afresh
    space = to_limits(task.space) if limits else task.space
    # the baselines are plain one-round searches: no exploration share
    kw: dict[str, Any] = {"rounds": 1, "trials": args.rounds * args.trials}
    kw["narrowing"] = NarrowingPolicy(explore=0.0)
    if narrowing:  # --study options passed through unchecked: Study validates its own options
        kw = {"rounds": args.rounds, "trials": args.trials, "narrowing": args.policy_obj}
        kw |= args.study_kw
    fixed = {"seed": seed, "workers": args.workers, "out": SCRATCH, "tracking": False}
    fixed |= {"sampler": sampler} if sampler else {}
    fixed |= {"storage": str(journal), "stop": StopPolicy(when_unchanged=False)}
    t0 = time.perf_counter()
    study = Study(name, space, task, **(fixed | kw))
    result = study.run()
    t, rounds = result.trials, result.rounds
    return {
        "task": task.name,
        "strategy": strategy,
        "seed": seed,
        "score": task.value(result.best_params) if result.best_params else 0.0,
        "believed": result.best_value,
        "best_params": result.best_params,
        "trials": len(t),
        "finished": int((t["status"] == "finished").sum()),
        "status": result.status,
        "seconds": time.perf_counter() - t0,
        "workers": study.workers,
        "spaces": [{n: str(p) for n, p in r.space.items()} for r in rounds],
        "changes": [{n: c.detail for n, c in r.changes.items()} for r in rounds[1:]],
    }


def stats(runs: list[dict]) -> dict:
    s = [r["score"] for r in runs]
    out = {"median": statistics.median(s), "worst": min(s), "scores": s}
    out["believed"] = statistics.median(r["believed"] or 0.0 for r in runs)
    out["trials"] = max(r["trials"] for r in runs)  # the budget actually used
    return out


def table(summary: dict[str, dict]) -> str:
    lines = [
        "| strategy | median | worst | best | mean +- sd | scores by seed | believed | trials |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        x, n = s["scores"], s["trials"]
        mean, sd, seeds = statistics.fmean(x), statistics.pstdev(x), " ".join(f"{v:.3f}" for v in x)
        lines.append(
            f"| {name} | {s['median']:.3f} | {min(x):.3f} | {max(x):.3f} | {mean:.3f} +- {sd:.3f} "
            f"| {seeds} | {s['believed']:.3f} | {n} |"
        )
    return "\n".join(lines)


def verdicts(task: str, summary: dict[str, dict]) -> list[str]:
    """PASS/FAIL of each narrowing strategy: median >= tpe-limits' - 0.02, worst seed >= 0.6,
    median >= random-start's (the comparisons whose strategy was not run are left out)."""
    out = []
    for name in (n for n in summary if STRATEGIES[n][2]):
        s, checks = summary[name], [(f"worst >= {FLOOR}", summary[name]["worst"] >= FLOOR)]
        if "tpe-limits" in summary:
            ref = summary["tpe-limits"]["median"] - 0.02
            checks.append((f"median >= {ref:.3f} (tpe-limits - 0.02)", s["median"] >= ref))
        if "random-start" in summary:
            ref = summary["random-start"]["median"]
            checks.append((f"median >= {ref:.3f} (random-start)", s["median"] >= ref))
        ok = all(c for _, c in checks)
        failed = "; ".join(f"not {w}" for w, c in checks if not c)
        out.append(f"{task:15} {name:14} {'PASS' if ok else 'FAIL'}  {failed}".rstrip())
    return out


def figure(summaries: dict[str, dict[str, dict]], path: Path) -> Path:
    from hpo.figures import _pyplot, _save

    plt = _pyplot()
    ncols = min(5, len(summaries))
    nrows = math.ceil(len(summaries) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), sharey=True, squeeze=False
    )
    for ax, (task, summary) in zip(axes.flat, summaries.items(), strict=False):
        for i, (name, s) in enumerate(summary.items()):
            ax.bar(i, s["median"], color=f"C{list(STRATEGIES).index(name)}", alpha=0.4)
            ax.plot([i] * len(s["scores"]), s["scores"], "k.", ms=4)
        ax.set_xticks(range(len(summary)), list(summary), rotation=60, fontsize=7)
        ax.set_title(task, fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(summaries) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("score (noise-free)")
    fig.tight_layout()
    return _save(fig, path)


def _overrides(items: list[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"--{what}: expected key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text  # a bare word, e.g. backend=loky
    return out


def _record(runs, by, n, out, t0, args, argv, budget) -> None:
    """The run just finished: grouped, shown (unless --quiet) and every run so far saved."""
    r = runs[-1]
    by.setdefault(r["task"], {}).setdefault(r["strategy"], []).append(r)
    if not args.quiet:
        print(
            f"[{len(runs)}/{n}] {r['task']} {r['strategy']} s{r['seed']}: score {r['score']:.3f} "
            f"(believed {r['believed'] or 0:.3f}, {r['trials']} trials, {r['seconds']:.1f} s)",
            flush=True,
        )
    meta = {"argv": sys.argv[1:] if argv is None else argv, "budget": budget}
    meta["seconds"] = time.perf_counter() - t0
    out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.hard_spaces")
    ap.add_argument("--only", nargs="+", action="extend", choices=list(TASKS), metavar="TASK")
    ap.add_argument("--strategy", nargs="+", action="extend", choices=list(STRATEGIES))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--policy", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--study", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2, help="every study's (the issue's: 2)")
    ap.add_argument("--json", default="runs/hard_spaces.json")
    ap.add_argument("--docs", default=None)
    ap.add_argument("--section", default="hard-spaces", help="the docs section to write")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers: must be an int >= 1, got {args.workers}")
    args.policy_obj = NarrowingPolicy(**_overrides(args.policy, "policy"))
    args.study_kw = _overrides(args.study, "study")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    tasks = [TASKS[t] for t in args.only or TASKS]
    strategies = [s for s in STRATEGIES if s in (args.strategy or STRATEGIES)]
    SCRATCH.mkdir(parents=True, exist_ok=True)
    budget = (
        f"budget: narrowing {args.rounds} x {args.trials} = {args.rounds * args.trials} trials, "
        f"others 1 x {args.rounds * args.trials}; {args.workers} worker(s); "
        f"policy {args.policy_obj}; "
        f"study options {args.study_kw or 'default'}; seeds {seeds}"
    )
    print(budget)
    t0, runs, by = time.perf_counter(), [], {}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = len(tasks) * len(strategies) * len(seeds)
    try:
        for task, strategy, seed in itertools.product(tasks, strategies, seeds):
            runs.append(run_one(task, strategy, seed, args))
            _record(runs, by, n, out, t0, args, argv, budget)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    summaries = {t: {s: stats(rs) for s, rs in g.items()} for t, g in by.items()}
    sections = [f"**{task}**\n\n{table(summary)}" for task, summary in summaries.items()]
    checks = [v for task, summary in summaries.items() for v in verdicts(task, summary)]
    total = time.perf_counter() - t0
    report = "\n\n".join(sections)
    if checks:
        report += (
            f"\n\nChecks (median >= tpe-limits - 0.02, worst >= {FLOOR}, median >= random-start):"
        )
        report += "\n\n```\n" + "\n".join(checks) + "\n```"
    print(f"\n{report}\n\n{len(runs)} studies in {total:.0f} s; {budget}; records in {out}")
    if args.docs:
        from studies.reproduce import update_section

        docs = Path(args.docs)
        name = "compare_hard" if args.section == "hard-spaces" else args.section.replace("-", "_")
        fig = figure(summaries, docs / "figures" / f"{name}.png")
        head = (
            f"Measured by `python -m studies.hard_spaces` ({total:.0f} s); {budget}. Score: the "
            f"noise-free value (optimum 1.0) of the configuration each study reports as best; "
            f"believed: the median best value the study saw. ![hard spaces](figures/{fig.name})"
        )
        update_section(docs / "results.md", args.section, f"{head}\n\n{report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
