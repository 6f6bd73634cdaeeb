"""6-3: batch normalization against none, over 16 fixed initial weight scales (a grid study).

The textbook's "when the initial value is badly set" experiment: the first 1000 training images,
784-[100 x 5]-10 with ReLU, SGD lr 0.01, batch 100, 20 epochs, the SAME weight std for every
layer, std in logspace(0, -4, 16), with and without BN; training accuracy per epoch (measured on
all 1000 images in inference mode), one panel per std. Run it: `hpo run studies/six_three.py`
(grid size 32: one trial per (std, BN) pair), or `make reproduce` for the figure as well.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from hpo import Categorical, Data, ModelObjective, SearchSpace, Study
from models import MLP, Dataset
from studies.datasets import pick_dataset

N_IMAGES = 1000  # the textbook's first 1000 training images
EPOCHS = 20
STDS = tuple(float(s) for s in np.logspace(0, -4, 16))  # 1.0 ... 1e-4, as in the textbook

net = partial(MLP, hidden=(100,) * 5, optimizer="sgd", lr=0.01, batch_size=100)

space = SearchSpace(
    init=Categorical(STDS),  # MLP's init: a number is the weight std of every layer
    batchnorm=Categorical((False, True)),
)


def build(dataset: Dataset, *, epochs: int = EPOCHS, n_images: int = N_IMAGES) -> Study:
    """The 6-3 grid study on ``dataset``; the score is training accuracy after the last epoch."""
    X, y = dataset.X_train[:n_images], dataset.y_train[:n_images]
    # Data needs a validation split; the next n_images training images serve (never used to
    # choose anything: the grid runs every point).
    X_val = dataset.X_train[n_images : 2 * n_images]
    y_val = dataset.y_train[n_images : 2 * n_images]
    data = Data(X, y, X_val, y_val, name=dataset.name)
    return Study(
        "six-three",
        space,
        ModelObjective(net, data, epochs=epochs, metric="train_acc", eval_train=True),
        sampler="grid",
        rounds=1,
        trials=len(STDS) * 2,
        seed=0,
        figures=figures,  # the 4 x 4 grid, written next to the report by `hpo run`
        fixed={
            "hidden": "100x5",
            "optimizer": "sgd",
            "lr": 0.01,
            "batch_size": 100,
            "epochs": epochs,
            "n_train": len(X),
            "data": dataset.name,
        },
    )


def figures(result, curves, out_dir: str | Path) -> list[Path]:
    """The textbook's 4 x 4 grid: training accuracy per epoch, BN solid, no BN dashed."""
    from hpo.figures import panel_curves

    path = Path(out_dir) / "six_three_bn_grid.png"
    return [
        panel_curves(
            result.trials,
            curves,
            panel="init",
            line="batchnorm",
            metric="train_acc",
            path=path,
            panel_title="std={:.3g}",
            line_label={True: "BN", False: "no BN"},
            title="6-3: training accuracy per epoch, BN (solid) vs no BN (dashed)",
        )
    ]


study = build(pick_dataset())
