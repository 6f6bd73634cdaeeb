"""Budgets and targets: a study stops cleanly on its wall time or its target score, says why,
still retrains its best, and a resumed study goes on counting its time."""

from __future__ import annotations

import pytest

from hpo import LogUniform, SearchSpace, StopPolicy, Study, Uniform
from hpo.budget import format_duration, parse_duration
from hpo.records import ATTR
from hpo.storage import open_storage, parent_attrs, trials_frame
from tests.hpo import objectives

WORK = 0.3  # seconds per trial


def make(tmp_path, objective, **kw):
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0))
    kw.setdefault("workers", 2)
    return Study("b", space, objective, out=tmp_path / "runs", tracking=False, **kw)


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [("10m", 600, "10m"), ("90s", 90, "1m30s"), ("1h30m", 5400, "1h30m"), ("2.5", 2.5, "2.5s")],
)
def test_durations_parse_and_print(text, seconds, shown):
    assert parse_duration(text) == seconds
    assert format_duration(parse_duration(text)) == shown


@pytest.mark.parametrize("bad", ["", "10x", "m", "-5s", "0", "1h-2m", "inf"])
def test_a_bad_duration_is_one_line(bad):
    with pytest.raises(ValueError, match=r"^stop.time_budget: must be a duration > 0 such as"):
        StopPolicy(time_budget=bad)


def test_a_bad_target_names_the_field():
    with pytest.raises(ValueError, match=r"^stop.target: must be a finite number"):
        StopPolicy(target="high")


def test_a_time_budget_stops_within_one_trial_of_the_limit(tmp_path):
    budget = 2.0
    study = make(
        tmp_path, objectives.Slow(WORK), rounds=3, trials=60, stop=StopPolicy(time_budget=budget)
    )
    result = study.run()
    assert result.status == "stopped: time budget 2s reached"
    elapsed = parent_attrs(open_storage(study.storage), "b")[ATTR["elapsed"]]
    assert budget <= elapsed <= budget + WORK + 1.0  # the trials in flight finished, no more
    t = result.trials
    finished = t[t["status"] == "finished"]
    assert 0 < len(finished) < 60
    never = t[t["status"] == "interrupted"]
    assert len(finished) + len(never) == 60  # the rest of the budget: never started
    assert never["reason"].str.startswith("not started: time budget 2s reached").all()
    assert never["started"].isna().all()
    assert result.test_score == pytest.approx(result.best_value)  # the best is still retrained


def test_a_target_stops_the_study_once_a_trial_reaches_it(tmp_path):
    result = make(
        tmp_path, objectives.quick, rounds=3, trials=200, seed=1, stop=StopPolicy(target=-0.05)
    ).run()
    assert result.status == "stopped: target -0.05 reached"
    assert result.best_value >= -0.05
    assert len(result.trials[result.trials["status"] == "finished"]) < 200
    assert set(result.trials["round"]) == {1}


def test_a_resumed_study_goes_on_counting_its_budget(tmp_path):
    # no confirmation round: the first run ends after its one search round, unfinished
    make(tmp_path, objectives.Slow(WORK), rounds=1, trials=4, confirm=0).run()  # about 0.6 s
    resumed = make(
        tmp_path,
        objectives.Slow(WORK),
        rounds=3,
        trials=4,
        confirm=0,
        stop=StopPolicy(when_unchanged=False, time_budget=0.5),
    ).run(resume=True)
    assert resumed.status == "stopped: time budget 0.5s reached"
    assert len(resumed.trials) == 4  # no second round: the first run had spent the budget


def test_the_command_line_takes_a_budget_and_a_target_and_resume_keeps_them(tmp_path, capsys):
    from hpo.cli import main

    study_file = tmp_path / "s.py"
    study_file.write_text(
        "from hpo import LogUniform, SearchSpace, Study\n"
        "from tests.hpo import objectives\n"
        "study = Study('cli', SearchSpace(lr=LogUniform(1e-6, 1e-2)), objectives.quick,\n"
        "              rounds=2, trials=50, workers=1, tracking=False)\n"
    )
    out = str(tmp_path / "runs")
    assert (
        main(["run", str(study_file), "--out", out, "--target", "-0.1", "--time-budget", "1h"]) == 0
    )
    printed = capsys.readouterr().out
    assert "study cli: stopped: target -0.1 reached" in printed
    config = parent_attrs(open_storage(f"{out}/optuna.journal"), "cli")[ATTR["config"]]
    assert config["stop"]["time_budget"] == 3600 and config["stop"]["target"] == -0.1
    before = len(trials_frame(open_storage(f"{out}/optuna.journal"), "cli"))
    assert main(["resume", "cli", "--out", out, "--no-tracking"]) == 0
    assert "stopped: target -0.1 reached" in capsys.readouterr().out  # kept: no new round
    after = parent_attrs(open_storage(f"{out}/optuna.journal"), "cli")
    assert after[ATTR["status"]] == "stopped: target -0.1 reached"
    assert len(trials_frame(open_storage(f"{out}/optuna.journal"), "cli")) == before
    assert main(["run", str(study_file), "--time-budget", "10x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hpo run: argument --time-budget: must be a duration > 0")
    assert "\n" not in err
