"""Faults: diverging and failing trials, killed workers, Ctrl-C / SIGTERM, a crashed machine, and
storages that cannot be written. Real `hpo` subprocesses, real signals, a real journal storage and
a real MLflow SQLite store in a tmp folder; every test checks that the counts agree: trials
requested, trials finished, trials in the Optuna storage and trial runs in MLflow.

Synchronisation is by files the objectives write (see tests/hpo/objectives.py) and by reading the
command's output as it comes, never by sleeping for a while.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo import LogUniform, NarrowingPolicy, SearchSpace, Study, Uniform, narrow
from hpo.liveness import fail_orphans
from hpo.records import ATTR, FINISHED
from hpo.storage import open_storage, parent_attrs, trials_frame
from hpo.study import Interrupted
from tests.hpo import objectives

mlflow = pytest.importorskip("mlflow")

ROOT = Path(__file__).resolve().parents[2]
SPACE = "hpo.SearchSpace(lr=hpo.LogUniform(1e-4, 1.0), y=hpo.Uniform(0.0, 1.0))"


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables created once (that costs seconds); tests copy it."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def uri(tmp_path, empty_store) -> str:
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def study_file(tmp_path: Path, objective: str, **settings) -> Path:
    """A study file ``study.py`` in ``tmp_path`` for study "s" with ``objective`` (code)."""
    settings = {"rounds": 1, "trials": 6, "workers": 2, **settings}
    kw = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    path = tmp_path / "study.py"
    path.write_text(
        "import hpo\nfrom tests.hpo import objectives\n\n"
        f"study = hpo.Study('s', {SPACE}, {objective}, {kw})\n"
    )
    return path


def sigint_as(handler, then=None):
    """A ``preexec_fn``: SIGINT handled as ``handler`` whatever the tests' own process inherited
    (SIG_DFL: a terminal's foreground job, though a CI script's background job ignores SIGINT;
    SIG_IGN: `cmd &` in a script, without job control); then ``then``, if given."""

    def preexec() -> None:
        signal.signal(signal.SIGINT, handler)
        if then is not None:
            then()

    return preexec


class Hpo:
    """`hpo ARGS` run in ``cwd`` as a subprocess in a session of its own (as from a terminal)."""

    def __init__(self, cwd: Path, *args: str, preexec_fn=None, sigint=signal.SIG_DFL):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hpo.cli", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=sigint_as(sigint, preexec_fn),
        )
        self.out = b""

    def wait_until(self, condition, what: str, timeout: float = 60.0) -> None:
        """Read the output as it comes until ``condition()`` holds (bounded: a hang fails)."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                rc, out, err = self.finish()
                pytest.fail(f"hpo exited ({rc}) before {what}:\n{out}\n{err}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no {what} within {timeout} s:\n{self.out.decode()}")
            if select.select([fd], [], [], 0.05)[0]:
                self.out += os.read(fd, 1 << 16)

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Exit code, whole stdout and stderr (a command that does not end fails the test, with
        its output and where each of the driver's threads waited)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            out, err = self.abort()
            pytest.fail(
                f"hpo did not end within {timeout} s:\n{(self.out + out).decode()}\n{err.decode()}"
            )
        return self.proc.returncode, (self.out + out).decode(), err.decode()

    def abort(self) -> tuple[bytes, bytes]:
        """SIGABRT to the driver (PYTHONFAULTHANDLER: its threads' stacks go to stderr), then
        SIGKILL to what is left of its group; the whole output (communicate loses none)."""
        self.proc.send_signal(signal.SIGABRT)
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers left in its group
        return out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.communicate()


@pytest.fixture
def hpo_cmd():
    """Start `hpo` commands; any still running at the end of a test is killed with its group."""
    started: list[Hpo] = []

    def start(cwd: Path, *args: str, **kw) -> Hpo:
        started.append(Hpo(cwd, *args, **kw))
        return started[-1]

    yield start
    for cmd in started:
        if cmd.proc.poll() is None:
            cmd.kill()


def lines(path: Path, prefix: str = "") -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.startswith(prefix)]
    except FileNotFoundError:
        return []


def stored(tmp_path: Path, name: str = "s"):
    storage = open_storage(tmp_path / "runs" / "optuna.journal", create=False)
    return storage, trials_frame(storage, name)


def mlflow_trials(uri: str, name: str = "s") -> list:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    assert exp is not None, f"no MLflow experiment {name!r}"
    return client.search_runs([exp.experiment_id], "tags.`hpo.kind` = 'trial'", max_results=5000)


