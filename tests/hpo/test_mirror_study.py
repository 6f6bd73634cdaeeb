"""Real studies on 2 worker processes, mirrored into a real MLflow store, checked against the
Optuna storage: exactly once, live while the study runs, and through a tracking-server outage."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import pytest

from hpo import LogUniform, SearchSpace, StopPolicy, Study, Uniform
from hpo.cli import main
from hpo.records import ATTR
from hpo.storage import open_storage, parent_attrs, round_names, trials_frame
from hpo.tracking import Mirror, TrackingError, TrackingWarning
from tests.e2e.server import MlflowServer, free_port
from tests.hpo import objectives

mlflow = pytest.importorskip("mlflow")

SPACE = SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0))


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One MLflow store for the module (creating one takes seconds); one study name per test."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def make(tmp_path, objective, name, **kw):
    kw.setdefault("stop", StopPolicy(when_unchanged=False))  # every round runs
    return Study(name, SPACE, objective, workers=2, out=tmp_path / "runs", **kw)


def mlflow_runs(uri: str, experiment: str) -> list:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], max_results=1000)


def check_mirror(uri: str, study: Study) -> dict[str, list]:
    """MLflow holds the storage exactly: one study run, one run per round under it, one run per
    trial under its round, each trial with the storage's params, score and curves. Returns the
    runs by kind."""
    client = mlflow.MlflowClient(uri)
    storage = open_storage(study.storage)
    runs = mlflow_runs(uri, study.experiment)
    keys = Counter(r.data.tags["hpo.key"] for r in runs)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]  # exactly once
    kinds = defaultdict(list)
    for r in runs:
        kinds[r.data.tags["hpo.kind"]].append(r)
    [study_run] = kinds["study"]
    rounds = {int(r.data.tags["hpo.round"]): r for r in kinds["round"]}
    assert sorted(rounds) == list(range(1, len(round_names(storage, study.name)) + 1))
    assert {r.data.tags["mlflow.parentRunId"] for r in rounds.values()} == {study_run.info.run_id}
    trial_runs = {r.data.tags["hpo.key"]: r for r in kinds["trial"]}
    expected = 0
    for k, name in enumerate(round_names(storage, study.name), start=1):
        sid = storage.get_study_id_from_name(name)
        for t in storage.get_all_trials(sid):
            expected += 1
            run = trial_runs[f"{study.name}/{k}/{t.number}"]
            assert run.data.tags["mlflow.parentRunId"] == rounds[k].info.run_id
            assert run.data.tags["hpo.complete"] == "1"
            assert {p: float(run.data.params[p]) for p in t.params} == t.params
            assert run.data.metrics["score"] == t.value
            curves = t.user_attrs[ATTR["curves"]]
            assert set(curves) == {"val_acc", "train_loss"}
            for metric, curve in curves.items():
                history = client.get_metric_history(run.info.run_id, metric)
                got = sorted((m.step, m.value) for m in history)
                assert got == [(i + 1, v) for i, v in enumerate(curve)], metric
    assert len(trial_runs) == expected == len(trials_frame(storage, study.name))
    return kinds


def test_a_study_on_two_workers_is_mirrored_trial_for_trial(tmp_path, uri):
    study = make(tmp_path, objectives.curves, "whole", tracking_uri=uri, rounds=2, trials=6)
    result = study.run()
    assert result.status == "finished" and len(result.trials) == 12
    kinds = check_mirror(study.tracking_uri, study)
    assert len(kinds["trial"]) == 12 and len(kinds["round"]) == 2
    [study_run] = kinds["study"]
    assert study_run.info.status == "FINISHED"
    assert all(r.info.status == "FINISHED" for r in kinds["round"])
    assert study_run.data.metrics["best_score"] == result.best_value
    assert {f"best.{p}": str(v) for p, v in result.best_params.items()}.items() <= (
        study_run.data.params.items()
    )


def test_resuming_adds_no_run(tmp_path, uri):
    study = make(tmp_path, objectives.curves, "resumed", tracking_uri=uri, rounds=1, trials=4)
    study.run()
    assert len(check_mirror(study.tracking_uri, study)["trial"]) == 4
    first = {r.data.tags["hpo.key"]: r.info.run_id for r in mlflow_runs(uri, "resumed")}
    # asked for two rounds, the study picks up after its first one: 4 new trial runs, no others
    study.with_options(rounds=2).run(resume=True)
    kinds = check_mirror(study.tracking_uri, study)
    assert len(kinds["trial"]) == 8
    second = {r.data.tags["hpo.key"]: r.info.run_id for r in mlflow_runs(uri, "resumed")}
    assert first.items() <= second.items()  # the first round's runs are the same runs
    # resuming a finished study runs nothing and writes no run
    study.with_options(rounds=2).run(resume=True)
    third = {r.data.tags["hpo.key"]: r.info.run_id for r in mlflow_runs(uri, "resumed")}
    assert third == second


def test_finished_trials_reach_mlflow_while_the_study_runs(tmp_path, uri):
    gate = tmp_path / "gate"
    # trials 0 and 1 finish at once; 2 and 3 wait for the gate, so the study cannot end before it
    objective = objectives.CurvesGated(gate, free=2)
    study = make(tmp_path, objective, "live", tracking_uri=uri, rounds=1, trials=4)
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = study.run()
        except BaseException as exc:  # shown by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        done: set[str] = set()
        end = time.monotonic() + 60
        while len(done) < 2 and time.monotonic() < end and thread.is_alive():
            runs = mlflow_runs(uri, "live")
            done = {
                r.data.tags["hpo.key"]
                for r in runs
                if r.data.tags.get("hpo.kind") == "trial" and "hpo.complete" in r.data.tags
            }
            time.sleep(0.1)
        # the driver's monitor mirrored them while trials 2 and 3 still wait for the gate
        assert done == {"live/1/0", "live/1/1"}, outcome
        assert thread.is_alive() and not gate.exists()
    finally:
        gate.touch()
        thread.join(120)
    assert outcome["result"].status == "finished"
    assert len(check_mirror(study.tracking_uri, study)["trial"]) == 4


@pytest.fixture
def quick_http(monkeypatch):
    """MLflow's HTTP client retries a refused connection for minutes by default."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def test_an_unreachable_server_at_the_start_stops_before_anything_runs(tmp_path, quick_http):
    down = f"http://127.0.0.1:{free_port()}"
    study = make(tmp_path, objectives.curves, "unreachable", tracking_uri=down, rounds=1, trials=4)
    with pytest.raises(TrackingError, match="cannot reach http://127.0.0.1"):
        study.run()
    assert not study.exists()  # nothing written: fix the URI and run again


