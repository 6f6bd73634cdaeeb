"""hpo against its peers on the 6-5 study, and the engine's own cost per trial.

Rows, all measured in this run, each in a fresh process and a fresh temporary folder with its own
``sqlite:///.../mlflow.db``:

- hpo: ``studies/six_five.py`` (4 rounds x 36 trials + 5 confirmation trials, each 5 folds x 50
  epochs; 2 worker processes), MLflow mirror on and off. Wall =
  ``Study.run()`` end to end (MLflow import and prepare, worker start, 4 rounds, final retrain,
  figures); ``hpo run`` adds only its imports. Floor = summed trial seconds / 2 cores.
- Optuna alone: as many trials as hpo's mirror-on row, each calling the same objective
  (``studies.six_five.study.objective``: network, data, folds, epochs; lr and weight decay
  sampled log-uniform from the textbook's ranges), ``study.optimize(n_jobs=1 or 2)`` (threads)
  with optuna-integration's
  ``MLflowCallback`` (a bench-only extra, skipped when missing), in-memory Optuna storage. BLAS is
  pinned to one thread with threadpoolctl, as hpo's workers do. Wall includes ``import mlflow``
  (optuna-integration imports it), as hpo's does.
- Throughput: an instant objective, ``ROUNDS x PER_ROUND`` trials, 2 workers, mirror on and off:
  milliseconds of ``Study.run()`` per trial.

``python -m bench.peers [ROUNDS PER_ROUND]`` runs this section alone.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "six_five.py"
WORKERS = 2  # cores used by hpo's rows and Optuna's n_jobs=2 row
ROUNDS, PER_ROUND = 10, 300  # the throughput study: 3000 instant trials
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # as `make bench` does


def instant(params: dict) -> float:
    """An objective that costs nothing: a smooth peak at lr = 1e-2, weight_decay = 1e-6."""
    return -((math.log10(params["lr"]) + 2) ** 2) - (math.log10(params["weight_decay"]) + 6) ** 2


# -- rows, each run in a child process ------------------------------------------------------


def _hpo(folder: Path, tracking: bool) -> dict:
    from hpo.loader import load_study_file

    study = load_study_file(STUDY).with_options(
        workers=WORKERS,
        out=folder / "runs",
        tracking=tracking,
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
    )
    start = time.perf_counter()
    result = study.run()
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "busy": float(result.trials["duration"].sum()),
        "trials": len(result.trials),
        "best": result.best_value,
    }


def _optuna(folder: Path, n_jobs: int, trials: int) -> dict:
    import optuna
    from threadpoolctl import threadpool_limits

    from hpo.objective import Diverged, TrialContext
    from studies.six_five import study as six_five

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = six_five.objective  # the very objective of hpo's rows: same net, data, epochs, folds
    durations: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        params = {
            "lr": trial.suggest_float("lr", 1e-6, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-4, log=True),
        }
        t = time.perf_counter()
        try:
            value = work(params, TrialContext(trial.number, 1, trial.number))
        except Diverged:
            raise optuna.TrialPruned("diverged") from None  # as hpo records a diverged trial
        finally:
            durations.append(time.perf_counter() - t)
        return float(value)

    threadpool_limits(1)  # one BLAS thread, as in hpo's workers
    start = time.perf_counter()
    try:
        from optuna_integration import MLflowCallback  # imports mlflow: inside the clock
    except ImportError:
        return {"skipped": "optuna-integration is not installed (pip install '.[bench]')"}
    callback = MLflowCallback(tracking_uri=f"sqlite:///{folder}/mlflow.db", metric_name="val_acc")
    study = optuna.create_study(
        study_name=f"six-five-optuna-{n_jobs}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.optimize(objective, n_trials=trials, n_jobs=n_jobs, callbacks=[callback])
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "busy": sum(durations),
        "trials": len(study.trials),
        "best": study.best_value,
    }


def _throughput(folder: Path, tracking: bool, rounds: int, per_round: int) -> dict:
    from hpo import LogUniform, SearchSpace, StopPolicy, Study

    study = Study(
        "throughput",
        SearchSpace(lr=LogUniform(1e-6, 1e-2), weight_decay=LogUniform(1e-8, 1e-4)),
        instant,
        rounds=rounds,
        trials=per_round,
        sampler="random",  # the engine's own cost, not a model's (TPE: ~20 ms a draw)
        workers=WORKERS,
        out=folder / "runs",
        stop=StopPolicy(when_unchanged=False),  # every round runs
        tracking=tracking,
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
    )
    start = time.perf_counter()
    result = study.run()
    wall = time.perf_counter() - start
    return {"wall": wall, "trials": len(result.trials)}


def _child(kind: str, **kw) -> dict:
    """Run one row in a fresh Python process and a fresh temporary folder: no warm worker pool,
    no MLflow already imported, no global MLflow state carried from one row to the next."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    with tempfile.TemporaryDirectory() as tmp:
        spec = json.dumps({"kind": kind, "folder": tmp, **kw})
        out = subprocess.run(
            [sys.executable, "-m", "bench.peers", "--child", spec],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"bench.peers {kind} {kw} failed:\n" + "\n".join(tail))
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child_main(spec: dict) -> dict:
    folder, kind = Path(spec.pop("folder")), spec.pop("kind")
    fn = {"hpo": _hpo, "optuna": _optuna, "throughput": _throughput}[kind]
    return fn(folder, **spec)


