"""A study's settings: validated once when the study is defined, then frozen.

:class:`Settings` is what the driver, the workers (:meth:`Settings.round_job`) and the storage
(:meth:`Settings.config`) read; :class:`hpo.Study` is the user's handle on it. Every check says
which field is wrong and what it accepts, before anything is written.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import CellType
from typing import Any

from hpo.budget import parse_duration
from hpo.choices import BACKENDS, DRAWN_FIRST, PRUNERS, SAMPLERS
from hpo.errors import InputError, env_number
from hpo.explore import exploration_space, rival_centres
from hpo.guided import history
from hpo.narrowing import NarrowingPolicy
from hpo.records import metric_of, to_json
from hpo.space import Categorical, SearchSpace
from hpo.storage import check_spec, round_name
from hpo.trials import RoundJob

__all__ = ["OPTIONS", "Settings", "StopPolicy", "check_picklable", "max_workers"]


@dataclass(frozen=True)
class StopPolicy:
    """When to stop before the last round: ranges unchanged, or no gain for ``patience`` rounds;
    or at any time: ``time_budget`` (seconds, or ``"10m"``, ``"1h30m"``) of wall time spent, or a
    trial scoring ``target`` or better. Trials in flight finish; the best is still retrained."""

    when_unchanged: bool = True
    patience: int | None = None
    min_delta: float = 0.0
    time_budget: float | str | None = None
    target: float | None = None

    def __post_init__(self):
        if self.time_budget is not None:
            try:
                object.__setattr__(self, "time_budget", parse_duration(self.time_budget))
            except ValueError as exc:
                raise ValueError(f"stop.time_budget: {exc}") from None
        target = self.target
        if target is not None and not (
            isinstance(target, int | float)
            and not isinstance(target, bool)
            and math.isfinite(target)
        ):
            raise ValueError(f"stop.target: must be a finite number or None, got {target!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(
                f"stop.patience: must be a positive integer or None, got {self.patience!r}"
            )
        if not (isinstance(self.min_delta, (int, float)) and self.min_delta >= 0):
            raise ValueError(f"stop.min_delta: must be a number >= 0, got {self.min_delta!r}")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything about a study but its trials. Options left at None take the default shown."""

    name: str
    space: SearchSpace
    objective: Callable[..., Any]
    direction: str | None = None  # None: the objective's ``direction``, else maximize
    sampler: str = "tpe"  # across rounds (hpo.guided); random: the textbook's; qmc, cmaes, grid
    pruner: str | None = None  # none, median, hyperband
    rounds: int = 3
    trials: int = 20  # per round
    workers: int | None = None  # None: the number of CPUs
    seed: int = 0
    storage: str | None = None  # None: OUT/optuna.journal
    out: str | Path = "runs"
    narrowing: NarrowingPolicy | None = None
    stop: StopPolicy | None = None
    tracking: bool = True
    tracking_uri: str | None = None
    experiment: str | None = None  # None: the study's name
    fixed: dict[str, Any] | None = None  # settings shown with every trial (epochs, net, ...)
    backend: str = "loky"
    max_failures: int = 5
    source: str | None = None  # the study file, so that `hpo resume` can rebuild the objective
    dataset: str | None = None  # None: the objective's data name; resume rebuilds on the same
    figures: Callable[..., Any] | None = None
    warm_start: str | None = None  # a finished study of the same storage to start from
    repeats: int = 1  # evaluations of each configuration (seeds apart), ranked on their mean
    confirm: int | None = None  # top N re-evaluated after the last round; None: 5 for a model
    confirm_repeats: int = 3  # (an objective with ``final``), 0 for a plain function
    retrains: int = 3  # the final retrain on train + validation, with this many seeds: the test
    # score is their mean, and retrains that disagree make the choice fragile

    def __post_init__(self) -> None:
        _check_identity(self.name, self.space, self.objective)
        direction = self.direction or getattr(self.objective, "direction", "maximize")
        _check_choice("direction", direction, ("maximize", "minimize"))
        _check_choice("sampler", self.sampler, SAMPLERS)
        _check_choice("pruner", self.pruner, (None, *PRUNERS))
        _check_choice("backend", self.backend, BACKENDS)
        checks = (("rounds", 1), ("trials", 1), ("seed", 0), ("max_failures", 1), ("repeats", 1))
        if self.confirm is not None:
            checks += (("confirm", 0),)
        for name, low in (*checks, ("confirm_repeats", 1), ("retrains", 1)):
            _check_int(name, getattr(self, name), low)
        if self.workers is not None:
            _check_int("workers", self.workers, 1)
            if self.backend != "dask":  # a Dask cluster's workers run on its own machines
                _check_workers_cap(self.workers)
        if self.sampler == "grid":
            _check_grid(self.space, self.rounds, self.trials)
        if self.sampler == "cmaes":
            _check_cmaes()
        _check_types(self)
        out = Path(self.out)
        resolved = {
            "direction": direction,
            "workers": self.workers or min(os.cpu_count() or 1, max_workers()[0]),
            "out": out,
            "storage": self.storage or str(out / "optuna.journal"),
            "narrowing": self.narrowing or NarrowingPolicy(),
            "stop": self.stop or StopPolicy(),
            "experiment": self.experiment or self.name,
            "fixed": _json_fixed(self.fixed),
            "dataset": self.dataset or getattr(getattr(self.objective, "data", None), "name", None),
            "confirm": self.confirm if self.confirm is not None else _default_confirm(self),
        }
        for key, value in resolved.items():
            object.__setattr__(self, key, value)
        check_spec(self.storage)

    @property
    def metric(self) -> str:
        """What the score measures (e.g. val_acc): the objective's ``metric``, else value."""
        return metric_of(self.objective)

    def config(self) -> dict[str, Any]:
        """The settings stored with the study (and logged to MLflow)."""
        return to_json(
            {
                "direction": self.direction,
                "sampler": self.sampler,
                "pruner": self.pruner,
                "rounds": self.rounds,
                "trials": self.trials,
                "workers": self.workers,
                "seed": self.seed,
                "metric": self.metric,
                "score": getattr(self.objective, "score", None) or "returned",
                "repeats": self.repeats,
                "confirm": self.confirm,
                "confirm_repeats": self.confirm_repeats,
                "fixed": self.fixed,
                "narrowing": asdict(self.narrowing),
                "stop": asdict(self.stop),
                "source": self.source,
                "dataset": self.dataset,
                "experiment": self.experiment,
                "out": str(self.out),
                "space": self.space.to_dict(),
                "backend": self.backend,
                "tracking_uri": _absolute_uri(self.tracking_uri) if self.tracking else None,
                "warm_start": self.warm_start,
            }
        )

    def budget(self) -> tuple[int, int]:
        """Evaluations of the objective: (the search rounds', the confirmation round's)."""
        return self.rounds * self.trials * self.repeats, self.confirm * self.confirm_repeats

    def budget_line(self) -> str:
        """E.g. ``4 rounds x 30 trials + confirmation 5 x 3 = 135 evaluations``."""
        search, confirm = self.budget()
        line = f"{self.rounds} round(s) x {self.trials} trials"
        line += f" x {self.repeats} repeats" if self.repeats > 1 else ""
        if confirm:
            line += f" + confirmation {self.confirm} x {self.confirm_repeats}"
        return f"{line} = {search + confirm} evaluations at most"

    def confirm_job(self, k: int, study_name: str) -> RoundJob:
        """The jobs of the confirmation round ``k``: fixed params (enqueued with each trial),
        ``confirm_repeats`` fresh seeds each, no exploration."""
        job = self.round_job(k, self.space)
        return replace(
            job,
            study_name=study_name,
            space_dict=exploration_space(self.space, self.space).to_dict(),
            repeats=self.confirm_repeats,
            confirm=True,
            explore=0.0,
            explore_dict=None,
        )

    def explore_share(self, k: int) -> float:
        """Round ``k``'s share of exploration trials: ``explore``, but in round 1 of a cold start
        of several rounds with the tpe or random sampler ``survey`` (of the hard limits) when
        that is more."""
        p = self.narrowing
        cold = k == 1 and self.rounds > 1 and not self.warm_start and self.sampler in DRAWN_FIRST
        return max(p.survey, p.explore) if cold else p.explore

    def round_job(
        self,
        k: int,
        space: SearchSpace,
        best: dict | None = None,
        trials: Any = None,
        learns: bool = True,
        since: int = 1,
    ) -> RoundJob:
        """What a worker needs to take trials of round ``k`` (the driver's and `hpo worker`'s);
        ``trials`` (the study's trials frame): what a TPE round learns from the earlier rounds
        (those from ``since`` on, and every exploration trial: hpo.records.learning_since);
        ``learns`` False (the last narrowing widened the ranges without a signal, or reached
        toward a kept choice's region: hpo.records.RoundRecord.learns): a TPE round
        samples at random and no trial is drawn near the best so far (it may be a noise
        winner)."""
        wide = exploration_space(self.space, space, choices=self.sampler in DRAWN_FIRST)
        sampler = self.sampler if learns or self.sampler != "tpe" else "random"
        local = self.narrowing.local if learns and self.sampler != "grid" else 0.0
        return RoundJob(
            # a journal path made absolute: Dask workers may run in another folder (same disk)
            storage=self.storage if "://" in self.storage else str(Path(self.storage).resolve()),
            study_name=round_name(self.name, k),
            repeats=self.repeats,
            round=k,
            space_dict=space.to_dict(),
            objective=self.objective,
            direction=self.direction,
            sampler=sampler,
            pruner=self.pruner,
            max_steps=self.fixed.get("epochs"),
            seed=self.seed,
            metric=self.metric,
            max_failures=self.max_failures,
            explore=0.0 if self.sampler == "grid" else self.explore_share(k),
            explore_dict=wide.to_dict(),
            local=local,
            best=best,
            rivals=rival_centres(trials, space, best, self.direction, k) if local else (),
            history=history(trials, wide, k, since) if sampler == "tpe" else (),
        )


