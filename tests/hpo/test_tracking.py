"""The MLflow mirror against a real MLflow SQLite store and a real Optuna journal storage."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpo.records import ATTR, Change
from hpo.space import Categorical, IntRange, LogUniform, SearchSpace
from hpo.storage import open_storage, round_name
from hpo.tracking import Mirror, TrackingError, TrackingWarning

mlflow = pytest.importorskip("mlflow")

DIST = {
    "lr": FloatDistribution(1e-6, 1e-2, log=True),
    "hidden": IntDistribution(10, 200),
    "act": CategoricalDistribution(["relu", "tanh"]),
}
FIXED = {"epochs": 4, "batch_size": 100, "hidden_sizes": [100, 100]}
CURVES = ("train_loss", "train_acc", "val_loss", "val_acc")


def space_of(k: int) -> SearchSpace:
    """Round k's space, as the driver stores it (``SearchSpace.to_dict``)."""
    return SearchSpace(
        lr=LogUniform(1e-6 * k, 1e-2),
        hidden=IntRange(10, 200),
        act=Categorical(["relu", "tanh"]),
    )


# Trials of each round: (hpo status, Optuna state). RUNNING/WAITING trials are not mirrored.
ROUND_1 = ["finished", "pruned", "finished", "diverged", "failed", "running"]
ROUND_2 = ["finished", "interrupted", "finished", "waiting"]
STATES = {
    "finished": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "diverged": TrialState.PRUNED,
    "failed": TrialState.FAIL,
    "interrupted": TrialState.FAIL,
    "running": TrialState.RUNNING,
    "waiting": TrialState.WAITING,
}
DONE = {"finished", "pruned", "diverged", "failed", "interrupted"}


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One MLflow store for the module (creating one costs about a second); tests use distinct
    study names, hence distinct experiments."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def storage(tmp_path):
    return open_storage(tmp_path / "s.journal")


def make_study(storage, name: str, rounds: int = 2) -> None:
    """A parent study with its config and ``rounds`` round entries, as the driver writes them."""
    parent = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    config = {
        "direction": "maximize",
        "sampler": "random",
        "rounds": 3,
        "trials": 5,
        "workers": 2,
        "seed": 0,
        "metric": "val_acc",
        "fixed": FIXED,
    }
    parent.set_user_attr(ATTR["config"], config)
    parent.set_user_attr(ATTR["status"], "running")
    infos = []
    for k in range(1, rounds + 1):
        old, new = space_of(1)["lr"], space_of(k)["lr"]
        long = Change("lr", old, new, "shrunk", "top 5 of 20" * 1000).to_dict()
        changes = {} if k == 1 else {"lr": long}
        space = space_of(k).to_dict()
        infos.append(
            {"round": k, "study_name": round_name(name, k), "space": space, "changes": changes}
        )
        optuna.create_study(storage=storage, study_name=round_name(name, k), direction="maximize")
    parent.set_user_attr(ATTR["rounds"], infos)


def add_trials(storage, name: str, k: int, statuses: list[str]) -> None:
    """Trials as the workers leave them: user attrs, curves (with a None), value when finished."""
    study = optuna.load_study(study_name=round_name(name, k), storage=storage)
    for status in statuses:
        n = len(study.trials)
        state = STATES[status]
        curves = {c: [0.1 * (n + 1) + e for e in range(len(FIXED) + 1)] for c in CURVES}
        curves["val_loss"][1] = None
        if status == "diverged":
            curves["train_loss"][-1] = float("nan")  # skipped like None
        attrs = {
            ATTR["trial_status"]: status,
            ATTR["seed"]: 1000 * k + n,
            ATTR["worker"]: f"host:{100 + n}",
            ATTR["duration"]: 0.5 + n,
            ATTR["curves"]: curves,
        }
        if status != "finished":
            attrs[ATTR["reason"]] = f"{status} at epoch 2"
        if status == "failed":
            attrs[ATTR["traceback"]] = "Traceback (most recent call last):\n" + "x\n" * 5000
        if status in ("running", "waiting"):
            attrs = {}
        trial = optuna.trial.create_trial(
            state=state,
            value=0.5 + 0.01 * n + k if state == TrialState.COMPLETE else None,
            params={"lr": 1e-4 * (n + 1), "hidden": 10 + n, "act": "relu"},
            distributions=DIST,
            user_attrs=attrs,
            intermediate_values={e + 1: v for e, v in enumerate(curves["val_acc"])},
        )
        study.add_trial(trial)


