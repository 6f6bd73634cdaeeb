"""Settings for every test run: hypothesis tests that never flake on a loaded machine, and no
litter in /dev/shm from the drivers the fault tests kill.

The 2-core machines the suite runs on are shared: generating examples may be slow and no example
may be timed. So no deadline and no "too slow" / "data too large" health checks, for every run;
with ``CI`` set (any value) the examples are also derandomized: the same ones on every run.
Tests may still set ``@settings(max_examples=...)``: unset fields come from this profile.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "hpo",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")),
)
settings.load_profile("hpo")


SHM = Path("/dev/shm")
LOKY = re.compile(r"(?:joblib_memmapping_folder_|sem\.loky-)(\d+)[_-]")  # joblib's and loky's


@pytest.fixture(scope="session", autouse=True)
def no_shared_memory_litter():
    """A test that SIGKILLs a driver's process group (a crash) kills loky's resource tracker
    with it, which would have removed the driver's folders and semaphores in /dev/shm: remove
    those that processes of this session left when they died (CI machines are shared)."""
    before = set(os.listdir(SHM)) if SHM.is_dir() else set()
    yield
    for name in set(os.listdir(SHM)) - before if SHM.is_dir() else ():
        m = LOKY.match(name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            if (SHM / name).is_dir():
                shutil.rmtree(SHM / name, ignore_errors=True)
            else:
                (SHM / name).unlink(missing_ok=True)
