"""Which trials of a round explore the hard limits and which are drawn near the best so far
(hpo.explore.trial_kind): shares kept whatever they are, positions a function of the number;
local trials also centre on another choice's best trial when it ranks high (rival_centres)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from hpo import NarrowingPolicy, StopPolicy, Study
from hpo.explore import local_params, rival_centres, swap_slot, trial_kind
from hpo.space import Categorical, IntRange, LogUniform, SearchSpace, Uniform


@pytest.mark.parametrize(
    ("explore", "local", "n_explore", "n_local"),
    [
        (0.2, 0.2, 6, 6),  # the defaults
        (0.2, 0.1, 6, 3),  # every local slot falls on an exploration trial: moved to the next
        (0.25, 0.25, 7, 8),  # local: N x share rounded half up
        (0.0, 0.3, 0, 9),
        (0.3, 0.0, 9, 0),
    ],
)
def test_each_kind_gets_its_share_of_a_round(explore, local, n_explore, n_local):
    kinds = [trial_kind(i, explore, local) for i in range(30)]
    assert kinds.count("explore") == n_explore and kinds.count("local") == n_local


def test_the_defaults_keep_their_positions():
    """explore = local = 0.2: no local slot falls on an exploration trial, so the local trials sit
    where they always did (every 5th trial from the 3rd): studies measured before still repeat."""
    kinds = [trial_kind(i, 0.2, 0.2) for i in range(30)]
    assert [i for i, k in enumerate(kinds) if k == "explore"] == [4, 9, 14, 19, 24, 29]
    assert [i for i, k in enumerate(kinds) if k == "local"] == [2, 7, 12, 17, 22, 27]


def test_a_third_of_the_local_trials_swap_a_choice_and_the_pairs_take_turns():
    """Defaults: local trials 2, 7, 12, 17, 22, 27; the 2nd and the 5th (7 and 22) are swaps,
    numbered from the round so that a round's swaps start at the next pair."""
    slots = {i: swap_slot(i, 3, 0.2, 0.2) for i in range(30)}
    assert {i: k for i, k in slots.items() if k is not None} == {7: 3, 22: 4}
    assert swap_slot(7, 2, 0.2, 0.2) == 2 and swap_slot(2, 2, 0.2, 0.2) is None


SWAP_SPACE = SearchSpace(
    lr=LogUniform(1e-6, 1.0),
    act=Categorical(("relu", "tanh", "sigmoid")),
    width=IntRange(8, 512, log=True),
    init=Categorical(("he", "glorot")),
    momentum=Uniform(0.0, 0.99),
)
SWAP_BEST = {"lr": 3e-3, "act": "tanh", "width": 100, "init": "he", "momentum": 0.9}


def test_a_swap_changes_one_choice_and_keeps_every_other_value():
    rng = np.random.default_rng(0)
    changes = []
    for k in range(6):
        p = local_params(SWAP_SPACE, SWAP_BEST, rng, swap=k)
        changed = {n: v for n, v in p.items() if v != SWAP_BEST[n]}
        assert len(changed) == 1 and set(p) == set(SWAP_BEST)
        changes.append(changed)
    # the 3 (categorical, other choice) pairs in turn, then again
    assert changes[:3] == [{"act": "relu"}, {"act": "sigmoid"}, {"init": "glorot"}]
    assert changes[3:] == changes[:3]
    # not a swap: every choice kept, the numbers moved
    for _ in range(20):
        p = local_params(SWAP_SPACE, SWAP_BEST, rng)
        assert (p["act"], p["init"]) == ("tanh", "he") and p["lr"] != SWAP_BEST["lr"]


def test_a_swap_that_turns_a_conditional_parameter_on_is_not_drawn():
    """eps exists for adam only: swapping sgd for adam would draw eps afresh, no longer the same
    configuration; the other categorical's swap is drawn in its place."""
    space = SearchSpace(
        opt=Categorical(("sgd", "adam")),
        eps=LogUniform(1e-10, 1e-4, when={"opt": "adam"}),
        init=Categorical(("he", "glorot")),
        lr=LogUniform(1e-5, 1.0),
    )
    best = {"opt": "sgd", "init": "he", "lr": 1e-2}
    rng = np.random.default_rng(0)
    swaps = [local_params(space, best, rng, swap=k) for k in range(2)]
    assert swaps == [{**best, "init": "glorot"}] * 2


def test_without_a_categorical_a_swap_slot_draws_what_a_step_draws():
    space = SearchSpace(**{n: SWAP_SPACE[n] for n in ("lr", "width", "momentum")})
    best = {n: SWAP_BEST[n] for n in space}
    stepped = local_params(space, best, np.random.default_rng(5))
    assert local_params(space, best, np.random.default_rng(5), swap=1) == stepped != best


def _frame(opts, lrs, values, state="COMPLETE"):
    return pd.DataFrame(
        {"state": state, "value": values, "params_opt": opts, "params_lr": lrs, "round": 1}
    )


