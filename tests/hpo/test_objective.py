"""ModelObjective with the real network: curves, divergence, and the test split kept home."""

from __future__ import annotations

import math
import pickle
from functools import partial

import pytest

from hpo.objective import Data, Diverged, ModelObjective, TrialContext
from models import MLP, load, split


@pytest.fixture(scope="module")
def data():
    ds = load("digits")
    X_tr, y_tr, X_val, y_val = split(ds.X_train[:400], ds.y_train[:400], val=0.25, seed=0)
    return Data(X_tr, y_tr, X_val, y_val, ds.X_test, ds.y_test, name="digits")


def test_a_trial_reports_every_epoch_and_scores_the_last(data):
    objective = ModelObjective(partial(MLP, hidden=(32,)), data, epochs=4)
    seen = []
    ctx = TrialContext(number=0, round=1, seed=3, _report=lambda s, v: seen.append((s, v)) or False)
    value = objective({"lr": 0.1}, ctx)
    assert [s for s, _ in seen] == [1, 2, 3, 4]
    assert value == seen[-1][1] == ctx.curves["val_acc"][-1]
    assert set(ctx.curves) >= {"train_loss", "train_acc", "val_loss", "val_acc"}
    assert all(len(c) == 4 for c in ctx.curves.values())
    again = TrialContext(number=0, round=1, seed=3)
    assert objective({"lr": 0.1}, again) == value  # the trial's seed fixes the result


def test_divergence_is_raised_with_its_reason_and_nan_never_reaches_the_pruner(data):
    objective = ModelObjective(partial(MLP, hidden=(50,) * 4), data, epochs=3)
    seen = []
    ctx = TrialContext(number=0, round=1, seed=0, _report=lambda s, v: seen.append(v) or False)
    with pytest.raises(Diverged, match="loss is nan at epoch"):
        objective({"lr": 10.0}, ctx)  # a learning rate of 10 diverges
    assert all(math.isfinite(v) for v in seen)
    before = len(seen)
    assert ctx.report(5, {"val_acc": math.nan, "train_loss": math.inf}) is False
    assert len(seen) == before  # a NaN score is never reported to the pruner
    assert ctx.curves["val_acc"][4] is None and ctx.curves["train_loss"][4] is None


def test_workers_receive_the_objective_without_the_test_split(data):
    objective = ModelObjective(partial(MLP, hidden=(32,)), data, epochs=2)
    copy = pickle.loads(pickle.dumps(objective))
    assert copy.data.X_test is None and copy.data.y_test is None
    assert copy.data.X_train.shape == data.X_train.shape
    assert objective.data.X_test is data.X_test  # the driver keeps it for the final score
    assert 0 <= objective.final({"lr": 0.1}, seed=0)["test_score"] <= 1