# Option names a Study accepts (everything but its name, space and objective).
OPTIONS = tuple(f.name for f in fields(Settings) if f.name not in ("name", "space", "objective"))


def _default_confirm(s: Settings) -> int:
    """5 for an objective that trains a model (it has ``final``: seeds make its score noisy),
    0 for a plain function; never with the grid sampler (one trial per grid point)."""
    return 5 if callable(getattr(s.objective, "final", None)) and s.sampler != "grid" else 0


def _check_identity(name: Any, space: Any, objective: Any) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"name: must be a non-empty string without '/', got {name!r}")
    if any(c in name for c in "/\\\n"):
        raise ValueError(f"name: must be a non-empty string without '/', got {name!r}")
    if not isinstance(space, SearchSpace):
        raise ValueError(f"space: must be a hpo.SearchSpace, got {type(space).__name__}")
    if not callable(objective):
        raise ValueError(f"objective: must be callable, got {type(objective).__name__}")


def _check_choice(name: str, value: Any, accepted: tuple) -> None:
    if value not in accepted:
        shown = ", ".join(str(a) for a in accepted if a is not None)
        if name == "direction":
            raise ValueError(f"direction: must be 'maximize' or 'minimize', got {value!r}")
        raise ValueError(f"{name}: must be one of {shown}; got {value!r}")


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")


