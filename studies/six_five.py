"""6-5: tune the learning rate and weight decay by log-scale random search, narrowing each round.

The textbook's reference run: the first 500 training images, 20% held out for validation, the
784-[100 x 6]-10 net, SGD, batch 100, 50 epochs per trial, lr = 10^U(-6, -2) and
weight decay = 10^U(-8, -4). Here the random search runs in rounds whose ranges narrow (or shift
past an edge the best trials crowd) around the best trials. Run it: `make study` or
`hpo run studies/six_five.py` (bundled data; `HPO_DATASET=fashion-mnist` for the full set).
"""

from functools import partial

from hpo import Data, LogUniform, ModelObjective, NarrowingPolicy, SearchSpace, Study
from models import MLP, Dataset, split
from studies.datasets import pick_dataset

N_IMAGES = 500  # the textbook tunes on the first 500 training images only
EPOCHS = 50  # "short" training: enough to rank configurations, far from convergence
# A choice you can trust (docs/results.md, section trust): the textbook scores the last epoch of
# one seed on 100 images, and the search then picks the luckiest draw; retrains: the final
# retrain with one seed, or the mean of 3
TEXTBOOK = dict(score="last", folds=None, trials=40, confirm=0, confirm_repeats=3, retrains=1)
TRUST = dict(score="mean_last:5", folds=5, trials=36, confirm=3, confirm_repeats=5, retrains=3)

net = partial(MLP, hidden=(100,) * 6, optimizer="sgd", batch_size=100)

space = SearchSpace(
    # hard limits: how far narrowing may move a range when the best trials crowd its edge
    lr=LogUniform(1e-6, 1e-2, limits=(1e-8, 10.0)),
    weight_decay=LogUniform(1e-8, 1e-4, limits=(1e-10, 1.0)),
)


def build(dataset: Dataset, options: dict | None = None) -> Study:
    """The 6-5 study on ``dataset``'s first N_IMAGES training images (400 train / 100 val);
    ``options``: TRUST (the default) or TEXTBOOK."""
    o = {**TRUST, **(options or {})}
    X_train, y_train, X_val, y_val = split(
        dataset.X_train[:N_IMAGES], dataset.y_train[:N_IMAGES], val=0.2, seed=0
    )
    data = Data(X_train, y_train, X_val, y_val, dataset.X_test, dataset.y_test, name=dataset.name)
    return Study(
        "six-five",
        space,
        # validation accuracy, the mean of the last 5 of EPOCHS epochs; the confirmation round
        # validates on fresh folds of the 500 images
        ModelObjective(net, data, epochs=EPOCHS, score=o["score"], folds=o["folds"]),
        sampler="random",  # the textbook's method; "tpe", "qmc", "cmaes" also work
        narrowing=NarrowingPolicy(survey=0.0),  # round 1 samples the textbook's ranges
        rounds=4,
        trials=o["trials"],  # per round (the textbook runs 100 once)
        confirm=o["confirm"],  # the top 3 configurations, each on all 5 folds with fresh seeds
        confirm_repeats=o["confirm_repeats"],
        retrains=o["retrains"],  # the test score: the mean of 3 retrains with their own seeds
        seed=0,
        fixed={
            "hidden": "100x6",
            "optimizer": "sgd",
            "batch_size": 100,
            "epochs": EPOCHS,
            "n_train": len(X_train),
            "n_val": len(X_val),
            "data": dataset.name,
        },
    )


# the bundled 3000/1000 Fashion-MNIST images shipped with the package, unless HPO_DATASET is set
study = build(pick_dataset(default="bundled"))
