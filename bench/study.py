"""The 6-5 study's wall time with 1 and 2 workers, and the orchestration overhead.

Overhead = 1 - (summed objective time of the trials) / (workers x rounds time), where the rounds
time runs from the call to ``Study.run`` to the end of the last trial: the share of the workers'
time not spent training (pool start-up, storage, sampling, narrowing, the mirror). The total wall
time adds the final retrain of the best configuration and the report's figures.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hpo.loader import load_study_file

STUDY = Path(__file__).resolve().parents[1] / "studies" / "six_five.py"


def _measure(workers: int, tracking: bool, folder: Path) -> dict:
    study = load_study_file(STUDY).with_options(
        name=f"bench-{workers}-{int(tracking)}",
        workers=workers,
        out=folder / "runs",
        tracking=tracking,
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
    )
    started = datetime.now(UTC)
    start = time.perf_counter()
    result = study.run()
    wall = time.perf_counter() - start
    trials = result.trials
    busy = float(trials["duration"].sum())
    last = pd.to_datetime(trials["completed"]).max()
    last = last.tz_localize("UTC") if last.tzinfo is None else last
    rounds = (last - pd.Timestamp(started)).total_seconds()  # until the last trial ended
    return {
        "workers": workers,
        "tracking": tracking,
        "trials": len(trials),
        "wall": wall,
        "rounds": rounds,
        "busy": busy,
        "overhead": 1 - busy / (workers * rounds),
        "best": result.best_value,
    }


def _kernel(_: int = 0) -> float:
    """Seconds for a fixed single-threaded NumPy loop (the shape of a trial's matrix products)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.random((100, 784), dtype=np.float32)
    w = rng.random((784, 100), dtype=np.float32)
    with threadpool_limits(1):
        start = time.perf_counter()
        for _ in range(15000):
            a @ w
        return time.perf_counter() - start


def _ceiling() -> tuple[float, float]:
    """The kernel alone, then two copies at once in two processes: the machine's own limit on
    a 2-worker speed-up (shared caches, memory bandwidth, a virtual machine's neighbours)."""
    from concurrent.futures import ProcessPoolExecutor

    alone = min(_kernel() for _ in range(2))
    with ProcessPoolExecutor(2) as pool:
        pool.submit(int).result()  # both processes up before the clock starts
        together = max(pool.map(_kernel, range(2)))
    return alone, together


def run() -> str:
    alone, together = _ceiling()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers, tracking in ((1, False), (2, False), (2, True)):
            rows.append(_measure(workers, tracking, Path(tmp)))
    one = rows[0]["rounds"]
    lines = [
        "## The 6-5 study (studies/six_five.py): wall time and orchestration overhead",
        "",
        f"{rows[0]['trials']} trials ({load_study_file(STUDY).settings.budget_line()}; "
        "50 epochs each), "
        f"{os.cpu_count()} CPUs. Rounds = from Study.run() to the end of the last trial; total adds"
        " the final retrain and the figures. Overhead = 1 - summed trial time / (workers x rounds)",
        "",
        "| workers | MLflow mirror | trials | rounds s | total s | summed trial s "
        "| speed-up vs 1 (rounds) | overhead |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {'on' if r['tracking'] else 'off'} | {r['trials']} | "
            f"{r['rounds']:.1f} | {r['wall']:.1f} | {r['busy']:.1f} | {one / r['rounds']:.2f}x | "
            f"{100 * r['overhead']:.1f}% |"
        )
    lines += [
        "",
        f"The machine's own ceiling: a fixed one-thread NumPy loop takes {alone:.2f} s alone and "
        f"{together:.2f} s with a second copy running, so 2 workers can be at most "
        f"{2 * alone / together:.2f}x faster than 1 here.",
    ]
    return "\n".join(lines) + "\n"
