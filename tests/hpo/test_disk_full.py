"""A disk that fills up mid-study, for real: a tmpfs of a few MB that the test mounts holds the
journal; the test fills it once trials have finished. The study stops with one line (the path,
the bytes needed and free), keeps every finished trial, and `hpo resume` finishes the exact
budget once the space is freed. Skipped where this process may not mount a file system."""

from __future__ import annotations

import errno
import re
import subprocess

import pytest

from hpo.storage import open_storage, trials_frame
from tests.hpo.test_faults import assert_counts, lines, mlflow_trials, study_file


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "hpo-test", str(disk)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(done.stderr or 'mount failed').strip()})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk) -> None:
    """Take every free byte of ``disk`` (a file written until ENOSPC)."""
    with open(disk / "filler", "wb", buffering=0) as f:
        block = b"\0" * 65536
        while True:
            try:
                f.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    return
                block = block[: len(block) // 2]


def test_a_disk_that_fills_mid_study_stops_it_in_one_line_and_resume_finishes(
    tmp_path, uri, hpo_cmd, small_disk
):
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    study_file(tmp_path, f"objectives.Gated({str(log)!r}, {str(gate)!r}, free=4)", rounds=2)
    journal = small_disk / "optuna.journal"
    args = ("--storage", str(journal), "--tracking-uri", uri)
    cmd = hpo_cmd(tmp_path, "run", "study.py", *args)
    cmd.wait_until(lambda: len(lines(log, "start")) >= 6, "two trials in flight after four")
    fill(small_disk)
    gate.touch()  # the trials in flight end now, and cannot record it
    rc, out, err = cmd.finish()
    assert rc == 2, out + err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(
        rf"hpo: storage: cannot write {re.escape(str(journal))} \(No space left on device: "
        r"\d+(\.\d)? (bytes|kB) needed, \d+ bytes free\); finished trials are kept: "
        r"make room, then resume\n",
        err,
    ), err
    kept = trials_frame(open_storage(journal), "s")
    assert (kept["status"] == "finished").sum() >= 4  # nothing finished is lost

    (small_disk / "filler").unlink()
    rc, out, err = hpo_cmd(tmp_path, "resume", "s", "--storage", str(journal)).finish()
    assert rc == 0, out + err
    frame = trials_frame(open_storage(journal), "s")
    assert_counts(frame, mlflow_trials(uri), rounds=2, trials=6)
    ended = [tuple(line.split()[1:3]) for line in lines(log, "end")]
    assert len(ended) == len(set(ended))  # no trial ran twice
