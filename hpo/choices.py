"""The accepted values of the study options that the CLI offers as choices (import-light)."""

from __future__ import annotations

__all__ = ["BACKENDS", "CLI_BACKENDS", "DRAWN_FIRST", "PRUNERS", "SAMPLERS"]

SAMPLERS = ("random", "tpe", "qmc", "cmaes", "grid")  # random is the textbook's method
# samplers whose trials are drawn first, then declared with every starting choice: exploration
# may draw a choice narrowing dropped, and round 1 may survey the hard limits; the others sample
# through the round study itself and keep to the round's choices
DRAWN_FIRST = ("random", "tpe")
PRUNERS = ("none", "median", "hyperband")
BACKENDS = ("loky", "dask", "threading", "sequential")  # joblib backends
CLI_BACKENDS = ("loky", "dask")  # the ones `hpo run --backend` offers
