"""The errors that are the user's to fix: bad settings, an objective the workers cannot receive,
a storage or tracking store that cannot be used. The CLI prints one as a single line and exits
with code 2, wherever it is raised; import-light, so the CLI catches them without loading optuna.
"""

from __future__ import annotations

import warnings

__all__ = ["InputError", "one_line_warnings"]


class InputError(ValueError):
    """Bad input: the one-line message names the field (or store) and what is accepted."""


def one_line_warnings() -> None:
    """Show hpo's warnings for users (a category with ``one_line = True``, such as a repaired
    journal) as one line, ``hpo: warning: ...``, instead of Python's file:line and source."""
    default = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        if getattr(category, "one_line", False):
            return f"hpo: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = fmt
