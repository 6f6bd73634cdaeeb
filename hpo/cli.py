"""`hpo ...`: run, resume, report and sync studies; the only module that prints for humans.

Heavy libraries (optuna, mlflow, numpy) are imported inside the commands so `hpo --help` is fast.
Bad input: one line on stderr naming the field and what is accepted, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message}")


def _at_least(low: int):
    """An argparse type: an integer >= ``low`` (argparse names the option in its message)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hpo",
        description="Hyperparameter search in rounds of narrowing ranges, "
        "run in parallel and tracked in MLflow.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp, *, study_file: bool):
        sp.add_argument(
            "--storage",
            help="Optuna storage: a journal file path (default "
            "OUT/optuna.journal), sqlite:///FILE or postgresql+psycopg://...",
        )
        sp.add_argument("--out", help="folder for the storage, tables and figures (default runs)")
        sp.add_argument(
            "--tracking-uri",
            help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
        )
        sp.add_argument("--no-tracking", action="store_true", help="do not mirror to MLflow")
        if study_file:
            sp.add_argument("--rounds", type=_at_least(1))
            sp.add_argument("--trials", type=_at_least(1), help="trials per round")
            sp.add_argument(
                "--workers",
                type=_at_least(1),
                help="worker processes (default: the number of CPUs)",
            )
            sp.add_argument("--seed", type=_at_least(0))
            sp.add_argument("--sampler", choices=["random", "tpe", "qmc", "cmaes", "grid"])
            sp.add_argument("--pruner", choices=["none", "median", "hyperband"])
            sp.add_argument("--backend", choices=["loky", "dask"])
            sp.add_argument("--scheduler", help="Dask scheduler address, with --backend dask")

    run = sub.add_parser("run", help="run a study file (studies/*.py)")
    run.add_argument("study_file")
    run.add_argument(
        "--name",
        help="study name (default: the study file's; a free name is picked when it exists)",
    )
    common(run, study_file=True)

    resume = sub.add_parser("resume", help="finish an interrupted study")
    resume.add_argument("name")
    resume.add_argument("--study-file", help="study file (default: the one it was started from)")
    resume.add_argument("--workers", type=_at_least(1))
    common(resume, study_file=False)

    report = sub.add_parser("report", help="print a study's table and write its figures")
    report.add_argument("name")
    common(report, study_file=False)

    sync = sub.add_parser("sync", help="complete or rebuild a study's MLflow mirror")
    sync.add_argument("name")
    common(sync, study_file=False)

    wk = sub.add_parser("worker", help="join a running study from this machine and take trials")
    wk.add_argument("study_file", help="the study file the driver runs (same code everywhere)")
    wk.add_argument("--storage", required=True, help="the driver's storage, postgresql+psycopg://")
    wk.add_argument("--name", help="study name (default: the study file's)")

    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1")
    ui.add_argument("--port", type=_at_least(1), default=5000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--tracking-uri")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return EXIT_BAD_INPUT


# ---------------------------------------------------------------- commands
def _out(args) -> Path:
    return Path(args.out or "runs")


def _storage(args) -> str:
    return args.storage or str(_out(args) / "optuna.journal")


def _tracking(args) -> dict:
    return {"tracking": not args.no_tracking, "tracking_uri": args.tracking_uri}


def cmd_run(args) -> int:
    from hpo.loader import StudyFileError, load_study_file

    try:
        study = load_study_file(args.study_file)
        study = study.with_options(
            name=args.name,
            rounds=args.rounds,
            trials=args.trials,
            workers=args.workers,
            seed=args.seed,
            sampler=args.sampler,
            pruner=args.pruner,
            backend=args.backend,
            out=args.out,
            storage=args.storage,
            tracking_uri=args.tracking_uri,
            tracking=False if args.no_tracking else None,
            source=str(args.study_file),
        )
    except (StudyFileError, ValueError) as exc:
        raise UsageError(f"hpo run: {exc}") from None
    if args.scheduler and study.backend != "dask":
        raise UsageError("hpo run: --scheduler: needs --backend dask (or backend='dask')")
    if args.name is None:
        study = _free_name(study)
    return _execute(study, resume=False, scheduler=args.scheduler)


def _free_name(study):
    if not study.exists():
        return study
    base, i = study.name, 2
    while study.with_options(name=f"{base}-{i}").exists():
        i += 1
    print(
        f"study {base!r} already exists in {study.storage}: this run is {base}-{i} "
        f"(`hpo resume {base}` finishes the old one)"
    )
    return study.with_options(name=f"{base}-{i}")


def _stored_study(args, command: str):
    """(storage spec, storage, parent attrs) of the study ``args.name`` names, for resume, report
    and sync: a one-line usage error when the storage or the study is not there."""
    from hpo.storage import StorageError, open_storage, parent_attrs

    storage = _storage(args)
    try:
        if "://" not in storage and not Path(storage).exists():
            raise StorageError(f"no storage at {storage!r} (give --storage or --out)")
        store = open_storage(storage, create=False)
    except StorageError as exc:
        raise UsageError(f"hpo {command}: {exc}") from None
    attrs = parent_attrs(store, args.name)
    if attrs is None:
        raise UsageError(f"hpo {command}: name: no study {args.name!r} in {storage}")
    return storage, store, attrs


def cmd_resume(args) -> int:
    from hpo.loader import StudyFileError, load_study_file
    from hpo.storage import ATTR

    storage, _, attrs = _stored_study(args, "resume")
    config = attrs[ATTR["config"]]
    source = args.study_file or config.get("source")
    if not source:
        raise UsageError("hpo resume: --study-file: this study records no study file; give one")
    try:
        study = load_study_file(source).with_options(
            name=args.name,
            rounds=config["rounds"],
            trials=config["trials"],
            workers=args.workers or config["workers"],
            seed=config["seed"],
            sampler=config["sampler"],
            pruner=config["pruner"],
            storage=storage,
            out=args.out or config.get("out"),
            source=source,
            tracking_uri=args.tracking_uri or config.get("tracking_uri"),  # the same mirror
            tracking=False if args.no_tracking else None,
        )
    except (StudyFileError, ValueError) as exc:
        raise UsageError(f"hpo resume: {exc}") from None
    return _execute(study, resume=True)


def _execute(study, *, resume: bool, scheduler: str | None = None) -> int:
    from hpo.storage import StorageError
    from hpo.study import Interrupted, StudyError
    from hpo.tracking import TrackingError

    _sigterm_as_interrupt()
    display = ProgressDisplay(sys.stdout)
    verb = "resuming" if resume else "running"
    print(
        f"{verb} study {study.name!r}: {study.rounds} round(s) x {study.trials} trials, "
        f"{study.workers} worker(s), sampler {study.sampler}, storage {study.storage}"
    )
    try:
        with _backend(study, scheduler):
            result = study.run(resume=resume, progress=display)
    except (TrackingError, StorageError) as exc:  # unwritable or full: before any trial starts
        print(f"hpo: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as exc:
        display.close()
        storage = study.storage if "://" in study.storage else Path(study.storage).resolve()
        print(f"\n{exc}. Resume with:\n  hpo resume {study.name} --storage {storage}")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # before the first round: no trial ran
        display.close()
        print(f"\nstudy {study.name!r} interrupted before its first trial", file=sys.stderr)
        return EXIT_INTERRUPTED
    except StudyError as exc:
        display.close()
        print(f"hpo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    display.close()
    print_result(result)
    return 0


class _backend:
    """With --backend dask: connect a Dask client so joblib's dask backend finds it."""

    def __init__(self, study, scheduler):
        self.study, self.scheduler, self.client = study, scheduler, None

    def __enter__(self):
        if self.study.backend == "dask":
            try:
                from distributed import Client
            except ModuleNotFoundError:
                raise UsageError("hpo: --backend dask needs: pip install 'hpo[dask]'") from None
            self.client = Client(self.scheduler) if self.scheduler else Client(processes=True)
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()


def _sigterm_as_interrupt() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


class ProgressDisplay:
    """One progress line for the whole study: a live line on a terminal, plain lines otherwise."""

    def __init__(self, stream):
        self.stream, self.tty = stream, stream.isatty()
        self.last_line, self.last_print, self.live = "", 0.0, False

    def __call__(self, p) -> None:
        best = "-" if p.best is None else f"{p.best:.4f}"
        mins, secs = divmod(int(p.elapsed), 60)
        line = (
            f"round {p.round}/{p.rounds}: {p.done}/{p.total} trials done, {p.running} running,"
            f" {p.failed} failed, best {best}, {mins}:{secs:02d}"
        )
        if p.event in ("narrowed", "round_start") and p.done == 0:
            self._end_live()
            print(f"round {p.round}/{p.rounds} starts", file=self.stream, flush=True)
            return
        if p.event == "final":
            self._end_live()
            print(
                "retraining the best configuration and scoring it on the test split",
                file=self.stream,
                flush=True,
            )
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last_line)))
            self.stream.flush()
            self.live = True
            if p.event == "round_end":
                self._end_live()
        elif line != self.last_line and (
            p.event == "round_end" or time.monotonic() - self.last_print > 5
        ):
            print(line, file=self.stream, flush=True)
            self.last_print = time.monotonic()
        self.last_line = line

    def _end_live(self):
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
            self.live = False

    def close(self):
        self._end_live()


