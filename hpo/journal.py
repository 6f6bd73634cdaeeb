"""The journal file's integrity: a record cut short (a crash or a full disk mid-write) is dropped.

Optuna's journal is one JSON record per line, appended under a lock. A writer that dies or runs
out of space mid-write leaves a last line without its newline; the next record appended would be
glued to it and make the journal unreadable from there on. So whoever takes the lock to write
(and whoever opens the journal) first cuts such a tail off, keeping every complete record, and
says what it dropped (:class:`JournalRepaired`, a warning).
"""

from __future__ import annotations

import fcntl
import os
import warnings
from pathlib import Path

__all__ = ["JournalRepaired", "cut", "cut_partial_tail", "repair"]


class JournalRepaired(UserWarning):
    """A journal's incomplete last record was dropped; every complete record is kept."""

    one_line = True  # the CLI shows it as one line (hpo.errors.one_line_warnings)


def cut_partial_tail(fd: int, path: str | Path) -> str | None:
    """With the journal's lock held: truncate ``fd``'s file after its last complete line. Returns
    what was dropped (for a warning), or None when the file ends with a complete record."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return None
    end, step = size, 1 << 16
    while end > 0:  # find the last newline, reading backwards
        start = max(0, end - step)
        chunk = os.pread(fd, end - start, start)
        if (i := chunk.rfind(b"\n")) >= 0:
            keep = start + i + 1
            break
        end = start
    else:
        keep = 0
    dropped = os.pread(fd, min(size - keep, 60), keep).decode("utf-8", "replace")
    os.ftruncate(fd, keep)
    os.fsync(fd)
    return (
        f"storage: {path}: dropped an incomplete last record ({size - keep} bytes, "
        f"{dropped!r}...) left by a crash or a full disk; every complete record is kept"
    )


def repair(path: str | Path, lock_path: str | Path) -> None:
    """Open-time check of journal ``path`` under its flock ``lock_path``; warns when it cut."""
    if not Path(path).exists():
        return
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        note = cut(path)
    finally:
        os.close(lock)  # releases the flock
    if note:
        warnings.warn(note, JournalRepaired, stacklevel=3)


def cut(path: str | Path) -> str | None:
    """:func:`cut_partial_tail` of the file at ``path`` (the lock held by the caller)."""
    fd = os.open(path, os.O_RDWR)
    try:
        return cut_partial_tail(fd, path)
    finally:
        os.close(fd)
