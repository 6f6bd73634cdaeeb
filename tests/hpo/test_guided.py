"""TPE across rounds (hpo.guided): a round's TPE draws learn from the earlier rounds' trials that
lie inside its ranges, rank diverged trials worst, and depend on the trial's seed, not the pid."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from hpo import StopPolicy, Study
from hpo.guided import choice_quantiles, guided_params, history
from hpo.records import Change, RoundRecord, learning_since
from hpo.space import Categorical, IntRange, LogUniform, SearchSpace, Uniform
from tests.hpo import objectives

SPACE = SearchSpace(x=Uniform(0.0, 1.0), lr=LogUniform(1e-4, 1.0), act=Categorical(("a", "b")))


def peak(p):  # optimum x = 0.7, lr = 1e-2, act "b"
    return -((p["x"] - 0.7) ** 2) - 0.1 * (math.log10(p["lr"]) + 2) ** 2 - 0.2 * (p["act"] == "a")


def observations(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        p = {"x": rng.uniform(), "lr": 10 ** rng.uniform(-4, 0), "act": "ab"[rng.integers(2)]}
        out.append((p, peak(p)))
    return out


def test_draws_concentrate_where_the_history_scores_best():
    seen = observations(60)
    guided = [guided_params(SPACE, seen, "maximize", s) for s in range(40)]
    blind = [guided_params(SPACE, [], "maximize", s) for s in range(40)]  # no history: prior
    dist = lambda ps: np.median([abs(p["x"] - 0.7) for p in ps])  # noqa: E731
    assert dist(guided) < 0.5 * dist(blind)
    assert sum(p["act"] == "b" for p in guided) > sum(p["act"] == "b" for p in blind)
    # the same trial seed and the same observations: the same draw
    assert guided_params(SPACE, seen, "maximize", 3) == guided[3]


def test_minimize_turns_the_preference_around():
    seen = [(p, -v) for p, v in observations(60)]
    near = [guided_params(SPACE, seen, "minimize", s)["x"] for s in range(40)]
    far = [guided_params(SPACE, seen, "maximize", s)["x"] for s in range(40)]
    assert np.median(np.abs(np.array(near) - 0.7)) < np.median(np.abs(np.array(far) - 0.7))


def test_diverged_trials_count_as_the_worst_and_outside_ones_are_left_out():
    good = [({"x": 0.1 + 0.01 * i, "lr": 1e-2, "act": "b"}, 1.0) for i in range(12)]
    diverged = [({"x": 0.9 + 0.005 * i, "lr": 1e-2, "act": "b"}, math.nan) for i in range(12)]
    outside = [({"x": 0.5, "lr": 10.0, "act": "b"}, 5.0)]  # lr outside the space: ignored
    seen = good + diverged + outside
    xs = [guided_params(SPACE, seen, "maximize", s)["x"] for s in range(30)]
    assert np.median(xs) < 0.4  # drawn near the good trials, away from the diverged ones


def test_history_keeps_earlier_rounds_inside_the_space_and_ranks_diverged_worst():
    trials = pd.DataFrame(
        {
            "round": [1, 1, 1, 1, 2],
            "status": ["finished", "diverged", "failed", "finished", "finished"],
            "value": [0.5, math.nan, math.nan, 0.9, 0.8],
            "params_x": [0.2, 0.3, 0.4, 0.5, 0.6],
            "params_lr": [1e-3, 1e-2, 1e-2, 10.0, 1e-2],  # the 4th lies outside the space
            "params_act": ["a", "b", "a", "b", "a"],
        }
    )
    got = history(trials, SPACE, before=2)
    assert [p["x"] for p, _ in got] == [0.2, 0.3]  # failed left out, outside left out, round 2 not
    assert got[0][1] == 0.5 and math.isnan(got[1][1])
    assert history(None, SPACE, 2) == () and history(trials, SPACE, 1) == ()


def test_ranges_found_wrong_are_forgotten_but_their_exploration_trials_kept():
    """After a widening (round 3 here), a model learns from round 3 on and from the exploration
    trials of every round: the trials of the ranges it left crowd the region found wrong."""
    trials = pd.DataFrame(
        {
            "round": [1, 1, 2, 2, 3],
            "status": ["finished"] * 5,
            "value": [0.1, 0.2, 0.3, 0.4, 0.5],
            "explore": [False, True, None, True, False],
            "params_x": [0.1, 0.2, 0.3, 0.4, 0.5],
            "params_lr": [1e-3] * 5,
            "params_act": ["a"] * 5,
        }
    )
    assert [p["x"] for p, _ in history(trials, SPACE, before=4)] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert [p["x"] for p, _ in history(trials, SPACE, before=4, since=3)] == [0.2, 0.4, 0.5]

    p = Uniform(0.0, 1.0, limits=(0.0, 2.0))
    wide = Uniform(0.0, 2.0, limits=(0.0, 2.0))
    kept = {"x": Change("x", p, p, "kept", "kept")}
    widened = {"x": Change("x", p, wide, "extended", "widened", widened=True)}
    records = [
        RoundRecord(1, "s-1", SPACE),
        RoundRecord(2, "s-2", SPACE, kept),
        RoundRecord(3, "s-3", SPACE, widened),
        RoundRecord(4, "s-4", SPACE, kept),
    ]
    assert [learning_since(records, k) for k in (1, 2, 3, 4)] == [1, 1, 3, 3]
    # a parameter's own test passing at alpha (noise often does) forgets all the same
    records[2] = RoundRecord(3, "s-3", SPACE, {"x": dataclasses.replace(widened["x"], signal=True)})
    assert [learning_since(records, k) for k in (1, 2, 3, 4)] == [1, 1, 3, 3]
    # a widening after a trial stood far out of the noise keeps the rounds before it
    out = dataclasses.replace(widened["x"], signal=True, standout=True)
    records[2] = RoundRecord(3, "s-3", SPACE, {"x": out})
    assert [learning_since(records, k) for k in (1, 2, 3, 4)] == [1, 1, 1, 1]
    assert RoundRecord.from_dict(records[2].to_dict()).stood_out
    assert RoundRecord.from_dict(records[2].to_dict()).widened and not records[3].widened


def test_int_params_come_back_as_ints():
    space = SearchSpace(n=IntRange(4, 512, log=True))
    seen = [({"n": int(v)}, -abs(math.log2(v / 64))) for v in (4, 8, 16, 32, 64, 128, 256, 512) * 2]
    drawn = [guided_params(space, seen, "maximize", s)["n"] for s in range(20)]
    assert all(isinstance(n, int) and 4 <= n <= 512 for n in drawn)


def test_a_round_right_after_a_widening_without_a_signal_samples_at_random():
    def change(evidence, widened=False):
        p = Uniform(0.0, 1.0, limits=(-1.0, 2.0))
        new = Uniform(-1.0, 2.0, limits=(-1.0, 2.0)) if widened else p
        reason = "extended" if widened else "kept"
        flags = {"evidence": evidence, "signal": evidence, "widened": widened}
        return Change("x", p, new, reason, "why", **flags)

    assert RoundRecord(1, "s-1", SPACE).learns  # round 1: the sampler's own start
    assert RoundRecord(2, "s-2", SPACE, {"x": change(True)}).learns
    # ranges kept without a signal: a first hit on a narrow peak inside them is rarely a signal
    assert RoundRecord(2, "s-2", SPACE, {"x": change(False)}).learns
    # widened without a signal: the scores so far are the noise of the ranges just left
    assert not RoundRecord(2, "s-2", SPACE, {"x": change(False, widened=True)}).learns
    assert RoundRecord(2, "s-2", SPACE, {"x": change(True, widened=True)}).learns
    # after a survey of the hard limits (round 1): it learns only when a trial stood out
    surveyed = dataclasses.replace(change(False), surveyed=True)
    assert not RoundRecord(2, "s-2", SPACE, {"x": surveyed}).learns
    stood = dataclasses.replace(surveyed, signal=True, standout=True)
    assert RoundRecord(2, "s-2", SPACE, {"x": stood}).learns
    assert Change.from_dict(surveyed.to_dict()).surveyed
    # a range reached past an edge toward a kept choice's region: a model of the trials so far
    # would keep that choice where it scored low
    reached = dataclasses.replace(change(True), reaches=True)
    assert not RoundRecord(2, "s-2", SPACE, {"x": reached}).learns
    assert Change.from_dict(reached.to_dict()).reaches
    study = Study("s", SPACE, lambda p, ctx: 0.0, tracking=False, workers=1)
    s = study.settings
    assert study.settings.sampler == "tpe"  # the default
    assert s.round_job(2, SPACE, learns=False).sampler == "random"
    assert s.round_job(2, SPACE).sampler == "tpe"
    # nor are trials drawn near the best so far, which may be a noise winner
    assert s.round_job(2, SPACE, learns=False).local == 0.0
    assert s.round_job(2, SPACE).local == s.narrowing.local > 0
    assert Change.from_dict(change(True).to_dict()).evidence
    assert Change.from_dict(change(True).to_dict()).signal


def test_tpe_study_is_reproducible_with_one_worker(tmp_path):
    def run(name):
        study = Study(
            name, SPACE, lambda p, ctx: peak(p), rounds=2, trials=12, workers=1, seed=5,
            out=tmp_path / name, tracking=False,
        )  # fmt: skip
        t = study.run().trials
        return t[[c for c in t.columns if c.startswith("params_")]].round(12).to_dict("records")

    assert run("a") == run("b")


def test_the_default_reaches_a_known_optimum_past_a_misleading_start(tmp_path):
    """Study defaults (TPE across rounds), one worker (the same draws every run): lr's optimum
    1e-1 lies a decade above the starting range; y has no effect."""
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-9, 10.0)), y=Uniform(0.0, 1.0))
    study = Study(
        "far", space, objectives.far_bowl, rounds=4, trials=20, workers=1, seed=2,
        out=tmp_path, tracking=False, stop=StopPolicy(when_unchanged=False),
    )  # fmt: skip
    assert study.settings.sampler == "tpe"
    result = study.run()
    assert abs(math.log10(result.best_params["lr"]) + 1) < 0.2
    assert not result.rounds[-1].space["lr"].contains(1e-3)  # it left the start behind


def test_a_running_trial_is_left_out_of_the_draw():
    """Another worker's running trial at the best region is not an observation: a constant liar
    would rank it worst and steer this draw away from the peak that trial is evaluating."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from hpo.guided import round_observations

    dists = {
        "x": FloatDistribution(0.0, 1.0),
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "act": CategoricalDistribution(("a", "b")),
    }
    done = [
        create_trial(params=p, distributions=dists, value=v) for p, v in observations(30, seed=2)
    ]
    running = create_trial(
        state=TrialState.RUNNING, params={"x": 0.7, "lr": 1e-2, "act": "b"}, distributions=dists
    )
    seen = round_observations([*done, running], this=10**9)  # this: no trial's id
    assert len(seen) == 30 and all(p != running.params for p, _ in seen)
    assert seen == round_observations(done, this=10**9)


