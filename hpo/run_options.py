"""`hpo run`'s options for when to stop and where to start: ``--time-budget``, ``--target`` and
``--from`` (a warm start), parsed here and applied to a loaded study. Prints nothing."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

__all__ = ["add_run_options", "apply_run_options", "stored_stop"]


def _duration(text: str) -> float:
    """An argparse type: a duration such as 90s, 10m or 1h30m, in seconds."""
    from hpo.budget import parse_duration  # imports optuna: not for `hpo --help`

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--time-budget",
        type=_duration,
        metavar="DURATION",
        help="stop once this much wall time is spent (90s, 10m, 1h30m); trials in flight "
        "finish and the best is still retrained",
    )
    parser.add_argument(
        "--target", type=float, help="stop once a trial scores this well (in the metric's units)"
    )
    parser.add_argument(
        "--from",
        dest="warm_start",
        metavar="NAME",
        help="warm start from the finished study NAME in the same storage: its trials inform "
        "the first narrowing and its final ranges are the starting ranges",
    )


def apply_run_options(study, args: argparse.Namespace):
    """``study`` with the options given on the command line (ValueError on a bad combination)."""
    if args.warm_start is not None:
        study = study.with_options(warm_start=args.warm_start)
    given = {"time_budget": args.time_budget, "target": args.target}
    if given := {k: v for k, v in given.items() if v is not None}:
        study = study.with_options(stop=replace(study.stop, **given))
    return study


def stored_stop(config: dict[str, Any]):
    """The stop policy a study was started with (a time budget or target from the command line
    included), so that `hpo resume` keeps it."""
    from hpo.settings import StopPolicy

    return StopPolicy(**config["stop"]) if config.get("stop") else None
