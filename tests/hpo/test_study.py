"""The tuning engine end to end: real worker processes, a real journal storage in a tmp folder."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import optuna
import pytest

from hpo import (
    Categorical,
    LogUniform,
    NarrowingPolicy,
    SearchSpace,
    StopPolicy,
    Study,
    StudyError,
    Uniform,
)
from hpo.storage import open_storage, round_names
from tests.hpo import objectives


def make(tmp_path, objective, space=None, **kw):
    """The narrowing rule's tests sample at random inside the rounds: with 2 workers a TPE draw
    depends on the order trials finish (the default TPE's own tests: tests/hpo/test_guided.py)."""
    space = space or SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0))
    kw.setdefault("sampler", "random")
    kw.setdefault("tracking", False)
    kw.setdefault("workers", 2)
    return Study("t", space, objective, out=tmp_path / "runs", **kw)


def test_narrowing_converges_on_a_known_optimum(tmp_path):
    result = make(tmp_path, objectives.bowl, rounds=4, trials=30, seed=1).run()
    last = result.rounds[-1].space
    first = result.rounds[0].space
    assert last["lr"].contains(1e-3) and last["y"].contains(0.3)
    width = lambda p: math.log10(p.high / p.low)  # noqa: E731
    assert width(last["lr"]) < 0.5 * width(first["lr"])
    assert abs(math.log10(result.best_params["lr"]) + 3) < 0.2
    assert len(result.trials) == 4 * 30 and (result.trials["status"] == "finished").all()


QMC_STUDY = """
import json, sys
from hpo import LogUniform, SearchSpace, Study, Uniform
from tests.hpo import objectives
space = SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0))
result = Study("q", space, objectives.bowl, sampler="qmc", rounds=2, trials=8, workers=1,
               seed=7, tracking=False, out=sys.argv[1]).run()
print(json.dumps(result.trials.sort_values("number")[["params_lr", "params_y"]].values.tolist()))
"""


def test_a_qmc_study_repeats_exactly_in_another_process(tmp_path):
    # the QMC sequence's scramble is seeded by the study seed alone, not the worker's pid: one
    # sequence for every worker of a round, as Optuna requires, and a seed repeats a study
    root = Path(__file__).resolve().parents[2]
    runs = []
    for i in range(2):  # two processes: two pids
        out = subprocess.run(
            [sys.executable, "-c", QMC_STUDY, str(tmp_path / f"runs{i}")],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert len(runs[0]) == 16 and runs[0] == runs[1]


@pytest.mark.parametrize("sampler", ["random", "tpe", "qmc", "cmaes"])
def test_every_sampler_runs_the_rounds_and_comes_near_the_optimum(tmp_path, sampler):
    space = SearchSpace(
        lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0), act=Categorical(("relu", "tanh"))
    )
    result = make(tmp_path, objectives.bowl, space, sampler=sampler, rounds=3, trials=20).run()
    assert len(result.trials) == 3 * 20 and (result.trials["status"] == "finished").all()
    assert abs(math.log10(result.best_params["lr"]) + 3) < 0.5
    if sampler == "cmaes":  # CMA-ES models lr and y though exploration trials declare wider lr
        storage = open_storage(str(tmp_path / "runs" / "optuna.journal"))
        for name in round_names(storage, "t"):
            dims = []
            for t in optuna.load_study(study_name=name, storage=storage).trials:
                keys = sorted(k for k in t.system_attrs if k.startswith("cma:optimizer"))
                if keys:  # the optimizer CmaEsSampler stored, pickled in hex chunks
                    hexed = "".join(t.system_attrs[k] for k in keys)
                    dims.append(pickle.loads(bytes.fromhex(hexed)).dim)
            assert dims and set(dims) == {2}, (name, dims)


def test_optimum_outside_the_start_is_reached_by_shifting(tmp_path):
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-9, 10.0)))
    result = make(
        tmp_path,
        objectives.far_bowl,
        space,
        rounds=5,
        trials=20,
        stop=StopPolicy(when_unchanged=False),
    ).run()
    reasons = [r.changes["lr"].reason for r in result.rounds[1:]]
    assert {"shifted", "extended"} & set(reasons)
    assert result.rounds[-1].space["lr"].contains(1e-1)
    assert result.best_params["lr"] > 1e-2  # better than anything the start range offered