def reach(p, ctx):  # sgd 0.85 at lr 1e-2, inside the start; adam 1.0 at lr 1, 1.5 decades above
    best, peak = {"sgd": (-2.0, 0.85), "adam": (0.0, 1.0)}[p["opt"]]
    return peak * math.exp(-0.5 * ((math.log10(p["lr"]) - best) / 0.5) ** 2)


def test_choice_quantiles_rank_each_choices_trials_among_themselves():
    space = SearchSpace(x=Uniform(0.0, 1.0), opt=Categorical(("sgd", "adam")))
    seen = [
        ({"x": 0.1, "opt": "sgd"}, 0.9), ({"x": 0.2, "opt": "sgd"}, 0.7),
        ({"x": 0.3, "opt": "sgd"}, 0.8), ({"x": 0.4, "opt": "adam"}, 0.01),
        ({"x": 0.5, "opt": "adam"}, math.nan), ({"x": 0.6, "opt": "adam"}, 0.02),
    ]  # fmt: skip
    up = [v for _, v in choice_quantiles(space, seen, "maximize")]
    assert up[:4] + up[5:] == [1.0, 0.0, 0.5, 0.0, 1.0] and math.isnan(up[4])
    loss = [(p, -v) for p, v in seen]  # minimized: the best of each choice is 0.0
    down = [v for _, v in choice_quantiles(space, loss, "minimize")]
    assert down[:4] + down[5:] == [0.0, 1.0, 0.5, 1.0, 0.0]
    assert [p for p, _ in choice_quantiles(space, seen, "maximize")] == [p for p, _ in seen]
    batches = SearchSpace(batch=Categorical((32, 64)))  # a pandas column gives np.int64(32)
    mixed = [({"batch": np.int64(32)}, 0.5), ({"batch": 32}, 0.7), ({"batch": 64}, 0.1)]
    assert [v for _, v in choice_quantiles(batches, mixed, "maximize")] == [0.0, 1.0, 1.0]
    tied = [({"x": 0.1, "opt": "sgd"}, 0.3), ({"x": 0.2, "opt": "sgd"}, 0.3), *seen[:3]]
    assert [v for _, v in choice_quantiles(space, tied, "maximize")] == [0.125, 0.125, 1, 0.5, 0.75]
    alone = [({"x": 0.3, "opt": "adam"}, 0.2)]
    assert choice_quantiles(space, alone, "maximize") == [({"x": 0.3, "opt": "adam"}, 1.0)]
    assert choice_quantiles(SearchSpace(x=Uniform(0.0, 1.0)), seen, "maximize") == seen


