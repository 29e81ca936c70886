"""LangChain's standard suites (langchain-tests): embeddings and retriever.

``EmbeddingsUnitTests`` and ``EmbeddingsIntegrationTests`` run against
LocalMultiModalEmbeddings, ``RetrieversIntegrationTests`` against
MultimodalStoreRetriever. The suites build their objects from plain
properties, so the tiny CLIP model directory (built once per session by the
``tiny_model_dirs`` fixture) and a small store are handed to the classes by
autouse fixtures before each test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from mmrag.langchain import LocalMultiModalEmbeddings, MultimodalStoreRetriever
from mmrag.store import MultimodalStore

_ASYNC_MARK_WARNING = "ignore:The test <Function test_.*is marked with .@pytest.mark.asyncio.:pytest.PytestWarning"


class _TinyModel:
    """Mixin: the standard suites' parameters, pointing at the tiny CLIP model."""

    model_dir: Path | None = None

    @pytest.fixture(autouse=True)
    def _tiny_model_dir(self, tiny_model_dirs: dict[str, Path]) -> None:
        type(self).model_dir = tiny_model_dirs["clip"]

    @property
    def embeddings_class(self) -> type[LocalMultiModalEmbeddings]:
        return LocalMultiModalEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        assert self.model_dir is not None, "the _tiny_model_dir fixture runs first"
        return {"model": str(self.model_dir), "device": "cpu", "batch_size": 4}


class TestLocalMultiModalEmbeddingsUnit(_TinyModel, EmbeddingsUnitTests):
    """``EmbeddingsUnitTests``: init, and init from the environment.

    ``test_init_from_env`` runs with the suite's default ``init_from_env_params``
    (empty), which makes it a no-op: the class reads no environment variables
    (it needs no API key; the model is an explicit argument), so there is
    nothing for that test to check.
    """


# The suites mix sync and async tests and the project runs pytest-asyncio in strict mode,
# so the class is marked for its async tests; the mark's warning on the sync ones is muted.
@pytest.mark.asyncio
@pytest.mark.filterwarnings(_ASYNC_MARK_WARNING)
class TestLocalMultiModalEmbeddingsIntegration(_TinyModel, EmbeddingsIntegrationTests):
    """``EmbeddingsIntegrationTests``: sync and async ``embed_query`` / ``embed_documents``."""


@pytest.mark.asyncio
@pytest.mark.filterwarnings(_ASYNC_MARK_WARNING)
class TestMultimodalStoreRetrieverIntegration(RetrieversIntegrationTests):
    """``RetrieversIntegrationTests``: ``k`` in the constructor and per call, sync and async invoke."""

    store: MultimodalStore | None = None

    @pytest.fixture(autouse=True)
    def _store(self, tmp_path: Path, clip_encoder: Any) -> Any:
        with MultimodalStore(clip_encoder, path=tmp_path / "db", collection="standard") as store:
            store.add_texts([f"a note about shape {i}" for i in range(5)])
            type(self).store = store
            yield
        type(self).store = None

    @property
    def retriever_constructor(self) -> type[MultimodalStoreRetriever]:
        return MultimodalStoreRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        assert self.store is not None, "the _store fixture runs first"
        return {"store": self.store}

    @property
    def retriever_query_example(self) -> str:
        return "a note about a red circle"