WORKERS_PER_CPU = 8
MB_PER_WORKER = 200  # a worker process with numpy, optuna and a 6-5 network: about 150 MB


def max_workers() -> tuple[int, str]:
    """The most worker processes this machine is given, and why: ``HPO_MAX_WORKERS`` when set,
    else min(8 x the CPUs, the available memory / 200 MB), so that a typo such as
    ``--workers 100000`` cannot start processes until the OOM killer steps in."""
    value = env_number("HPO_MAX_WORKERS", int, ValueError, "an integer >= 1")
    if value is not None:
        return value, "set by HPO_MAX_WORKERS"
    cpus = os.cpu_count() or 1
    cap, why = WORKERS_PER_CPU * cpus, f"{WORKERS_PER_CPU} x {cpus} CPUs"
    available = _available_mb()
    if available is not None and available // MB_PER_WORKER < cap:
        cap = max(1, available // MB_PER_WORKER)
        why = f"{MB_PER_WORKER} MB each of {available} MB available memory"
    return cap, why


def _available_mb() -> int | None:
    """MemAvailable from /proc/meminfo in MB (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_workers_cap(workers: int) -> None:
    cap, why = max_workers()
    if workers > cap:
        raise ValueError(
            f"workers: {workers} is more than this machine's cap of {cap} ({why}); "
            f"set HPO_MAX_WORKERS={workers} to allow it on purpose"
        )


def check_picklable(objective: Callable[..., Any], backend: str) -> None:
    """Refuse, before anything is written, an objective that the worker processes cannot receive
    (loky and dask send it with cloudpickle). Checked for one loky worker too, which runs it
    in-process: a resume with more workers would fail. Threads and 'sequential' need no pickling.
    """
    if backend in ("sequential", "threading"):
        return
    import cloudpickle  # what loky (and the dask path of hpo.runner) sends objectives with

    try:
        cloudpickle.dumps(objective)
    except Exception as exc:
        what = _unpicklable_part(objective, cloudpickle)
        raise InputError(
            f"objective: cannot be pickled for the worker processes{what} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "keep locks, open files and connections out of it (backend 'threading' or "
            "'sequential' runs it without pickling)"
        ) from None


def _unpicklable_part(objective: Any, cloudpickle) -> str:
    """`` : its 'NAME'`` for the first closure variable or attribute that fails to pickle."""
    parts = list((getattr(objective, "__dict__", None) or {}).items())
    cells = getattr(objective, "__closure__", None) or ()
    names = getattr(getattr(objective, "__code__", None), "co_freevars", ())
    parts += list(zip(names, cells, strict=False))
    for name, value in parts:
        try:
            cloudpickle.dumps(value.cell_contents if isinstance(value, CellType) else value)
        except Exception:
            return f": its {name!r}"
    return ""


def _check_types(s: Settings) -> None:
    if s.narrowing is not None and not isinstance(s.narrowing, NarrowingPolicy):
        raise ValueError("narrowing: must be a hpo.NarrowingPolicy")
    if s.stop is not None and not isinstance(s.stop, StopPolicy):
        raise ValueError("stop: must be a hpo.StopPolicy")
    if s.warm_start is not None and (not isinstance(s.warm_start, str) or not s.warm_start):
        raise ValueError(f"warm_start: must be the name of a study, got {s.warm_start!r}")
    if s.warm_start is not None and s.warm_start == s.name:
        raise ValueError(f"warm_start: must name another study than {s.name!r}")
    if s.figures is not None and not callable(s.figures):
        raise ValueError("figures: must be a callable (result, curves, out_dir) -> paths")


def _check_cmaes() -> None:
    """Optuna's CmaEsSampler imports the optional ``cmaes`` package only when it first samples:
    without it, a study would fail in its first trial after writing its storage."""
    if importlib.util.find_spec("cmaes") is None:
        raise InputError(
            "sampler: 'cmaes' needs the cmaes package (pip install cmaes, or the project's "
            "extra hpo[cmaes]); without it use random, tpe, qmc or grid"
        )


def _check_grid(space: SearchSpace, rounds: int, trials: int) -> None:
    """The grid sampler runs each combination of Categorical choices once, in a single round."""
    if conditional := [n for n, p in space.items() if p.when is not None]:
        raise ValueError(
            f"sampler 'grid': conditional parameters are not supported, got {conditional[0]}"
        )
    other = [f"{n}: {type(p).__name__}" for n, p in space.items() if not isinstance(p, Categorical)]
    if other:
        raise ValueError(f"sampler 'grid': every parameter must be Categorical, got {other[0]}")
    size = math.prod(len(p.choices) for p in space.values())
    if rounds != 1 or not isinstance(trials, int) or not 1 <= trials <= size:
        raise ValueError(
            f"sampler 'grid': needs rounds=1 and trials <= the grid size {size}, "
            f"got rounds={rounds!r}, trials={trials!r}"
        )


def _json_fixed(fixed: dict[str, Any] | None) -> dict[str, Any]:
    if fixed is None:
        return {}
    try:
        return to_json(fixed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"fixed: must be JSON-serialisable settings ({exc})") from None


def _absolute_uri(uri: str | None) -> str:
    """The tracking URI with a relative SQLite path made absolute, so a resume finds it."""
    from hpo.tracking import resolve_uri

    uri = resolve_uri(uri)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri
