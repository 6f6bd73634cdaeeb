"""Settings for every test run: hypothesis tests that never flake on a loaded machine.

The 2-core machines the suite runs on are shared: generating examples may be slow and no example
may be timed. So no deadline and no "too slow" / "data too large" health checks, for every run;
with ``CI`` set (any value) the examples are also derandomized: the same ones on every run.
Tests may still set ``@settings(max_examples=...)``: unset fields come from this profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "hpo",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")),
)
settings.load_profile("hpo")