def print_result(result) -> None:
    print(f"\nstudy {result.name}: {result.status}")
    for r in result.rounds:
        print(f"round {r['round']}:")
        for name, param in r["space"].items():
            change = r.get("changes", {}).get(name)
            why = "starting range"
            if change:
                detail = change["detail"]
                why = (
                    detail
                    if detail.startswith(change["reason"])
                    else f"{change['reason']}: {detail}"
                )
            print(f"  {name:<14} {_range(param):<32} {why}")
    frame = result.trials
    done = frame["status"].isin(("finished", "pruned", "diverged")).sum() if len(frame) else 0
    print(
        f"trials: {len(frame)} recorded, {done} finished"
        + _counts(frame, ("pruned", "diverged", "failed", "interrupted"))
    )
    if result.best_params:
        params = ", ".join(f"{k}={_num(v)}" for k, v in result.best_params.items())
        print(f"best configuration: {params}")
        print(f"best score ({result.metric}): {result.best_value:.4f}")
    if result.test_score is not None:
        print(f"test score of the best configuration (retrained once): {result.test_score:.4f}")
    if result.files:
        print(f"tables and figures in {result.out}/: {', '.join(sorted(result.files))}")
    print("inspect the trials: make ui   (MLflow, runs table under the study's experiment)")


