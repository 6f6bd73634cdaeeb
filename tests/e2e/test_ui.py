"""The MLflow UI as a user sees it: headless Chromium opens a study's runs table.

`make ui-check` runs this test and keeps the screenshot at docs/ui-runs.png
(``HPO_UI_SCREENSHOT``); without Chromium it is skipped, with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hpo import LogUniform, SearchSpace, Study, Uniform
from hpo.tracking import Mirror
from tests.hpo import objectives

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Chromium not found (Debian: apt-get install chromium)"
    ),
]


def chromium(url: str, *args: str, profile: Path) -> str:
    """Headless Chromium on ``url``; returns its stdout. The runs table is rendered client-side:
    the virtual time budget lets the page's scripts and requests finish before the dump."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"]
        + ["--no-first-run", "--disable-background-networking", "--disable-component-update"]
        + ["--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=15000"]
        + [*args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_runs_table_lists_the_study_runs(server, tmp_path):
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0))
    study = Study(
        "ui-demo",  # the run's name; the experiment is named differently, so finding the
        space,  # name in the page means the table lists the run
        objectives.curves,
        rounds=2,
        trials=4,
        workers=1,
        out=tmp_path / "runs",
        tracking_uri=server.url,
        experiment="hpo-ui-check",
    )
    study.run()
    url = Mirror("ui-demo", tracking_uri=server.url, experiment="hpo-ui-check").experiment_url(
        port=server.port
    )
    dom = chromium(url, "--dump-dom", profile=tmp_path / "profile")
    (tmp_path / "dom.html").write_text(dom)
    assert "hpo-ui-check" in dom  # the experiment's page
    assert "ui-demo" in dom  # its runs table lists the study run (rounds, trials nested in it)
    listed = re.search(r"(\d+)\s*matching runs", re.sub(r"<[^>]+>", "", dom))
    assert listed and int(listed.group(1)) == 1 + 2 + 2 * 4  # study, round and trial runs

    # The experiment's own page, as the experiment list links it, in the UI's "Model training"
    # mode: the runs table, not the GenAI overview of traces. The mirror tags the experiment
    # `mlflow.experimentKind=custom_model_development`, but MLflow 3.17's UI takes the kind from
    # its GenAI / Model training switch (this URL parameter, else the browser's last choice).
    home = url.replace("/runs?", "?")
    dom = chromium(home, "--dump-dom", profile=tmp_path / "profile-home")
    (tmp_path / "home.html").write_text(dom)
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "ui-demo" in dom and re.search(r"\d+\s*matching runs", text)  # the runs table
    assert "No data available" not in text and "Tokens per Trace" not in text  # no overview

    shot = Path(os.environ.get("HPO_UI_SCREENSHOT") or tmp_path / "ui-runs.png").resolve()
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    chromium(url, f"--screenshot={shot}", "--window-size=1400,900", profile=tmp_path / "profile")
    assert shot.stat().st_size > 10_000
