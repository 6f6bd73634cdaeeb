"""The errors that are the user's to fix: bad settings, an objective the workers cannot receive,
a storage or tracking store that cannot be used. The CLI prints one as a single line and exits
with code 2, wherever it is raised; import-light, so the CLI catches them without loading optuna.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input: the one-line message names the field (or store) and what is accepted."""
