"""6-4: overfitting on 300 training images, then weight decay 0.1, then dropout (a grid study).

The textbook's setting: the first 300 training images, the 7-layer net 784-[100 x 6]-10 with ReLU
and He init, SGD lr 0.01, batch 100, 200 epochs; accuracy on those 300 images (inference mode)
and on the whole test set after every epoch. Variants: none, weight decay lambda = 0.1, and
dropout 0.2 in both forms (the textbook's, which scales at test time, and the now-common inverted
one, which scales during training). Each variant runs with 3 seeds. This is a measurement, not a
tuning study: nothing is chosen on the test curves. Run it: `hpo run studies/six_four.py`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from hpo import Categorical, Diverged, SearchSpace, Study
from models import MLP, Dataset
from studies.datasets import pick_dataset

N_IMAGES = 300
EPOCHS = 200
VARIANTS = {  # settings of each variant, on top of the plain net
    "none": {},
    "weight_decay": {"weight_decay": 0.1},
    "dropout_textbook": {"dropout": 0.2, "dropout_mode": "textbook"},
    "dropout_inverted": {"dropout": 0.2, "dropout_mode": "inverted"},
}
REPLICATES = (0, 1, 2)  # a replicate only changes the trial number, hence the trial's seed

net = partial(MLP, hidden=(100,) * 6, init="he", optimizer="sgd", lr=0.01, batch_size=100)

space = SearchSpace(variant=Categorical(tuple(VARIANTS)), replicate=Categorical(REPLICATES))


class TrainTestCurves:
    """Train one variant; report train and test accuracy (and loss) per epoch as curves.

    Returns the final test accuracy. Defined here, not in hpo: the test split is used for every
    epoch's measurement, which a tuning objective must never do.
    """

    metric = "test_acc"
    direction = "maximize"

    def __init__(self, factory, X, y, X_test, y_test, *, epochs: int):
        self.factory, self.epochs = factory, epochs
        self.X, self.y, self.X_test, self.y_test = X, y, X_test, y_test

    def __call__(self, params, ctx) -> float:
        model = self.factory(**VARIANTS[params["variant"]], random_state=ctx.seed)

        def on_epoch(epoch: int, m: dict[str, float]) -> bool:
            ctx.report(
                epoch,
                {
                    "train_acc": m["train_acc"],
                    "train_loss": m["train_loss"],
                    "test_acc": m["val_acc"],
                    "test_loss": m["val_loss"],
                },
            )
            return False

        model.fit(
            self.X,
            self.y,
            X_val=self.X_test,
            y_val=self.y_test,
            epochs=self.epochs,
            on_epoch=on_epoch,
            eval_train=True,  # training accuracy in inference mode, as the textbook measures it
        )
        if model.diverged_:
            raise Diverged(model.divergence_reason_ or "loss is not finite")
        return float(model.history_["val_acc"][-1])


def build(dataset: Dataset, *, epochs: int = EPOCHS, n_images: int = N_IMAGES) -> Study:
    """The 6-4 grid study on ``dataset``: every variant x replicate, one trial each."""
    objective = TrainTestCurves(
        net,
        dataset.X_train[:n_images],
        dataset.y_train[:n_images],
        dataset.X_test,
        dataset.y_test,
        epochs=epochs,
    )
    return Study(
        "six-four",
        space,
        objective,
        sampler="grid",
        rounds=1,
        trials=len(VARIANTS) * len(REPLICATES),
        seed=0,
        figures=figures,  # train and test curves of every variant, written by `hpo run`
        fixed={
            "hidden": "100x6",
            "optimizer": "sgd",
            "lr": 0.01,
            "batch_size": 100,
            "epochs": epochs,
            "n_train": n_images,
            "n_test": len(dataset.X_test),
            "data": dataset.name,
        },
    )


def gaps(result, curves) -> dict[str, dict[str, float]]:
    """Per variant, the mean over replicates of the final train/test accuracy and their gap."""
    out: dict[str, dict[str, list[float]]] = {}
    for _, row in result.trials.iterrows():
        c = curves.get((int(row["round"]), int(row["number"])), {})
        if not c.get("test_acc"):
            continue
        d = out.setdefault(row["params_variant"], {"train": [], "test": [], "gap": []})
        d["train"].append(c["train_acc"][-1])
        d["test"].append(c["test_acc"][-1])
        d["gap"].append(c["train_acc"][-1] - c["test_acc"][-1])
    return {
        v: {k: float(np.mean(xs)) for k, xs in d.items()} | {"n": len(d["gap"])}
        for v, d in out.items()
    }


def figures(result, curves, out_dir: str | Path) -> list[Path]:
    """One figure: train (solid) and test (dashed) accuracy per epoch for each variant."""
    from hpo.figures import variant_curves

    return [
        variant_curves(
            result.trials,
            curves,
            group="variant",
            metrics=("train_acc", "test_acc"),
            path=Path(out_dir) / "six_four_overfitting.png",
            title="6-4: train (solid) and test (dashed) accuracy, 300 training images",
        )
    ]


study = build(pick_dataset())
