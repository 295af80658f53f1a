"""House rules on imports: the engine is plain Python, and only engine/hosts touches hosts.

Checked on the source (ast), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine"


def _imports(path: Path) -> set[str]:
    """Top-level package names a module imports, wherever the import statement sits."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


ENGINE_MODULES = sorted(ENGINE.rglob("*.py"))


def test_the_engine_has_modules_to_check() -> None:
    assert len(ENGINE_MODULES) > 20
    assert ENGINE / "hosts" / "connections.py" in ENGINE_MODULES


@pytest.mark.parametrize("path", ENGINE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_never_imports_a_front_end(path: Path) -> None:
    assert not _imports(path) & {"textual", "tui", "api", "cli"}


@pytest.mark.parametrize(
    "path",
    [p for p in ENGINE_MODULES if (ENGINE / "hosts") not in p.parents],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_engine_hosts_imports_libvirt_or_pyroute2(path: Path) -> None:
    assert not _imports(path) & {"libvirt", "pyroute2"}


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from textual.app import App\n    import libvirt\n")
    assert {"textual", "libvirt"} <= _imports(module)