def build(storage, name: str) -> int:
    """Two rounds of hand-made trials; returns how many should be mirrored."""
    make_study(storage, name)
    add_trials(storage, name, 1, ROUND_1)
    add_trials(storage, name, 2, ROUND_2)
    return sum(s in DONE for s in ROUND_1 + ROUND_2)


def runs(uri: str, name: str, kind: str) -> list:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], f"tags.`hpo.kind` = '{kind}'", max_results=1000)


def test_trial_runs_mirror_the_storage(uri, storage):
    n = build(storage, "mirror")
    mirror = Mirror("mirror", tracking_uri=uri)
    mirror.prepare()
    assert mirror.sync(storage) == n + 2  # trial runs + 2 round runs
    client = mlflow.MlflowClient(uri)
    (study_run,) = runs(uri, "mirror", "study")
    assert study_run.info.run_id == mirror.study_run_id
    assert study_run.info.run_name == "mirror"
    assert study_run.data.params["sampler"] == "random"
    assert study_run.data.params["hidden_sizes"] == "[100, 100]"
    assert study_run.data.tags["hpo.status"] == "running"
    round_runs = {int(r.data.tags["hpo.round"]): r for r in runs(uri, "mirror", "round")}
    assert sorted(round_runs) == [1, 2]
    for k, r in round_runs.items():
        assert r.data.tags["mlflow.parentRunId"] == study_run.info.run_id
        assert r.info.run_name == f"round-{k}"
        assert r.data.params["range.lr"] == f"LogUniform({1e-6 * k}, 0.01)"
        assert r.data.params["range.act"] == "Categorical(('relu', 'tanh'))"
        assert r.data.params["range.hidden"] == "IntRange(10, 200)"
    assert round_runs[1].info.status == "FINISHED"  # round 2 started: round 1 is over
    assert round_runs[2].data.params["reason.lr"] == "shrunk"
    assert len(round_runs[2].data.params["detail.lr"]) == 6000  # MLflow's param value limit

    trial_runs = runs(uri, "mirror", "trial")
    assert len(trial_runs) == n
    by_key = {r.data.tags["hpo.key"]: r for r in trial_runs}
    assert len(by_key) == n
    expected_status = {
        "finished": "FINISHED",
        "pruned": "FINISHED",
        "diverged": "FINISHED",
        "failed": "FAILED",
        "interrupted": "KILLED",
    }
    for k in (1, 2):
        study = optuna.load_study(study_name=round_name("mirror", k), storage=storage)
        best = max(t.value for t in study.trials if t.state == TrialState.COMPLETE)
        assert round_runs[k].data.metrics["best_score"] == best
        for t in study.trials:
            key = f"mirror/{k}/{t.number}"
            if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
                assert key not in by_key
                continue
            r = by_key[key]
            tags, ua = r.data.tags, t.user_attrs
            assert tags["mlflow.parentRunId"] == round_runs[k].info.run_id
            assert r.info.run_name == f"trial-{t.number:04d}"
            assert tags["hpo.status"] == ua[ATTR["trial_status"]]
            assert r.info.status == expected_status[ua[ATTR["trial_status"]]]
            assert tags["hpo.seed"] == str(ua[ATTR["seed"]])
            assert tags["hpo.worker"] == ua[ATTR["worker"]]
            assert float(tags["hpo.duration"]) == ua[ATTR["duration"]]
            assert tags.get("hpo.reason") == ua.get(ATTR["reason"])
            assert tags["hpo.complete"] == "1"
            assert r.info.start_time == int(t.datetime_start.timestamp() * 1000)
            assert r.info.end_time == int(t.datetime_complete.timestamp() * 1000)
            want = {
                **{p: str(v) for p, v in FIXED.items()},
                **{p: str(v) for p, v in t.params.items()},
            }
            assert r.data.params == want
            for name, curve in ua[ATTR["curves"]].items():
                history = sorted(
                    client.get_metric_history(r.info.run_id, name), key=lambda m: m.step
                )
                want = [
                    (e + 1, v) for e, v in enumerate(curve) if v is not None and not math.isnan(v)
                ]
                assert [(m.step, m.value) for m in history] == want
            if t.state == TrialState.COMPLETE:
                assert r.data.metrics["score"] == t.value
            else:
                assert "score" not in r.data.metrics
            tb = ua.get(ATTR["traceback"])
            if tb:
                assert tb.endswith(tags["hpo.traceback"]) and len(tags["hpo.traceback"]) < 8000
                path = client.download_artifacts(
                    r.info.run_id, "traceback.txt", str(Path(uri[10:]).parent)
                )
                assert Path(path).read_text() == tb
            else:
                assert "hpo.traceback" not in tags