def test_four_workers_record_exactly_the_budget(tmp_path):
    study = make(
        tmp_path,
        objectives.quick,
        SearchSpace(lr=LogUniform(1e-6, 1e-2)),
        rounds=1,
        trials=200,
        workers=4,
    )
    result = study.run()
    frame = result.trials
    assert len(frame) == 200
    assert sorted(frame["number"]) == list(range(200))
    assert (frame["state"] == "COMPLETE").all()
    storage = open_storage(study.storage)
    trials = optuna.load_study(study_name=round_names(storage, "t")[0], storage=storage).trials
    assert len(trials) == 200


def test_trials_are_reproducible_whatever_the_scheduling(tmp_path):
    """The random sampler: a trial's parameters are a function of (seed, round, number). (A TPE
    draw also depends on which trials had finished: reproducible with one worker only,
    tests/hpo/test_guided.py.)"""
    kw = {"rounds": 2, "trials": 12, "seed": 7, "sampler": "random"}
    a = make(tmp_path / "a", objectives.quick, workers=2, **kw).run()
    b = make(tmp_path / "b", objectives.quick, workers=1, **kw).run()
    cols = ["round", "number", "params_lr", "params_y", "value", "seed"]
    pa = a.trials[cols].sort_values(["round", "number"]).reset_index(drop=True)
    pb = b.trials[cols].sort_values(["round", "number"]).reset_index(drop=True)
    assert pa.equals(pb)


def test_every_trial_failing_stops_with_a_clear_message(tmp_path):
    study = make(tmp_path, objectives.always_fails, rounds=3, trials=50, max_failures=4)
    with pytest.raises(StudyError, match="no trial of round 1 finished.*RuntimeError: objective"):
        study.run()
    storage = open_storage(study.storage)
    trials = optuna.load_study(study_name="t/round-1", storage=storage).trials
    ran = [t for t in trials if t.state.name != "WAITING"]
    assert 4 <= len(ran) < 50  # stopped instead of running the whole budget
    assert all(t.state.name == "FAIL" for t in ran)
    assert "objective bug" in trials[0].user_attrs["hpo.traceback"]


def test_diverged_trials_are_recorded_and_never_scored(tmp_path):
    space = SearchSpace(lr=LogUniform(1e-3, 1.0))
    result = make(tmp_path, objectives.diverges_when_large, space, rounds=2, trials=20).run()
    frame = result.trials
    diverged = frame[frame["status"] == "diverged"]
    assert len(diverged) > 0 and diverged["value"].isna().all()
    assert (diverged["params_lr"] >= 0.1).all()
    assert (diverged["state"] == "PRUNED").all()
    assert diverged["reason"].str.contains("nan").all()
    assert Counter(frame["round"]) == {1: 20, 2: 20}  # diverged trials count as finished
    assert result.best_params["lr"] < 0.1


def test_a_study_stopped_after_round_one_resumes_without_rerunning(tmp_path):
    log = tmp_path / "calls.log"
    objective = objectives.Logged(log)
    make(tmp_path, objective, rounds=1, trials=10).run()
    # the same study, asked for three rounds, picks up after its first round
    resumed = make(
        tmp_path, objective, rounds=3, trials=10, stop=StopPolicy(when_unchanged=False)
    ).run(resume=True)
    assert len(resumed.trials) == 30 and (resumed.trials["status"] == "finished").all()
    calls = Counter(tuple(line.split()[:2]) for line in log.read_text().splitlines())
    assert len(calls) == 30 and max(calls.values()) == 1


def test_run_refuses_an_existing_name_and_resume_an_unknown_one(tmp_path):
    make(tmp_path, objectives.quick, rounds=1, trials=3, workers=1).run()
    with pytest.raises(StudyError, match="already exists"):
        make(tmp_path, objectives.quick, rounds=1, trials=3, workers=1).run()
    with pytest.raises(StudyError, match="no study named"):
        Study(
            "other",
            SearchSpace(lr=LogUniform(1e-3, 1.0)),
            objectives.quick,
            out=tmp_path / "runs",
            tracking=False,
        ).run(resume=True)


