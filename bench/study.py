"""The 6-5 study's wall time with 1 and 2 workers, and the orchestration overhead.

Overhead = 1 - (summed objective time of the trials) / (workers x wall time): the share of the
workers' time not spent training (start-up, storage, sampling, narrowing, reports, mirror).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from hpo.loader import load_study_file

STUDY = Path(__file__).resolve().parents[1] / "studies" / "six_five.py"


def _measure(workers: int, tracking: bool, folder: Path) -> dict:
    study = load_study_file(STUDY).with_options(
        name=f"bench-{workers}-{int(tracking)}", workers=workers, out=folder / "runs",
        tracking=tracking, tracking_uri=f"sqlite:///{folder}/mlflow.db",
    )
    start = time.perf_counter()
    result = study.run()
    wall = time.perf_counter() - start
    trials = result.trials
    busy = float(trials["duration"].sum())
    return {"workers": workers, "tracking": tracking, "trials": len(trials), "wall": wall,
            "busy": busy, "overhead": 1 - busy / (workers * wall), "best": result.best_value}


def run() -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers, tracking in ((1, False), (2, False), (2, True)):
            rows.append(_measure(workers, tracking, Path(tmp)))
    one = rows[0]["wall"]
    lines = [
        "## The 6-5 study (studies/six_five.py): wall time and orchestration overhead",
        "",
        f"{rows[0]['trials']} trials (4 rounds x 40, 50 epochs on 400 images each), "
        f"{os.cpu_count()} CPUs. Overhead = 1 - summed trial time / (workers x wall time).",
        "",
        "| workers | MLflow mirror | trials | wall s | summed trial s | speed-up vs 1 | overhead |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {'on' if r['tracking'] else 'off'} | {r['trials']} | "
            f"{r['wall']:.1f} | {r['busy']:.1f} | {one / r['wall']:.2f}x | "
            f"{100 * r['overhead']:.1f}% |"
        )
    return "\n".join(lines) + "\n"