def assert_counts(frame, runs, *, rounds: int, trials: int, name: str = "s") -> None:
    """Requested = finished in the storage = finished in MLflow; every recorded trial is mirrored
    exactly once and with the same status; nothing is left RUNNING or WAITING."""
    assert not frame["state"].isin(["RUNNING", "WAITING"]).any(), frame[["round", "state"]]
    done = frame[frame["status"].isin(FINISHED)]
    assert done.groupby("round").size().to_dict() == {k: trials for k in range(1, rounds + 1)}
    storage_status = {
        f"{name}/{r}/{n}": s for r, n, s in frame[["round", "number", "status"]].values
    }
    keys = [run.data.tags["hpo.key"] for run in runs]
    assert len(keys) == len(set(keys)), "duplicate trial runs in MLflow"
    assert {run.data.tags["hpo.key"]: run.data.tags["hpo.status"] for run in runs} == storage_status
    finished_in_mlflow = [r for r in runs if r.data.tags["hpo.status"] in FINISHED]
    assert len(finished_in_mlflow) == len(done) == rounds * trials


# ------------------------------------------------------------------------- diverging trials
def test_diverging_trials_are_recorded_with_their_reason_and_never_scored(tmp_path, uri):
    space = SearchSpace(lr=LogUniform(1e-3, 1.0), y=Uniform(0.0, 1.0))
    study = Study(
        "s",
        space,
        objectives.non_finite_when_large,  # lr >= 0.1: NaN score, inf score, or Diverged
        rounds=2,
        trials=12,
        workers=2,
        pruner="median",
        out=tmp_path / "runs",
        tracking_uri=uri,
        narrowing=NarrowingPolicy(explore=0.0),  # every trial in the ranges this test names
    )
    result = study.run()
    storage, frame = stored(tmp_path)
    assert_counts(frame, mlflow_trials(uri), rounds=2, trials=12)

    diverged = frame[frame["status"] == "diverged"]
    r1 = frame[frame["round"] == 1]
    assert set(r1.loc[r1["params_lr"] >= 0.1, "status"]) == {"diverged"}
    assert (diverged["state"] == "PRUNED").all() and diverged["value"].isna().all()
    reasons = set(diverged["reason"])
    assert {"score is nan", "score is inf"} <= reasons, reasons  # NaN and infinite returns
    assert "loss is nan at epoch 1" in reasons  # the objective's own Diverged

    # the pruner never saw a NaN: no trial of any round has a non-finite intermediate value
    for k in (1, 2):
        for t in optuna.load_study(study_name=f"s/round-{k}", storage=storage).trials:
            assert all(v == v and abs(v) != float("inf") for v in t.intermediate_values.values())
    # the ranking: the best is a finite score of a trial that converged
    assert result.best_value == result.best_value and result.best_params["lr"] < 0.1
    # the narrowing: round 2's ranges are those of round 1's scored trials alone
    scored = r1[r1["status"] == "finished"]
    best = scored.sort_values("value", ascending=False).iloc[0]
    incumbent = {"lr": best["params_lr"], "y": best["params_y"]}
    expected, _ = narrow(
        space, scored, direction="maximize", policy=study.narrowing, incumbent=incumbent
    )
    assert result.rounds[1].space == expected

    by_key = {r.data.tags["hpo.key"]: r for r in mlflow_trials(uri)}
    for r, n, reason in diverged[["round", "number", "reason"]].values:
        run = by_key[f"s/{r}/{n}"]
        assert run.data.tags["hpo.reason"] == reason
        assert "score" not in run.data.metrics  # a NaN is never logged as a score


# ----------------------------------------------------------------- an objective that raises
def test_an_objective_that_raises_fails_its_trial_with_the_traceback_kept(tmp_path, uri):
    study = Study(
        "s",
        SearchSpace(lr=LogUniform(1e-4, 1.0), y=Uniform(0.0, 1.0)),
        objectives.fails_when_y_large,  # raises ZeroDivisionError for y > 0.6
        rounds=1,
        trials=8,
        workers=2,
        max_failures=30,
        out=tmp_path / "runs",
        tracking_uri=uri,
    )
    result = study.run()
    assert result.status == "finished"
    storage, frame = stored(tmp_path)
    runs = mlflow_trials(uri)
    assert_counts(frame, runs, rounds=1, trials=8)

    failed = frame[frame["status"] == "failed"]
    assert len(failed) > 0 and (failed["params_y"] > 0.6).all()
    assert (failed["reason"] == "ZeroDivisionError: bug for large y").all()
    trials = {
        t.number: t for t in optuna.load_study(study_name="s/round-1", storage=storage).trials
    }
    client = mlflow.MlflowClient(uri)
    for run in runs:
        if run.data.tags["hpo.status"] != "failed":
            continue
        tb = trials[int(run.data.tags["hpo.trial"])].user_attrs[ATTR["traceback"]]
        assert "Traceback" in tb and "ZeroDivisionError: bug for large y" in tb
        assert "fails_when_y_large" in run.data.tags["hpo.traceback"]
        assert run.info.status == "FAILED"
        artifact = client.download_artifacts(run.info.run_id, "traceback.txt", str(tmp_path))
        assert Path(artifact).read_text() == tb


