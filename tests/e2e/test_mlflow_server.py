"""`hpo run` against a real `mlflow server` over HTTP, checked through MLflow's client API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.records import ATTR
from hpo.storage import open_storage, round_names

ROOT = Path(__file__).resolve().parents[2]
STUDY = Path(__file__).with_name("small_study.py")

mlflow = pytest.importorskip("mlflow")


@pytest.mark.slow
def test_hpo_run_over_http_mirrors_every_trial(server, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "hpo.cli", "run", str(STUDY), "--tracking-uri", server.url]
        + ["--workers", "2", "--out", str(tmp_path / "runs")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TrackingWarning" not in done.stderr

    client = mlflow.MlflowClient(server.url)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_kind: dict[str, list] = {}
    for r in runs:
        by_kind.setdefault(r.data.tags["hpo.kind"], []).append(r)
    [study_run] = by_kind["study"]
    assert study_run.info.run_name == "e2e" and study_run.info.status == "FINISHED"
    assert "best_score" in study_run.data.metrics
    rounds = {int(r.data.tags["hpo.round"]): r for r in by_kind["round"]}
    assert sorted(rounds) == [1, 2]
    assert all(r.data.tags["mlflow.parentRunId"] == study_run.info.run_id for r in rounds.values())
    trials = {r.data.tags["hpo.key"]: r for r in by_kind["trial"]}
    assert len(trials) == len(by_kind["trial"]) == 8  # exactly once

    storage = open_storage(tmp_path / "runs" / "optuna.journal")
    for k, name in enumerate(round_names(storage, "e2e"), start=1):
        for t in storage.get_all_trials(storage.get_study_id_from_name(name)):
            run = trials.pop(f"e2e/{k}/{t.number}")
            assert run.data.tags["mlflow.parentRunId"] == rounds[k].info.run_id
            assert {p: float(run.data.params[p]) for p in t.params} == t.params
            assert run.data.metrics["score"] == t.value
            for metric, curve in t.user_attrs[ATTR["curves"]].items():
                history = client.get_metric_history(run.info.run_id, metric)
                assert sorted((m.step, m.value) for m in history) == [
                    (i + 1, v) for i, v in enumerate(curve)
                ]
    assert not trials  # no run without a trial behind it
    artifacts = {a.path for a in client.list_artifacts(study_run.info.run_id)}
    assert "trials.csv" in artifacts  # the report, served by the tracking server
