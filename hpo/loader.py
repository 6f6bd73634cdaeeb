"""Load a study definition: a plain Python module that builds a ``Study`` named ``study``.

The module is imported under its own name (never exec-ed into our globals) and registered with
cloudpickle by value, so objectives defined in it reach the worker processes.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

__all__ = ["StudyFileError", "load_study_file"]


class StudyFileError(ValueError):
    """The study file is missing, fails to import, or builds no Study."""


def load_study_file(path: str | Path):
    from hpo.study import Study

    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise StudyFileError(f"study file: no Python file at {str(path)!r}")
    name = f"hpo_study_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ beside it
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
    study = getattr(module, "study", None)
    if not isinstance(study, Study):
        raise StudyFileError(f"study file: {path} must define `study = hpo.Study(...)`")
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    return study
