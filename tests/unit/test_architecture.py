"""Rules about the code itself: layer boundaries and forbidden constructs.

STYLE.md asks for dependency arrows that point one way (cli/web -> scheduler ->
store; worker -> executor, store) and issue 7 for no pickle or eval anywhere.
These are checks, not hopes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "taskmill"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def package_files(subpath: str = "") -> list[Path]:
    return sorted((PACKAGE / subpath).rglob("*.py"))


@pytest.mark.parametrize("path", package_files("store"), ids=lambda p: p.name)
def test_store_never_imports_upper_layers(path: Path) -> None:
    forbidden = (
        "taskmill.worker",
        "taskmill.cli",
        "taskmill.web",
        "taskmill.scheduler",
        "taskmill.executor",
        "taskmill.supervisor",
        "taskmill.child",
    )
    bad = {m for m in imported_modules(path) if m.startswith(forbidden)}
    assert bad == set()


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_pickle_marshal_or_eval(path: Path) -> None:
    modules = imported_modules(path)
    assert not modules & {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"}
    tree = ast.parse(path.read_text())
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not calls & {"eval", "exec"}


def test_only_cli_and_web_print() -> None:
    offenders = []
    for path in package_files():
        if path.name in ("cli.py", "__main__.py") or "web" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