def test_local_trials_also_centre_on_another_choices_best_when_it_ranks_high():
    """adam's best trial ranks 2nd of 10 (in the top 20%): a centre; momentum's ranks 5th: not;
    sgd holds the best so far: not a rival of itself. Minimizing ranks the other way."""
    space = SearchSpace(opt=Categorical(("sgd", "adam", "momentum")), lr=LogUniform(1e-5, 1.0))
    opts = ["sgd", "adam", "sgd", "sgd", "momentum", "adam", "sgd", "sgd", "sgd", "sgd"]
    lrs = [1e-2, 3e-4, 2e-2, 5e-3, 1e-1, 1e-4, 1e-3, 1e-4, 1e-5, 3e-1]
    values = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, float("nan")]
    trials = _frame(opts, lrs, values)
    best = {"opt": "sgd", "lr": 1e-2}
    assert rival_centres(trials, space, best, "maximize") == ({"opt": "adam", "lr": 3e-4},)
    # sgd's best is adam's rival when adam holds the best so far
    assert rival_centres(trials, space, {"opt": "adam"}, "maximize") == (best,)
    # minimizing: the lowest values rank first (9 scored trials: the top 2)
    low = rival_centres(trials, space, {"opt": "sgd"}, "minimize")
    assert low == ()  # the 2 lowest are sgd's
    trials.loc[7, "params_opt"] = "momentum"  # 0.2 now momentum's, 2nd lowest
    assert rival_centres(trials, space, {"opt": "sgd"}, "minimize") == (
        {"opt": "momentum", "lr": 1e-4},
    )
    # only the rounds before the one being sampled: a resumed round centres as it first did
    later = pd.concat([trials, _frame(["momentum"], [1e-3], [5.0]).assign(round=2)])
    assert rival_centres(later, space, best, "maximize", before=2) == rival_centres(
        trials, space, best, "maximize"
    )
    assert rival_centres(later, space, best, "maximize")[0] == {"opt": "momentum", "lr": 1e-3}
    # a choice narrowing dropped, failed trials, no categorical, no best so far: no centre
    kept = space.replace(opt=Categorical(("sgd", "momentum")))
    assert rival_centres(_frame(opts, lrs, values), kept, best, "maximize") == ()
    assert rival_centres(_frame(opts, lrs, values, "FAIL"), space, best, "maximize") == ()
    assert rival_centres(trials, SearchSpace(lr=LogUniform(1e-5, 1.0)), best, "maximize") == ()
    assert rival_centres(trials, space, None, "maximize") == ()


def test_a_noise_winner_of_another_choice_is_no_centre_when_a_lead_stands_out():
    """30 trials: a lead at 0.5 (sgd) and 29 of noise (-0.1 .. 0.1, every choice in turn). The
    top 20% holds adam's and momentum's noise winners; the lead alone stands clear of the noise
    (median + 3 robust sd), so local trials stay with it. A hit of adam's own, as clear of the
    noise, is a centre again."""
    space = SearchSpace(opt=Categorical(("sgd", "adam", "momentum")), lr=LogUniform(1e-5, 1.0))
    opts = [("sgd", "adam", "momentum")[i % 3] for i in range(29)] + ["sgd"]
    lrs = [float(x) for x in np.logspace(-5, 0, 29)] + [1e-2]
    values = [float(x) for x in np.linspace(-0.1, 0.1, 29)] + [0.5]
    best = {"opt": "sgd", "lr": 1e-2}
    for direction, sign in (("maximize", 1.0), ("minimize", -1.0)):
        trials = _frame(opts, lrs, [sign * v for v in values])
        assert rival_centres(trials, space, best, direction) == ()
        trials.loc[1, "value"] = sign * 0.4  # adam's, at its own lr
        assert rival_centres(trials, space, best, direction) == ({"opt": "adam", "lr": lrs[1]},)


def two_optimizers(p, ctx):  # sgd peaks 1.0 at lr 1e-2, adam 0.97 at 1e-4
    best, peak = {"sgd": (-2.0, 1.0), "adam": (-4.0, 0.97)}[p["opt"]]
    return peak * math.exp(-0.5 * ((math.log10(p["lr"]) - best) / 0.8) ** 2)


def test_a_study_refines_another_choices_region_with_local_trials(tmp_path):
    """Round 1 finds both optimizers' regions; round 2 draws some local trials close to adam's
    best round-1 trial (adam's own lr, 2 decades below sgd's), the rest close to sgd's."""
    space = SearchSpace(opt=Categorical(("sgd", "adam")), lr=LogUniform(1e-6, 1.0))
    study = Study(
        "rivals",
        space,
        two_optimizers,
        rounds=2,
        trials=40,
        workers=1,
        seed=0,
        out=tmp_path,
        tracking=False,
        stop=StopPolicy(when_unchanged=False),
        sampler="random",
        narrowing=NarrowingPolicy(explore=0.0, local=0.5),
    )
    t = study.run().trials
    first = t[(t["round"] == 1) & (t["status"] == "finished")].sort_values("value")
    adam = first[first["params_opt"] == "adam"].iloc[-1]
    assert (first["value"] > adam["value"]).sum() < 0.2 * len(first)  # in the top 20%
    local = t[(t["round"] == 2) & t["local"].eq(True)]
    near_adam = local[(np.log10(local["params_lr"]) - math.log10(adam["params_lr"])).abs() < 0.5]
    near_sgd = local[(np.log10(local["params_lr"]) + 2).abs() < 1.0]
    assert len(near_adam) >= 3 and len(near_sgd) >= 3


def test_no_scored_trial_before_the_round_gives_no_centre_and_no_warning():
    """A round resumed before any earlier round scored (``before=1``: a resumed round 1), or only
    failed trials: no centre, and no numpy 'Mean of empty slice' warning on the user's stderr."""
    space = SearchSpace(opt=Categorical(("sgd", "adam")), lr=LogUniform(1e-5, 1.0))
    trials = _frame(["sgd", "adam"], [1e-2, 1e-3], [0.9, 0.8])
    best = {"opt": "sgd", "lr": 1e-2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rival_centres(trials, space, best, "maximize", before=1) == ()
        assert rival_centres(_frame(["sgd"], [1e-2], [0.9], "FAIL"), space, best, "maximize") == ()