def test_sync_is_exactly_once_across_restarts(uri, storage):
    n = build(storage, "once")
    mirror = Mirror("once", tracking_uri=uri)
    assert mirror.sync(storage) == n + 2  # prepare() is implied
    assert mirror.sync(storage) == 0
    assert Mirror("once", tracking_uri=uri).sync(storage) == 0  # a restarted driver
    assert len(runs(uri, "once", "trial")) == n
    assert len(runs(uri, "once", "round")) == 2
    assert len(runs(uri, "once", "study")) == 1
    add_trials(storage, "once", 2, ["finished", "pruned"])
    assert mirror.sync(storage) == 2
    assert len(runs(uri, "once", "trial")) == n + 2
    round_2 = next(r for r in runs(uri, "once", "round") if r.data.tags["hpo.round"] == "2")
    steps = mlflow.MlflowClient(uri).get_metric_history(round_2.info.run_id, "best_score")
    assert [m.step for m in steps] == [3, 5]  # one point per sync: finished trials so far


def test_half_written_run_is_repaired(uri, storage):
    n = build(storage, "half")
    client = mlflow.MlflowClient(uri)
    Mirror("half", tracking_uri=uri).sync(storage)
    victim = next(r for r in runs(uri, "half", "trial") if r.data.tags["hpo.trial"] == "0")
    client.delete_run(victim.info.run_id)
    tags = {k: v for k, v in victim.data.tags.items() if k != "hpo.complete"}
    half = client.create_run(victim.info.experiment_id, tags=tags)  # crashed before log_batch
    assert Mirror("half", tracking_uri=uri).sync(storage) == 1
    trial_runs = runs(uri, "half", "trial")
    assert len(trial_runs) == n
    assert half.info.run_id not in {r.info.run_id for r in trial_runs}
    assert all(r.data.tags["hpo.complete"] == "1" for r in trial_runs)


