"""The accepted values of the study options that the CLI offers as choices (import-light)."""

from __future__ import annotations

__all__ = ["BACKENDS", "CLI_BACKENDS", "PRUNERS", "SAMPLERS"]

SAMPLERS = ("random", "tpe", "qmc", "cmaes", "grid")  # random is the textbook's method
PRUNERS = ("none", "median", "hyperband")
BACKENDS = ("loky", "dask", "threading", "sequential")  # joblib backends
CLI_BACKENDS = ("loky", "dask")  # the ones `hpo run --backend` offers