def test_every_trial_failing_stops_the_study_with_one_clear_line(tmp_path, uri, hpo_cmd):
    # the objective lives in the study file and imports a module no worker has
    (tmp_path / "study.py").write_text(
        "import hpo\n\n\n"
        "def objective(params):\n"
        "    import hpo_missing_dependency  # noqa: F401\n\n"
        "    return 0.0\n\n\n"
        f"study = hpo.Study('s', {SPACE}, objective, rounds=3, trials=50, workers=2,"
        " max_failures=3)\n"
    )
    rc, out, err = hpo_cmd(tmp_path, "run", "study.py", "--tracking-uri", uri).finish()
    assert rc == 1, out + err
    assert err.strip().splitlines() == [err.strip()]  # one line
    assert err.startswith("hpo: no trial of round 1 finished (")
    assert "ModuleNotFoundError: No module named 'hpo_missing_dependency'" in err
    storage, frame = stored(tmp_path)
    ran = frame[frame["state"] != "WAITING"]
    assert 3 <= len(ran) < 50 and (ran["status"] == "failed").all()  # stopped early
    assert set(frame["round"]) == {1}
    assert parent_attrs(storage, "s")[ATTR["status"]].startswith("stopped: no trial of round 1")
    study = optuna.load_study(study_name="s/round-1", storage=storage)
    for t in study.trials:
        if t.state.name == "FAIL":
            assert "hpo_missing_dependency" in t.user_attrs[ATTR["traceback"]]
    runs = mlflow_trials(uri)  # the failed trials are mirrored too, once each
    assert sorted(r.data.tags["hpo.key"] for r in runs) == sorted(f"s/1/{n}" for n in ran["number"])
    assert all("hpo_missing_dependency" in r.data.tags["hpo.traceback"] for r in runs)


# ---------------------------------------------------------------- a worker killed mid-trial
def test_a_worker_killed_mid_trial_is_failed_and_the_budget_still_reached(tmp_path, uri, hpo_cmd):
    marker = tmp_path / "hung.pid"
    study_file(tmp_path, f"objectives.HangsOnce({str(marker)!r})", trials=6)
    cmd = hpo_cmd(tmp_path, "run", "study.py", "--tracking-uri", uri)
    cmd.wait_until(lambda: lines(marker), "trial that hangs")
    pid = int(lines(marker)[0])
    os.kill(pid, signal.SIGKILL)
    rc, out, err = cmd.finish()
    assert rc == 0, out + err

    _, frame = stored(tmp_path)
    assert_counts(frame, mlflow_trials(uri), rounds=1, trials=6)
    failed = frame[frame["status"] == "failed"]
    killed = failed[failed["worker"].str.endswith(f":{pid}")]
    assert len(killed) == 1 and (killed["state"] == "FAIL").all()
    assert killed["reason"].iloc[0] == f"worker {killed['worker'].iloc[0]} died during the trial"
    assert len(frame) == 6 + len(failed)  # each failed trial was replaced, no more