@pytest.mark.parametrize(
    ("field", "kw", "message"),
    [
        ("rounds", {"rounds": 0}, "rounds: must be an integer >= 1"),
        ("trials", {"trials": 2.5}, "trials: must be an integer >= 1"),
        ("workers", {"workers": -1}, "workers: must be an integer >= 1"),
        ("sampler", {"sampler": "anneal"}, "sampler: must be one of random, tpe, qmc, cmaes, grid"),
        ("pruner", {"pruner": "always"}, "pruner: must be one of none, median, hyperband"),
        ("direction", {"direction": "up"}, "direction: must be 'maximize' or 'minimize'"),
        ("storage", {"storage": "redis://x"}, "storage: unsupported scheme 'redis'"),
        ("seed", {"seed": -3}, "seed: must be an integer >= 0"),
    ],
)
def test_bad_settings_name_the_field_and_write_nothing(tmp_path, field, kw, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path, objectives.quick, **kw)
    assert list(tmp_path.iterdir()) == []


def test_cmaes_without_its_package_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"^sampler: 'cmaes' needs the cmaes package \(pip"):
        make(tmp_path, objectives.quick, sampler="cmaes")
    assert list(tmp_path.iterdir()) == []


def test_with_options_can_reset_an_option_to_none(tmp_path):
    study = make(tmp_path, objectives.quick, pruner="median", experiment="x")
    reset = study.with_options(pruner=None, experiment=None)
    assert reset.pruner is None and reset.experiment == "t"  # back to the default: the name
    assert study.pruner == "median"  # the original is unchanged


def test_an_unknown_option_is_named_with_the_accepted_ones(tmp_path):
    with pytest.raises(ValueError, match=r"^prunr: not a Study option \(accepted: .*pruner"):
        make(tmp_path, objectives.quick, prunr="median")


def test_a_share_of_every_round_explores_the_hard_limits(tmp_path):
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-9, 10.0)), y=Uniform(0.0, 1.0))
    policy = NarrowingPolicy(explore=0.25, survey=0.0)  # round 1 on the starting ranges
    result = make(tmp_path, objectives.far_bowl, space, rounds=2, trials=12, narrowing=policy).run()
    t = result.trials
    for k in (1, 2):
        assert t[(t["round"] == k)]["explore"].sum() == 3  # floor(12 x 0.25), by trial number
    explored = t[t["explore"]]
    assert explored["params_lr"].between(1e-9, 10.0).all()
    assert (explored["params_lr"] > 1e-2).any()  # outside the starting range
    inside = t[(t["round"] == 1) & ~t["explore"]]
    assert inside["params_lr"].between(1e-6, 1e-2).all()
    assert result.best_params["lr"] > 1e-2  # found past the misleading start


def test_only_the_round_before_the_last_may_refine_a_clear_lead_instead_of_widening(
    tmp_path, monkeypatch
):
    """The driver tells narrowing ``final`` (hpo.narrowing: no widening) after the round before the
    last alone, and then only when the study's best score so far stands clear of its noise."""
    from hpo import driver
    from hpo.evidence import clear_lead

    seen, real = [], driver.narrow
    monkeypatch.setattr(
        driver, "narrow", lambda *a, **kw: seen.append(kw["final"]) or real(*a, **kw)
    )
    result = make(tmp_path, objectives.needle, rounds=3, trials=12, workers=1).run()
    t = result.trials
    done = t[(t["round"] <= 2) & (t["status"] == "finished")]
    assert seen == [False, clear_lead(done["value"].to_numpy())] and seen[1], seen
    seen.clear()
    result = make(tmp_path / "b", objectives.bowl, rounds=3, trials=12, workers=1).run()
    t = result.trials
    done = t[(t["round"] <= 2) & (t["status"] == "finished")]
    assert seen == [False, clear_lead(done["value"].to_numpy())] and not seen[1], seen


