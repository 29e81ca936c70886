"""mmrag.store.collection_pair: a both-modality search queries the two collections at once, with the same hits."""

from __future__ import annotations

import chromadb
import pytest
from store_helpers import COLOURS, image

from mmrag.store import MultimodalStore
from mmrag.store.checks import query_vector
from mmrag.store.fusion import merge_ranked


def _fill(store: MultimodalStore) -> None:
    store.add_images([image(c, seed=i) for i, c in enumerate(COLOURS.values())])
    store.add_texts(["a red circle", "a blue square", "a green star", "a yellow heart", "a grey cloud"])


@pytest.mark.parametrize("fusion", ["rrf", "score"])
def test_both_modalities_give_the_hits_of_one_query_after_the_other(store, fusion) -> None:
    _fill(store)
    collections = store._collections
    for query in ("a red circle", "a grey cloud"):
        vector = query_vector(store.embed_query(query), store.encoder.dim)  # what search sends to Chroma
        one_by_one = merge_ranked([collections.query(m, vector, 6, None) for m in ("image", "text")], 6, fusion=fusion)
        assert store.search(query, k=6, fusion=fusion) == one_by_one
        assert {h.modality for h in one_by_one} == {"image", "text"}


def test_one_pool_serves_every_search_and_close_stops_it(store) -> None:
    _fill(store)
    store.search("a red circle", k=3)
    pool = store._collections._pool
    assert pool is not None
    store.search("a blue square", k=3)
    assert store._collections._pool is pool  # never a pool per query
    store.search("a blue square", k=3, modality="text")
    store.close()
    assert store._collections._pool is None
    with pytest.raises(RuntimeError):
        pool.submit(print)  # shut down


def test_a_store_on_a_callers_client_still_searches_after_close(tmp_path, clip_encoder) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    store = MultimodalStore(clip_encoder, client=client, collection="shared")
    _fill(store)
    before = store.search("a green star", k=4)
    store.close()  # the client is the caller's and stays open
    assert store.search("a green star", k=4) == before
    assert store._collections._pool is None  # one collection after the other now
