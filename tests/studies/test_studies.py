"""The seed's study files load and build the expected studies; a tiny grid runs through the
engine with one trial per grid point, each with its per-epoch curves."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from hpo import Categorical, Data, LogUniform, ModelObjective, SearchSpace, Study
from hpo.loader import load_study_file
from hpo.report import curves_of
from hpo.storage import open_storage
from models import MLP, load


@pytest.fixture(autouse=True)
def bundled(monkeypatch):
    monkeypatch.setenv("HPO_DATASET", "bundled")  # fast: no full Fashion-MNIST at import


def test_six_three_is_the_16_x_2_grid():
    study = load_study_file("studies/six_three.py")
    assert study.sampler == "grid" and study.rounds == 1 and study.trials == 32
    stds = study.space["init"].choices
    assert len(stds) == 16 and stds[0] == pytest.approx(1.0) and stds[-1] == pytest.approx(1e-4)
    assert study.space["batchnorm"].choices == (False, True)
    assert study.objective.metric == "train_acc" and study.objective.eval_train


def test_six_four_grid_has_every_variant_and_keeps_test_curves_out_of_tuning():
    study = load_study_file("studies/six_four.py")
    assert study.sampler == "grid" and study.rounds == 1
    assert set(study.space["variant"].choices) == {
        "none",
        "weight_decay",
        "dropout_textbook",
        "dropout_inverted",
    }
    assert study.trials == 4 * len(study.space["replicate"].choices)
    assert len(study.objective.X) == 300


def test_six_five_tunes_lr_and_weight_decay_on_a_validation_split():
    study = load_study_file("studies/six_five.py")
    assert study.sampler == "random" and set(study.space) == {"lr", "weight_decay"}
    assert study.objective.metric == "val_acc"


def test_grid_needs_categorical_params_and_one_round():
    space = SearchSpace(lr=LogUniform(1e-3, 1e-1))
    with pytest.raises(ValueError, match="Categorical, got lr: LogUniform"):
        Study("g", space, lambda p: 0.0, sampler="grid", rounds=1, trials=1, tracking=False)
    grid = SearchSpace(a=Categorical((1, 2)))
    with pytest.raises(ValueError, match="rounds=1 and trials <= the grid size 2"):
        Study("g", grid, lambda p: 0.0, sampler="grid", rounds=2, trials=2, tracking=False)


def test_a_tiny_grid_runs_one_trial_per_point_with_curves(tmp_path):
    d = load("digits")
    data = Data(d.X_train[:200], d.y_train[:200], d.X_train[200:300], d.y_train[200:300])
    space = SearchSpace(init=Categorical((1.0, 0.01)), batchnorm=Categorical((False, True)))
    objective = ModelObjective(
        partial(MLP, hidden=(20, 20), lr=0.01), data, epochs=2, metric="train_acc", eval_train=True
    )
    study = Study(
        "grid",
        space,
        objective,
        sampler="grid",
        rounds=1,
        trials=4,
        workers=2,
        out=tmp_path,
        tracking=False,
    )
    result = study.run()
    points = set(zip(result.trials["params_init"], result.trials["params_batchnorm"], strict=True))
    assert len(result.trials) == 4 and points == {(1.0, False), (1.0, True), (0.01, False),
                                                    (0.01, True)}  # fmt: skip
    curves = curves_of(open_storage(study.storage), "grid")
    done = result.trials[result.trials["status"] == "finished"]
    assert len(done) >= 3  # std 1.0 without BN may diverge; its curve stops there
    for _, row in done.iterrows():
        c = curves[(1, int(row["number"]))]
        assert len(c["train_acc"]) == 2 and c["train_acc"][-1] == pytest.approx(row["value"])


def test_six_five_remembers_its_data_so_resume_rebuilds_the_same_objective(monkeypatch):
    monkeypatch.delenv("HPO_DATASET", raising=False)
    from hpo.loader import load_study_file

    path = Path(__file__).resolve().parents[2] / "studies" / "six_five.py"
    before = os.environ.get("HPO_DATASET")
    default = load_study_file(path)
    assert default.dataset == "bundled" and default.config()["dataset"] == "bundled"
    other = load_study_file(path, dataset="digits")  # what `hpo resume` passes
    assert other.dataset == "digits" and other.fixed["data"] == "digits"
    assert other.objective.data.X_train.shape[1] == 64  # 8 x 8 digits, not 28 x 28 images
    assert os.environ.get("HPO_DATASET") == before  # restored after loading


def test_reproduce_prints_one_line_per_round_and_names_the_confirmation(capsys):
    from types import SimpleNamespace

    from studies.reproduce import progress

    def event(name, k, confirm=False):
        return SimpleNamespace(
            event=name, round=k, rounds=2, done=3, best=0.5, elapsed=1.0, confirm=confirm
        )

    for e in (event("round_end", 2), event("round_end", 3, True), event("final", 3, True)):
        progress(e)
    assert capsys.readouterr().out.splitlines() == [
        "  round 2/2: 3 done, best 0.5000, 1 s",
        "  confirmation: 3 done, best 0.5000, 1 s",
    ]