def test_a_survey_draws_round_one_from_the_hard_limits_and_narrows_from_the_start(tmp_path):
    """The default (survey=1.0): every trial of round 1 is an exploration trial over the hard
    limits; round 2 samples the starting ranges, stretched to keep the best trial, with its
    exploration share. A one-round study has no survey: its one round is the search."""
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2, limits=(1e-9, 10.0)), y=Uniform(0.0, 1.0))
    result = make(tmp_path, objectives.far_bowl, space, rounds=2, trials=12).run()
    t = result.trials
    first, second = t[t["round"] == 1], t[t["round"] == 2]
    assert first["explore"].all() and second["explore"].sum() == 2  # floor(12 x 0.2)
    assert first["params_lr"].between(1e-9, 10.0).all()
    assert (~first["params_lr"].between(1e-6, 1e-2)).sum() >= 6  # 6 of 10 decades lie outside
    kept = result.rounds[1]
    assert kept.space["lr"].low == 1e-6 and kept.space["y"] == space["y"]  # nothing narrowed
    assert kept.space["lr"].contains(first.loc[first["value"].idxmax(), "params_lr"])
    assert result.best_params["lr"] > 1e-2
    off = make(tmp_path / "off", objectives.far_bowl, space, rounds=1, trials=12).run().trials
    assert off["explore"].sum() == 2 and off[~off["explore"]]["params_lr"].between(1e-6, 1e-2).all()


def test_a_study_that_ends_after_its_survey_writes_its_figures_without_a_warning(tmp_path):
    """Round 1 (a survey) holds exploration trials only, whose markers carry no legend label:
    matplotlib's "No artists with labels" UserWarning reached stderr at the study's end."""
    stop = StopPolicy(when_unchanged=False, target=-1e9)  # the first trial reaches it
    study = make(
        tmp_path, objectives.bowl, rounds=2, trials=6, seed=1, workers=1, stop=stop, sampler="tpe"
    )  # the default: its round 1 is a survey
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = study.run()
    assert result.status.startswith("stopped: target")
    scored = result.trials[result.trials["status"] == "finished"]
    assert len(scored) >= 1 and scored["explore"].all()  # survey trials alone: no round label
    assert (tmp_path / "runs" / "t" / "scores.png").stat().st_size > 0


@pytest.mark.parametrize("seed", [2, 13, 16])
def test_a_survey_finds_a_narrow_peak_past_a_plateau_that_fills_the_start(tmp_path, seed):
    """The start's own trials all sit on a 0.7 plateau (its best inside the start: no edge to
    climb), the maximum is a narrow peak a decade above it. Over seeds 0-19, 16 studies reach
    the peak with the default (survey=1.0), 14 with survey=0.0; these are three seeds on which
    survey=0.0 ends on the plateau (0.70) and the default reaches the peak."""
    space = SearchSpace(lr=LogUniform(1e-4, 1e-1, limits=(1e-7, 10.0)), y=Uniform(0.0, 1.0))
    kw = {"rounds": 4, "trials": 20, "sampler": "tpe", "workers": 1, "seed": seed}
    result = make(tmp_path, objectives.plateau, space, **kw).run()  # the default: survey=1.0
    assert result.best_value > 0.95 and 0.5 < result.best_params["lr"] < 2.0
    kw["narrowing"] = NarrowingPolicy(survey=0.0)  # round 1 on the start: ends on the plateau
    result = make(tmp_path / "start", objectives.plateau, space, **kw).run()
    assert result.best_value < 0.75


@pytest.mark.parametrize(("sampler", "workers"), [("random", 2), ("tpe", 1)])
def test_exploration_draws_a_choice_narrowing_dropped(tmp_path, sampler, workers):
    """Round 1 drops 'b' (clearly worse); later rounds' own trials keep to 'a', while their
    exploration trials still draw 'b' from the starting choices (each round study declares them
    all: Optuna refuses a categorical whose choices change within a study)."""
    space = SearchSpace(kind=Categorical(("a", "b")), lr=LogUniform(1e-6, 1e-2))
    kw = {"rounds": 3, "trials": 30, "sampler": sampler, "workers": workers}
    kw["narrowing"] = NarrowingPolicy(survey=0.0)  # round 1's own trials, not a survey, drop 'b'
    study = make(tmp_path, objectives.kinds, space, **kw)
    result = study.run()
    assert result.rounds[1].space["kind"].choices == ("a",)
    storage = open_storage(study.storage)
    for name in round_names(storage, "t"):  # every trial of every round declares both choices
        for trial in optuna.load_study(study_name=name, storage=storage).trials:
            assert trial.distributions["kind"].choices == ("a", "b")
    t = result.trials
    assert (t["status"] == "finished").all(), t["reason"].dropna().unique()
    later = t[t["round"] > 1]
    assert (later[~later["explore"]]["params_kind"] == "a").all()
    if sampler == "random":  # TPE's exploration learns that 'b' scores low, and may skip it
        assert (later[later["explore"]]["params_kind"] == "b").any()
