"""MLflow mirror costs: one-off (import, prepare) and per trial run, with a SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIALS = 200  # over 2 rounds
EPOCHS = 50
CURVES = ("train_loss", "train_acc", "val_loss", "val_acc")
LATE = 20  # trials finishing after the first sync, mirrored by an incremental sync


def _import_mlflow() -> float:
    code = "import time; t = time.perf_counter(); import mlflow; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def _study(storage, name: str) -> None:
    import optuna

    from hpo.space import LogUniform, SearchSpace
    from hpo.storage import ATTR, round_name

    parent = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    fixed = {"epochs": EPOCHS, "batch_size": 100, "hidden_sizes": [100] * 5}
    parent.set_user_attr(
        ATTR["config"],
        {
            "direction": "maximize",
            "sampler": "random",
            "rounds": 2,
            "trials": TRIALS // 2,
            "workers": 2,
            "seed": 0,
            "metric": "val_acc",
            "fixed": fixed,
        },
    )
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2), weight_decay=LogUniform(1e-8, 1e-4)).to_dict()
    parent.set_user_attr(
        ATTR["rounds"],
        [
            {"round": k, "study_name": round_name(name, k), "space": space, "changes": {}}
            for k in (1, 2)
        ],
    )
    for k in (1, 2):
        optuna.create_study(storage=storage, study_name=round_name(name, k), direction="maximize")


def _add(storage, name: str, k: int, n: int, epochs: int = EPOCHS) -> None:
    import optuna
    from optuna.distributions import FloatDistribution

    from hpo.storage import ATTR, round_name

    study = optuna.load_study(study_name=round_name(name, k), storage=storage)
    dist = {
        "lr": FloatDistribution(1e-6, 1e-2, log=True),
        "weight_decay": FloatDistribution(1e-8, 1e-4, log=True),
    }
    for i in range(n):
        curves = {c: [0.5 + 0.001 * (i + e) for e in range(epochs)] for c in CURVES}
        attrs = {
            ATTR["trial_status"]: "finished",
            ATTR["seed"]: i,
            ATTR["worker"]: "host:1",
            ATTR["duration"]: 0.3,
            ATTR["curves"]: curves,
        }
        study.add_trial(
            optuna.trial.create_trial(
                value=0.9,
                params={"lr": 1e-4, "weight_decay": 1e-6},
                distributions=dist,
                user_attrs=attrs,
            )
        )


class _Clock:
    """Wall and CPU seconds of the last call: wall time also counts the disk and other loads."""

    wall = cpu = 0.0

    def __call__(self, fn, *args):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.wall, self.cpu = time.perf_counter() - t, time.process_time() - c
        return out

    def per(self, n: int) -> str:
        return f"{1000 * self.wall / n:.1f} ms/run ({1000 * self.cpu / n:.1f} ms CPU)"


def run() -> str:
    from hpo.storage import open_storage
    from hpo.tracking import Mirror

    clock = _Clock()
    rows = [("`import mlflow` (fresh process)", _import_mlflow(), "")]

    def step(name: str, fn, *args, per_run: bool = False) -> int:
        n = clock(fn, *args)
        rows.append((name.format(n=n), clock.wall, clock.per(n) if per_run else ""))
        return n

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        storage = open_storage(Path(tmp) / "s.journal")
        _study(storage, "bench")
        _add(storage, "bench", 1, TRIALS // 2)
        _add(storage, "bench", 2, TRIALS // 2 - LATE)
        mirror = Mirror("bench", tracking_uri=uri)
        step("`prepare()`, new store (creates the schema)", mirror.prepare)
        what = f"{TRIALS - LATE} trials, {EPOCHS} epochs x {len(CURVES)} curves"
        step(f"first `sync`: {{n}} runs ({what})", mirror.sync, storage, per_run=True)
        step("`sync` with nothing new (a monitor tick)", mirror.sync, storage)
        _add(storage, "bench", 2, LATE)
        step("`sync` of {n} new trials", mirror.sync, storage, per_run=True)
        again = Mirror("bench", tracking_uri=uri)
        step("`prepare()`, existing store (a restarted driver)", again.prepare)
        step(f"its first `sync` (loads {TRIALS} keys, writes {{n}})", again.sync, storage)
        step("`finish()` (sync, best, terminate)", mirror.finish, storage)
        for epochs in (5, 0):  # MLflow's cost grows with the metric points of a run
            name = f"short{epochs}"
            short = Mirror(name, tracking_uri=uri)
            short.prepare()
            _study(storage, name)
            _add(storage, name, 1, LATE, epochs)
            what = f"{epochs} epochs x {len(CURVES)} curves" if epochs else "score only"
            step(f"`sync` of {{n}} runs, {what}", short.sync, storage, per_run=True)
            assert not short.failed, short.last_error
        assert not mirror.failed and not again.failed, mirror.last_error or again.last_error
    lines = [
        "## MLflow mirror (SQLite store, one writer; trial runs inserted into MLflow's tables, "
        "50 runs a transaction)\n",
        f"Load average at the end: {os.getloadavg()[0]:.1f}. A run's cost is mostly CPU in "
        "SQLAlchemy Core's executemany (SQLite itself under half of it), then hpo building the "
        "rows and the commit; it grows with the run's metric points. In a study, `prepare` "
        "runs behind round 1 (`Mirror.prepare(wait=False)`).\n",
        "| step | seconds | per run |",
        "|---|---:|---:|",
        *(f"| {name} | {dt:.3f} | {per} |" for name, dt, per in rows),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
