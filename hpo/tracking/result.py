"""The study run's result: the best configuration as ``best.<name>`` params, its scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hpo.tracking._mlflow as ml
from hpo.tracking._mlflow import PARAM_MAX, TAG_MAX

__all__ = ["log_result"]


def log_result(
    client: Any,
    run_id: str,
    study: str,
    best: Mapping[str, Any] | None,
    test_score: float | None,
) -> None:
    """Best configuration as ``best.<name>`` params and ``best_score``/``test_score``."""
    run = client.get_run(run_id)
    have = run.data.params
    if best:
        params = {f"best.{n}": v for n, v in (best.get("params") or {}).items()}
        # Params cannot change: a resumed study with a new best keeps it in tags instead.
        moved = {n: v for n, v in params.items() if n in have and have[n] != ml.clip(v, PARAM_MAX)}
        ml.log(client, run_id, params=params, skip=set(have))
        for n, v in moved.items():
            client.set_tag(run_id, n, ml.clip(v, TAG_MAX))
        if best.get("round") is not None and best.get("number") is not None:
            client.set_tag(run_id, "hpo.best_key", f"{study}/{best['round']}/{best['number']}")
    value, sd = (best or {}).get("value"), (best or {}).get("sd")
    optimism = value - test_score if ml.finite(value) and ml.finite(test_score) else None
    for name, v in (
        ("best_score", value),
        ("best_score_sd", sd),
        ("test_score", test_score),
        ("optimism", optimism),
    ):
        if ml.finite(v) and run.data.metrics.get(name) != float(v):
            client.log_metric(run_id, name, float(v), step=0)
