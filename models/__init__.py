"""The NumPy network of the project: layers, optimizers, the MLP classifier, data loading."""

from __future__ import annotations

from models import layers, optimizers
from models.network import MLP, Net
from models.optimizers import make_optimizer
from models.training import TrainResult, train

__all__ = ["MLP", "Net", "TrainResult", "layers", "make_optimizer", "optimizers", "train"]
