"""The layout the code is held to: seams that a careless import or a growing file would quietly undo."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "precog"
GATEWAY = PACKAGE / "gateway"
# The gateway's composition root and command line wire the request path to scale-out; nothing else may.
_WIRING = {GATEWAY / "service.py", GATEWAY / "app.py", GATEWAY / "cli.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _request_path() -> list[Path]:
    return [
        path
        for path in GATEWAY.rglob("*.py")
        if "replication" not in path.relative_to(GATEWAY).parts and path not in _WIRING
    ]


def test_the_gateway_request_path_imports_nothing_from_replication() -> None:
    modules = _request_path()
    assert len(modules) > 20, modules  # the scan sees the request path
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            n for n in _imports(path) if n.startswith("precog.gateway.replication")
        )
        for path in modules
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_replication_does_not_reach_into_the_http_layer() -> None:
    for path in (GATEWAY / "replication").glob("*.py"):
        assert not {n for n in _imports(path) if n.startswith("precog.gateway.api")}, path


@pytest.mark.parametrize("method", ["thinkv", "ojakv"])
def test_kv_methods_are_named_only_by_the_registry(method: str) -> None:
    engine = PACKAGE / "backend" / "engine"
    naming = {
        str(path.relative_to(engine))
        for path in engine.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value == method
    }
    assert naming == {"kv/registry.py"}


def test_no_library_module_outgrows_one_job() -> None:
    """About 400 lines at most: past that a module is doing two jobs."""
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {path: n for path, n in lengths.items() if n > 430} == {}


def test_the_base_imports_no_service_and_no_service_imports_the_shell() -> None:
    for path in (PACKAGE / "core").glob("*.py"):
        ours = {n for n in _imports(path) if n.startswith("precog")}
        assert all(n.startswith("precog.core") for n in ours), (path, ours)
    shell_users = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "shell" not in path.relative_to(PACKAGE).parts
        and any(n.startswith("precog.shell") for n in _imports(path))
    }
    assert shell_users == {"__main__.py"}
