"""The README's Python API example runs as written, and its commands exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text.split("## The Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_example_runs_as_written(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(python_example())
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "runs" / "my-search" / "trials.csv")
    # 2 rounds x 12 trials, then the confirmation round of the best 5 (a model objective)
    assert len(trials) == 24 + 5 and set(trials["round"]) == {1, 2, 3}
    momentum = trials.loc[trials["params_optimizer"] == "sgd", "params_momentum"]
    assert momentum.isna().all()  # inactive: empty
    again = pd.read_csv(tmp_path / "runs" / "my-search-2" / "trials.csv")
    assert len(again) == 12 + 5  # the warm start's own budget, and its confirmation
    assert (tmp_path / "mlflow.db").exists()  # tracked in MLflow's default store
    assert "lr" in done.stdout and "optimizer" in done.stdout


def test_readme_cli_commands_are_real_subcommands():
    from hpo.cli import COMMANDS

    shown = set(re.findall(r"^hpo (\w+)", README.read_text(), re.M))
    assert shown and shown <= set(COMMANDS)
