"""Conditional parameters: defined with ``when``, sampled only when the condition holds, judged by
narrowing only on the trials where they were active, shown empty elsewhere."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest

from hpo import Categorical, LogUniform, NarrowingPolicy, SearchSpace, Study, Uniform, narrow
from hpo.explore import exploration_space, local_params
from hpo.sampling import suggest
from tests.hpo import objectives


def branch_space(**momentum_kw):
    return SearchSpace(
        lr=LogUniform(1e-5, 1e-1),
        optimizer=Categorical(["sgd", "momentum"]),
        momentum=Uniform(0.5, 0.99, when={"optimizer": "momentum"}, **momentum_kw),
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"m": Uniform(0, 1, when={"opt": "a"})},
            "'m' has a condition on unknown parameter 'opt' (known: lr, optimizer, m)",
        ),
        (
            {"m": Uniform(0, 1, when={"optimizer": "adam"})},
            "'m' has a condition on unknown choice 'adam' of 'optimizer'",
        ),
        (
            {"m": Uniform(0, 1, when={"lr": 0.1})},
            "'m' has a condition on 'lr', which must be a Categorical",
        ),
    ],
)
def test_a_condition_on_an_unknown_parameter_or_choice_is_one_line(params, message):
    with pytest.raises(ValueError) as info:
        SearchSpace(lr=LogUniform(1e-3, 1.0), optimizer=Categorical(["sgd", "momentum"]), **params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_condition_must_follow_its_parent_and_be_a_dict():
    with pytest.raises(ValueError, match="'optimizer', which must be defined before it"):
        SearchSpace(m=Uniform(0, 1, when={"optimizer": "a"}), optimizer=Categorical(["a", "b"]))
    with pytest.raises(ValueError, match="`when` must be a non-empty dict"):
        Uniform(0, 1, when="optimizer")


def test_conditions_round_trip_and_survive_narrowing_and_replace():
    space = SearchSpace(
        optimizer=Categorical(["sgd", "momentum", "adam"]),
        beta=Categorical([0.9, 0.99], when={"optimizer": ("adam", "momentum")}),
        eps=LogUniform(1e-8, 1e-4, when={"optimizer": "adam", "beta": 0.99}),  # nested, ordered
    )
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert space.replace(eps=LogUniform(1e-7, 1e-5))["eps"].when == space["eps"].when
    # narrowing dropped 'adam': the stored space still loads, eps is simply never active
    narrowed = space.replace(optimizer=Categorical(["sgd", "momentum"]))
    assert SearchSpace.from_dict(narrowed.to_dict()) == narrowed
    assert "when={'optimizer': ['adam', 'momentum']}" in str(space["beta"])


def _sample(space, seed):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return suggest(study.ask(), space)


def test_only_active_parameters_are_sampled_local_and_exploration_too():
    space = branch_space(limits=(0.0, 0.999))
    seen = [_sample(space, seed) for seed in range(40)]
    assert {p["optimizer"] for p in seen} == {"sgd", "momentum"}
    for p in seen:
        assert ("momentum" in p) == (p["optimizer"] == "momentum")
    wide = exploration_space(space, space)
    assert wide["momentum"].when == space["momentum"].when and wide["momentum"].high == 0.999
    rng = np.random.default_rng(0)
    bests = [
        {"lr": 1e-3, "optimizer": "momentum", "momentum": 0.9},
        {"lr": 1e-3, "optimizer": "sgd"},
    ]
    for best in bests:
        # a swap would turn momentum on or off: not the same configuration, so none is drawn
        drawn = [local_params(space, best, rng, swap) for swap in [None, 0] * 10]
        assert {p["optimizer"] for p in drawn} == {best["optimizer"]}
        for p in drawn:
            assert ("momentum" in p) == (p["optimizer"] == "momentum")
            assert "momentum" not in p or 0.5 <= p["momentum"] <= 0.99


def test_narrowing_judges_a_parameter_only_on_the_trials_where_it_was_active():
    rng = np.random.default_rng(0)
    n = 60
    optimizer = np.array(["sgd", "momentum"] * (n // 2), dtype=object)
    m = rng.uniform(0.5, 0.99, n)
    m[optimizer == "sgd"] = np.nan  # inactive: empty, as in the trials table
    score = np.where(optimizer == "momentum", -10 * (m - 0.7) ** 2, -0.5)
    frame = pd.DataFrame(
        {
            "value": score,
            "state": "COMPLETE",
            "params_lr": rng.uniform(1e-5, 1e-1, n),
            "params_optimizer": optimizer,
            "params_momentum": m,
        }
    )
    space = branch_space()
    new, changes = narrow(space, frame, policy=NarrowingPolicy(alpha=1.0, explore=0.0))
    assert changes["momentum"].reason == "shrunk", changes["momentum"].detail
    assert new["momentum"].contains(0.7) and new["momentum"].high - new["momentum"].low < 0.4
    assert new["momentum"].when == space["momentum"].when  # a narrowed param keeps its condition
    # with too few active trials the range is kept, whatever the inactive rows hold
    few = frame[(frame["params_optimizer"] == "sgd") | (frame.index < 4)]
    _, changes = narrow(space, few, policy=NarrowingPolicy(alpha=1.0, explore=0.0))
    assert changes["momentum"].reason == "kept" and "too few trials" in changes["momentum"].detail


def test_a_conditional_optimum_is_found_and_inactive_parameters_stay_empty(tmp_path):
    result = Study(
        "branch",
        branch_space(),
        objectives.branchy,
        rounds=3,
        trials=24,
        sampler="random",  # the same trials whatever the scheduling
        workers=2,
        seed=3,
        out=tmp_path / "runs",
        tracking=False,
    ).run()
    t = result.trials
    assert (t["status"] == "finished").all()  # the objective never got an inactive parameter
    assert t.loc[t["params_optimizer"] == "sgd", "params_momentum"].isna().all()
    assert t.loc[t["params_optimizer"] == "momentum", "params_momentum"].notna().all()
    assert result.best_params["optimizer"] == "momentum"
    assert abs(result.best_params["momentum"] - 0.9) < 0.1
    assert abs(math.log10(result.best_params["lr"]) + 3) < 0.5
    csv = (result.out / "trials.csv").read_text().splitlines()
    header = csv[0].split(",")
    sgd = next(line.split(",") for line in csv[1:] if ",sgd" in line)
    assert sgd[header.index("params_momentum")] == ""  # empty, never a made-up value
