"""The errors that are the user's to fix: bad settings, an objective the workers cannot receive,
a storage or tracking store that cannot be used. The CLI prints one as a single line and exits
with code 2, wherever it is raised; import-light, so the CLI catches them without loading optuna.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["InputError", "env_number", "one_line_warnings"]


class InputError(ValueError):
    """Bad input: the one-line message names the field (or store) and what is accepted."""


def env_number(var: str, kind: type = int, error: type = InputError, accepted: str = ""):
    """The positive number in environment variable ``var`` (``kind`` int or float), or None when
    it is unset or empty; anything else is one line (``error``) naming the variable."""
    text = os.environ.get(var, "")
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise error(f"{var}: must be {accepted or 'a number > 0'}, got {text!r}")
    return value


def one_line_warnings() -> None:
    """Show hpo's warnings for users (a category with ``one_line = True``, such as a repaired
    journal) as one line, ``hpo: warning: ...``, instead of Python's file:line and source."""
    default = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        if getattr(category, "one_line", False):
            return f"hpo: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = fmt
