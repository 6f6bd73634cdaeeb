"""Bad input to `hpo`: one line on stderr naming the field, exit code 2, and nothing written (no
runs/, no mlflow.db, no storage, no bytecode cache). Real subprocesses in an empty tmp folder."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest

from hpo import LogUniform, SearchSpace, Study
from hpo.storage import open_storage

ROOT = Path(__file__).resolve().parents[2]
SPACE = "hpo.SearchSpace(lr=hpo.LogUniform(1e-4, 1.0))"
FILES = {
    "ok.py": f"import hpo\nstudy = hpo.Study('ok', {SPACE}, abs, rounds=1, trials=2)\n",
    "syntax.py": "import hpo\n\ndef f(:\n",
    "imports.py": "import hpo\nimport hpo_missing_dependency\n",
    "raises.py": "import hpo\n\nraise RuntimeError('boom')\n",
    "nostudy.py": "import hpo\nstudy = 3\n",
    "badspace.py": "import hpo\n\nspace = hpo.SearchSpace(x=hpo.LogUniform(0, 1))\n",
    "badtrials.py": f"import hpo\n\nstudy = hpo.Study('b', {SPACE}, abs, trials=0)\n",
    "badname.py": f"import hpo\n\nstudy = hpo.Study('a/b', {SPACE}, abs)\n",
    "notpython.txt": "study = 1\n",
    "lock.py": "import threading\n\nimport hpo\n\n\ndef make():\n    guard = threading.Lock()\n"
    "    return lambda params: guard.locked()\n\n\n"
    f"study = hpo.Study('lk', {SPACE}, make(), rounds=1, trials=2)\n",
}
NOSUCHDB = "postgresql+psycopg://postgres@127.0.0.1/nosuchdb"

CASES = [
    # (arguments, what stderr must contain: the field and what is accepted)
    (["run"], "study_file"),
    (["run", "missing.py"], "study file: no Python file at 'missing.py'"),
    (["run", "notpython.txt"], "study file: no Python file at 'notpython.txt'"),
    (["run", "syntax.py"], "(SyntaxError: invalid syntax, line 3 of syntax.py)"),
    (["run", "imports.py"], "No module named 'hpo_missing_dependency', line 2 of imports.py"),
    (["run", "raises.py"], "RuntimeError: boom, line 3 of raises.py"),
    (["run", "nostudy.py"], "must define `study = hpo.Study(...)`"),
    (["run", "badspace.py"], "badspace.py (line 3): `low > 0` must hold on a log scale"),
    (["run", "badtrials.py"], "trials: must be an integer >= 1, got 0"),
    (["run", "badname.py"], "name: must be a non-empty string without '/'"),
    (["run", "ok.py", "--rounds", "0"], "--rounds: must be an integer >= 1, got '0'"),
    (["run", "ok.py", "--trials", "many"], "--trials: must be an integer >= 1, got 'many'"),
    (["run", "ok.py", "--workers", "-2"], "--workers: must be an integer >= 1, got '-2'"),
    (["run", "ok.py", "--workers", "100000"], "workers: 100000 is more than this machine's cap"),
    (["run", "lock.py"], "objective: cannot be pickled for the worker processes: its 'guard' ("),
    (["run", "lock.py", "--workers", "1"], "objective: cannot be pickled"),  # resume may add more
    (["run", "ok.py", "--storage", NOSUCHDB], "hpo: storage: cannot open postgresql+psycopg"),
    (["run", "ok.py", "--storage", "sqlite:////missing/dir/x.db"], "hpo: storage: cannot open"),
    (["run", "ok.py", "--tracking-uri", "http://127.0.0.1:1"], "tracking: cannot reach http://"),
    (["run", "ok.py", "--seed", "1.5"], "--seed: must be an integer >= 0, got '1.5'"),
    (["run", "ok.py", "--sampler", "grd"], "--sampler: invalid choice: 'grd' (choose from"),
    (["run", "ok.py", "--pruner", "always"], "--pruner: invalid choice: 'always'"),
    (["run", "ok.py", "--backend", "mpi"], "--backend: invalid choice: 'mpi'"),
    (["run", "ok.py", "--storage", "redis://h/0"], "storage: unsupported scheme 'redis'"),
    (["run", "ok.py", "--storage", "."], "storage: '.' is a folder"),
    (["run", "ok.py", "--out", "ok.py"], "storage: cannot create 'ok.py/optuna.journal'"),
    (["run", "ok.py", "--name", "a/b"], "name: must be a non-empty string without '/'"),
    (["run", "ok.py", "--name", ""], "name: must be a non-empty string"),
    (["run", "ok.py", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "ok.py", "--scheduler", "tcp://h:8786"], "--scheduler: needs --backend dask"),
    (["resume"], "name"),
    (["resume", "s"], "no storage at 'runs/optuna.journal'"),
    (["resume", "s", "--storage", "redis://h/0"], "storage: unsupported scheme 'redis'"),
    (["resume", "s", "--workers", "0"], "--workers: must be an integer >= 1, got '0'"),
    (["resume", "s", "--storage", NOSUCHDB], "storage: cannot open postgresql+psycopg://***@"),
    (["resume", "s", "--storage", "sqlite:////missing/dir/x.db"], "storage: cannot open sqlite"),
    (["report", "s"], "no storage at 'runs/optuna.journal'"),
    (["report", "s", "--storage", "."], "storage: '.' is a folder"),
    (["sync", "s"], "no storage at 'runs/optuna.journal'"),
    (["sync", "s", "--storage", "ftp://h/x"], "storage: unsupported scheme 'ftp'"),
    ([], "command"),
    (["tune"], "invalid choice: 'tune'"),
]


def hpo(cwd: Path, *args: str, **environ: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **environ}
    for name in ("MLFLOW_TRACKING_URI", "HPO_MAX_WORKERS"):
        if name not in environ:
            env.pop(name, None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's shell writes bytecode caches
    return subprocess.run(
        [sys.executable, "-m", "hpo.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) or "-" for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, message):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    before = files(tmp_path)
    result = hpo(tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert files(tmp_path) == before  # no runs/, no mlflow.db, no __pycache__


@pytest.mark.parametrize("command", ["resume", "report", "sync"])
def test_an_unknown_study_name_in_an_existing_storage(tmp_path, command):
    storage = open_storage(tmp_path / "runs" / "optuna.journal")
    optuna.create_study(study_name="known", storage=storage)
    before = files(tmp_path)
    result = hpo(tmp_path, command, "unknown")
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "name: no study 'unknown'" in result.stderr and "Traceback" not in result.stderr
    assert files(tmp_path) == before
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["known"]


def test_the_workers_cap_is_named_and_can_be_raised_on_purpose(tmp_path, monkeypatch):
    (tmp_path / "ok.py").write_text(FILES["ok.py"])
    before = files(tmp_path)
    result = hpo(tmp_path, "run", "ok.py", "--workers", "4", HPO_MAX_WORKERS="3")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "workers: 4 is more than this machine's cap of 3 (set by HPO_MAX_WORKERS)" in (
        result.stderr
    )
    assert "set HPO_MAX_WORKERS=4 to allow it" in result.stderr
    assert files(tmp_path) == before

    space = SearchSpace(lr=LogUniform(1e-4, 1.0))
    monkeypatch.delenv("HPO_MAX_WORKERS", raising=False)
    with pytest.raises(ValueError, match="workers: 100000 is more than this machine's cap of"):
        Study("s", space, abs, workers=100000)
    monkeypatch.setenv("HPO_MAX_WORKERS", "100000")
    assert Study("s", space, abs, workers=100000).workers == 100000  # on purpose: allowed
    assert Study("s", space, abs, workers=100000, backend="dask").workers == 100000
    monkeypatch.setenv("HPO_MAX_WORKERS", "many")
    with pytest.raises(ValueError, match="HPO_MAX_WORKERS: must be an integer >= 1, got 'many'"):
        Study("s", space, abs, workers=2)


def test_a_threaded_backend_needs_no_picklable_objective(tmp_path):
    lock = threading.Lock()
    study = Study(
        "s",
        SearchSpace(lr=LogUniform(1e-4, 1.0)),
        lambda params: float(lock.locked()),
        rounds=1,
        trials=2,
        workers=2,
        backend="threading",
        tracking=False,
        out=tmp_path,
    )
    assert study.run().status == "finished"


def test_mlflow_fails_fast_while_preparing_and_keeps_what_the_user_set(monkeypatch):
    from hpo.tracking._mlflow import fail_fast

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with fail_fast():
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
