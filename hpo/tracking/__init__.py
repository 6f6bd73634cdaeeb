"""The MLflow mirror: study run > round runs > trial runs, rebuilt from the Optuna storage.

The storage is the source of truth; MLflow is a faithful, idempotent copy written by one writer
(the driver, or ``hpo sync``). This package is the only part of hpo that imports ``mlflow``,
and it does so lazily: :mod:`hpo.tracking.mirror` is the sync logic, :mod:`hpo.tracking._mlflow`
the MLflow plumbing (client, SQLite store, batching, one-line messages).
"""

from __future__ import annotations

from hpo.tracking._mlflow import (
    DEFAULT_TRACKING_URI,
    TrackingError,
    TrackingWarning,
    resolve_uri,
    study_pages,
)
from hpo.tracking.mirror import Mirror

__all__ = [
    "DEFAULT_TRACKING_URI",
    "Mirror",
    "TrackingError",
    "TrackingWarning",
    "resolve_uri",
    "study_pages",
]
