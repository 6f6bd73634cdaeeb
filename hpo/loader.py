"""Load a study definition: a plain Python module that builds a ``Study`` named ``study``.

The module is imported under its own name (never exec-ed into our globals) and registered with
cloudpickle by value, so objectives defined in it reach the worker processes.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path

__all__ = ["StudyFileError", "load_study_file"]


class StudyFileError(ValueError):
    """The study file is missing, fails to import, or builds no Study."""


def load_study_file(path: str | Path, *, dataset: str | None = None):
    """The ``study`` a study file builds. ``dataset``: the data the study was started on (its
    stored ``dataset``); the file is run with ``HPO_DATASET`` set to it, so that a file that picks
    its data by that variable (``studies/datasets.py``) rebuilds the same objective on resume."""
    from hpo.study import Study

    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise StudyFileError(f"study file: no Python file at {str(path)!r}")
    name = f"hpo_study_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ beside it
    env = os.environ.get("HPO_DATASET")
    if dataset is not None:
        os.environ["HPO_DATASET"] = dataset
    try:
        spec.loader.exec_module(module)
    except ValueError as exc:  # a Study or space that rejects its settings: say where
        del sys.modules[name]
        lines = [
            f.lineno
            for f in traceback.extract_tb(exc.__traceback__)
            if Path(f.filename).resolve() == path.resolve()
        ]
        where = f" (line {lines[-1]})" if lines else ""
        raise StudyFileError(f"{path}{where}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        del sys.modules[name]
        where = traceback.extract_tb(exc.__traceback__)[-1]
        lineno, filename, text = where.lineno, where.filename, str(exc)
        if isinstance(exc, SyntaxError):  # the traceback ends in importlib, not in the file
            lineno, filename, text = exc.lineno, exc.filename or str(path), exc.msg
        raise StudyFileError(
            f"study file: {path} failed to import ({type(exc).__name__}: {text}, "
            f"line {lineno} of {Path(filename).name})"
        ) from None
    finally:
        sys.dont_write_bytecode = dont_write
        _restore("HPO_DATASET", env)
    study = getattr(module, "study", None)
    if not isinstance(study, Study):
        raise StudyFileError(f"study file: {path} must define `study = hpo.Study(...)`")
    if dataset is not None and study.dataset is not None and study.dataset != dataset:
        raise StudyFileError(
            f"study file: {path} builds its objective on {study.dataset!r}, but the study was "
            f"started on {dataset!r}; make the file pick its data with studies.datasets"
        )
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    return study


def _restore(var: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(var, None)
    else:
        os.environ[var] = value
