"""The shape of hpo/ that the DESIGN asks for, checked on the source: one-way imports, mlflow
only in the tracking package, printing only in the CLI, and Optuna's private API still there."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest

from hpo import _optuna

HPO = Path(__file__).resolve().parents[2] / "hpo"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(HPO.rglob("*.py")):
        parts = path.relative_to(HPO.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text())
    return out


def _imports(tree: ast.Module) -> set[str]:
    """Every module imported anywhere in the file (lazy and TYPE_CHECKING imports included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_no_import_cycle_inside_hpo():
    mods = _modules()
    graph = {m: {i for i in _imports(t) if i in mods and i != m} for m, t in mods.items()}
    graph = {m: deps - {"hpo"} for m, deps in graph.items()}  # hpo/__init__ only re-exports
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*path, m, d])}")
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_only_the_tracking_package_imports_mlflow():
    for name, tree in _modules().items():
        if not name.startswith("hpo.tracking"):
            assert not any(i.split(".")[0] == "mlflow" for i in _imports(tree)), name


def test_only_the_cli_and_its_console_print():
    for name, tree in _modules().items():
        if name in ("hpo.cli", "hpo.console"):
            continue
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"
        ]
        assert not calls, f"{name} prints (line {calls[0].lineno if calls else '?'})"


def test_no_module_of_hpo_is_over_400_lines():
    for path in HPO.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 420, path


def test_the_private_optuna_api_we_use_is_still_there(tmp_path):
    """Each function of hpo/_optuna.py on real objects: an Optuna without one fails here."""
    from hpo.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}")
    study = optuna.create_study(study_name="c", storage=storage)
    assert _optuna.storage_of(study) is not None
    trial = study.ask()
    frozen = _optuna.storage_of(study).get_all_trials(
        storage.get_study_id_from_name("c"), deepcopy=False
    )[0]
    assert _optuna.trial_id(frozen) == trial._trial_id  # noqa: SLF001
    assert _optuna.is_heartbeat_enabled(storage)
    assert _optuna.stale_trial_ids(storage, storage.get_study_id_from_name("c")) == []
    with _optuna.get_heartbeat_thread(_optuna.trial_id(frozen), storage):
        pass
    grids, space = _optuna.grid_of(optuna.samplers.GridSampler({"a": [1, 2]}))
    assert sorted(grids) == [(1,), (2,)] and space == {"a": [1, 2]}
    from hpo.storage import FlockLock

    assert issubclass(FlockLock, _optuna.BaseJournalFileLock)  # the journal takes it as its lock
    assert {"acquire", "release"} <= set(vars(_optuna.BaseJournalFileLock))
