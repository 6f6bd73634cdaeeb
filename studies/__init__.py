"""Studies that measure the deck's claims and the search (``python -m studies.<name>``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHM = Path("/dev/shm")  # throw-away journals: on tmpfs their fsyncs cost nothing


def scratch_dir(prefix: str) -> Path:
    """A folder for one run's throw-away journals (not created): on tmpfs where there is one,
    and one per process, so that two runs side by side (another checkout) never share or wipe
    each other's journals."""
    return (SHM if SHM.is_dir() else Path(tempfile.gettempdir())) / f"{prefix}-{os.getpid()}"
