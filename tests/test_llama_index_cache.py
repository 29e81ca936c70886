"""LocalMultiModalEmbedding and caches: mmrag's EmbeddingCache, and one IngestionCache identity per vector space."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.ingestion import IngestionCache, IngestionPipeline
from llama_index.core.schema import TextNode

import mmrag
from mmrag.cache import EmbeddingCache, encoder_identity
from mmrag.llama_index import LocalMultiModalEmbedding


def _nodes() -> list[TextNode]:
    return [TextNode(text=text, id_=f"n{i}") for i, text in enumerate(["a red circle", "a blue square"])]


def test_named_and_passed_encoders_serialise_alike_and_share_the_ingestion_cache() -> None:
    named = LocalMultiModalEmbedding(model="demo", device="cpu")
    passed_encoder = mmrag.load_encoder("demo", device="cpu")
    passed = LocalMultiModalEmbedding(encoder=passed_encoder)
    assert named.to_dict() == passed.to_dict()
    assert (named.model, named.device, named.dtype) == ("mmrag/demo", "cpu", "float32")
    assert named.cache_identity == encoder_identity(passed_encoder) != ""
    again = LocalMultiModalEmbedding.from_dict(named.to_dict())
    assert again.to_dict() == named.to_dict()

    cache = IngestionCache()
    first = IngestionPipeline(transformations=[named], cache=cache).run(nodes=_nodes())
    before = passed_encoder.forward_count
    second = IngestionPipeline(transformations=[passed], cache=cache).run(nodes=_nodes())
    assert passed_encoder.forward_count == before  # answered by LlamaIndex's cache: zero forward passes
    np.testing.assert_allclose([n.embedding for n in second], [n.embedding for n in first], atol=1e-6)


def test_our_cache_makes_repeated_batches_free_and_covers_images() -> None:
    cache = EmbeddingCache()
    embed = LocalMultiModalEmbedding(model="demo", device="cpu", cache=cache)
    assert embed.encoder.cache is cache
    texts = ["a red circle", "a blue square"]
    first = embed.get_text_embedding_batch(texts)
    image = np.full((24, 24, 3), 200, dtype=np.uint8)
    embed.get_image_embedding_batch([image])
    before = embed.encoder.forward_count
    again = embed.get_text_embedding_batch(texts)
    embed.get_image_embedding_batch([image])
    assert embed.encoder.forward_count == before
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert "cache" not in embed.to_dict()
