"""One `mlflow server` for the end-to-end tests of a session (starting one takes seconds)."""

from __future__ import annotations

import pytest

from tests.e2e.server import MlflowServer


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    pytest.importorskip("mlflow")
    with MlflowServer(tmp_path_factory.mktemp("mlflow-server") / "mlflow.db") as srv:
        yield srv
