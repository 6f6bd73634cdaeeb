"""A small study for the end-to-end tests: 2 rounds of 4 trials, three-epoch curves per trial."""

from __future__ import annotations

import math

from hpo import LogUniform, SearchSpace, StopPolicy, Study, Uniform


def objective(params, ctx):
    """Maximum 0 at lr = 1e-3, y = 0.3; reports made-up val_acc and train_loss curves."""
    for epoch in range(1, 4):
        ctx.report(epoch, {"val_acc": params["y"] * epoch / 3, "train_loss": 1.0 / epoch})
    return -((math.log10(params["lr"]) + 3) ** 2) - (params["y"] - 0.3) ** 2


study = Study(
    "e2e",
    SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0)),
    objective,
    rounds=2,
    trials=4,
    workers=2,
    stop=StopPolicy(when_unchanged=False),  # both rounds run, whatever the narrowing says
)
