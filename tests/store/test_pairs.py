"""mmrag.store.pairs: image-text pairs as one fused record each, and composed (image + text) queries."""

from __future__ import annotations

import numpy as np
import pytest
from store_helpers import COLOURS, image

from mmrag.errors import ImageInputError, InvalidInputError, NotASequenceError, TextInputError
from mmrag.store import MultimodalStore

RED, BLUE, GREEN = COLOURS["red"], COLOURS["blue"], COLOURS["green"]


def _pairs(store: MultimodalStore, tmp_path):
    """Four pairs on disk: red+"blue" is the one a composed (red image, "blue") query wants."""
    paths = []
    for name, colour in (("red", RED), ("blue", BLUE), ("green", GREEN), ("red2", RED)):
        path = tmp_path / f"{name}.png"
        image(colour, seed=len(paths)).save(path)
        paths.append(path)
    texts = ["make it blue", "make it blue", "make it red", "a green star"]
    report = store.add_pairs(paths, texts, metadatas=[{"n": i} for i in range(4)])
    return paths, texts, report


def test_a_composed_query_ranks_the_pair_stored_with_that_image_and_text_first(store, tmp_path) -> None:
    paths, _texts, report = _pairs(store, tmp_path)
    assert (report.added, report.embedded, len(report.ids)) == (4, 4, 4)
    assert store.count("pair") == 4 and store.count() == 4 and store.count("image") == 0

    hits = store.search("make it blue", image=paths[0], k=4, modality="pair")
    assert hits[0].id == report.ids[0]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5) and all(h.score < 1.0 - 1e-4 for h in hits[1:])
    top = hits[0]
    assert (top.modality, top.source, top.text, top.metadata) == ("pair", str(paths[0]), "make it blue", {"n": 0})

    # the query vector is the encoder's fused vector, whatever the family
    fused = store.encoder.embed_fused([paths[0]], ["make it blue"]).fused[0]
    np.testing.assert_allclose(store.embed_query("make it blue", image=paths[0]), fused, atol=1e-6)
    assert store.search_by_vector(fused, k=1, modality="pair")[0].id == report.ids[0]


def test_pairs_are_idempotent_and_live_in_their_own_collection(store, tmp_path) -> None:
    paths, texts, first = _pairs(store, tmp_path)
    again = store.add_pairs(paths, texts, metadatas=[{"n": i} for i in range(4)])
    assert (again.added, again.skipped, again.embedded, again.ids) == (0, 4, 0, first.ids)
    assert store.count("pair") == 4
    names = {c.name if hasattr(c, "name") else c for c in store.client.list_collections()}
    assert names == {"test_images", "test_texts", "test_pairs"}
    # the same image with another text is another record; the same text with another image too
    other = store.add_pairs([paths[0], paths[1]], ["make it green", "make it red"])
    assert other.added == 2 and len(set(other.ids) | set(first.ids)) == 6


def test_get_delete_and_search_all_modalities_include_pairs(store, tmp_path) -> None:
    store.add_images([image(BLUE, seed=9)])
    store.add_texts(["a blue square"])
    paths, _texts, report = _pairs(store, tmp_path)
    assert store.count() == 6 and store.count("pair") == 4
    assert [r.modality for r in store.get([report.ids[1]])] == ["pair"]
    assert store.get([report.ids[1]])[0].text == "make it blue"
    merged = store.search("make it blue", image=paths[0], k=6)
    assert {h.modality for h in merged} == {"image", "text", "pair"} and merged[0].id == report.ids[0]
    assert {h.modality for h in store.search("a blue square", k=6, modality="text")} == {"text"}
    assert store.delete([report.ids[0], "unknown"]) == 1
    assert store.count("pair") == 3 and store.get([report.ids[0]]) == []


def test_a_store_without_pairs_keeps_its_two_collections(tmp_path, clip_encoder) -> None:
    with MultimodalStore(clip_encoder, path=tmp_path / "db", collection="plain") as store:
        store.add_texts(["a red circle"])
        assert store.count("pair") == 0 and store.search("a red circle", k=3, modality="pair") == []
        assert [h.modality for h in store.search("a red circle", k=3)] == ["text"]
        names = {c.name if hasattr(c, "name") else c for c in store.client.list_collections()}
        assert names == {"plain_images", "plain_texts"}
    with MultimodalStore(clip_encoder, path=tmp_path / "db", collection="plain") as store:  # reopened: pairs too
        ids = store.add_pairs([image(RED, seed=1)], ["make it red"]).ids
    with MultimodalStore(clip_encoder, path=tmp_path / "db", collection="plain") as store:
        assert store.count("pair") == 1 and store.count() == 2
        assert store.search("make it red", image=image(RED, seed=1), k=1, modality="pair")[0].id == ids[0]
        assert MultimodalStore.recorded_model(tmp_path / "db", collection="plain") == clip_encoder.model_id


def test_bad_pairs_name_the_item_and_nothing_stored_is_lost(store, tmp_path) -> None:
    _paths, _texts, report = _pairs(store, tmp_path)
    good = image(RED, seed=5)
    with pytest.raises(ImageInputError, match="image 1 "):
        store.add_pairs([good, tmp_path / "missing.png"], ["a", "b"])
    with pytest.raises(TextInputError, match="text 1"):
        store.add_pairs([good, good], ["a", 3])  # type: ignore[list-item]  # the wrong type is what the test passes
    with pytest.raises(InvalidInputError, match="2 images and 1 texts"):
        store.add_pairs([good, good], ["a"])
    with pytest.raises(InvalidInputError, match="metadata of item 1"):
        store.add_pairs([good, good], ["a", "b"], metadatas=[{}, {"modality": "x"}])
    with pytest.raises(NotASequenceError):
        store.add_pairs(good, ["a"])  # type: ignore[arg-type]  # the wrong type is what the test passes
    assert store.count("pair") == 4 and [r.id for r in store.get(report.ids)] == report.ids


def test_composed_query_errors(store, tmp_path) -> None:
    _pairs(store, tmp_path)
    with pytest.raises(InvalidInputError, match="needs a text"):
        store.search("  ", image=image(RED, seed=1))
    with pytest.raises(TextInputError):
        store.search(image(RED, seed=2), image=image(RED, seed=1))
    with pytest.raises(InvalidInputError, match="query_type='image'"):
        store.search("make it red", image=image(RED, seed=1), query_type="image")
    with pytest.raises(ImageInputError):
        store.search("make it red", image=tmp_path / "missing.png")
