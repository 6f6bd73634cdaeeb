"""`hpo` as a user runs it: a real subprocess in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
STUDY = """
from hpo import LogUniform, SearchSpace, Study, Uniform
from tests.hpo.objectives import bowl

study = Study("cli", SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0, 1)), bowl,
              rounds=3, trials=8, workers=2)
"""


def hpo(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "hpo.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_imports_no_heavy_library():
    code = (
        "import sys, hpo.cli; hpo.cli.build_parser(); "
        "print(sorted(m for m in ('optuna', 'mlflow', 'numpy', 'pandas') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]"
    assert hpo("--help", cwd=ROOT).returncode == 0


def test_run_overrides_report_and_name_clash(tmp_path):
    (tmp_path / "s.py").write_text(STUDY)
    done = hpo(
        "run",
        "s.py",
        "--rounds",
        "2",
        "--trials",
        "5",
        "--seed",
        "3",
        "--no-tracking",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "round 2:" in done.stdout and "best configuration: lr=" in done.stdout
    assert "round 1: a survey: every trial drawn from the hard limits" in done.stdout
    trials = pd.read_csv(tmp_path / "runs" / "cli" / "trials.csv")
    assert trials[trials["round"] == 1]["explore"].all()
    assert len(trials) == 10 and sorted(set(trials["round"])) == [1, 2]
    ranges = pd.read_csv(tmp_path / "runs" / "cli" / "ranges.csv")
    assert set(ranges[ranges["round"] == 2]["reason"]) <= {"shrunk", "shifted", "extended", "kept"}
    for fig in ("scores.png", "ranges.png"):
        assert (tmp_path / "runs" / "cli" / fig).stat().st_size > 0
    # running it again picks a free name instead of mixing two runs
    again = hpo("run", "s.py", "--rounds", "1", "--trials", "2", "--no-tracking", cwd=tmp_path)
    assert again.returncode == 0 and "this run is cli-2" in again.stdout
    assert "round 1:\n" in again.stdout  # one round: no survey
    report = hpo("report", "cli", cwd=tmp_path)
    assert report.returncode == 0 and "params_lr" in report.stdout


def test_make_study_passes_overrides_through():
    done = subprocess.run(
        ["make", "-n", "study", "ROUNDS=2", "TRIALS=10", "WORKERS=2", "SEED=4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    line = [x for x in done.stdout.splitlines() if "hpo run" in x][0]
    assert "studies/six_five.py --rounds 2 --trials 10 --workers 2 --seed 4" in line
