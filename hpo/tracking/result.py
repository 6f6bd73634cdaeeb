"""The study run's result: the best configuration as ``best.<name>`` params, its scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hpo.tracking._mlflow as ml
from hpo.records import spread
from hpo.tracking._mlflow import PARAM_MAX, TAG_MAX

__all__ = ["link_source", "log_result"]


def log_result(
    client: Any,
    run_id: str,
    study: str,
    best: Mapping[str, Any] | None,
    test_score: float | None,
    test_scores: Sequence[float] = (),
) -> None:
    """Best configuration as ``best.<name>`` params and ``best_score``/``test_score`` (with
    ``test_score_sd`` over the retrains when there were several)."""
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
        ("test_score_sd", spread(test_scores)),
        ("optimism", optimism),
    ):
        if ml.finite(v) and run.data.metrics.get(name) != float(v):
            client.log_metric(run_id, name, float(v), step=0)


def link_source(client: Any, run_id: str, source: str, experiment: str | None) -> None:
    """A warm-started study's run names its source study (tag ``hpo.warm_start``) and links to
    the source's study run in MLflow (tag ``hpo.warm_start_run`` and the run's note) when the
    source was mirrored to the same store."""
    client.set_tag(run_id, "hpo.warm_start", ml.clip(source, TAG_MAX))
    exp = client.get_experiment_by_name(experiment or source)
    if exp is None:
        return
    runs = client.search_runs(
        [exp.experiment_id], "tags.`hpo.kind` = 'study'", max_results=1000
    )  # the study name is matched in Python: it may hold quotes
    found = [r for r in runs if r.data.tags.get("hpo.study") == source]
    if not found:
        return
    source_run = found[0].info.run_id
    client.set_tag(run_id, "hpo.warm_start_run", source_run)
    link = f"#/experiments/{exp.experiment_id}/runs/{source_run}"
    note = f"Warm start from study `{source}`: its final ranges and trials ([study run]({link}))."
    client.set_tag(run_id, "mlflow.note.content", note)
