"""The hard-space objectives: value 1.0 exactly at the known optimum, nothing above it anywhere
inside the hard limits, picklable, noise seeded by the trial."""

from __future__ import annotations

import json
import math
import pickle
import re
from types import SimpleNamespace

import numpy as np
import pytest

from hpo import StopPolicy, Study
from hpo.space import Categorical, IntRange
from studies.hard_spaces import TASKS, Task, to_limits


def _sample(task: Task, n: int, rng: np.random.Generator) -> list[dict]:
    """n random points of the hard limits (log-uniform on log scales), endpoints included."""
    cols = {}
    for name, p in to_limits(task.space).items():
        if isinstance(p, Categorical):
            cols[name] = [p.choices[i] for i in rng.integers(len(p.choices), size=n)]
            continue
        f, b = (np.log10, lambda v: 10.0**v) if p.log else (float, float)
        x = [p.low, p.high] + [b(v) for v in rng.uniform(f(p.low), f(p.high), size=n - 2)]
        cols[name] = [round(v) if isinstance(p, IntRange) else v for v in x]
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_value_is_exactly_one_at_the_optimum_and_never_above(name):
    task = TASKS[name]
    assert task.value(task.optimum) == 1.0
    assert all(to_limits(task.space)[k].contains(v) for k, v in task.optimum.items())
    values = [task.value(p) for p in _sample(task, 20_000, np.random.default_rng(0))]
    assert max(values) <= 1.0 + 1e-9 and min(values) >= 0.0
    assert all(math.isfinite(v) for v in values)


@pytest.mark.parametrize("name", ["far", "far-noisy", "sixfive-noisy"])
def test_objective_pickles_and_its_noise_depends_on_the_trial_seed_only(name):
    task = pickle.loads(pickle.dumps(TASKS[name]))
    a, b = (task(task.optimum, SimpleNamespace(seed=s)) for s in (1, 1))
    c = task(task.optimum, SimpleNamespace(seed=2))
    assert a == b and (a == c == 1.0) == (task.sd == 0)


def test_optimum_outside_or_at_the_edge_of_the_starting_range_where_intended():
    assert not TASKS["far"].space["lr"].contains(1.0)
    assert not TASKS["sixfive"].space["lr"].contains(0.05)
    assert TASKS["inside"].space["lr"].contains(1e-3)
    lr = TASKS["branch"].space["lr"]
    assert lr.contains(1e-3) and math.log10(1e-3 / lr.low) < 0.1 * math.log10(lr.high / lr.low)
    assert all(TASKS["sharp"].space[k].contains(v) for k, v in TASKS["sharp"].optimum.items())
    assert not TASKS["choice"].space["batch"].contains(2048)
    assert TASKS["choice"].space["batch"].contains(16)  # the runner-up's peak (0.8) is inside
    assert TASKS["choice"].value({"kind": "a", "batch": 16, "lr": 1e-2}) == 0.8
    assert TASKS["low"].space["lr"].low > 1e-7 >= TASKS["low"].space["lr"].limits[0]
    edge = TASKS["edge"]  # the optimum on the hard limits
    assert edge.space["dropout"].limits[0] == edge.optimum["dropout"] == 0.0
    assert edge.space["lr"].limits[1] == edge.optimum["lr"] == 10.0
    assert not TASKS["deep"].space["layers"].log and not TASKS["deep"].space["layers"].contains(14)
    assert TASKS["cond"].space["momentum"].when and TASKS["cond"].space["eps"].when
    apart = TASKS["apart"]  # lr below its start, weight decay above
    assert apart.space["lr"].low > 1e-6 and apart.space["wd"].high < 0.1
    inverse = TASKS["inverse"]
    assert not inverse.space["lr"].contains(1e-4) and not inverse.space["batch"].contains(1024)
    reach = TASKS["reach"]  # adam's best lr past the range, sgd's (the runner-up) inside it
    assert not reach.space["lr"].contains(1.0) and reach.space["lr"].contains(1e-2)
    assert reach.value({"opt": "sgd", "lr": 1e-2, "dropout": 0.2}) == 0.85
    assert reach.value({"opt": "adam", "lr": 3e-2, "dropout": 0.2}) < 0.02
    plateau = TASKS["plateau"]  # the peak past the range, the plateau's top (0.7) inside it
    assert not plateau.space["lr"].contains(1.0)
    assert plateau.value({"lr": 1e-2, "momentum": 0.9, "width": 64}) == 0.7
    twin = TASKS["twin"]  # both modes inside the start, the runner-up 0.9
    assert all(twin.space[k].contains(v) for k, v in twin.optimum.items())
    assert twin.value({"lr": 1e-4, "batch": 32, "dropout": 0.2}) == 0.9
    six = TASKS["sixchoice"]  # 'd''s peak (0.85) at the lower edge, 'f''s 2 decades below it
    assert six.space["lr"].low == 1e-4 and not six.space["lr"].contains(1e-6)
    assert six.value({"act": "d", "lr": 1e-4, "units": 256}) == 0.85
    assert TASKS["cliff"].value({"lr": 0.31, "batch": 64}) == 0.0  # past the cliff
    assert not TASKS["cliff"].space["lr"].contains(0.2)
    assert not TASKS["ratio"].space["mom"].contains(0.95)


def test_false_leads_counts_the_narrowings_of_a_noise_study(capsys):
    from studies.false_leads import main

    assert main(["--studies", "1", "--sampler", "random"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    # 4 rounds: 3 narrowings, and pure noise gives evidence in at most one of them
    assert re.fullmatch(r"sampler random: evidence after [01] of 3 narrowings", last), last


def test_workers_sets_every_strategys_and_study_workers_narrowings_alone(tmp_path, capsys):
    from studies.hard_spaces import main

    out = tmp_path / "runs.json"
    argv = ["--only", "ridge", "--strategy", "random-start", "narrowing", "--seeds", "0"]
    argv += ["--rounds", "2", "--trials", "4", "--quiet", "--json", str(out)]
    assert main([*argv, "--workers", "1", "--study", "workers=2"]) == 0
    runs = {r["strategy"]: r for r in json.loads(out.read_text())["runs"]}
    assert (runs["random-start"]["workers"], runs["narrowing"]["workers"]) == (1, 2)
    assert runs["random-start"]["trials"] == runs["narrowing"]["trials"] == 8  # equal budgets
    assert "1 worker(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--workers", "0"])
    assert exc.value.code == 2
    assert "--workers: must be an int >= 1, got 0" in capsys.readouterr().err


def test_far_noisy_ends_on_the_best_activation_with_choices_swapped_at_the_best(tmp_path):
    """Study defaults, one worker (a seed repeats exactly), far-noisy seeds 0-15: once one
    activation finds lr's region, a TPE fitted to every trial keeps drawing it; local trials that
    swap the choice at the best configuration put relu there too. 15 of 16 studies end on relu
    (10 of 16 with local trials that only step, each choice kept with probability 0.75)."""
    task = TASKS["far-noisy"]
    ends = []
    for seed in range(16):
        result = Study(
            f"far{seed}", task.space, task, rounds=4, trials=30, workers=1, seed=seed,
            out=tmp_path, tracking=False, stop=StopPolicy(when_unchanged=False),
            storage=str(tmp_path / f"far{seed}.journal"),
        ).run()  # fmt: skip
        ends.append(result.best_params["activation"])
    assert ends.count("relu") >= 14, ends
