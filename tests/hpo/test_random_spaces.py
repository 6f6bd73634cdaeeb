"""Studies on random spaces (tests/hpo/random_spaces.py), end to end with real worker processes,
a real journal and a real MLflow store: whatever the space and options, a study ends, its ranges
stay inside the hard limits, its best trial is the best finished one, and MLflow holds every
ended trial exactly once."""

from __future__ import annotations

import math
import random

import mlflow
import pytest

from hpo import NarrowingPolicy, StopPolicy, Study
from hpo.records import FINISHED
from hpo.space import Categorical
from tests.hpo.random_spaces import Objective, random_space

SAMPLERS = ("tpe", "random", "qmc", "cmaes")
BACKENDS = ("loky", "threading", "sequential")
PRUNERS = (None, "median", "hyperband")
ENDED = ("finished", "pruned", "diverged", "failed")


def options(case: int, rng: random.Random) -> dict:
    """Every sampler, backend and pruner in turn (each backend with each pruner); the rest
    drawn."""
    backend = BACKENDS[case % 3]
    return {
        "sampler": SAMPLERS[case % 4],
        "backend": backend,
        "pruner": PRUNERS[case // 3 % 3],  # cases 0-8: each backend with each pruner
        "workers": 1 if backend == "sequential" else rng.choice([1, 2]),
        "rounds": rng.randint(1, 4),
        "trials": rng.randint(3, 16),
        "seed": case,
        "direction": "minimize" if case % 5 == 0 else "maximize",
        "max_failures": 1000,
        "repeats": 1,
        "confirm": 0,
        "tracking": case % 2 == 0,
        "narrowing": NarrowingPolicy(explore=rng.choice([0.0, 0.2, 0.5]), local=0.2),
        "stop": StopPolicy(when_unchanged=rng.random() < 0.5),
    }


@pytest.mark.parametrize("case", range(12))
def test_a_study_on_a_random_space_ends_within_its_limits_and_mirrors_exactly_once(tmp_path, case):
    rng = random.Random(case)
    space, optimum = random_space(rng)
    kw = options(case, rng)
    noise, fail, nan = rng.choice([0.0, 0.05, 0.3]), rng.choice([0.0, 0.05]), rng.choice([0, 0.05])
    objective = Objective(optimum, noise, fail, nan, minimize=kw["direction"] == "minimize")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study = Study(f"random-{case}", space, objective, out=tmp_path / "runs", tracking_uri=uri, **kw)
    result = study.run()

    assert result.status == "finished" or result.status.startswith("stopped"), result.status
    t = result.trials
    for k, frame in t.groupby("round"):  # failed trials are replaced: the budget is ended ones
        ended = frame["status"].isin(FINISHED).sum()
        assert ended <= kw["trials"] and (ended == kw["trials"] or k == t["round"].max())
    for record in result.rounds:
        for name, param in record.space.items():
            start = space[name]
            if isinstance(param, Categorical):
                assert all(start.contains(c) for c in param.choices)
            else:
                lo, hi = start.hard_limits
                assert lo <= param.low < param.high <= hi, (name, param, start)
    finished = t[t["status"] == "finished"]
    if len(finished):
        best = finished["value"].max() if kw["direction"] == "maximize" else finished["value"].min()
        assert math.isclose(result.best_value, best)
        for name, value in result.best_params.items():
            p = space[name]
            if isinstance(p, Categorical):
                assert p.contains(value)
            else:
                assert p.hard_limits[0] <= value <= p.hard_limits[1]
    if kw["tracking"]:
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name(f"random-{case}")
        runs = client.search_runs(
            [exp.experiment_id], "tags.`hpo.kind` = 'trial'", max_results=5000
        )
        keys = [r.data.tags["hpo.key"] for r in runs]
        assert len(keys) == len(set(keys)) == t["status"].isin(ENDED).sum()
