"""The journal file's integrity: a record cut short (a crash or a full disk mid-write) is dropped.

Optuna's journal is one JSON record per line, appended under a lock. A writer that dies or runs
out of space mid-write leaves a last line without its newline; the next record appended would be
glued to it and make the journal unreadable from there on. So whoever takes the lock to write
(and whoever opens the journal) first cuts such a tail off, keeping every complete record, and
says what it dropped (:class:`JournalRepaired`, a warning).
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path

from optuna.storages.journal import JournalFileBackend

from hpo.errors import InputError

__all__ = ["Backend", "JournalFull", "JournalRepaired", "cut", "cut_partial_tail", "repair"]


class JournalFull(InputError):
    """The journal cannot be written mid-study (a full disk, a file size limit): one line naming
    the path, the bytes needed and the bytes free. Finished trials are kept; resume after."""


class Backend(JournalFileBackend):
    """Optuna's journal file backend whose failed write is rolled back (nothing half-written is
    left) and raised as :class:`JournalFull`, a one-line error for the user, instead of an
    OSError deep inside a worker process."""

    def __init__(self, path: str, lock_obj) -> None:
        super().__init__(path, lock_obj=lock_obj)
        self.path, self.lock = path, lock_obj

    def append_logs(self, logs: list[dict]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        self.lock.acquire()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, size)  # frees what was written: always possible
                raise JournalFull(self._message(exc, len(data))) from None
        finally:
            os.close(fd)
            self.lock.release()

    def _message(self, exc: OSError, need: int) -> str:
        try:
            st = os.statvfs(Path(self.path).parent)
            free = f", {_size(st.f_bavail * st.f_frsize)} free"
        except OSError:
            free = ""
        return (
            f"storage: cannot write {self.path} ({exc.strerror or exc}: {_size(need)} needed"
            f"{free}); finished trials are kept: make room, then resume"
        )


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"


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
