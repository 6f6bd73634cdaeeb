"""Narrowing against known optima: rounds of random search on synthetic objectives must close in
on the optimum, follow it past the starting range, and stop at the hard limits."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import optuna
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpo.evidence import WIDEN_MIN_TRIALS, clear_lead
from hpo.narrowing import Change, NarrowingPolicy, converged, narrow, relative_change
from hpo.space import Categorical, IntRange, LogUniform, SearchSpace, Uniform


def frame(x, value, state="COMPLETE", name="lr"):
    return pd.DataFrame({"value": value, "state": state, f"params_{name}": x})


def rounds(space, objective, n_rounds, *, direction="maximize", n=30, seed=0):
    """Random search on ``lr`` for a few rounds, narrowing after each one."""
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(n_rounds):
        p = space["lr"]
        x = 10 ** rng.uniform(math.log10(p.low), math.log10(p.high), n)
        space, changes = narrow(space, frame(x, objective(x)), direction=direction)
        history.append(changes["lr"])
    return space, history


def log_width(p):
    return math.log10(p.high) - math.log10(p.low)


def peak_at(exponent):
    return lambda x: -((np.log10(x) - exponent) ** 2)


def test_closes_in_on_an_optimum_inside_the_range():
    start = SearchSpace(lr=LogUniform(1e-6, 1e-2))
    space, history = rounds(start, peak_at(-3), 5)
    assert space["lr"].contains(1e-3)
    assert log_width(space["lr"]) < 0.05 * log_width(start["lr"])
    assert history[0].reason == "shrunk"  # a peak inside the range: bracketed, no climb
    assert all(c.reason in ("shrunk", "kept") and c.trend == 0 for c in history)
    assert all(c.new.contains(1e-3) for c in history)


def test_follows_an_optimum_outside_the_starting_range():
    space, history = rounds(SearchSpace(lr=LogUniform(1e-6, 1e-2)), peak_at(-1), 4)
    assert space["lr"].contains(1e-1)
    assert history[0].reason in ("shifted", "extended") and history[0].trend == 1
    assert "scores climb toward the upper edge" in history[0].detail
    assert history[0].new.high >= 1e-2 * 10**4  # moved past the edge by a whole width
    space, _ = rounds(space, peak_at(-1), 3, seed=1)
    assert space["lr"].contains(1e-1) and log_width(space["lr"]) < 1


def test_hard_limits_stop_the_shift_exactly():
    start = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-6, 1e-2)))
    space = start
    for seed in range(4):
        space, (change,) = rounds(space, peak_at(-1), 1, seed=seed)
        assert change.new.high == 1e-2 and change.new.limits == (1e-6, 1e-2)
        assert "stopped at the hard limit 0.01" in change.detail
    assert log_width(space["lr"]) < 0.5


def test_limits_let_the_range_move_partway():
    start = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-7, 0.05)))
    space, _ = rounds(start, peak_at(0), 6)
    assert space["lr"].high == 0.05 and space["lr"].low >= 1e-7


def test_minimize_direction():
    loss = lambda x: (np.log10(x) + 3) ** 2  # noqa: E731
    space, _ = rounds(SearchSpace(lr=LogUniform(1e-6, 1e-2)), loss, 4, direction="minimize")
    assert space["lr"].contains(1e-3) and log_width(space["lr"]) < 0.5


def test_unscored_and_unfinished_trials_never_count():
    good_x = np.linspace(4, 6, 20)
    junk = pd.DataFrame(
        {
            "value": [math.nan, math.inf, 100.0, 1e9, 50.0, math.nan],
            "state": ["COMPLETE", "COMPLETE", "PRUNED", "FAIL", "RUNNING", "PRUNED"],
            "params_x": [0.1, 9.9, 0.5, 9.5, 9.0, 0.2],
        }
    )
    good = frame(good_x, -abs(good_x - 5), name="x")
    trials = pd.concat([junk, good], ignore_index=True)
    new, changes = narrow(SearchSpace(x=Uniform(0, 10)), trials)
    assert 3 < new["x"].low < 5 < new["x"].high < 7, changes["x"].detail
    assert changes["x"].detail.startswith("best 4 trials span")
    # minimize: -inf is not a score either
    trials.loc[1, "value"] = -math.inf
    new, _ = narrow(
        SearchSpace(x=Uniform(0, 10)), trials.assign(value=-trials["value"]), direction="minimize"
    )
    assert 3 < new["x"].low < 5 < new["x"].high < 7


def test_too_few_trials_keep_every_range():
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2), act=Categorical(("relu", "tanh")))
    trials = frame([1e-3, 1e-4, 1e-5], [0.9, 0.5, 0.1]).assign(params_act="relu")
    trials.loc[2, "state"] = "PRUNED"
    new, changes = narrow(space, trials)
    assert new == space and not converged(changes)  # kept for the lack of evidence
    assert changes["lr"].detail == "kept: only 2 finished trials (need 4)"


def test_missing_column_is_kept_with_a_reason():
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2), wd=LogUniform(1e-8, 1e-4))
    new, changes = narrow(space, frame(np.logspace(-5, -3, 8), np.arange(8.0)))
    assert new["wd"] == space["wd"] and changes["wd"].reason == "kept"
    assert "no column params_wd" in changes["wd"].detail and changes["lr"].reason != "kept"


def test_a_choice_is_dropped_only_on_enough_clearly_worse_trials():
    space = SearchSpace(act=Categorical(("sigmoid", "relu", "tanh", None)))
    rng = np.random.default_rng(0)
    scores = {"relu": 1.0, "tanh": 0.99, "sigmoid": 0.2, None: 0.1}
    counts = {"relu": 8, "tanh": 8, "sigmoid": 8, None: 2}  # only 2 trials of None
    acts = [a for a, n in counts.items() for _ in range(n)]
    value = [scores[a] + 0.01 * rng.standard_normal() for a in acts]
    trials = pd.DataFrame({"value": value, "state": "COMPLETE", "params_act": acts})
    new, changes = narrow(space, trials)
    assert new["act"].choices == ("relu", "tanh", None) and changes["act"].reason == "shrunk"
    assert changes["act"].detail.startswith("dropped 'sigmoid' (8 trials")
    # the same trials with a 4-trial minimum per choice: None still has too few to judge
    five = narrow(space, trials.head(10), policy=NarrowingPolicy(min_choice_trials=9))[1]
    assert five["act"].reason == "kept" and "and 9 trials each" in five["act"].detail
    # pure noise: a choice is dropped about as rarely as the test's level says (3 tests at 0.025)
    dropped = sum(
        narrow(space, trials.assign(value=rng.standard_normal(len(trials))))[1]["act"].reason
        == "shrunk"
        for _ in range(40)
    )
    assert dropped <= 8, dropped


def test_many_noise_parameters_rarely_narrow_any_holm():
    """Pure noise over 6 parameters, 40 rounds: Holm's step-down keeps the chance that any of
    them narrows near alpha (0.05), where testing each at alpha would narrow one in about a
    quarter of the rounds."""
    space = SearchSpace(**{f"p{i}": Uniform(0.0, 1.0) for i in range(6)})
    rng = np.random.default_rng(1)
    narrowed = signals = 0
    for _ in range(40):
        cols = {f"params_p{i}": rng.uniform(size=30) for i in range(6)}
        trials = pd.DataFrame({"value": rng.standard_normal(30), "state": "COMPLETE", **cols})
        changes = narrow(space, trials)[1]
        narrowed += any(c.evidence for c in changes.values())
        signals += any(c.signal for c in changes.values())  # each test at alpha, uncorrected
        kept = [c for c in changes.values() if not c.evidence]
        assert all("no evidence" in c.detail and "need <" in c.detail for c in kept)
    assert narrowed <= 6 < signals, (narrowed, signals)


def test_one_real_parameter_among_noise_ones_is_still_found():
    space = SearchSpace(**{f"p{i}": Uniform(0.0, 1.0) for i in range(6)})
    rng = np.random.default_rng(2)
    cols = {f"params_p{i}": rng.uniform(size=30) for i in range(6)}
    value = -((cols["params_p0"] - 0.5) ** 2) + 0.001 * rng.standard_normal(30)
    changes = narrow(space, pd.DataFrame({"value": value, "state": "COMPLETE", **cols}))[1]
    assert changes["p0"].evidence and changes["p0"].signal and changes["p0"].reason == "shrunk"
    assert changes["p0"].new.contains(0.5)
    assert not any(changes[f"p{i}"].evidence for i in range(1, 6))


def test_ranges_no_better_than_the_hard_limits_widen():
    """Nothing shows evidence and the ranges' trials score no better than the exploration trials
    drawn from the hard limits: the ranges widen toward the limits, saying why."""
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-8, 1e2)))
    rng = np.random.default_rng(3)
    value = rng.uniform(size=30)  # no trial stands far out of the others
    explore = np.zeros(30, dtype=bool)
    explore[np.argsort(value)[:-1][::5]] = True  # 6 exploration trials across the ranks, not 1st
    lr = np.where(explore, 10 ** rng.uniform(-8, 2, 30), 10 ** rng.uniform(-6, -2, 30))
    cols = {"value": value, "state": "COMPLETE", "params_lr": lr, "explore": explore}
    trials = pd.DataFrame(cols)
    new, changes = narrow(space, trials)
    assert "score no better than the hard limits" in changes["lr"].detail and changes["lr"].widened
    assert new["lr"].low < 1e-6 and new["lr"].high > 1e-2 and not changes["lr"].evidence
    # the choices' minimum of trials does not govern widening (raised to 10, it kept these
    # ranges: 6 exploration trials were too few); fewer than WIDEN_MIN_TRIALS of them do
    cautious = NarrowingPolicy(min_choice_trials=10)
    assert narrow(space, trials, policy=cautious)[1]["lr"].widened
    fewer = trials.assign(explore=explore & (np.cumsum(explore) < WIDEN_MIN_TRIALS))
    assert not narrow(space, fewer)[1]["lr"].widened
    # ranges that clearly beat the exploration trials are kept
    better = trials.assign(value=np.where(trials["explore"], -5.0, 0.0) + 0.01 * rng.random(30))
    new, changes = narrow(space, better)
    assert new["lr"] == space["lr"] or changes["lr"].evidence


def test_a_trial_far_out_of_the_noise_is_refined_where_it_is_not_widened_away():
    """The round that would widen (nothing shows evidence, the ranges' trials score no better than
    the exploration trials) holds one trial far out of its noise: the ranges are kept (stretched
    to keep it when it lies outside), and the reason says why they did not widen."""
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-8, 1e2)))
    rng = np.random.default_rng(3)
    value = rng.uniform(size=30)
    explore = np.arange(30) % 5 == 0
    lr = np.where(explore, 10 ** rng.uniform(-8, 2, 30), 10 ** rng.uniform(-6, -2, 30))
    cols = {"value": value, "state": "COMPLETE", "params_lr": lr, "explore": explore}
    trials = pd.DataFrame(cols)
    new, changes = narrow(space, trials)
    assert changes["lr"].widened and new["lr"].low < 1e-6  # as the test above
    hit = int(np.flatnonzero(~explore)[3])  # one trial of the ranges hits a narrow peak
    peak = trials.assign(value=np.where(np.arange(30) == hit, 5.0, value))
    new, changes = narrow(space, peak, incumbent={"lr": float(lr[hit])})
    assert new == space and not changes["lr"].widened and changes["lr"].standout
    assert "no better than the hard limits" in changes["lr"].detail
    assert "not widened: the round's best trial stands far out of its noise" in changes["lr"].detail
    out = int(np.flatnonzero(explore & (lr > 1e-2))[0])  # an exploration trial, past the range
    peak = trials.assign(value=np.where(np.arange(30) == out, 5.0, value))
    new, changes = narrow(space, peak, incumbent={"lr": float(lr[out])})
    assert not changes["lr"].widened and new["lr"].low == 1e-6 and new["lr"].contains(lr[out])


def test_the_round_before_the_last_refines_a_clear_lead_instead_of_widening():
    """The ranges would widen (nothing shows evidence, the ranges' trials score no better than the
    exploration trials), but the next round is the last and the study holds a lead clear of its
    noise (``final``): nothing widens, the reason says why, and the lead stays inside."""
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-8, 1e2)))
    rng = np.random.default_rng(3)
    value = rng.uniform(size=30)
    explore = np.zeros(30, dtype=bool)
    explore[np.argsort(value)[:-1][::5]] = True
    lr = np.where(explore, 10 ** rng.uniform(-8, 2, 30), 10 ** rng.uniform(-6, -2, 30))
    trials = pd.DataFrame(
        {"value": value, "state": "COMPLETE", "params_lr": lr, "explore": explore}
    )
    lead = {"lr": 3e-7}  # an earlier round's best trial, outside the round's range
    assert narrow(space, trials, incumbent=lead)[1]["lr"].widened  # not the last: it widens
    new, changes = narrow(space, trials, incumbent=lead, final=True)
    c = changes["lr"]
    assert not c.widened and "score no better than the hard limits" in c.detail
    assert "not widened: the next round is the last" in c.detail
    assert new["lr"].high == 1e-2 and new["lr"].low == 3e-7  # kept, stretched to keep the lead


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(10, 40))
def test_final_only_keeps_what_would_widen_property(seed, n):
    """Noise rounds with exploration trials from the hard limits (most of them widen): with
    ``final`` a round that would widen keeps its ranges and says why; one that would not is
    unchanged by ``final``."""
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-8, 1e2)), y=Uniform(0.0, 1.0))
    rng = np.random.default_rng(seed)
    explore = rng.random(n) < 0.3
    lr = np.where(explore, 10 ** rng.uniform(-8, 2, n), 10 ** rng.uniform(-6, -2, n))
    cols = {"params_lr": lr, "params_y": rng.uniform(size=n), "explore": explore}
    trials = pd.DataFrame({"value": rng.normal(size=n), "state": "COMPLETE", **cols})
    wide, wide_changes = narrow(space, trials)
    kept, kept_changes = narrow(space, trials, final=True)
    if not any(c.widened for c in wide_changes.values()):
        assert kept == wide
        return
    assert not any(c.widened for c in kept_changes.values())
    assert kept["lr"] == space["lr"] and wide["lr"].low < space["lr"].low
    assert "not widened: the next round is the last" in kept_changes["lr"].detail


def test_a_lead_is_clear_when_it_stands_three_robust_sds_above_the_median():
    assert clear_lead(np.array([0.1, 0.2, 0.15, 0.12, 0.9]))
    # median 0.25, robust sd 1.4826 x 0.1: 0.4 lies within 3 of them
    assert not clear_lead(np.array([0.1, 0.2, 0.3, 0.4]))
    assert not clear_lead(np.array([0.1, 5.0, 0.2]))  # too few scores to judge
    assert clear_lead(np.array([0.0] * 10 + [0.01]))  # noise-free: above the median is clear
    assert not clear_lead(np.array([np.nan, 0.1, 0.2, 0.3, 0.4]))


def test_a_survey_round_narrows_nothing_but_keeps_the_best_trial():
    """A round of exploration trials alone (round 1 drawn from the hard limits, ``survey``): a
    clear optimum in its trials narrows nothing, nothing widens, no choice is dropped, and the
    ranges stretch only to keep the best trial so far."""
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-8, 1e2)), kind=Categorical(("a", "b")))
    rng = np.random.default_rng(3)
    lr = 10 ** rng.uniform(-8, 2, 30)
    kind = np.where(np.arange(30) % 2 == 0, "a", "b")
    value = -((np.log10(lr) + 4) ** 2) - 30.0 * (kind == "b")  # clear: lr 1e-4, 'a'
    cols = {"value": value, "state": "COMPLETE", "params_lr": lr, "params_kind": kind}
    best = {"lr": float(lr[np.argmax(value)]), "kind": "a"}
    policy = NarrowingPolicy()  # survey=1.0
    survey = pd.DataFrame({**cols, "explore": True})
    new, changes = narrow(space, survey, incumbent=best, policy=policy)
    assert new == space and all(c.reason == "kept" and c.surveyed for c in changes.values())
    assert all("surveyed the hard limits" in c.detail for c in changes.values())
    assert not any(c.evidence or c.widened or c.settled for c in changes.values())
    far = {"lr": 5.0, "kind": "a"}  # a best trial outside the ranges is kept inside
    new, _ = narrow(space, survey, incumbent=far, policy=policy)
    assert new["lr"].contains(5.0) and new["lr"].low == 1e-6
    # judged as usual: a round with trials of the ranges' own, a later round, no survey asked
    mixed = survey.assign(explore=np.arange(30) % 5 == 0)
    later = [{"lr": changes["lr"]}]
    start = NarrowingPolicy(survey=0.0)
    for trials, kw in ((mixed, {"policy": policy}), (survey, {"policy": policy, "history": later}),
                       (survey, {"policy": start})):  # fmt: skip
        narrowed, judged = narrow(space, trials, **kw)
        assert judged["lr"].evidence and narrowed["kind"].choices == ("a",)
        assert not judged["lr"].surveyed


def test_ties_are_broken_by_row_order():
    policy = NarrowingPolicy(top_fraction=0.01, min_top=1, alpha=1.0)  # narrow without evidence
    x = [2.0, 8.0, 5.0, 5.5, 4.5]
    new, _ = narrow(
        SearchSpace(x=Uniform(0, 10)), frame(x, [1, 1, 0, 0, 0], name="x"), policy=policy
    )
    assert new["x"].contains(2.0) and not new["x"].contains(8.0)


def test_int_range_rounds_outward_and_stays_int():
    space = SearchSpace(n=IntRange(1, 100, limits=(1, 120)))
    x = np.arange(1, 101)
    new, changes = narrow(space, frame(x, -abs(x - 60.3), name="n"))
    assert type(new["n"].low) is int and new["n"].low < 60 < new["n"].high < 100
    assert changes["n"].reason == "shrunk"
    new, changes = narrow(space, frame(x, x.astype(float), name="n"))
    # best 20 span 81..100 and crowd the top: pushed half a width past it, stopped at the limit
    assert (new["n"].low, new["n"].high) == (71, 120) and changes["n"].reason == "shifted"
    assert "stopped at the hard limit 120" in changes["n"].detail and changes["n"].trend == 1
    no_limit = SearchSpace(n=IntRange(1, 100))
    new, changes = narrow(no_limit, frame(x, x.astype(float), name="n"))
    assert new["n"].high == 100 + 99 and changes["n"].reason == "shifted"  # a whole width


def test_both_edges_crowded_extends_both():
    x = np.array([0.1, 9.9, 0.2, 9.8, 5.0, 4.0, 6.0, 3.0, 7.0, 5.5])
    value = np.array([10, 10, 9, 9, 0, 0, 0, 0, 0, 0], dtype=float)
    policy = NarrowingPolicy(min_top=4, alpha=1.0)  # two best trials on each edge
    new, changes = narrow(SearchSpace(x=Uniform(0, 10)), frame(x, value, name="x"), policy=policy)
    assert new["x"].low < 0 and new["x"].high > 10 and changes["x"].reason == "extended"
    assert "crowd both edges, extended past them" in changes["x"].detail


def test_real_optuna_trials_dataframe():
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2), act=Categorical(("relu", "tanh")))
    dists = space.to_optuna()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    for _ in range(40):
        trial = study.ask(dists)
        lr, act = trial.params["lr"], trial.params["act"]
        score = -((math.log10(lr) + 3) ** 2) - 20 * (act == "tanh")
        study.tell(
            trial,
            score if lr > 1e-5 else None,
            state=None if lr > 1e-5 else optuna.trial.TrialState.PRUNED,
        )
    new, changes = narrow(space, study.trials_dataframe())
    assert new["lr"].contains(1e-3) and changes["lr"].reason == "shrunk"
    assert new["act"].choices == ("relu",)


def test_change_to_dict_round_trip_and_helpers():
    _, (change,) = rounds(SearchSpace(lr=LogUniform(1e-6, 1e-2)), peak_at(-1), 1)
    assert Change.from_dict(json.loads(json.dumps(change.to_dict()))) == change
    assert relative_change(change.old, change.old) == 0
    assert relative_change(LogUniform(1e-6, 1e-2), LogUniform(1e-5, 1e-2)) == pytest.approx(0.25)
    assert relative_change(Categorical(("a", "b")), Categorical(("a",))) == 0.5
    assert not converged([change]) and converged({})
    with pytest.raises(ValueError, match="Change.reason must be one of"):
        Change("lr", change.old, change.new, "moved", "")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_fraction", 0),
        ("top_fraction", 1.5),
        ("min_top", 0),
        ("min_top", 2.5),
        ("margin", -0.1),
        ("margin", math.inf),
        ("min_width", 0),
        ("edge", 0.5),
        ("edge", -1),
        ("min_trials", 0),
        ("min_trials", True),
        ("margin", "0.2"),
        ("survey", -0.1),
        ("survey", 1.5),
    ],
)
def test_policy_validation(field, value):
    with pytest.raises(ValueError, match=rf"^NarrowingPolicy\.{field} must be .*, but got"):
        NarrowingPolicy(**{field: value})


def test_bad_arguments():
    space = SearchSpace(x=Uniform(0, 1))
    with pytest.raises(ValueError, match="direction must be 'maximize' or 'minimize'"):
        narrow(space, frame([0.5], [1.0], name="x"), direction="max")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['state'\]"):
        narrow(space, pd.DataFrame({"value": [1.0], "params_x": [0.5]}))


@st.composite
def numeric_param(draw):
    kind = draw(st.sampled_from(["log", "uniform", "int", "intlog"]))
    limited = draw(st.booleans())
    if kind in ("int", "intlog"):
        low = draw(st.integers(1, 50) if kind == "intlog" else st.integers(-1000, 1000))
        high = low + draw(st.integers(1, 2000))
        lo = max(1, low - draw(st.integers(0, 20))) if kind == "intlog" else low - 20
        return IntRange(low, high, log=kind == "intlog", limits=(lo, high + 5) if limited else None)
    a = draw(st.floats(-12, 6))
    b = a + draw(st.floats(1e-3, 10))
    if kind == "log":
        low, high = 10**a, 10**b
        return LogUniform(low, high, limits=(low / 10, high) if limited else None)
    low, high = a * 100, b * 100
    return Uniform(low, high, limits=(low, high + 1) if limited else None)


score = st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.just(math.inf), st.just(-math.inf))
state = st.sampled_from(["COMPLETE"] * 4 + ["PRUNED", "FAIL", "RUNNING"])


@settings(max_examples=200, deadline=None)
@given(numeric_param(), st.data(), st.sampled_from(["maximize", "minimize"]))
def test_narrowed_range_is_valid_property(param, data, direction):
    if isinstance(param, IntRange):
        xs = st.integers(param.low, param.high)
    else:
        xs = st.floats(param.low, param.high)
    rows = data.draw(st.lists(st.tuples(xs, score, state), min_size=0, max_size=25))
    trials = pd.DataFrame(rows, columns=["params_p", "value", "state"])
    incumbent = data.draw(st.one_of(st.none(), xs))  # the best so far, from an earlier round
    if data.draw(st.booleans()):  # some trials drawn from the hard limits: widening is possible
        trials["explore"] = data.draw(
            st.lists(st.booleans(), min_size=len(rows), max_size=len(rows))
        )
    final = data.draw(st.booleans())  # the next round is the last, with a clear lead
    new_space, changes = narrow(
        SearchSpace(p=param),
        trials,
        direction=direction,
        incumbent=None if incumbent is None else {"p": incumbent},
        final=final,
    )
    new = new_space["p"]
    assert not (final and changes["p"].widened), changes["p"].detail
    if incumbent is not None:
        assert new.contains(incumbent), (param, incumbent, changes["p"].detail)
    if changes["p"].reason != "kept":  # nothing narrows without its stated evidence
        assert re.search(r"p=\d|widened|stretched", changes["p"].detail), changes["p"].detail
    assert type(new) is type(new_space["p"]) and new.log == param.log
    assert new.limits == param.limits and new.low < new.high
    lo, hi = param.hard_limits
    assert lo <= new.low and new.high <= hi
    if param.log:
        assert new.low > 0
    ok = [(v, x) for x, v, s in rows if s == "COMPLETE" and math.isfinite(v)]
    if len(ok) >= 4:
        best = (
            max(ok, key=lambda r: r[0]) if direction == "maximize" else min(ok, key=lambda r: r[0])
        )
        assert new.contains(best[1]), (param, best, changes["p"].detail)
    else:
        assert new == param and changes["p"].reason == "kept"


@pytest.mark.parametrize(
    "param",
    [
        LogUniform(1.0, math.nextafter(1.0, 2)),
        LogUniform(5e-324, 1e-323),
        LogUniform(1e-300, 1e300),
        Uniform(1e15, 1e15 + 0.25),
        Uniform(-1e300, 1e300),
        IntRange(1, 2, log=True, limits=(1, 2)),
    ],
)
@pytest.mark.parametrize("where", ["low", "high", "both"])
def test_float_extremes_stay_valid(param, where):
    xs = {"low": [param.low] * 5, "high": [param.high] * 5, "both": [param.low, param.high] * 3}
    trials = frame(xs[where], np.arange(len(xs[where]), dtype=float), name="p")
    for direction, best in (("maximize", xs[where][-1]), ("minimize", xs[where][0])):
        new, _ = narrow(SearchSpace(p=param), trials, direction=direction)
        lo, hi = param.hard_limits
        assert new["p"].contains(best) and lo <= new["p"].low < new["p"].high <= hi


def test_evidence_ranks_ties_as_scipy_does():
    from hpo.evidence import ranks

    rankdata = pytest.importorskip("scipy.stats").rankdata
    rng = np.random.default_rng(0)
    for _ in range(50):  # scores in steps of 0.01, as a 100-image validation split gives them
        x = np.round(rng.uniform(0, 1, rng.integers(1, 40)), 1)
        assert np.array_equal(ranks(x), rankdata(x) - 1), x


def test_choices_are_judged_at_a_level_shared_over_the_parameters():
    """4 parameters: a choice is dropped at alpha / 8 (Bonferroni's over the parameters), so a
    noise round drops one far less often than at alpha / 2; a clearly worse choice still goes."""
    space = SearchSpace(
        act=Categorical(("relu", "tanh", "sigmoid")),
        **{f"p{i}": Uniform(0.0, 1.0) for i in range(3)},
    )
    rng = np.random.default_rng(4)
    acts = ["relu", "tanh", "sigmoid"] * 10
    dropped = 0
    for _ in range(60):
        cols = {f"params_p{i}": rng.uniform(size=30) for i in range(3)}
        trials = pd.DataFrame(
            {"value": rng.standard_normal(30), "state": "COMPLETE", "params_act": acts, **cols}
        )
        change = narrow(space, trials)[1]["act"]
        dropped += change.reason == "shrunk"
        assert change.reason == "shrunk" or "need p < 0.0063, a median at least" in change.detail
    assert dropped <= 1, dropped  # at alpha / 2, the same rounds drop 2
    worse = {"relu": 1.0, "tanh": 0.95, "sigmoid": 0.0}
    value = [worse[a] + 0.1 * rng.standard_normal() for a in acts]
    trials = pd.DataFrame({"value": value, "state": "COMPLETE", "params_act": acts, **cols})
    new, changes = narrow(space, trials)
    assert new["act"].choices == ("relu", "tanh") and changes["act"].evidence


def test_a_trial_far_out_of_the_noise_is_a_signal_but_narrows_nothing():
    """Only one trial found the good region (too few for any parameter's test): a model may
    learn from it (signal), but no range narrows on it (no evidence)."""
    space = SearchSpace(lr=LogUniform(1e-8, 1e2), m=Uniform(0.0, 1.0))
    rng = np.random.default_rng(5)
    value = 0.05 * rng.standard_normal(30)
    cols = {"params_lr": 10 ** rng.uniform(-8, 2, 30), "params_m": rng.uniform(size=30)}
    noise = narrow(space, pd.DataFrame({"value": value, "state": "COMPLETE", **cols}))[1]
    assert not any(c.signal or c.evidence or c.standout for c in noise.values())
    value[7] = 0.6  # about 12 sd above the noise
    new, hit = narrow(space, pd.DataFrame({"value": value, "state": "COMPLETE", **cols}))
    assert all(c.signal and c.standout and not c.evidence for c in hit.values())
    assert new == space


def test_a_range_keeps_the_region_where_each_kept_choice_does_best():
    """The top trials are all sgd near lr 0.1; adam (kept: too few trials to judge) does best
    near 1e-3. lr narrows, but not past adam's best trial: a choice whose best lies elsewhere
    is not lost by narrowing another parameter around the leading choice."""
    space = SearchSpace(opt=Categorical(("sgd", "adam")), lr=LogUniform(1e-5, 1.0))
    rng = np.random.default_rng(6)
    lr = 10 ** rng.uniform(-5, 0, 40)
    opt = np.where(np.arange(40) % 10 == 0, "adam", "sgd")  # 4 adam trials
    best = np.where(opt == "adam", -3.0, -1.0)
    value = np.exp(-0.5 * ((np.log10(lr) - best) / 0.4) ** 2) * np.where(opt == "adam", 0.7, 1)
    value = value + 0.001 * rng.standard_normal(40)
    trials = pd.DataFrame({"value": value, "state": "COMPLETE", "params_opt": opt, "params_lr": lr})
    adam = trials[trials.params_opt == "adam"].sort_values("value").iloc[-1]
    assert (trials.value > adam.value).sum() < 20  # adam's best ranks in the better half
    new, changes = narrow(space, trials)
    assert changes["lr"].evidence and log_width(new["lr"]) < log_width(space["lr"])
    assert new["opt"] == space["opt"] and new["lr"].contains(adam.params_lr)
    # with adam gone from the space's choices the same trials narrow lr past it
    sgd_only = trials[trials.params_opt == "sgd"]
    new_sgd, _ = narrow(space, sgd_only)
    assert not new_sgd["lr"].contains(adam.params_lr)


def test_a_choice_whose_trials_climb_toward_an_edge_is_kept_and_the_range_reaches_past_it():
    """'b' loses inside the batch range, but its scores rise toward the upper edge (its best
    region lies past it, as a large batch's optimizer): it is kept and batch reaches a width
    past the edge. The same 'b' scoring flat low is dropped and batch is not extended."""
    space = SearchSpace(kind=Categorical(("a", "b")), batch=IntRange(8, 256, log=True))
    rng = np.random.default_rng(6)
    kinds = ["a", "b"] * 15
    batch = np.round(2 ** rng.uniform(3, 8, 30)).astype(int)
    a_score = np.exp(-0.5 * np.log2(batch / 16) ** 2)
    b_climb = 0.3 * np.exp(-0.5 * (np.log2(batch / 2048) / 2) ** 2)  # rising toward 256
    values = np.where(np.array(kinds) == "a", a_score, b_climb)
    trials = pd.DataFrame(
        {"value": values, "state": "COMPLETE", "params_kind": kinds, "params_batch": batch}
    )
    new, changes = narrow(space, trials)
    assert new["kind"].choices == ("a", "b")
    assert (
        "'b' below here, but its trials climb toward batch's upper edge" in changes["kind"].detail
    )
    assert "kind 'b' trials climb toward batch's upper edge" in changes["batch"].detail
    assert new["batch"].high >= 256 * 32 and "reaches a width past it" in changes["batch"].detail
    assert changes["batch"].reaches and not changes["kind"].reaches
    flat = np.where(np.array(kinds) == "a", a_score, 0.001 * rng.uniform(size=30))
    new, changes = narrow(space, trials.assign(value=flat))
    assert new["kind"].choices == ("a",) and new["batch"].high < 256


def test_a_choice_that_climbs_over_all_its_trials_is_kept_when_few_lie_past_the_leader():
    """adam's best lr lies 1.5 decades above the range, sgd's inside: only three adam trials
    lie past sgd's best, so the climb is read over all of adam's trials (rising to its best,
    past sgd's, in the edge band): adam is kept and lr reaches a width past the edge. The same
    adam trials peaking inside the range (a shared optimum below the edge band) are dropped."""
    space = SearchSpace(
        opt=Categorical(("sgd", "adam")), lr=LogUniform(1e-5, 3e-2, limits=(1e-8, 100.0))
    )
    rng = np.random.default_rng(3)
    sgd_lr = 10 ** rng.uniform(-5, math.log10(3e-2), 24)
    adam_lr = 10 ** np.array([-4.6, -4.0, -3.4, -2.9, -2.5, -1.6])  # 3 past sgd's best
    lr = np.concatenate([sgd_lr, adam_lr])
    opt = np.array(["sgd"] * 24 + ["adam"] * 6)
    sgd = 0.85 * np.exp(-0.5 * ((np.log10(sgd_lr) + 3) / 1.0) ** 2)

    def trials(adam_best):
        adam = 0.01 * np.exp(-0.5 * ((np.log10(adam_lr) - adam_best) / 0.5) ** 2)
        value = np.concatenate([sgd, adam])
        return pd.DataFrame(
            {"value": value, "state": "COMPLETE", "params_opt": opt, "params_lr": lr}
        )

    new, changes = narrow(space, trials(0.0))  # adam does best at lr 1
    assert new["opt"].choices == ("sgd", "adam")
    assert "'adam' below here, but its trials climb toward lr's upper edge" in changes["opt"].detail
    assert new["lr"].high > 50 and changes["lr"].reaches  # 3e-2 x 10^3.48: a width past
    new, changes = narrow(space, trials(-4.0))  # adam peaks at 1e-4, inside: no climb
    assert new["opt"].choices == ("sgd",) and not changes["lr"].reaches


@pytest.mark.parametrize("beyond", [(), (5000,)])
def test_a_choice_that_climbs_over_all_its_trials_is_kept_when_those_past_the_leader_are_few(
    beyond,
):
    """'b' does best at batch 2048, 3 doublings above the range, 'a' at 24: 5 of b's 7 trials lie
    past a's best (two of them exploration trials beyond the edge), in perfect order, yet 5
    trials alone cannot pass the climb test at alpha / 4m. Its best lies farthest out, so the
    trend is read over all 7: 'b' is kept and batch reaches past the edge. So too with one more
    exploration trial past b's optimum (``beyond``: batch 5000, scoring below b's best; the 6
    trials past a's best alone are out of order). The same 'b' peaking at batch 64, inside (its
    best with trials beyond it), is dropped."""
    space = SearchSpace(
        kind=Categorical(("a", "b")),
        batch=IntRange(8, 256, log=True, limits=(1, 8192)),
        lr=LogUniform(1e-4, 1.0, limits=(1e-7, 10.0)),
    )
    rng = np.random.default_rng(10)
    a_batch = np.round(2 ** rng.uniform(3, 7, 23)).astype(int)
    b_batch = np.array([8, 14, 30, 75, 221, 1482, 1699, *beyond])
    batch = np.concatenate([a_batch, b_batch])
    lr = 10 ** np.concatenate([rng.uniform(-2.5, -1.5, 23), np.full(len(b_batch), -0.8)])
    kind = np.array(["a"] * 23 + ["b"] * len(b_batch))
    fit = np.exp(-0.5 * (np.log10(lr / 1e-2) / 0.7) ** 2)

    def trials(b_best):
        best = np.where(kind == "a", 24, b_best)
        value = np.where(kind == "a", 0.8, 1.0) * np.exp(-0.5 * np.log2(batch / best) ** 2) * fit
        return pd.DataFrame(
            {"value": value, "state": "COMPLETE", "params_kind": kind, "params_batch": batch}
        ).assign(params_lr=lr)

    t = trials(2048)
    b = t[t.params_kind == "b"].sort_values("value", ascending=False)
    a_best = t[t.params_kind == "a"].sort_values("value").iloc[-1].params_batch
    assert (b.params_batch > a_best).sum() == 5 + len(beyond) and b.params_batch.iloc[0] == 1699
    new, changes = narrow(space, t)
    assert new["kind"].choices == ("a", "b")
    kept = "'b' below here, but its trials climb toward batch's upper edge"
    assert kept in changes["kind"].detail
    assert new["batch"].high > 1699 and changes["batch"].reaches
    new, changes = narrow(space, trials(64))  # b's best inside: a peak, not a climb
    assert new["kind"].choices == ("a",) and "dropped 'b'" in changes["kind"].detail


def test_the_best_trial_so_far_brings_back_a_choice_dropped_earlier():
    """An exploration trial drew 'b' (dropped in an earlier round) and is the best so far: the
    next round has 'b' again, and the reason says why."""
    space = SearchSpace(kind=Categorical(("a",)), x=Uniform(0.0, 1.0))
    rng = np.random.default_rng(7)
    trials = pd.DataFrame(
        {
            "value": rng.uniform(size=30),
            "state": "COMPLETE",
            "params_kind": ["a"] * 29 + ["b"],
            "params_x": rng.uniform(size=30),
        }
    )
    new, changes = narrow(space, trials, incumbent={"kind": "b", "x": 0.5})
    assert new["kind"].choices == ("a", "b") and changes["kind"].reason == "extended"
    assert "keep the best trial so far ('b')" in changes["kind"].detail


def test_a_choice_kept_despite_a_low_p_value_says_why():
    """'b' ranks below 'a' on every trial (p tiny), yet it is kept: its median is only 0.02 below
    when one 'a' trial spans the round (a gap that does not matter), or it holds the best trial
    so far. The reason names which, with the p-value to three places."""
    space = SearchSpace(kind=Categorical(("a", "b")))
    value = [1.0] + [0.02 + 0.001 * i for i in range(12)] + [0.001 * i for i in range(12)]
    trials = pd.DataFrame(
        {"value": value, "state": "COMPLETE", "params_kind": ["a"] * 13 + ["b"] * 12}
    )
    change = narrow(space, trials)[1]["kind"]
    assert change.reason == "kept"
    assert re.search(r"'b' p=0\.00\d, but its median is only 0\.02\d* below", change.detail)
    assert "need p < 0.025, a median at least 0.1 below and 5 trials each" in change.detail
    clear = trials.assign(value=[0.5] * 13 + [0.001 * i for i in range(12)])
    assert narrow(space, clear)[1]["kind"].reason == "shrunk"  # the same ranks, a gap: dropped
    held = narrow(space, clear, incumbent={"kind": "b"})[1]["kind"]
    assert held.reason == "kept" and "'b' p=0.00" in held.detail
    assert "but it holds the best trial so far" in held.detail


def test_a_numeric_without_a_column_is_kept_while_a_choice_is_judged():
    """The trials have the categorical's column but not x's: x is kept with the reason, and the
    climb test (which reads every numeric column) skips it instead of failing."""
    space = SearchSpace(kind=Categorical(("a", "b")), x=Uniform(0.0, 1.0))
    rng = np.random.default_rng(0)
    trials = pd.DataFrame(
        {"value": rng.uniform(size=20), "state": "COMPLETE", "params_kind": ["a", "b"] * 10}
    )
    new, changes = narrow(space, trials)
    assert (
        new["x"] == space["x"] and changes["x"].detail == "kept: no column params_x in the trials"
    )


def test_no_choice_is_dropped_while_a_range_moves_past_an_edge():
    """sgd does best near lr's upper edge, so lr moves past it: adam, clearly worse inside the
    old range, is compared again inside the new one (its best lr may lie past the edge). With
    sgd's optimum bracketed inside the range, the same adam trials are dropped."""
    space = SearchSpace(
        opt=Categorical(("sgd", "adam")), lr=LogUniform(1e-5, 3e-2, limits=(1e-8, 100.0))
    )
    rng = np.random.default_rng(7)
    lr = 10 ** rng.uniform(-5, math.log10(3e-2), 40)
    opt = np.array(["sgd", "adam"] * 20)
    adam = 0.001 * rng.uniform(size=40)  # flat and low: no climb of its own to keep it

    def trials(sgd_best):
        sgd = np.exp(-0.5 * ((np.log10(lr) - math.log10(sgd_best)) / 0.8) ** 2)
        value = np.where(opt == "sgd", sgd, adam)
        cols = {"params_opt": opt, "params_lr": lr}
        return pd.DataFrame({"value": value, "state": "COMPLETE", **cols})

    new, changes = narrow(space, trials(2.5e-2))
    assert new["lr"].high > 3e-2 and changes["lr"].evidence  # moved past the upper edge
    assert new["opt"].choices == ("sgd", "adam") and changes["opt"].reason == "kept"
    assert changes["opt"].detail.startswith(
        "kept: lr moved past an edge, so the choices are compared again inside the new range "
        "(else: dropped 'adam'"
    )
    assert not changes["opt"].settled
    new, changes = narrow(space, trials(1e-3))  # bracketed: adam goes
    assert 1e-5 <= new["lr"].low < new["lr"].high <= 3e-2
    assert new["opt"].choices == ("sgd",) and changes["opt"].detail.startswith("dropped 'adam'")
