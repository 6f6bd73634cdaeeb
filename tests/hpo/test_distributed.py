"""Scale-out with real processes: a driver and `hpo worker`s sharing a PostgreSQL storage, a worker
killed mid-trial, and a Dask LocalCluster running trials through joblib's dask backend.

The PostgreSQL tests need a server on 127.0.0.1:5432 that lets user postgres in without a password
(trust auth) and may create databases; each test gets a fresh database and drops it afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest

from hpo.storage import open_storage, parent_attrs, round_names, trials_frame
from tests.hpo.test_faults import sigint_as

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
TIMEOUT = 60  # seconds; a hung process fails the test instead of hanging it

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    psycopg = pytest.importorskip("psycopg", reason="needs: pip install 'hpo[postgres]'")
    try:
        conn = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pytest.skip(f"no PostgreSQL server for user postgres on 127.0.0.1:5432 ({first})")
    yield conn
    conn.close()


@pytest.fixture
def database(server):
    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    server.execute(f"CREATE DATABASE {name}")
    yield f"{SERVER}/{name}"
    server.execute(f"DROP DATABASE {name} WITH (FORCE)")


def environ(**extra: str) -> dict[str, str]:
    """Subprocesses import tests.hpo.objectives, and use short heartbeats (1 s, stale after 3 s)."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HPO_HEARTBEAT_INTERVAL": "1",
        "HPO_HEARTBEAT_GRACE": "3",
        **extra,
    }


def hpo(
    *args: str, cwd: Path, prefix: tuple[str, ...] = (), sigint=signal.SIG_DFL, **env: str
) -> subprocess.Popen:
    """`hpo ARGS` in ``cwd`` with SIGINT handled as ``sigint`` (default: as from a terminal,
    whatever the tests' own process inherited; SIG_IGN: as a script's `hpo ... &`)."""
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "hpo.cli", *args],
        cwd=cwd,
        env=environ(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=sigint_as(sigint),
    )


def finish(*procs: subprocess.Popen) -> list[str]:
    """Wait for every process; return their outputs; fail (killing them) if one hangs or fails."""
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT)
            outputs.append(out)
            assert p.returncode == 0, out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outputs