def test_mlflow_error_mid_sync_warns_once_and_heals(uri, storage, monkeypatch):
    n = build(storage, "flaky")
    mirror = Mirror("flaky", tracking_uri=uri)
    mirror.prepare()
    client = mirror._mlflow()  # noqa: SLF001
    calls = {"n": 0}
    log_batch = client.log_batch

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] in (3, 4):
            raise mlflow.exceptions.MlflowException("database is locked")
        return log_batch(*args, **kwargs)

    monkeypatch.setattr(client, "log_batch", flaky)
    with pytest.warns(TrackingWarning) as record:
        mirror.sync(storage)  # a trial run is left half-written
        mirror.sync(storage)
    assert len(record) == 1
    assert "database is locked" in str(record[0].message) and "hpo sync" in str(record[0].message)
    assert mirror.failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mirror.sync(storage)
    assert not mirror.failed and mirror.last_error is None
    trial_runs = runs(uri, "flaky", "trial")
    assert len(trial_runs) == n
    assert all(r.data.tags.get("hpo.complete") == "1" for r in trial_runs)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_warns_once_then_hpo_sync_fills_the_gap(uri, storage, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    n = build(storage, "down")
    mirror = Mirror("down", tracking_uri=f"http://127.0.0.1:{closed_port()}")
    with pytest.warns(TrackingWarning) as record:
        for _ in range(3):
            assert mirror.sync(storage) == 0
    assert len(record) == 1
    assert mirror.failed and "\n" not in mirror.last_error
    assert "Connection refused" in mirror.last_error
    assert Mirror("down", tracking_uri=uri).sync(storage) == n + 2  # `hpo sync` later
    assert len(runs(uri, "down", "trial")) == n


def test_prepare_on_unusable_store_raises_one_line(uri, tmp_path, monkeypatch):
    Mirror("readonly", tracking_uri=uri).prepare()  # the store exists
    monkeypatch.chdir(tmp_path)  # MLflow makes a "file:" folder for a file: URI
    readonly = f"sqlite:///file:{uri.removeprefix('sqlite:///')}?mode=ro&uri=true"
    blocker = tmp_path / "file"
    blocker.write_text("")
    for bad, cause in [
        (readonly, "attempt to write a readonly database"),
        (f"sqlite:///{blocker}/mlflow.db", "File exists"),  # its folder is a file
    ]:
        with pytest.raises(TrackingError) as err:
            Mirror("x", tracking_uri=bad).prepare()
        assert str(err.value).startswith(f"tracking: cannot write {bad} ({cause}")
        assert "\n" not in str(err.value) and isinstance(err.value, ValueError)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(
        TrackingError, match=r"^tracking: cannot reach http://.*\(Connection refused\)$"
    ):
        Mirror("x", tracking_uri=url).prepare()


def test_a_file_store_mlflow_refuses_is_one_line_with_the_remedy(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = (tmp_path / "mlruns").as_uri()
    try:
        Mirror("x", tracking_uri=uri).prepare()
    except TrackingError as err:
        assert str(err) == (
            f"tracking: MLflow refuses the file store {uri}; use a database store "
            "(e.g. sqlite:///mlflow.db, the default) or set MLFLOW_ALLOW_FILE_STORE=true"
        )
    else:
        pytest.skip("this MLflow release still accepts its file store")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the remedy the message names works
    Mirror("x", tracking_uri=uri).prepare()
    assert (tmp_path / "mlruns").is_dir()


def test_finish_logs_result_and_is_idempotent(uri, storage, tmp_path):
    build(storage, "done")
    parent = optuna.load_study(study_name="done", storage=storage)
    best = {"params": {"lr": 3e-4, "hidden": 12}, "value": 2.52, "round": 2, "number": 2}
    parent.set_user_attr(ATTR["best"], best)
    parent.set_user_attr(ATTR["test_score"], 0.91)
    parent.set_user_attr(ATTR["test_scores"], [0.89, 0.93])  # two retrains: their sd is logged
    parent.set_user_attr(ATTR["status"], "stopped: no improvement")
    csv = tmp_path / "trials.csv"
    csv.write_text("round,number\n1,0\n")
    mirror = Mirror("done", tracking_uri=uri)
    assert mirror.finish(storage, artifacts=[csv])
    assert mirror.finish(storage, artifacts=[csv])
    client = mlflow.MlflowClient(uri)
    run = client.get_run(mirror.study_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["best.lr"] == "0.0003" and run.data.params["best.hidden"] == "12"
    assert run.data.metrics == {
        "best_score": 2.52,
        "test_score": 0.91,
        "test_score_sd": pytest.approx(0.04 / 2**0.5),
        "optimism": pytest.approx(2.52 - 0.91),  # the reported score minus the retrained one
    }
    assert run.data.tags["hpo.best_key"] == "done/2/2"
    assert run.data.tags["hpo.status"] == "stopped: no improvement"
    assert len(client.get_metric_history(run.info.run_id, "test_score")) == 1
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["trials.csv"]
    assert {r.info.status for r in runs(uri, "done", "round")} == {"FINISHED"}
    url = mirror.experiment_url("localhost", 5001)
    assert url == (
        f"http://localhost:5001/#/experiments/{mirror.experiment_id}/runs"
        "?workflowType=machine_learning"
    )


def test_importing_hpo_tracking_does_not_import_mlflow():
    code = "import sys, hpo.tracking; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


RACE = """
import sys, threading, warnings
import hpo.tracking.mirror as mirror
if sys.argv[2] == "unguarded":
    mirror.keep_import_filters = lambda: None
start = threading.Thread.start

def start_inside_anothers_block(self):  # pandas in the main thread, as in `hpo run`
    with warnings.catch_warnings():  # restores, on exit, the filters it saw on entry
        start(self)
        self.join()  # the prepare thread imported mlflow and requests inside the block

threading.Thread.start = start_inside_anothers_block
mirror.Mirror("race", tracking_uri=sys.argv[1]).prepare(wait=False)
threading.Thread.start = start
try:  # requests.adapters' import of its SOCKS support, had it come after the block's exit
    import urllib3.contrib.socks  # noqa: F401
except ImportError:
    pass
"""


@pytest.mark.parametrize("guard", ["guarded", "unguarded"])
def test_the_prepare_thread_puts_no_stray_import_warning_on_stderr(tmp_path, guard):
    """A flaky CLI failure: urllib3's SOCKS DependencyWarning printed before the one-line error.

    The unguarded run is the reference: the same interleaving prints it without the filter."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = subprocess.run(
        [sys.executable, "-c", RACE, uri, guard], capture_output=True, text=True, check=True
    )
    assert ("DependencyWarning" in run.stderr) == (guard == "unguarded"), run.stderr


def test_the_experiment_is_a_model_training_experiment(uri):
    """MLflow 3 reads ``mlflow.experimentKind``; a kind the user chose in the UI is kept."""
    client = mlflow.MlflowClient(uri)
    mirror = Mirror("kind", tracking_uri=uri, experiment="hpo-kind")
    mirror.prepare()
    tags = client.get_experiment(mirror.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    client.set_experiment_tag(mirror.experiment_id, "mlflow.experimentKind", "genai_development")
    Mirror("kind", tracking_uri=uri, experiment="hpo-kind").prepare()
    tags = client.get_experiment(mirror.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "genai_development"


def test_trial_runs_written_to_the_tables_equal_the_public_apis(uri, storage):
    """The direct SQL writer (hpo.tracking._sql) leaves what MLflow's own calls leave: run info,
    params, tags, latest metrics and metric histories; and MLflow's search finds them."""
    n = build(storage, "same")
    fast = Mirror("same", tracking_uri=uri, experiment="same-sql")
    slow = Mirror("same", tracking_uri=uri, experiment="same-api")
    slow.sql = False
    assert fast.sync(storage) == slow.sync(storage) == n + 2
    assert fast._sql() is not None and slow._sql() is None  # noqa: SLF001
    client = mlflow.MlflowClient(uri)

    def trial_runs(experiment: str) -> dict:
        return {r.data.tags["hpo.key"]: r for r in runs(uri, experiment, "trial")}

    a, b = trial_runs("same-sql"), trial_runs("same-api")
    assert sorted(a) == sorted(b) and len(a) == n
    ignore = {"run_id", "run_uuid", "experiment_id", "artifact_uri"}
    for key, ra in a.items():
        rb = b[key]
        info_a = {k: v for k, v in dict(ra.info).items() if k not in ignore}
        assert info_a == {k: v for k, v in dict(rb.info).items() if k not in ignore}, key
        assert ra.info.artifact_uri.endswith(f"/{ra.info.run_id}/artifacts")
        assert ra.data.params == rb.data.params
        parent = "mlflow.parentRunId"
        assert {**ra.data.tags, parent: ""} == {**rb.data.tags, parent: ""}
        assert ra.data.metrics == rb.data.metrics
        for name in ra.data.metrics:
            hist = [
                sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(r, name))
                for r in (ra.info.run_id, rb.info.run_id)
            ]
            assert hist[0] == hist[1], (key, name)
    round_1 = next(r for r in runs(uri, "same-sql", "round") if r.data.tags["hpo.round"] == "1")
    exp = client.get_experiment_by_name("same-sql").experiment_id
    found = client.search_runs(
        [exp], f"tags.`mlflow.parentRunId` = '{round_1.info.run_id}' and metrics.score > 0"
    )
    want = {k for k, r in a.items() if r.data.tags["mlflow.parentRunId"] == round_1.info.run_id}
    assert {r.data.tags["hpo.key"] for r in found} == {
        k for k in want if "score" in a[k].data.metrics
    }
    assert Mirror("same", tracking_uri=uri, experiment="same-sql").sync(storage) == 0


def test_prepare_behind_checks_the_file_at_once_and_syncs_after_it(uri, storage, tmp_path):
    """``prepare(wait=False)``: an unusable SQLite file fails at once (before any worker); the
    rest runs in a thread that the first sync joins."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrackingError, match="File exists"):
        Mirror("x", tracking_uri=f"sqlite:///{blocker}/mlflow.db").prepare(wait=False)
    n = build(storage, "behind")
    mirror = Mirror("behind", tracking_uri=uri)
    mirror.prepare(wait=False)
    assert mirror.sync(storage) == n + 2
    assert mirror.study_run_id is not None and not mirror.failed


def test_follow_mirrors_in_the_background_until_finish(uri, storage):
    n = build(storage, "follow")
    mirror = Mirror("follow", tracking_uri=uri)
    mirror.prepare()
    mirror.follow(storage, interval=0.05)
    deadline = time.monotonic() + 30
    while len(runs(uri, "follow", "trial")) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(runs(uri, "follow", "trial")) == n
    assert mirror.finish(storage)
    assert mirror._follower is None  # noqa: SLF001  (finish stopped it)
    assert len(runs(uri, "follow", "trial")) == n


def test_prepare_behind_refuses_a_deleted_experiment_at_once(uri):
    mirror = Mirror("gone", tracking_uri=uri)
    mirror.prepare()
    mlflow.MlflowClient(uri).delete_experiment(mirror.experiment_id)
    with pytest.raises(TrackingError, match="experiment 'gone' is deleted"):
        Mirror("gone", tracking_uri=uri).prepare(wait=False)
