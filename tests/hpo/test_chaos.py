"""Chaos soak: a multi-round study while a loop SIGKILLs random worker processes every second or
two, on the journal and on PostgreSQL (where the server is also restarted once mid-study).
Afterwards: requested = finished in the storage = finished trial runs in MLflow, no duplicate
key. Each soak prints its counts line (pytest -s shows it)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from hpo.records import FINISHED
from hpo.storage import open_storage, trials_frame
from tests.hpo.test_faults import assert_counts, descendants, lines, mlflow_trials

pytestmark = pytest.mark.slow
ROUNDS, TRIALS = 3, 12
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_RESTART = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"]


def loky_workers(driver: int) -> list[int]:
    out = []
    for pid in descendants(driver):
        try:
            if b"popen_loky" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            continue
    return out


class Chaos(threading.Thread):
    """SIGKILLs a random worker of ``driver`` every 1-3 s, provided a trial ended since the last
    kill (so the study progresses); once round 2 has started, restarts the PostgreSQL server when
    asked to."""

    def __init__(self, driver: int, log: Path, restart_server: bool):
        super().__init__(daemon=True)
        self.driver, self.log, self.restart_server = driver, log, restart_server
        self.kills, self.restarts, self.stop = 0, 0, threading.Event()
        self.rng = random.Random(0)

    def run(self) -> None:
        seen = -1
        while not self.stop.wait(self.rng.uniform(1.0, 3.0)):  # the chaos' own pace
            if len(lines(self.log)) <= seen:
                continue  # no trial ended since the last kill: let the study make progress
            seen = len(lines(self.log))
            if (
                self.restart_server
                and not self.restarts
                and any(line.startswith("2 ") for line in lines(self.log))
            ):
                subprocess.run(PG_RESTART, check=True, capture_output=True)
                self.restarts += 1
            if workers := loky_workers(self.driver):
                try:
                    os.kill(self.rng.choice(workers), signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass


@pytest.fixture
def pg_database():
    """A fresh database, dropped afterwards over a new connection (the soak restarts the server,
    which ends every connection open before)."""
    psycopg = pytest.importorskip("psycopg", reason="needs: pip install 'hpo[postgres]'")
    name = f"hpo_chaos_{uuid.uuid4().hex[:12]}"

    def run(sql: str) -> None:
        with psycopg.connect(DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    try:
        run(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server for user postgres on 127.0.0.1:5432 ({exc})")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    run(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_chaos_soak(kind, tmp_path, uri, hpo_cmd, request):
    restart = False
    if kind == "postgresql":
        storage = request.getfixturevalue("pg_database")
        restart = shutil.which(PG_RESTART[0]) is not None and os.geteuid() == 0
    else:
        storage = str(tmp_path / "runs" / "optuna.journal")
    log = tmp_path / "calls.log"
    (tmp_path / "study.py").write_text(
        "import hpo\nfrom tests.hpo import objectives\n\n"
        "study = hpo.Study('s', hpo.SearchSpace(lr=hpo.LogUniform(1e-4, 1.0), "
        f"y=hpo.Uniform(0.0, 1.0)), objectives.Logged({str(log)!r}, work=0.3), "
        f"rounds={ROUNDS}, trials={TRIALS}, workers=2, max_failures=1000, "
        "stop=hpo.StopPolicy(when_unchanged=False))\n"
    )
    cmd = hpo_cmd(tmp_path, "run", "study.py", "--storage", storage, "--tracking-uri", uri)
    chaos = Chaos(cmd.proc.pid, log, restart)
    chaos.start()
    try:
        rc, out, err = cmd.finish(timeout=300)
    finally:
        chaos.stop.set()
        chaos.join()
    assert rc == 0, out + err
    frame = trials_frame(open_storage(storage), "s")
    runs = mlflow_trials(uri)
    keys = [r.data.tags["hpo.key"] for r in runs]
    finished = (frame["status"].isin(FINISHED)).sum()
    in_mlflow = sum(r.data.tags["hpo.status"] in FINISHED for r in runs)
    print(
        f"\nchaos soak ({kind}): {chaos.kills} workers SIGKILLed, {chaos.restarts} server "
        f"restart(s); requested {ROUNDS * TRIALS}, finished in storage {finished}, finished "
        f"trial runs in MLflow {in_mlflow}, duplicate keys {len(keys) - len(set(keys))}, "
        f"failed trials {(frame['status'] == 'failed').sum()}"
    )
    assert chaos.kills >= 2 and chaos.restarts == int(restart)
    assert_counts(frame, runs, rounds=ROUNDS, trials=TRIALS)
