"""Study: the 6-5 procedure as a loop of rounds, each narrowing the ranges around the best trials.

>>> from hpo import LogUniform, SearchSpace, Study
>>> space = SearchSpace(x=LogUniform(1e-4, 1.0))
>>> study = Study("demo", space, lambda p: -abs(p["x"] - 0.01), rounds=2, trials=8, workers=1,
...               tracking=False)
>>> result = study.run()                                            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from hpo.driver import Driver, Progress
from hpo.journal import JournalFull
from hpo.lease import Lease, LeaseHeld
from hpo.lease import check as check_lease
from hpo.records import ATTR
from hpo.report import preload
from hpo.result import Interrupted, Result, StudyError, load_result
from hpo.runner import shutdown_pool, warm_up
from hpo.settings import OPTIONS, Settings, StopPolicy, check_picklable
from hpo.space import SearchSpace
from hpo.storage import (
    StorageError,
    describe,
    new_paths,
    open_storage,
    parent_attrs,
    remove_new,
)
from hpo.warmstart import plan as warm_plan

__all__ = ["Interrupted", "Progress", "Result", "StopPolicy", "Study", "StudyError"]


class Study:
    """A search space, an objective and how to search: rounds of parallel trials with narrowing.

    ``objective`` is any picklable callable ``f(params) -> float`` or ``f(params, ctx)`` (see
    :class:`hpo.objective.ModelObjective` for a network trained for a few epochs). ``options`` are
    the fields of :class:`hpo.settings.Settings` (sampler, rounds, trials, workers, seed, storage,
    narrowing, stop, ...). Everything is validated here, before anything is written.
    """

    def __init__(self, name: str, space: SearchSpace, objective: Callable[..., Any], **options):
        if unknown := sorted(set(options) - set(OPTIONS)):
            raise ValueError(f"{unknown[0]}: not a Study option (accepted: {', '.join(OPTIONS)})")
        self._given = {"name": name, "space": space, "objective": objective, **options}
        self.settings = Settings(**self._given)

    def __getattr__(self, name: str) -> Any:  # study.rounds, study.storage, ... (resolved)
        if name.startswith("_") or name == "settings":
            raise AttributeError(name)
        return getattr(self.settings, name)

    def with_options(self, **changes: Any) -> Study:
        """A copy with some settings changed (validated again); None resets an option."""
        given = {**self._given, **changes}
        return Study(given.pop("name"), given.pop("space"), given.pop("objective"), **given)

    def config(self) -> dict[str, Any]:
        """The settings stored with the study (and logged to MLflow)."""
        return self.settings.config()

    def _existing_storage(self):
        """The storage if it already exists, else None: nothing is created."""
        if "://" not in self.storage and not Path(self.storage).exists():
            return None
        return open_storage(self.storage)

    def exists(self) -> bool:
        """Whether a study of this name is already in the storage (only reads the storage)."""
        storage = self._existing_storage()
        return storage is not None and parent_attrs(storage, self.name) is not None

    def run(
        self, *, resume: bool = False, progress: Callable[[Progress], None] | None = None
    ) -> Result:
        """Run every round (or, with ``resume``, finish an interrupted study); return the result."""
        check_picklable(self.objective, self.backend)  # before anything is written
        storage = self._existing_storage()  # opened once: a journal is replayed on opening
        attrs = parent_attrs(storage, self.name) if storage is not None else None
        check_lease(attrs, self.name)  # a live driver of this study: refused, nothing written
        if attrs is not None and not resume:
            raise StudyError(
                f"study {self.name!r} already exists in {self.storage}; "
                f"resume it with `hpo resume {self.name}` or choose another name"
            )
        if attrs is None and resume:
            raise StudyError(f"no study named {self.name!r} in {self.storage}")
        created = None if storage is not None else new_paths(self.storage)
        if storage is None:  # an unwritable storage fails here, before MLflow
            storage = open_storage(self.storage)
        try:
            warm = warm_plan(storage, self.settings) if attrs is None else None  # checked first
            mirror = self._prepared_mirror()
        except BaseException:  # an unusable tracking store (TrackingError), Ctrl-C
            remove_new(created)  # nothing written: not even the empty journal just opened
            raise
        if attrs is None:
            self._create(storage, warm)
        if mirror is not None:
            mirror.follow(storage)  # in a thread of its own: rounds never wait for MLflow
        preload()  # the report's matplotlib, while the rounds run
        try:
            with Lease(storage, self.name):
                Driver(self.settings, storage, mirror, progress).loop()
        except (JournalFull, OSError) as exc:  # a full disk mid-study: one line, resumable
            shutdown_pool()  # its trials in flight are failed and replaced by the resume
            if isinstance(exc, JournalFull):
                raise
            raise StorageError(
                f"cannot write {exc.filename or self.out} ({exc.strerror or exc}); finished "
                f"trials are kept: make room, then `hpo resume {self.name}`"
            ) from None
        finally:
            if mirror is not None:
                mirror.unfollow()
        return load_result(storage, self.name, self.out)

    def _create(self, storage, warm: dict | None = None) -> None:
        try:
            parent = optuna.create_study(
                study_name=self.name, storage=storage, direction=self.direction
            )
            parent.set_user_attr(ATTR["config"], self.config())
            parent.set_user_attr(ATTR["rounds"], [])
            if warm is not None:  # hpo.warmstart: round 1's ranges and the trials it imports
                parent.set_user_attr(ATTR["warm_start"], warm)
        except optuna.exceptions.DuplicatedStudyError:  # another driver created it meanwhile
            raise LeaseHeld(f"study {self.name!r} was just created by another driver") from None
        except OSError as exc:  # a full disk: no trial has started yet
            raise StorageError(
                f"storage: cannot write {describe(self.storage)} ({exc.strerror or exc})"
            ) from None

    def _prepared_mirror(self):
        """The MLflow mirror (or None without tracking); the worker processes start meanwhile.
        An unusable tracking store fails here (TrackingError), before any study. A SQLite store
        is prepared behind round 1 once its file is known to be writable (MLflow's import and
        schema take seconds); a server's is prepared here."""
        if not self.tracking:
            return None
        from hpo.tracking import Mirror

        mirror = Mirror(self.name, tracking_uri=self.tracking_uri, experiment=self.experiment)
        warming = warm_up(self.workers, self.backend)  # no trial: just the processes
        try:
            mirror.prepare(wait=False)
        finally:
            if warming is not None:
                warming.join()
        return mirror

    def __repr__(self) -> str:
        return f"Study({self.name!r}, {self.space!r}, rounds={self.rounds}, trials={self.trials})"