def test_an_exploration_draw_climbs_on_from_a_trailing_choices_best():
    """sgd peaks 0.85 at lr 1e-2, inside the ranges; adam 1.0 at lr 1, two decades above, where
    only one exploration trial went (0.58). Fitted to the raw scores, every good trial is sgd's
    and no draw over the limits tries adam; by rank within each choice, adam's best leads too."""
    wide = SearchSpace(opt=Categorical(("sgd", "adam")), lr=LogUniform(1e-8, 100.0))
    rng = np.random.default_rng(0)
    trials = [
        {"opt": "sgd" if i % 4 else "adam", "lr": 10 ** rng.uniform(-5, -1.5)} for i in range(40)
    ]
    trials += [{"opt": "adam", "lr": lr} for lr in (1e-6, 1e-3, 0.3, 30.0)]  # exploration
    seen = [(p, reach(p, None)) for p in trials]

    def adam_near_its_best(observed):
        draws = [guided_params(wide, observed, "maximize", s) for s in range(60)]
        return sum(p["opt"] == "adam" and 0.1 < p["lr"] < 10 for p in draws)

    assert adam_near_its_best(seen) <= 3
    assert adam_near_its_best(choice_quantiles(wide, seen, "maximize")) >= 15


def test_the_default_finds_a_choice_whose_region_lies_outside_the_start(tmp_path):
    """Study defaults, one worker: inside the starting lr range adam scores near 0, so only
    exploration trials find its region; each seed's study ends on adam's optimum (with the
    exploration TPE fitted to the raw scores, seeds 1 and 3 ended on sgd at 0.85)."""
    space = SearchSpace(
        opt=Categorical(("sgd", "adam")), lr=LogUniform(1e-5, 3e-2, limits=(1e-8, 100.0))
    )
    for seed in range(6):
        result = Study(
            f"reach{seed}", space, reach, rounds=4, trials=30, workers=1, seed=seed,
            out=tmp_path / str(seed), tracking=False, stop=StopPolicy(when_unchanged=False),
        ).run()  # fmt: skip
        assert result.best_params["opt"] == "adam" and result.best_value > 0.95, seed
