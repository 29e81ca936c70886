"""LangChain's standard embeddings suites (langchain-tests) against LocalMultiModalEmbeddings.

Both suites build the embeddings from ``embedding_model_params``, a plain
property, so the tiny CLIP model directory (built once per session by the
``tiny_model_dirs`` fixture) is handed to the class through an autouse
fixture before each test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from mmrag.langchain import LocalMultiModalEmbeddings


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


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The test <Function test_.*is marked with .@pytest.mark.asyncio.:pytest.PytestWarning")
class TestLocalMultiModalEmbeddingsIntegration(_TinyModel, EmbeddingsIntegrationTests):
    """``EmbeddingsIntegrationTests``: sync and async ``embed_query`` / ``embed_documents``."""
