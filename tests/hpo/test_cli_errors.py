"""Bad input to `hpo`: one line on stderr naming the field, exit code 2, and nothing written (no
runs/, no mlflow.db, no storage, no bytecode cache). Real subprocesses in an empty tmp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

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
}

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
    (["report", "s"], "no storage at 'runs/optuna.journal'"),
    (["report", "s", "--storage", "."], "storage: '.' is a folder"),
    (["sync", "s"], "no storage at 'runs/optuna.journal'"),
    (["sync", "s", "--storage", "ftp://h/x"], "storage: unsupported scheme 'ftp'"),
    ([], "command"),
    (["tune"], "invalid choice: 'tune'"),
]


def hpo(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
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
