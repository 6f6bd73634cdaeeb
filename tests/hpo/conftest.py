"""Fixtures shared by the fault and scale-out tests (defined in their modules, used elsewhere)."""

from tests.hpo.test_distributed import database, server  # noqa: F401
from tests.hpo.test_faults import empty_store, hpo_cmd, uri  # noqa: F401
