"""`hpo ...`: run, resume, report and sync studies; the only module that prints for humans.

Heavy libraries (optuna, mlflow, numpy) are imported inside the commands so `hpo --help` is fast.
Bad input: one line on stderr naming the field and what is accepted, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from hpo.choices import CLI_BACKENDS, PRUNERS, SAMPLERS
from hpo.errors import InputError, one_line_warnings
from hpo.run_options import add_run_options, apply_run_options, stored_stop

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_DRIVER_GONE = 3  # hpo worker: the driver's lease expired
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
            sp.add_argument("--sampler", choices=SAMPLERS)
            sp.add_argument("--pruner", choices=PRUNERS)
            sp.add_argument("--backend", choices=CLI_BACKENDS)
            sp.add_argument("--scheduler", help="Dask scheduler address, with --backend dask")

    run = sub.add_parser("run", help="run a study file (studies/*.py)")
    run.add_argument("study_file")
    add_run_options(run)  # --time-budget, --target, --from
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
    one_line_warnings()  # a repaired journal, a full disk: one line each
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return EXIT_BAD_INPUT
    except InputError as exc:  # an unusable storage or tracking store, wherever it shows
        print(f"hpo: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT


# ---------------------------------------------------------------- commands
def _out(args) -> Path:
    return Path(args.out or "runs")


def _storage(args) -> str:
    return args.storage or str(_out(args) / "optuna.journal")


def cmd_run(args) -> int:
    from hpo.loader import StudyFileError, load_study_file

    try:
        study = load_study_file(args.study_file)
        study = study.with_options(
            source=str(args.study_file),
            **_given(
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
            ),
        )
        study = apply_run_options(study, args)
    except (StudyFileError, ValueError) as exc:
        raise UsageError(f"hpo run: {exc}") from None
    if args.scheduler and study.backend != "dask":
        raise UsageError("hpo run: --scheduler: needs --backend dask (or backend='dask')")
    if args.name is None:
        study = _free_name(study)
    return _execute(study, resume=False, scheduler=args.scheduler)


def _given(**options):
    """The options the user gave (argparse leaves the others None)."""
    return {k: v for k, v in options.items() if v is not None}


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
    from hpo.lease import takeover_note
    from hpo.loader import StudyFileError, load_study_file
    from hpo.records import ATTR

    storage, _, attrs = _stored_study(args, "resume")
    if note := takeover_note(attrs, args.name):  # its driver died (a live one: refused)
        print(note)
    config = attrs[ATTR["config"]]
    source = args.study_file or config.get("source")
    if not source:
        raise UsageError("hpo resume: --study-file: this study records no study file; give one")
    try:
        study = load_study_file(source, dataset=config.get("dataset")).with_options(
            name=args.name,
            rounds=config["rounds"],
            trials=config["trials"],
            workers=args.workers or config["workers"],
            seed=config["seed"],
            sampler=config["sampler"],
            pruner=config["pruner"],
            stop=stored_stop(config),  # with a time budget or target given to `hpo run`
            **{k: config[k] for k in ("repeats", "confirm", "confirm_repeats") if k in config},
            storage=storage,
            source=source,
            **_given(
                out=args.out or config.get("out"),
                tracking_uri=args.tracking_uri or config.get("tracking_uri"),  # the same mirror
                tracking=False if args.no_tracking else None,
            ),
        )
    except (StudyFileError, ValueError) as exc:
        raise UsageError(f"hpo resume: {exc}") from None
    return _execute(study, resume=True)


def _execute(study, *, resume: bool, scheduler: str | None = None) -> int:
    from hpo.study import Interrupted, StudyError

    _sigterm_as_interrupt()
    from hpo.console import ProgressDisplay, print_result

    display = ProgressDisplay(sys.stdout)
    verb = "resuming" if resume else "running"
    print(
        f"{verb} study {study.name!r}: {study.settings.budget_line()}, "
        f"{study.workers} worker(s), sampler {study.sampler}, storage {study.storage}"
    )
    try:
        with _backend(study, scheduler):
            result = study.run(resume=resume, progress=display)
    except InputError:  # unwritable or full, unpicklable: before any trial starts (see main)
        display.close()
        raise
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


@contextmanager
def _backend(study, scheduler):
    """With --backend dask: connect a Dask client so joblib's dask backend finds it."""
    if study.backend != "dask":
        yield
        return
    try:
        from distributed import Client
    except ModuleNotFoundError:
        raise UsageError("hpo: --backend dask needs: pip install 'hpo[dask]'") from None
    with Client(scheduler) if scheduler else Client(processes=True):
        yield


def _sigterm_as_interrupt() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def cmd_report(args) -> int:
    from hpo.console import print_result
    from hpo.report import write_report
    from hpo.result import load_result

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
    from hpo.records import ATTR
    from hpo.tracking import Mirror, TrackingError

    _, store, attrs = _stored_study(args, "sync")
    experiment = attrs.get(ATTR["config"], {}).get("experiment")
    mirror = Mirror(args.name, tracking_uri=args.tracking_uri, experiment=experiment)
    try:
        mirror.prepare()
        n = mirror.sync(store)
    except TrackingError as exc:
        print(f"hpo sync: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    status = str(attrs.get(ATTR["status"]) or "")
    if not mirror.failed and (status == "finished" or status.startswith("stopped")):
        # an ended study whose own finish() failed: best configuration, report, runs closed
        out = Path(args.out or attrs.get(ATTR["config"], {}).get("out") or "runs") / args.name
        mirror.finish(store, artifacts=sorted(p for p in out.glob("*") if p.is_file()))
    if mirror.failed:
        print(f"hpo sync: MLflow failed: {mirror.last_error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.name}: {n} run(s) written to MLflow; the mirror is complete")
    return 0


def cmd_worker(args) -> int:
    from hpo.distributed import DriverGone, follow
    from hpo.liveness import worker_id
    from hpo.loader import StudyFileError, load_study_file
    from hpo.storage import StorageError, describe

    try:
        study = load_study_file(args.study_file)
        study = study.with_options(storage=args.storage, tracking=False, **_given(name=args.name))
    except (StudyFileError, ValueError) as exc:
        raise UsageError(f"hpo worker: {exc}") from None
    _sigterm_as_interrupt()
    print(f"worker {worker_id()}: study {study.name!r} in {describe(study.storage)}", flush=True)
    try:
        follow(study.settings, log=lambda msg: print(msg, flush=True))
    except StorageError as exc:
        raise UsageError(f"hpo worker: {exc}") from None
    except DriverGone as exc:  # its trial in flight is recorded interrupted
        print(f"hpo worker: {exc}", file=sys.stderr)
        return EXIT_DRIVER_GONE
    except KeyboardInterrupt:
        print("worker interrupted; its running trial is recorded as interrupted", flush=True)
        return EXIT_INTERRUPTED
    return 0


def cmd_ui(args) -> int:
    from hpo.tracking import resolve_uri, study_pages

    uri = resolve_uri(args.tracking_uri)
    base = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {base} (store {uri})", flush=True)
    try:
        pages = study_pages(uri, args.host, args.port)
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
            f"{base}/#/experiments/<id>/runs?workflowType=machine_learning",
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