# ------------------------------------------------------------------------ Ctrl-C and SIGTERM
def interrupt_then_resume(tmp_path, uri, hpo_cmd, send, *, free: int, **settings):
    """Run until two trials are in flight after ``free`` finished ones, ``send`` a signal, check
    the interruption, then open the gate and resume. Returns the outputs of both commands."""
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    study_file(tmp_path, f"objectives.Gated({str(log)!r}, {str(gate)!r}, free={free})", **settings)
    cmd = hpo_cmd(tmp_path, "run", "study.py", "--tracking-uri", uri)
    cmd.wait_until(lambda: len(lines(log, "start")) >= free + 2, "two trials in flight")
    send(cmd.proc)
    rc, out, err = cmd.finish(timeout=30)
    assert rc == 130, out + err
    assert "study 's' interrupted" in out
    resume_line = out.strip().splitlines()[-1].strip()
    journal = (tmp_path / "runs" / "optuna.journal").resolve()
    assert resume_line == f"hpo resume s --storage {journal}"  # works from any folder

    storage, frame = stored(tmp_path)
    assert parent_attrs(storage, "s")[ATTR["status"]] == "interrupted"
    assert not (frame["state"] == "RUNNING").any()
    in_flight = frame[frame["status"] == "interrupted"]
    assert len(in_flight) == 2 and (in_flight["state"] == "FAIL").all()
    started = {tuple(map(int, line.split()[1:3])) for line in lines(log, "start")}
    ended = {tuple(map(int, line.split()[1:3])) for line in lines(log, "end")}
    assert set(zip(in_flight["round"], in_flight["number"], strict=True)) == started - ended
    finished = frame[frame["status"] == "finished"]
    assert len(finished) == len(ended) == free  # finished trials are kept
    # the mirror was flushed before exiting: MLflow holds every trial the storage has finished
    runs = mlflow_trials(uri)
    done = frame[frame["state"] != "WAITING"]
    assert sorted(r.data.tags["hpo.key"] for r in runs) == sorted(
        f"s/{r}/{n}" for r, n in done[["round", "number"]].values
    )

    gate.touch()
    # the printed command as is: the study remembers its tracking URI, so the mirror stays one
    rc, out2, err2 = hpo_cmd(tmp_path, *resume_line.split()[1:]).finish()
    assert rc == 0, out2 + err2
    _, frame = stored(tmp_path)
    rounds, trials = settings["rounds"], settings["trials"]
    assert_counts(frame, mlflow_trials(uri), rounds=rounds, trials=trials)
    calls = [tuple(line.split()[1:3]) for line in lines(log, "end")]
    assert len(calls) == len(set(calls)) == rounds * trials  # no trial ran twice
    return frame


def test_ctrl_c_stops_marks_trials_in_flight_and_resume_finishes_exactly(tmp_path, uri, hpo_cmd):
    frame = interrupt_then_resume(
        tmp_path,
        uri,
        hpo_cmd,
        lambda proc: os.killpg(proc.pid, signal.SIGINT),  # a terminal's Ctrl-C: the whole group
        free=3,
        rounds=2,
        trials=6,
    )
    assert (frame["status"] == "interrupted").sum() == 2


def test_sigterm_to_the_driver_alone_interrupts_too_and_does_not_count_as_failure(
    tmp_path, uri, hpo_cmd
):
    # nothing finished before the interruption and max_failures=2: two interrupted trials must not
    # be taken for a study whose every trial fails
    interrupt_then_resume(
        tmp_path,
        uri,
        hpo_cmd,
        lambda proc: proc.send_signal(signal.SIGTERM),
        free=0,
        rounds=1,
        trials=4,
        max_failures=2,
    )


# ----------------------------------------------------------------- a crash of the whole machine
def test_trials_left_running_by_a_crash_are_cleaned_up_on_resume(tmp_path, uri, hpo_cmd):
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    study_file(tmp_path, f"objectives.Gated({str(log)!r}, {str(gate)!r}, free=2)", trials=6)
    cmd = hpo_cmd(tmp_path, "run", "study.py", "--tracking-uri", uri)
    cmd.wait_until(lambda: len(lines(log, "start")) >= 4, "two trials in flight")
    os.killpg(cmd.proc.pid, signal.SIGKILL)  # the driver and its workers vanish at once
    cmd.finish()

    storage, frame = stored(tmp_path)
    running = frame[frame["state"] == "RUNNING"]
    assert len(running) == 2  # nobody cleaned up
    assert parent_attrs(storage, "s")[ATTR["status"]] == "running"
    gate.touch()
    rc, out, err = hpo_cmd(tmp_path, "resume", "s", "--tracking-uri", uri).finish()
    assert rc == 0, out + err
    _, frame = stored(tmp_path)
    assert_counts(frame, mlflow_trials(uri), rounds=1, trials=6)
    crashed = frame[frame["number"].isin(running["number"])]
    assert (crashed["status"] == "failed").all() and (crashed["state"] == "FAIL").all()
    assert crashed["reason"].str.contains("died during the trial").all()


