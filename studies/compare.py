"""`make compare`: search strategies on the 6-5 task and on two synthetic objectives.

Strategies, each with the same budget of 100 trials and 5 seeds:
  random         the textbook's random search, one round of 100 trials
  narrowing      random search in 4 rounds of 25, ranges narrowed (or shifted) between rounds
  tpe            Optuna's TPE, one round of 100 trials
  narrowing+tpe  TPE inside each of 4 rounds of 25, narrowed between rounds
Tasks: the 6-5 study's objective with 20 epochs per trial instead of 50 (to fit the time budget);
``bowl`` (optimum lr = 1e-3, weight decay = 1e-6, inside the starting ranges) and ``edge``
(optimum lr = 1e-1, above the starting lr range 1e-6..1e-2). Reported per task and strategy:
best validation score, test accuracy of the chosen configuration (6-5 only, after the study's
retrain on train + validation), and trials needed until the best-so-far reaches 95% of the best
score any run reached (the known optimum 1.0 for the synthetic ones). Stopping early on
converged ranges is off, so every run uses its whole budget. Not tracked in MLflow (40 + 20
throw-away studies); the 6-5 runs' trials stay in runs/compare/.

    python -m studies.compare            # writes the table into docs/results.md
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import numpy as np

from hpo import ModelObjective, NarrowingPolicy, StopPolicy, Study
from studies import scratch_dir, six_five
from studies.datasets import pick_dataset
from studies.reproduce import update_section

STRATEGIES = {  # name: (sampler, rounds, trials per round)
    "random": ("random", 1, 100),
    "narrowing": ("random", 4, 25),
    "tpe": ("tpe", 1, 100),
    "narrowing+tpe": ("tpe", 4, 25),
}
SEEDS = (0, 1, 2, 3, 4)
EPOCHS = 20  # the 6-5 study trains 50; 20 keeps 2000 trials within about 10 minutes
OUT = Path("runs/compare")  # the 6-5 runs' trials, one journal per study
SCRATCH = scratch_dir("hpo-compare")  # the synthetic runs' journals: thrown away


def bowl(params) -> float:
    """Maximum 1.0 at lr = 1e-3, weight decay = 1e-6 (inside the starting ranges)."""
    a = math.log10(params["lr"]) + 3
    b = math.log10(params["weight_decay"]) + 6
    return math.exp(-(a**2) - 0.25 * b**2)


def edge(params) -> float:
    """Maximum 1.0 at lr = 1e-1, above the starting lr range; weight decay barely matters,
    as in the 6-5 runs. The best value inside the starting ranges is exp(-1) = 0.37."""
    a = math.log10(params["lr"]) + 1
    b = math.log10(params["weight_decay"]) + 6
    return math.exp(-(a**2) - 0.01 * b**2)


def tasks(dataset) -> dict:
    """name -> (objective, known optimum or None)."""
    six = six_five.build(dataset)
    objective = ModelObjective(six.objective.factory, six.objective.data, epochs=EPOCHS)
    return {"six-five": (objective, None), "bowl": (bowl, 1.0), "edge": (edge, 1.0)}


def run_one(task: str, objective, strategy: str, seed: int) -> dict:
    sampler, rounds, trials = STRATEGIES[strategy]
    model = isinstance(objective, ModelObjective)
    study = Study(
        f"{task}-{strategy}-s{seed}",
        six_five.space,  # lr 10^U(-6, -2), weight decay 10^U(-8, -4), with hard limits
        objective,
        sampler=sampler,
        rounds=rounds,
        trials=trials,
        seed=seed,
        workers=2 if model else 1,  # the synthetic ones cost microseconds: no processes
        out=OUT if model else SCRATCH,
        storage=str((OUT if model else SCRATCH) / f"{task}-{strategy}-s{seed}.journal"),
        tracking=False,
        stop=StopPolicy(when_unchanged=False),
        # one-round baselines are the plain searches: no exploration share; narrowing is the 6-5
        # study's (round 1 samples the starting ranges: no survey of the hard limits)
        narrowing=NarrowingPolicy(survey=0.0) if rounds > 1 else NarrowingPolicy(explore=0.0),
        confirm=0,  # the same 100 trials for every strategy: no confirmation round on top
    )
    result = study.run()
    t = result.trials.sort_values(["round", "number"])
    values = t["value"].where(t["status"] == "finished").to_numpy(dtype=float)
    return {
        "task": task,
        "strategy": strategy,
        "seed": seed,
        "best": result.best_value,
        "test": result.test_score if model else None,
        "best_params": result.best_params,
        "trace": np.fmax.accumulate(np.nan_to_num(values, nan=-np.inf)).tolist(),
    }


def summarise(runs: list[dict], best: float) -> dict:
    target = 0.95 * best
    hit = [next((i + 1 for i, v in enumerate(r["trace"]) if v >= target), None) for r in runs]
    reached = [h for h in hit if h is not None]
    best = [r["best"] for r in runs]
    tests = [r["test"] for r in runs if r["test"] is not None]
    lrs = [r["best_params"]["lr"] for r in runs]
    return {
        "best_mean": float(np.mean(best)),
        "best_sd": float(np.std(best)),
        "test_mean": float(np.mean(tests)) if tests else None,
        "test_sd": float(np.std(tests)) if tests else None,
        "target": target,
        "hit": hit,
        "hit_median": float(np.median(reached)) if reached else None,
        "reached": len(reached),
        "lr_median": float(np.median(lrs)),
    }


def table(task: str, summaries: dict, optimum: float | None) -> str:
    test_col = task == "six-five"
    head = "| strategy | best validation score | "
    head += "test accuracy of the choice | " if test_col else ""
    head += "trials to 95% of best (median; seeds that got there) | best lr (median) |"
    lines = [head, "|" + "---|" * (5 if test_col else 4)]
    for name, s in summaries.items():
        row = f"| {name} | {s['best_mean']:.3f} +- {s['best_sd']:.3f} | "
        if test_col:
            row += f"{s['test_mean']:.3f} +- {s['test_sd']:.3f} | "
        hm = "-" if s["hit_median"] is None else f"{s['hit_median']:.0f}"
        row += f"{hm} ({s['reached']}/{len(s['hit'])}) | {s['lr_median']:.3g} |"
        lines.append(row)
    target = next(iter(summaries.values()))["target"]
    src = "known optimum 1.0" if optimum is not None else "best of all runs"
    return "\n".join(lines) + f"\n\n95% target: {target:.3f} (0.95 x {src}); mean +- sd over seeds."


def trace_figure(task: str, runs: list[dict], path: Path) -> Path:
    from hpo.figures import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, name in enumerate(STRATEGIES):
        tr = np.array([r["trace"] for r in runs if r["strategy"] == name], dtype=float)
        tr[~np.isfinite(tr)] = np.nan
        x = np.arange(1, tr.shape[1] + 1)
        ax.plot(x, np.nanmedian(tr, axis=0), color=f"C{i}", label=name)
        ax.fill_between(x, np.nanmin(tr, axis=0), np.nanmax(tr, axis=0), color=f"C{i}", alpha=0.1)
    ax.set_xlabel("trials")
    ax.set_ylabel("best score so far")
    ax.set_title(f"{task}: median over {len(SEEDS)} seeds (band: min-max)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def measure(args: argparse.Namespace) -> None:
    """Run every strategy on every task (``args.only``: some) and write the tables and figures."""
    t0 = time.perf_counter()
    dataset = pick_dataset()
    print(f"data: {dataset.name} ({dataset.source})")
    sections = []
    for task, (objective, optimum) in tasks(dataset).items():
        if args.only and task not in args.only:
            continue
        t1 = time.perf_counter()
        runs = [run_one(task, objective, s, seed) for s in STRATEGIES for seed in SEEDS]
        # one target per task: 95% of the best of all its runs (or of the known optimum)
        best_all = optimum if optimum is not None else max(r["best"] for r in runs)
        summaries = {
            s: summarise([r for r in runs if r["strategy"] == s], best_all) for s in STRATEGIES
        }
        seconds = time.perf_counter() - t1
        fig = trace_figure(task, runs, Path(args.docs) / "figures" / f"compare_{task}.png")
        print(f"{task}: {len(runs)} studies in {seconds:.0f} s")
        what = {
            "six-five": f"the 6-5 objective on {dataset.name}, {EPOCHS} epochs per trial",
            "bowl": "synthetic, optimum inside the starting ranges",
            "edge": "synthetic, optimum lr = 0.1 outside the starting range",
        }[task]
        sections.append(
            f"**{task}** ({what}; {seconds:.0f} s): ![{task}](figures/{fig.name})\n\n"
            + table(task, summaries, optimum)
        )
        print(table(task, summaries, optimum))
    total = time.perf_counter() - t0
    head = (
        f"Measured by `make compare` ({total:.0f} s, data {dataset.name}); seeds "
        f"{', '.join(map(str, SEEDS))}; 100 trials per run. Regenerate: `make compare`."
    )
    if not args.only:
        update_section(Path(args.docs) / "results.md", "compare", "\n\n".join([head, *sections]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.compare")
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--only", action="append", choices=("six-five", "bowl", "edge"))
    args = ap.parse_args(argv)
    for folder in (OUT, SCRATCH):  # scratch: names must be free
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    try:
        measure(args)
    finally:  # a failed or interrupted run leaves no scratch behind
        shutil.rmtree(SCRATCH, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
