"""The layering rule: the core never imports an adapter; adapters import the core, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "mmrag"
ADAPTERS = {"mmrag.llama_index", "mmrag.langchain"}
SERVICE = {"mmrag.server", "mmrag.cli", "mmrag.__main__", "mmrag.demo"}  # the application layer


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    found |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return {name for name in found if name.startswith("mmrag")}


MODULES = {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def _is(module: str, group: set[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in group)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _is(m, ADAPTERS | SERVICE)))
def test_core_never_imports_adapters_or_service(module: str) -> None:
    assert not [name for name in MODULES[module] if _is(name, ADAPTERS | SERVICE)]


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_adapters_never_import_each_other(adapter: str) -> None:
    others = ADAPTERS - {adapter}
    assert not [name for name in MODULES[adapter] if _is(name, others | SERVICE)]