# -- the section ------------------------------------------------------------------------------


def run(rounds: int = ROUNDS, per_round: int = PER_ROUND) -> str:
    load = os.getloadavg()[0]
    on = _child("hpo", tracking=True)
    off = _child("hpo", tracking=False)
    peers = {n: _child("optuna", n_jobs=n, trials=on["trials"]) for n in (1, 2)}
    fast_on = _child("throughput", tracking=True, rounds=rounds, per_round=per_round)
    fast_off = _child("throughput", tracking=False, rounds=rounds, per_round=per_round)

    floor = on["busy"] / WORKERS
    lines = [
        "## Peers: the 6-5 study end to end, against Optuna + MLflowCallback",
        "",
        f"{on['trials']} trials of studies/six_five.py's objective (5 folds x 50 epochs on 500 "
        "images), "
        f"{os.cpu_count()} CPUs; every row in a fresh process and a fresh folder with its own "
        "`sqlite:///mlflow.db`; one BLAS thread per trial (threadpoolctl). Wall = hpo's "
        "`Study.run()` end to end (MLflow, workers, 4 rounds, final retrain, figures), or "
        "Optuna's `optimize` including `import mlflow`. Floor = summed trial seconds / "
        f"{WORKERS} cores. Optuna: in-memory storage, RandomSampler(seed=0), threads (n_jobs), "
        "MLflowCallback logging params, the final val_acc and tags (no per-epoch curves); it "
        "samples the textbook's ranges only, where hpo narrows them each round, so its best "
        "val_acc is no verdict on either.",
        "",
        "| row | wall s | summed trial s | floor s | wall / floor | hpo speed-up | best val_acc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def row(name: str, r: dict, hpo: bool) -> str:
        """hpo rows: their own floor and wall / floor; peer rows: hpo's speed-up over them."""
        if "skipped" in r:
            return f"| {name} | skipped: {r['skipped']} | | | | | |"
        own = r["busy"] / WORKERS
        cells = [f"{r['wall']:.1f}", f"{r['busy']:.1f}"]
        cells += [f"{own:.1f}", f"{r['wall'] / own:.2f}x", ""] if hpo else ["", "", ""]
        if not hpo:
            cells[-1] = f"{r['wall'] / on['wall']:.2f}x"
        return f"| {name} | " + " | ".join([*cells, f"{r['best']:.3f}"]) + " |"

    lines += [
        row("hpo, 2 workers, mirror on", on, True),
        row("hpo, 2 workers, mirror off", off, True),
        row("Optuna n_jobs=1 + MLflowCallback", peers[1], False),
        row("Optuna n_jobs=2 + MLflowCallback", peers[2], False),
        f"| floor (hpo mirror-on summed trial s / {WORKERS}) | {floor:.1f} | | | 1.00x | | |",
    ]
    n_on, n_off = fast_on["trials"], fast_off["trials"]
    ms_on, ms_off = 1000 * fast_on["wall"] / n_on, 1000 * fast_off["wall"] / n_off
    lines += [
        "",
        f"Throughput: an instant objective, {rounds} rounds x {per_round} trials, {WORKERS} "
        "workers, `Study.run()` wall time per trial.",
        "",
        "| mirror | trials | wall s | ms / trial |",
        "| --- | ---: | ---: | ---: |",
        f"| off | {n_off} | {fast_off['wall']:.1f} | {ms_off:.2f} |",
        f"| on | {n_on} | {fast_on['wall']:.1f} | {ms_on:.2f} |",
        "",
    ]
    peer2 = peers[2]
    vs = (
        f"{peer2['wall'] / on['wall']:.2f}x faster than Optuna n_jobs=2 + MLflowCallback"
        if "skipped" not in peer2
        else f"Optuna + MLflowCallback skipped ({peer2['skipped']})"
    )
    lines.append(
        f"Load average (1 min): {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"({os.cpu_count()} CPUs; above that, other processes shared the cores)."
    )
    lines.append(
        f"Headline: hpo with the mirror is {on['wall'] / floor:.2f}x the floor; {vs}; "
        f"instant-objective throughput with the mirror on is "
        f"{ms_on / ms_off:.2f}x the engine's own cost per trial ({ms_on:.1f} vs {ms_off:.1f} ms)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(_child_main(json.loads(sys.argv[2]))))
    else:
        print(run(*(int(a) for a in sys.argv[1:3])))
