"""Warm start: a study that begins from a finished one of the same storage reaches a good score
sooner than a cold start, with its own budget intact."""

from __future__ import annotations

import pytest

from hpo import LogUniform, NarrowingPolicy, SearchSpace, Study, Uniform
from hpo.errors import InputError
from hpo.records import ATTR
from hpo.storage import open_storage, parent_attrs
from tests.hpo import objectives

SPACE = SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0))
GOOD = -0.02  # bowl's score within about 0.14 of its optimum (lr = 1e-3, y = 0.3)


def make(tmp_path, name, space=SPACE, objective=objectives.bowl, **kw):
    """Random sampling inside the rounds: the same trials whatever the scheduling (a TPE draw with
    2 workers depends on the order trials finish), so a warm start is compared like for like."""
    kw.setdefault("workers", 2)
    kw.setdefault("sampler", "random")
    return Study(name, space, objective, out=tmp_path / "runs", tracking=False, **kw)


def trials_to_reach(result, score: float) -> int:
    """How many trials, in the order they were asked (round, number), until one scores ``score``."""
    t = result.trials.sort_values(["round", "number"]).reset_index(drop=True)
    hits = t.index[t["value"] >= score]
    return int(hits[0]) + 1 if len(hits) else len(t) + 1


def test_a_warm_start_reaches_a_good_score_in_fewer_trials_than_a_cold_start(tmp_path):
    make(tmp_path, "source", rounds=3, trials=20, seed=1).run()
    warm = make(tmp_path, "warm", rounds=2, trials=20, seed=2, warm_start="source").run()
    cold = make(tmp_path, "cold", rounds=2, trials=20, seed=2).run()
    assert trials_to_reach(warm, GOOD) < trials_to_reach(cold, GOOD)
    # the budget is this study's own: exactly rounds x trials, none imported into its table
    assert len(warm.trials) == 40 and (warm.trials["status"] == "finished").all()
    storage = open_storage(tmp_path / "runs" / "optuna.journal")
    record = parent_attrs(storage, "warm")[ATTR["warm_start"]]
    assert record["source"] == "source" and record["trials"] == 60
    src = parent_attrs(storage, "source")[ATTR["rounds"]][-1]["space"]
    assert warm.rounds[0].space.to_dict() == src  # round 1 starts on the source's final ranges


def test_a_warm_start_samples_the_ranges_it_starts_on_and_does_not_survey(tmp_path):
    """The survey (survey=1.0, the default) draws round 1 of a cold start from the hard limits; a
    warm start begins on a finished study's ranges, and its round 1 samples them (with the
    usual exploration share)."""
    survey = NarrowingPolicy(survey=1.0)
    cold = make(tmp_path, "source", rounds=2, trials=10, seed=1, narrowing=survey).run().trials
    warm = make(tmp_path, "warm", rounds=2, trials=10, warm_start="source", narrowing=survey)
    first = warm.run().trials
    assert cold[cold["round"] == 1]["explore"].all()
    assert first[first["round"] == 1]["explore"].sum() == 2  # 10 x 0.2


def test_added_removed_and_edited_parameters_are_handled(tmp_path):
    make(tmp_path, "source", rounds=2, trials=16, seed=1).run()
    edited = SearchSpace(
        lr=LogUniform(1e-6, 1e-2),  # as in the source: its final range is carried over
        z=Uniform(-1.0, 1.0),  # new: the file's range; imported trials have no value for it
    )  # y removed: its imported column is left out
    result = make(
        tmp_path, "next", edited, objectives.quick, rounds=2, trials=16, warm_start="source"
    ).run()
    storage = open_storage(tmp_path / "runs" / "optuna.journal")
    record = parent_attrs(storage, "next")[ATTR["warm_start"]]
    assert record["carried"] == ["lr"] and record["new"] == ["z"] and record["dropped"] == ["y"]
    first = result.rounds[0].space
    src = parent_attrs(storage, "source")[ATTR["rounds"]][-1]["space"]
    assert first["lr"].to_dict() == src["lr"] and first["z"] == edited["z"]
    assert len(result.rounds) == 2 and "params_y" not in result.trials.columns
    changed = make(
        tmp_path,
        "changed",
        SearchSpace(lr=LogUniform(1e-5, 1e-1), y=Uniform(0.0, 1.0)),  # the file says otherwise
        rounds=1,
        trials=4,
        warm_start="source",
    ).run()
    assert changed.rounds[0].space["lr"] == LogUniform(1e-5, 1e-1)


@pytest.mark.parametrize(
    ("source", "kw", "message"),
    [
        ("nope", {}, "warm_start: no study 'nope' in "),
        ("source", {"direction": "minimize"}, "warm_start: study 'source' is to maximize"),
    ],
)
def test_a_bad_source_is_one_line_and_writes_nothing(tmp_path, source, kw, message):
    make(tmp_path, "source", rounds=1, trials=4).run()
    study = make(tmp_path, "w", rounds=1, trials=4, warm_start=source, **kw)
    with pytest.raises(InputError, match=message) as info:
        study.run()
    assert "\n" not in str(info.value)
    assert not study.exists()


def test_warm_start_must_name_another_study(tmp_path):
    with pytest.raises(ValueError, match="warm_start: must name another study than 'w'"):
        make(tmp_path, "w", warm_start="w")


def test_hpo_run_from_starts_from_a_finished_study(tmp_path, capsys):
    from hpo.cli import main

    study_file = tmp_path / "s.py"
    study_file.write_text(
        "from hpo import LogUniform, SearchSpace, Study, Uniform\n"
        "from tests.hpo import objectives\n"
        "space = SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0))\n"
        "study = Study('s', space, objectives.bowl, rounds=2, trials=10, workers=1)\n"
    )
    out = ["--out", str(tmp_path / "runs"), "--no-tracking"]
    assert main(["run", str(study_file), *out]) == 0
    assert main(["run", str(study_file), "--name", "s2", "--from", "s", *out]) == 0
    storage = open_storage(tmp_path / "runs" / "optuna.journal")
    assert parent_attrs(storage, "s2")[ATTR["warm_start"]]["source"] == "s"
    assert parent_attrs(storage, "s2")[ATTR["config"]]["warm_start"] == "s"
    capsys.readouterr()
    assert main(["run", str(study_file), "--name", "s3", "--from", "nope", *out]) == 2
    assert capsys.readouterr().err.startswith("hpo: warm_start: no study 'nope' in ")


def test_the_mlflow_study_run_links_to_its_source(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    kw = {"tracking_uri": uri, "out": tmp_path / "runs", "workers": 1, "rounds": 2, "trials": 8}
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0))
    Study("src", space, objectives.bowl, **kw).run()
    Study("warm", space, objectives.bowl, warm_start="src", **kw).run()
    client = mlflow.MlflowClient(uri)

    def study_run(name):
        exp = client.get_experiment_by_name(name)
        [run] = client.search_runs([exp.experiment_id], "tags.`hpo.kind` = 'study'")
        return exp, run

    src_exp, src_run = study_run("src")
    _, warm_run = study_run("warm")
    tags = warm_run.data.tags
    assert tags["hpo.warm_start"] == "src"
    assert tags["hpo.warm_start_run"] == src_run.info.run_id
    link = f"#/experiments/{src_exp.experiment_id}/runs/{src_run.info.run_id}"
    assert link in tags["mlflow.note.content"]
