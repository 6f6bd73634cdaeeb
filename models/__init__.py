"""The NumPy network of the project: layers, optimizers, the MLP classifier, data loading."""

from __future__ import annotations

from models import layers, optimizers
from models.datasets import Dataset, find, load
from models.idx import read_idx, write_idx
from models.network import MLP, Net
from models.optimizers import make_optimizer
from models.splits import split, subset
from models.training import TrainResult, train

__all__ = [
    "MLP",
    "Dataset",
    "Net",
    "TrainResult",
    "find",
    "layers",
    "load",
    "make_optimizer",
    "optimizers",
    "read_idx",
    "split",
    "subset",
    "train",
    "write_idx",
]
