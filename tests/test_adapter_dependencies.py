"""The adapters' dependencies: optional extras, a clear error without them, and only the core's public names.

``mmrag.llama_index`` needs ``llama-index-core`` (extra ``mmrag[llama-index]``) and ``mmrag.langchain``
needs ``langchain-core`` (extra ``mmrag[langchain]``). The missing case runs in a subprocess whose import
system refuses the framework, as if it were not installed.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mmrag

SRC = Path(mmrag.__file__).parents[1]
ADAPTERS = {"mmrag.llama_index": "llama_index", "mmrag.langchain": "langchain_core"}
EXTRAS = {"mmrag.llama_index": "llama-index", "mmrag.langchain": "langchain"}
CORE = ("mmrag.batching", "mmrag.encoders", "mmrag.errors", "mmrag.inputs", "mmrag.options", "mmrag.rerank")
CORE += ("mmrag.store", "mmrag.prefetch", "mmrag.components", "mmrag.model_sharing", "mmrag.cache", "mmrag.progress")
PUBLIC = {
    "mmrag.llama_index": {
        "CrossModalReranker",
        "LocalMultiModalEmbedding",
        "MultimodalStoreRetriever",
        "RETRIEVAL_SCORE_KEY",
        "filters_to_where",
        "hit_to_node",
        "multimodal_index",
    },
    "mmrag.langchain": {
        "CacheBackedMultiModalEmbeddings",
        "CrossModalReranker",
        "LocalMultiModalEmbeddings",
        "MultimodalStoreRetriever",
        "hit_to_document",
    },
}

# Installed before anything is imported: every module under the blocked top-level names fails to import,
# the way an uninstalled package does (ModuleNotFoundError, with the module's name).
_BLOCKER = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

sys.meta_path.insert(0, Blocker(BLOCKED))
"""


def _blocking(*names: str) -> str:
    """Code that makes every module under the top-level ``names`` fail to import."""
    return _BLOCKER.replace("BLOCKED", repr(set(names)))


def _run(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter on this tree's sources; it prints one JSON line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip  # aligned by hand
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_mmrag_loads_neither_framework() -> None:
    out = _run("""
        import json, sys
        import mmrag
        tops = {name.split(".")[0] for name in sys.modules}
        print(json.dumps({"frameworks": sorted(tops & {"llama_index", "langchain_core", "langchain"}),
                          "adapters": sorted(m for m in sys.modules if m in ("mmrag.llama_index", "mmrag.langchain"))}))
    """)
    assert out == {"frameworks": [], "adapters": []}


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_missing_framework_raises_missing_dependency_error(adapter: str) -> None:
    blocked = ADAPTERS[adapter]
    other = next(name for name in ADAPTERS if name != adapter)
    out = _run(
        _blocking(blocked)
        + f"""
import importlib, json
import mmrag
result = {{}}
for attempt in ("first", "second"):  # a failed import leaves nothing half-made behind
    try:
        importlib.import_module({adapter!r})
    except ImportError as exc:
        result[attempt] = [type(exc).__name__, isinstance(exc, mmrag.MissingDependencyError), exc.code, str(exc),
                           type(exc.__cause__).__name__]
try:
    from mmrag import {adapter.split(".")[1]}
except mmrag.MissingDependencyError as exc:
    result["from_import"] = str(exc)
importlib.import_module({other!r})  # the other adapter does not need this framework
result["other"] = True
print(json.dumps(result))
"""
    )
    kind, is_ours, code, message, cause = out["first"]
    assert (kind, is_ours, code, cause) == ("MissingDependencyError", True, "missing_dependency", "ModuleNotFoundError")
    assert f'pip install "mmrag[{EXTRAS[adapter]}]"' in message and adapter in message and blocked in message
    assert out["second"] == out["first"] and out["from_import"] == message
    assert out["other"] is True


def test_import_mmrag_works_without_either_framework() -> None:
    out = _run(
        _blocking("llama_index", "langchain_core", "langchain")
        + """
import json
import mmrag
encoder = mmrag.load_encoder("demo", device="cpu")
print(json.dumps({"dim": encoder.dim}))
"""
    )
    assert out["dim"] == 64


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_adapter_exports_todays_public_names(adapter: str) -> None:
    module = importlib.import_module(adapter)
    assert set(module.__all__) == PUBLIC[adapter]
    assert all(getattr(module, name) is not None for name in PUBLIC[adapter])


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    plain = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in plain if name.startswith("mmrag")], f"{path.name}: use 'from mmrag.x import name'"
    return [
        (node.module, [alias.name for alias in node.names])
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmrag")
    ]


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_adapters_import_only_the_cores_public_names(adapter: str) -> None:
    folder = SRC.joinpath(*adapter.split("."))
    files = sorted(folder.glob("*.py"))
    assert {path.stem for path in files} >= {"__init__", "embeddings", "retriever", "reranker"}
    used: set[str] = set()
    for path in files:
        for module, names in _imports(path):
            if module == adapter or module.startswith(adapter + "."):
                continue  # the adapter's own modules
            assert module in CORE, f"{path.name} imports {module}: adapters use the core's public modules only"
            public = set(importlib.import_module(module).__all__)
            assert not [n for n in names if n not in public or n.startswith("_")], f"{path.name}: {module} {names}"
            used.add(module)
    assert {"mmrag.rerank", "mmrag.inputs", "mmrag.components"} <= used  # no private copies of the core's helpers


def test_the_langchain_cache_needs_langchain_classic_only_when_used() -> None:
    out = _run(
        _blocking("langchain_classic")
        + """
import json, sys
import mmrag
import mmrag.langchain
result = {"classic_loaded": "langchain_classic" in sys.modules}
try:
    from mmrag.langchain import CacheBackedMultiModalEmbeddings
except mmrag.MissingDependencyError as exc:
    result["error"] = [exc.code, str(exc)]
print(json.dumps(result))
"""
    )
    assert out["classic_loaded"] is False  # importing the adapter does not import langchain-classic
    code, message = out["error"]
    assert (
        code == "missing_dependency" and 'pip install "mmrag[langchain]"' in message and "langchain_classic" in message
    )