def test_a_trial_claimed_but_never_signed_is_failed_before_resume_starts_a_trial(
    tmp_path, uri, hpo_cmd
):
    """A worker that claims a trial and dies before signing it (its driver killed in between)
    leaves it RUNNING with no owner. Resume fails it before its own workers start any trial:
    nothing of the dead run can sign it any more (before, it was failed a minute after its
    claim, and resume waited that long for it)."""
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    study_file(tmp_path, f"objectives.Gated({str(log)!r}, {str(gate)!r}, free=2)", trials=6)
    cmd = hpo_cmd(tmp_path, "run", "study.py", "--tracking-uri", uri)
    cmd.wait_until(lambda: len(lines(log, "start")) >= 4, "two trials in flight")
    os.killpg(cmd.proc.pid, signal.SIGKILL)
    cmd.finish()
    storage, _ = stored(tmp_path)
    claimed_at = datetime.now()
    claimed = running_trial(storage, storage.get_study_id_from_name("s/round-1"), "", claimed_at)
    gate.touch()
    rc, out, err = hpo_cmd(tmp_path, "resume", "s", "--tracking-uri", uri).finish(timeout=300)
    assert rc == 0, out + err
    storage, frame = stored(tmp_path)
    assert_counts(frame, mlflow_trials(uri), rounds=1, trials=6)
    never = storage.get_trial(claimed)
    assert never.state == TrialState.FAIL
    resumed = frame[frame["started"] > claimed_at]
    assert len(resumed) and (resumed["started"] > never.datetime_complete).all()


def running_trial(storage, study_id: int, worker: str, started: datetime) -> int:
    """A RUNNING trial signed by ``worker`` (host:pid) since ``started``; its id."""
    template = optuna.trial.FrozenTrial(
        number=0,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=started,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={ATTR["worker"]: worker},
        system_attrs={},
        intermediate_values={},
        trial_id=0,
    )
    return storage.create_new_trial(study_id, template_trial=template)


def test_a_live_process_that_started_after_the_trial_is_not_its_worker(tmp_path):
    """After a reboot the pid of a dead worker may belong to a new, live process: its trial is
    failed all the same, while the trial of a live worker is left alone."""
    storage = open_storage(tmp_path / "s.journal")
    optuna.create_study(study_name="r", storage=storage)
    sid = storage.get_study_id_from_name("r")
    host = socket.gethostname()
    reborn = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE)
    try:
        ids = {}
        for name, pid, started in (
            ("crashed", reborn.pid, datetime.now() - timedelta(hours=1)),
            ("live", os.getpid(), datetime.now()),  # this process runs it (started before)
        ):
            ids[name] = running_trial(storage, sid, f"{host}:{pid}", started)
        assert fail_orphans(storage, sid) == 1
    finally:
        reborn.communicate(b"\n")
    crashed, live = (storage.get_trial(ids[k]) for k in ("crashed", "live"))
    assert crashed.state == TrialState.FAIL and crashed.user_attrs[ATTR["trial_status"]] == "failed"
    assert live.state == TrialState.RUNNING


def test_a_status_written_before_its_trial_ended_counts_only_once_the_state_says_so(tmp_path):
    """A worker records a trial's status, then its state (Optuna refuses attributes on a finished
    trial). One stopped between the two (its driver died: SIGINT, then exit) leaves a RUNNING
    trial marked finished but never scored: it counts as running, not finished (so the round
    waits for it and does not end one trial short), and, its worker gone, it is failed."""
    from hpo.queue import counts
    from hpo.storage import trial_status

    storage = open_storage(tmp_path / "s.journal")
    optuna.create_study(study_name="r", storage=storage)
    sid = storage.get_study_id_from_name("r")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process
    tid = running_trial(storage, sid, f"{socket.gethostname()}:{gone.pid}", datetime.now())
    storage.set_trial_user_attr(tid, ATTR["trial_status"], "finished")  # and no tell
    assert counts(storage, sid) == {"running": 1, "done": 0}
    assert trial_status(storage.get_trial(tid)) == "running"  # as trials_frame shows it
    assert fail_orphans(storage, sid) == 1
    assert counts(storage, sid) == {"failed": 1, "done": 0}