def _counts(frame, statuses) -> str:
    if not len(frame):
        return ""
    parts = [
        f"{(frame['status'] == s).sum()} {s}" for s in statuses if (frame["status"] == s).any()
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _range(param: dict) -> str:
    if "low" not in param:
        return f"Categorical({', '.join(_num(c) for c in param.get('choices', ()))})"
    return f"{param['type']}({_num(param['low'])}, {_num(param['high'])})"


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def cmd_report(args) -> int:
    from hpo.report import write_report
    from hpo.study import load_result

    _, store, _ = _stored_study(args, "report")
    write_report(store, args.name, _out(args))
    result = load_result(store, args.name, _out(args))
    import pandas as pd

    with pd.option_context("display.max_rows", 200, "display.width", 160):
        cols = [c for c in result.trials.columns if c not in ("worker", "reason")]
        print(result.trials[cols].sort_values("value", ascending=False).to_string(index=False))
    print_result(result)
    return 0


def cmd_sync(args) -> int:
    from hpo.tracking import Mirror, TrackingError

    _, store, attrs = _stored_study(args, "sync")
    experiment = attrs.get("hpo.config", {}).get("experiment")
    mirror = Mirror(args.name, tracking_uri=args.tracking_uri, experiment=experiment)
    try:
        mirror.prepare()
        n = mirror.sync(store)
    except TrackingError as exc:
        print(f"hpo sync: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    status = str(attrs.get("hpo.status") or "")
    if not mirror.failed and (status == "finished" or status.startswith("stopped")):
        # an ended study whose own finish() failed: best configuration, report, runs closed
        out = Path(args.out or attrs.get("hpo.config", {}).get("out") or "runs") / args.name
        mirror.finish(store, artifacts=sorted(p for p in out.glob("*") if p.is_file()))
    if mirror.failed:
        print(f"hpo sync: MLflow failed: {mirror.last_error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.name}: {n} run(s) written to MLflow; the mirror is complete")
    return 0


def cmd_worker(args) -> int:
    from hpo.distributed import follow
    from hpo.loader import StudyFileError, load_study_file
    from hpo.runner import worker_id
    from hpo.storage import StorageError, describe

    try:
        study = load_study_file(args.study_file)
        study = study.with_options(name=args.name, storage=args.storage, tracking=False)
    except (StudyFileError, ValueError) as exc:
        raise UsageError(f"hpo worker: {exc}") from None
    _sigterm_as_interrupt()
    print(f"worker {worker_id()}: study {study.name!r} in {describe(study.storage)}", flush=True)
    try:
        follow(study, log=lambda msg: print(msg, flush=True))
    except StorageError as exc:
        raise UsageError(f"hpo worker: {exc}") from None
    except KeyboardInterrupt:
        print("worker interrupted; its running trial is recorded as interrupted", flush=True)
        return EXIT_INTERRUPTED
    return 0


def cmd_ui(args) -> int:
    from hpo.tracking import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    base = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {base} (store {uri})", flush=True)
    try:
        pages = _study_pages(uri, args.host, args.port)
    except Exception as exc:  # listing is a courtesy: the UI starts anyway
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"  (cannot list the studies in {uri}: {lines[0][:200]})", flush=True)
        pages = None
    if pages:
        print("runs table of each study (nested: study > rounds > trials):", flush=True)
        for experiment, url in pages:
            print(f"  {experiment}: {url}", flush=True)
    elif pages is not None:
        print(
            f"  no hpo study in this store yet (make study); a study's runs will be at "
            f"{base}/#/experiments/<id>/runs",
            flush=True,
        )
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(mlflow) if mlflow.exists() else "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    os.execvp(cmd[0], cmd)
    return 0


def _study_pages(uri: str, host: str, port: int) -> list[tuple[str, str]]:
    """(experiment name, runs-table URL) of every experiment the hpo mirror wrote to."""
    from hpo.tracking import Mirror

    db = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and not Path(db.split("?")[0]).exists():
        return []  # no store yet: do not create one just to find it empty
    from mlflow import MlflowClient

    pages = []
    for exp in MlflowClient(uri).search_experiments(max_results=1000):
        study = exp.tags.get("hpo.study")
        if study:
            mirror = Mirror(study, tracking_uri=uri, experiment=exp.name)
            mirror.experiment_id = exp.experiment_id
            pages.append((exp.name, mirror.experiment_url(host, port)))
    return pages


COMMANDS = {
    "run": cmd_run,
    "resume": cmd_resume,
    "report": cmd_report,
    "sync": cmd_sync,
    "worker": cmd_worker,
    "ui": cmd_ui,
}

if __name__ == "__main__":
    sys.exit(main())
