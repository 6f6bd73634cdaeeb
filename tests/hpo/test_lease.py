"""The study lease (hpo/lease.py): one driver per study, a dead driver's study taken over by
`hpo resume`, and `hpo worker`s that exit on their own when their driver is gone. Real `hpo`
processes and storages; synchronisation by files the objectives write and by polling conditions
with a deadline, never by sleeping for a while."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import time

import optuna
import pytest

from hpo.lease import PREFIX, Lease, LeaseHeld, check, takeover_note
from hpo.loader import load_study_file
from hpo.storage import open_storage, parent_attrs, trials_frame
from tests.hpo.test_distributed import _other_host_prefix, hpo
from tests.hpo.test_faults import assert_counts, lines, mlflow_trials, running, stored, study_file

HOST = socket.gethostname()
SINCE = r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(renewed \d+ s ago\)"


def no_writes():  # any file the process writes fails: it must write nothing
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_a_second_driver_is_refused_in_one_line_and_mlflow_keeps_one_run_per_key(
    tmp_path, uri, hpo_cmd
):
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    study_file(tmp_path, f"objectives.Gated({str(log)!r}, {str(gate)!r}, free=2)", rounds=2)
    first = hpo_cmd(tmp_path, "run", "study.py", "--tracking-uri", uri)
    first.wait_until(lambda: len(lines(log, "start")) >= 4, "two trials in flight")

    second = hpo_cmd(tmp_path, "resume", "s", "--tracking-uri", uri, preexec_fn=no_writes)
    rc, out, err = second.finish()
    assert rc == 2 and out == "", out + err
    held = rf"study 's' is being run by driver {HOST}:{first.proc.pid} {SINCE}"
    assert re.fullmatch(rf"hpo: {held}; wait for it to end or stop it first\n", err), err

    again = load_study_file(tmp_path / "study.py").with_options(  # the Python API, too
        out=str(tmp_path / "runs"), tracking_uri=uri
    )
    with pytest.raises(LeaseHeld, match=held):
        again.run(resume=True)

    gate.touch()
    rc, out, err = first.finish()
    assert rc == 0, out + err
    storage, frame = stored(tmp_path)
    assert_counts(frame, mlflow_trials(uri), rounds=2, trials=6)  # one run per key
    assert not [k for k, v in parent_attrs(storage, "s").items() if k.startswith(PREFIX) and v]


def test_resume_takes_over_from_a_killed_driver_and_says_so(tmp_path, uri, hpo_cmd):
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    study_file(tmp_path, f"objectives.Gated({str(log)!r}, {str(gate)!r}, free=2)")
    first = hpo_cmd(tmp_path, "run", "study.py", "--tracking-uri", uri)
    first.wait_until(lambda: len(lines(log, "start")) >= 4, "two trials in flight")
    os.kill(first.proc.pid, signal.SIGKILL)  # the driver alone; its workers follow it
    first.proc.wait()
    gate.touch()
    rc, out, err = hpo_cmd(tmp_path, "resume", "s", "--tracking-uri", uri).finish()
    assert rc == 0, out + err
    note = rf"taking over study 's': its driver {HOST}:{first.proc.pid} {SINCE} is gone"
    assert re.match(note + "\n", out), out
    _, frame = stored(tmp_path)
    assert_counts(frame, mlflow_trials(uri), rounds=1, trials=6)


def _claim(storage, owner: str, age: float) -> None:
    now = time.time()
    sid = storage.get_study_id_from_name("s")
    claim = {"owner": owner, "since": now - 100, "renewed_at": now - age}
    storage.set_study_user_attr(sid, PREFIX + "other", claim)


def test_a_live_claim_of_another_host_refuses_a_stale_one_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("HPO_LEASE_INTERVAL", "1")
    monkeypatch.setenv("HPO_LEASE_GRACE", "3")
    storage = open_storage(tmp_path / "s.journal")
    optuna.create_study(study_name="s", storage=storage)
    _claim(storage, "elsewhere:1", age=1)  # renewed within the grace period: live
    with pytest.raises(LeaseHeld, match="being run by driver elsewhere:1 since"):
        check(parent_attrs(storage, "s"), "s")
    with pytest.raises(LeaseHeld), Lease(storage, "s"):
        pass
    assert set(parent_attrs(storage, "s")) == {PREFIX + "other"}  # refused: nothing written

    _claim(storage, "elsewhere:1", age=10)  # not renewed for 10 s > grace: its driver died
    assert takeover_note(parent_attrs(storage, "s"), "s").startswith(
        "taking over study 's': its driver elsewhere:1 since "
    )
    with Lease(storage, "s") as lease:
        attrs = parent_attrs(storage, "s")
        assert attrs[PREFIX + "other"] is None  # the dead claim is cleared
        assert attrs[lease.key]["owner"] == f"{HOST}:{os.getpid()}"
        with pytest.raises(LeaseHeld, match=f"being run by driver {HOST}:{os.getpid()}"):
            check(parent_attrs(storage, "s"), "s")
    assert parent_attrs(storage, "s")[lease.key] is None  # released


def test_of_two_drivers_racing_the_later_writer_withdraws(tmp_path, monkeypatch):
    """The claim is written, then read back: a claim written meanwhile by another driver (here
    injected between the two) makes this one withdraw, leaving the other the only holder."""
    import hpo.lease

    storage = open_storage(tmp_path / "s.journal")
    optuna.create_study(study_name="s", storage=storage)
    real, calls = hpo.lease.parent_attrs, []

    def racing(st, name):
        calls.append(name)
        if len(calls) == 2:  # after our write, before the read back
            _claim(storage, "elsewhere:7", age=0)
        return real(st, name)

    monkeypatch.setattr(hpo.lease, "parent_attrs", racing)
    lease = Lease(storage, "s")
    with pytest.raises(LeaseHeld, match="elsewhere:7"), lease:
        pass
    attrs = real(storage, "s")
    assert attrs[lease.key] is None and attrs[PREFIX + "other"]["owner"] == "elsewhere:7"


# ------------------------------------------------- hpo worker: its driver killed outright
@pytest.mark.slow
@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
def test_workers_exit_on_their_own_when_their_driver_is_killed(tmp_path, database, sigint):
    # ignored: workers started as a script's `hpo worker ... &` (SIGINT ignored) exit all the same
    grace = 3
    env = {"HPO_LEASE_INTERVAL": "1", "HPO_LEASE_GRACE": str(grace)}
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    path = study_file(
        tmp_path,
        f"objectives.Gated({str(log)!r}, {str(gate)!r}, free=0)",
        trials=6,
        workers=1,
        storage=database,
        tracking=False,
    )
    prefix = _other_host_prefix()  # "another machine": only the lease can tell it
    workers = [
        hpo(
            "worker",
            str(path),
            "--storage",
            database,
            cwd=tmp_path,
            prefix=prefix,
            sigint=sigint,
            **env,
        )
        for _ in range(2)
    ]
    driver = hpo("run", str(path), "--storage", database, cwd=tmp_path, **env)
    procs = [driver, *workers]
    try:
        deadline = time.monotonic() + 60
        while len({line.split()[3] for line in lines(log, "start")}) < 3:
            assert time.monotonic() < deadline, "no trial in flight in each of the 3 processes"
            assert all(p.poll() is None for p in procs), [p.communicate()[0] for p in procs]
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        outs = [w.communicate(timeout=grace + 30)[0] for w in workers]  # a bound, not a timing
    finally:
        gate.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [w.returncode for w in workers] == [3, 3], outs
    for out in outs:
        last = out.strip().splitlines()[-1]
        assert last.startswith("hpo worker: the driver of study 's' is gone (")
        assert f":{driver.pid} since " in last and "`hpo resume s` restarts the study" in last
    storage = open_storage(database)
    frame = trials_frame(storage, "s")
    remote = frame[frame["worker"].str.endswith(tuple(f":{w.pid}" for w in workers), na=False)]
    assert sorted(remote["status"]) == ["interrupted", "interrupted"]  # released, not lost

    resumed = hpo("resume", "s", "--storage", database, cwd=tmp_path, **env)
    out, _ = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, out
    frame = trials_frame(open_storage(database), "s")
    assert (frame["status"] == "finished").sum() == 6
    ended = [tuple(line.split()[1:3]) for line in lines(log, "end")]
    assert len(ended) == len(set(ended)) == 6  # no trial ran twice
    assert not any(running(w.pid) for w in workers)