@pytest.mark.slow
def test_a_server_dying_mid_study_warns_once_and_hpo_sync_completes_the_mirror(
    tmp_path, quick_http, capsys
):
    pid_file = tmp_path / "server.pid"
    server = MlflowServer(tmp_path / "mlflow.db").start()
    restarted = None
    try:
        pid_file.write_text(str(server.proc.pid))
        # the first trial of round 2 kills the server: round 1 is mirrored, round 2 is not
        study = make(
            tmp_path,
            objectives.CurvesKilling(pid_file, at_round=2),
            "outage",
            rounds=2,
            trials=4,
            tracking_uri=server.url,
        )
        with pytest.warns(TrackingWarning) as record:
            result = study.run()
        assert result.status == "finished" and len(result.trials) == 8  # the study went on
        assert len([w for w in record if w.category is TrackingWarning]) == 1
        assert "cannot reach" in str(record[0].message) and "hpo sync" in str(record[0].message)
        assert server.proc.poll() is not None  # it really died

        restarted = MlflowServer(server.db, port=server.port).start()
        capsys.readouterr()
        code = main(["sync", "outage", "--storage", study.storage, "--tracking-uri", server.url])
        assert code == 0, capsys.readouterr().err
        assert "the mirror is complete" in capsys.readouterr().out
        kinds = check_mirror(server.url, study)
        assert len(kinds["trial"]) == 8
        # nothing missing: the study run ends with the result as after an undisturbed study
        [study_run] = kinds["study"]
        best = parent_attrs(open_storage(study.storage), "outage")[ATTR["best"]]
        assert study_run.info.status == "FINISHED"
        assert study_run.data.metrics["best_score"] == best["value"]
        assert all(r.info.status == "FINISHED" for r in kinds["round"])
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()


def test_hpo_ui_prints_the_runs_table_of_each_study(uri, monkeypatch, capsys):
    for name in ("alpha", "beta"):
        Mirror(name, tracking_uri=uri).prepare()
    mlflow.MlflowClient(uri).create_experiment("not-a-study")
    started = []
    monkeypatch.setattr("os.execvp", lambda exe, cmd: started.append(cmd))
    assert main(["ui", "--tracking-uri", uri, "--port", "5077"]) == 0
    out = capsys.readouterr().out
    client = mlflow.MlflowClient(uri)
    for name in ("alpha", "beta"):
        exp_id = client.get_experiment_by_name(name).experiment_id
        assert f"{name}: http://127.0.0.1:5077/#/experiments/{exp_id}/runs" in out
    assert "not-a-study" not in out
    [cmd] = started
    assert cmd[1:] == ["ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", "5077"]