def gate_study(tmp_path: Path, storage: str, *, need: int, rounds: int, trials: int) -> Path:
    gate = tmp_path / "gate"
    gate.mkdir()
    path = tmp_path / "dist.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from hpo import LogUniform, SearchSpace, StopPolicy, Study, Uniform
            from tests.hpo.objectives import Gate

            study = Study(
                "dist",
                SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0)),
                Gate({str(gate)!r}, need={need}),  # every process takes a trial of each round
                rounds={rounds},
                trials={trials},
                workers=1,
                storage={storage!r},
                tracking=False,
                stop=StopPolicy(when_unchanged=False),
            )
            """
        )
    )
    return path


def round_trials(storage, name: str) -> list[list[optuna.trial.FrozenTrial]]:
    return [
        optuna.load_study(study_name=r, storage=storage).get_trials(deepcopy=False)
        for r in round_names(storage, name)
    ]


def test_driver_and_two_workers_record_exactly_the_budget(tmp_path, database):
    n, rounds = 9, 2
    path = gate_study(tmp_path, database, need=3, rounds=rounds, trials=n)
    # the workers may start first: they wait for the driver to create the study
    workers = [hpo("worker", str(path), "--storage", database, cwd=tmp_path) for _ in range(2)]
    driver = hpo("run", str(path), "--storage", database, "--workers", "1", cwd=tmp_path)
    finish(driver, *workers)

    storage = open_storage(database)
    assert parent_attrs(storage, "dist")["hpo.status"] == "finished"
    per_round = round_trials(storage, "dist")
    assert len(per_round) == rounds  # the workers followed the driver into round 2
    for trials in per_round:
        assert sorted(t.number for t in trials) == list(range(n))  # exactly n, no duplicate
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        pids = {int(t.user_attrs["hpo.worker"].rpartition(":")[2]) for t in trials}
        assert pids == {driver.pid, *(w.pid for w in workers)}  # the remote workers took trials
    frame = trials_frame(storage, "dist")
    assert not frame.duplicated(["round", "number"]).any()
    assert (frame.groupby("round")["status"].apply(lambda s: (s == "finished").sum()) == n).all()


def _other_host_prefix() -> tuple[str, ...]:
    """Run a process under another host name (a UTS namespace) when this machine allows it, so
    that only its heartbeat, not its pid, can tell the driver it died: a worker 'elsewhere'."""
    if shutil.which("unshare") is None:
        return ()
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True)
    if probe.returncode != 0:
        return ()
    return ("unshare", "--uts", "sh", "-c", 'hostname elsewhere && exec "$0" "$@"')


def test_a_worker_killed_mid_trial_is_detected_and_its_trial_replaced(tmp_path, database):
    n = 6
    path = gate_study(tmp_path, database, need=2, rounds=1, trials=n)
    prefix = _other_host_prefix()
    victim = hpo(
        "worker", str(path), "--storage", database, cwd=tmp_path, prefix=prefix, HPO_TEST_HANG="1"
    )
    driver = hpo("run", str(path), "--storage", database, "--workers", "1", cwd=tmp_path)
    try:
        deadline = time.monotonic() + TIMEOUT
        started: list[Path] = []
        while not started and time.monotonic() < deadline and victim.poll() is None:
            started = list((tmp_path / "gate").glob(f"start-1-*-{victim.pid}"))
            time.sleep(0.05)
        assert started, victim.communicate(timeout=5)[0] if victim.poll() is not None else "late"
        victim.send_signal(signal.SIGKILL)  # mid-trial: its trial hangs until killed
        victim.wait()
        finish(driver)
    finally:
        for p in (victim, driver):
            if p.poll() is None:
                p.kill()
                p.wait()

    number = int(started[0].name.split("-")[2])
    frame = trials_frame(open_storage(database), "dist")
    killed = frame[frame["number"] == number].iloc[0]
    assert killed["state"] == "FAIL" and killed["status"] == "failed"
    if prefix:  # another host: the driver cannot see its pid, only its silence
        assert killed["worker"] == f"elsewhere:{victim.pid}"
        assert "stopped sending heartbeats" in killed["reason"]
    assert (frame["status"] == "finished").sum() == n  # a replacement finished in its place
    assert len(frame) == n + 1 and not frame["number"].duplicated().any()


def test_dask_local_cluster_runs_a_study_through_joblib(tmp_path):
    distributed = pytest.importorskip("distributed", reason="needs: pip install 'hpo[dask]'")
    path = tmp_path / "dask_study.py"
    path.write_text(
        textwrap.dedent(
            """
            import math

            from hpo import LogUniform, SearchSpace, Study


            def objective(params):  # defined here: reaches the Dask workers by value
                return -abs(math.log10(params["lr"]) + 3)


            study = Study("dask", SearchSpace(lr=LogUniform(1e-6, 1e-2)), objective,
                          rounds=2, trials=10, workers=2, tracking=False)
            """
        )
    )
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dask_pids = set(client.run(os.getpid).values())
        args = ["--backend", "dask", "--scheduler", cluster.scheduler_address, "--no-tracking"]
        (out,) = finish(hpo("run", str(path), *args, cwd=tmp_path))
    assert "study dask: finished" in out
    frame = trials_frame(open_storage(tmp_path / "runs" / "optuna.journal"), "dask")
    assert frame.groupby("round").size().tolist() == [10, 10]
    assert (frame["status"] == "finished").all() and not frame.duplicated(["round", "number"]).any()
    assert {int(w.rpartition(":")[2]) for w in frame["worker"]} <= dask_pids  # ran on the cluster