def test_ctrl_c_while_a_trial_is_recorded_keeps_that_trial_whole(tmp_path, monkeypatch):
    """SIGINT (Ctrl-C, or a worker's watcher once the driver is gone) arriving between the
    writes of a trial's outcome waits until the trial is recorded whole, then interrupts."""
    write, hit = optuna.Trial.set_user_attr, []

    def interrupted_after(trial, key, value):
        write(trial, key, value)
        if key == ATTR["trial_status"] and not hit:  # written before the state (Optuna's tell)
            hit.append(trial.number)
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(optuna.Trial, "set_user_attr", interrupted_after)
    space = SearchSpace(lr=LogUniform(1e-5, 1e-1))
    study = Study("s", space, objectives.quick, rounds=1, trials=4, out=tmp_path / "runs")
    # Python's own handler, whatever this process inherited (CI may start it ignoring SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted):
            study.with_options(workers=1, tracking=False).run()
    finally:
        signal.signal(signal.SIGINT, previous)
    _, frame = stored(tmp_path)
    first = frame[frame["number"] == hit[0]].iloc[0]
    assert (first["state"], first["status"]) == ("COMPLETE", "finished")
    assert first["value"] == objectives.quick({"lr": first["params_lr"]})


# ------------------------------------------------------------- storages that cannot be written
def nothing_written(tmp_path: Path, before: set[str]) -> None:
    assert {p.name for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("path", ["/proc/hpo-test/optuna.journal", "/proc/hpo-test.journal"])
def test_an_unwritable_storage_path_is_a_clear_error_before_anything_starts(
    tmp_path, hpo_cmd, path
):
    study_file(tmp_path, "objectives.quick")
    before = {p.name for p in tmp_path.iterdir()}
    # /proc refuses new folders and files even to root, for whom file modes do not count
    rc, out, err = hpo_cmd(tmp_path, "run", "study.py", "--storage", path).finish()
    assert rc == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("hpo: storage: cannot ") and "'/proc/hpo-test" in err
    nothing_written(tmp_path, before)  # no MLflow store either


def test_a_full_storage_is_a_clear_error_before_any_trial_starts(tmp_path, hpo_cmd):
    log = tmp_path / "calls.log"
    study_file(tmp_path, f"objectives.Logged({str(log)!r})")

    def full_disk():  # no file the command writes may grow: as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    rc, out, err = hpo_cmd(
        tmp_path, "run", "study.py", "--no-tracking", preexec_fn=full_disk
    ).finish()
    assert rc == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("hpo: storage: cannot write runs/optuna.journal (")
    assert not log.exists()  # no trial started


def test_an_unwritable_mlflow_store_is_a_clear_error_before_anything_starts(tmp_path, hpo_cmd):
    log = tmp_path / "calls.log"
    study_file(tmp_path, f"objectives.Logged({str(log)!r})")
    rc, out, err = hpo_cmd(
        tmp_path, "run", "study.py", "--tracking-uri", "sqlite:////proc/hpo-test/mlflow.db"
    ).finish()
    assert rc == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("hpo: tracking: cannot write sqlite:////proc/hpo-test/mlflow.db")
    assert not log.exists()  # no trial started
    assert not (tmp_path / "runs").exists()  # the journal opened first is removed again


# ------------------------------------------------------------------- the driver killed alone
def descendants(pid: int) -> set[int]:
    """Every live process under ``pid`` (from /proc: children of children too)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = Path(f"/proc/{p}/task").iterdir()
            kids = {int(c) for t in tasks for c in (t / "children").read_text().split()}
        except (FileNotFoundError, ProcessLookupError):
            continue
        todo.extend(kids - out)
        out |= kids
    return out


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie waiting for init has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
def test_workers_do_not_outlive_a_driver_killed_with_sigkill(tmp_path, uri, hpo_cmd, sigint):
    # ignored: a driver started as a script's background job; its workers inherit SIG_IGN, and
    # still end their trial in flight as interrupted when it dies
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    study_file(tmp_path, f"objectives.Gated({str(log)!r}, {str(gate)!r}, free=0)", trials=6)
    cmd = hpo_cmd(tmp_path, "run", "study.py", "--tracking-uri", uri, sigint=sigint)
    cmd.wait_until(lambda: len(lines(log, "start")) >= 2, "two trials in flight")
    workers = {int(line.split()[3]) for line in lines(log, "start")}
    children = descendants(cmd.proc.pid)
    assert len(workers) == 2 and workers <= children, (workers, children)
    os.kill(cmd.proc.pid, signal.SIGKILL)  # the driver alone: no signal reaches its workers
    cmd.proc.wait()
    try:
        deadline = time.monotonic() + 30  # a bound, not a timing: polled until they are gone
        while (left := {p for p in children if running(p)}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"processes of the killed driver still running: {sorted(left)}"
        _, frame = stored(tmp_path)  # the trials in flight ended as on Ctrl-C
        assert sorted(frame.loc[frame["state"] != "WAITING", "status"]) == ["interrupted"] * 2
    finally:
        gate.touch()
        for pid in children:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
