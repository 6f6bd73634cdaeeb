"""hpo: hyperparameter search the way chapter 6-5 of *Deep Learning from Scratch* does it.

Log-scale random search with short training on a validation split, ranges narrowed round after
round, trials in parallel processes, every trial mirrored to MLflow. Names are imported lazily so
that the `hpo` command starts fast.
"""

from __future__ import annotations

import importlib

__all__ = [
    "Categorical",
    "Data",
    "Diverged",
    "IntRange",
    "LogUniform",
    "ModelObjective",
    "NarrowingPolicy",
    "Result",
    "SearchSpace",
    "StopPolicy",
    "Study",
    "StudyError",
    "Uniform",
    "narrow",
]

_WHERE = {
    "Categorical": "hpo.space",
    "IntRange": "hpo.space",
    "LogUniform": "hpo.space",
    "SearchSpace": "hpo.space",
    "Uniform": "hpo.space",
    "NarrowingPolicy": "hpo.narrowing",
    "narrow": "hpo.narrowing",
    "Data": "hpo.objective",
    "Diverged": "hpo.objective",
    "ModelObjective": "hpo.objective",
    "Result": "hpo.result",
    "StopPolicy": "hpo.settings",
    "Study": "hpo.study",
    "StudyError": "hpo.result",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")
