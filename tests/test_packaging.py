"""The project as a user installs it: a wheel built from pyproject.toml, installed in a fresh
virtual environment, serves the bundled data from its own files (not from this checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Local state that a build must not see (a stale build/ would leak old files into the wheel).
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "runs", "mlflow.db*", "mlartifacts",
    "__pycache__", ".*_cache", ".hypothesis", "file:*",
)  # fmt: skip

pytestmark = pytest.mark.slow


def run(*cmd: str | Path, cwd: Path) -> str:
    """``cmd`` without PYTHONPATH: nothing may come from this checkout (pip would even take a
    ``hpo.egg-info`` there for an installed hpo)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


def test_a_wheel_installs_and_loads_the_bundled_data(tmp_path):
    src, dist, venv = tmp_path / "src", tmp_path / "dist", tmp_path / "venv"
    shutil.copytree(ROOT, src, ignore=SKIP)
    out = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, src, cwd=tmp_path)
    assert "Warning" not in out  # setuptools' deprecation and package-discovery warnings
    (wheel,) = dist.glob("hpo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("models/data/fashion_mnist_small.npz", "hpo/tracking/__init__.py"):
        assert name in names

    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                       cwd=tmp_path).strip())  # fmt: skip
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        wheel, cwd=tmp_path)  # fmt: skip
    # then numpy (the one dependency of `models`) from this interpreter, after the venv's files
    (purelib / "numpy-from-test.pth").write_text(str(Path(np.__file__).parents[1]) + "\n")

    code = "import models; ds = models.load('bundled'); print(models.__file__, len(ds.X_train))"
    where, n = run(python, "-c", code, cwd=tmp_path).split()
    assert Path(where).is_relative_to(purelib)
    assert int(n) == 3000  # README: 3000 train / 1000 test images
