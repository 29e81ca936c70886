"""The public surface: what ``mmrag`` exports exists, is documented, and includes every error class."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools

import mmrag
import mmrag.errors
import mmrag.server
from mmrag.errors import MmragError

_APPLICATION_LAYER = ("mmrag.server", "mmrag.cli", "mmrag.llama_index", "mmrag.langchain", "mmrag.chroma")


def _own_doc(obj: object) -> str:
    """The docstring written for ``obj`` itself (a class's, not one inherited from its base)."""
    if inspect.isclass(obj):
        return (vars(obj).get("__doc__") or "").strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def _assigned_names(statement: ast.stmt) -> set[str]:
    if isinstance(statement, ast.Assign):
        return {target.id for target in statement.targets if isinstance(target, ast.Name)}
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return {statement.target.id}
    return set()


def _attribute_doc(module_name: str, name: str) -> str:
    """The string literal right under ``name = ...`` where it is defined (constants and type aliases)."""
    body = ast.parse(inspect.getsource(importlib.import_module(module_name))).body
    for statement, following in itertools.pairwise(body):
        if name in _assigned_names(statement):
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                return str(following.value.value).strip()
            return ""
    for statement in body:  # re-exported: follow the import
        if (
            isinstance(statement, ast.ImportFrom)
            and statement.module
            and name in {alias.name for alias in statement.names}
        ):
            return _attribute_doc(statement.module, name)
    return ""


def test_every_exported_name_exists_and_is_documented() -> None:
    assert len(mmrag.__all__) == len(set(mmrag.__all__)), "a name is listed twice"
    undocumented = []
    for name in mmrag.__all__:
        assert hasattr(mmrag, name), f"mmrag.__all__ lists {name!r}, which mmrag does not define"
        value = getattr(mmrag, name)
        if name == "__version__":
            assert isinstance(value, str) and value
        elif inspect.isclass(value) or inspect.isroutine(value):
            if not _own_doc(value):
                undocumented.append(name)
        elif not _attribute_doc("mmrag", name):  # constants and type aliases: the string under their assignment
            undocumented.append(name)
    assert not undocumented, f"exported without a docstring: {undocumented}"


def test_exported_names_are_public() -> None:
    assert [name for name in mmrag.__all__ if name.startswith("_")] == ["__version__"]


def test_every_public_error_class_is_exported() -> None:
    """Library errors from ``mmrag``; the service's own from ``mmrag.server``."""
    import mmrag.batching
    import mmrag.rerank
    import mmrag.server.errors
    import mmrag.store

    pending: list[type[MmragError]] = [MmragError]
    seen: set[type[MmragError]] = set()
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls in seen or cls.__name__.startswith("_") or not cls.__module__.startswith("mmrag"):
            continue
        seen.add(cls)
        if cls.__module__.startswith(_APPLICATION_LAYER):
            package = mmrag.server if cls.__module__.startswith("mmrag.server") else None
            if package is not None:
                assert cls.__name__ in package.__all__, f"{cls.__name__} is not exported from mmrag.server"
            continue
        assert cls.__name__ in mmrag.__all__, f"{cls.__module__}.{cls.__name__} is not exported from mmrag"
        assert getattr(mmrag, cls.__name__) is cls


def test_errors_all_matches_the_classes_defined_there() -> None:
    defined = {
        name
        for name, value in vars(mmrag.errors).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == "mmrag.errors"
        and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert set(mmrag.errors.__all__) == defined
    assert {name for name in defined if inspect.isclass(getattr(mmrag.errors, name))} <= set(mmrag.__all__)


def test_the_issue_14_pieces_are_exported_from_mmrag() -> None:
    """The cache, the visible hit list and the logging one-liner, importable as README shows them."""
    from mmrag.cache import CacheStats, EmbeddingCache, embed_with_cache
    from mmrag.logs import log_to_stderr
    from mmrag.store.hits import HitList

    assert (mmrag.EmbeddingCache, mmrag.CacheStats, mmrag.embed_with_cache) == (
        EmbeddingCache,
        CacheStats,
        embed_with_cache,
    )
    assert mmrag.HitList is HitList and mmrag.store.HitList is HitList
    assert mmrag.log_to_stderr is log_to_stderr
    assert issubclass(HitList, list)
