"""mmrag.store.store: MultimodalStore on a real embedded Chroma in a temp dir."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from store_helpers import COLOURS, image, make_folder, run_python

import mmrag
from mmrag.errors import ImageInputError, NotASequenceError, StoreMismatchError
from mmrag.store import MultimodalStore


def test_four_directions_and_exact_matches_rank_first(store: MultimodalStore) -> None:
    images = [image(c, seed=i) for i, c in enumerate(COLOURS.values())]
    texts = ["a red circle", "a blue square", "a green star", "a yellow heart"]
    store.add_images(images, metadatas=[{"colour": name} for name in COLOURS])
    store.add_texts(texts)

    text_to_image = store.search("a red circle", k=3, modality="image")
    text_to_text = store.search("a blue square", k=2, modality="text")
    image_to_image = store.search(images[2], k=2, modality="image")
    image_to_text = store.search(images[0], k=4, modality="text")

    assert [h.modality for h in text_to_image] == ["image"] * 3
    assert text_to_text[0].text == "a blue square" and text_to_text[0].score == pytest.approx(1.0, abs=1e-4)
    assert text_to_text[0].source == "a blue square"
    assert image_to_image[0].metadata == {"colour": "blue"} and image_to_image[0].score == pytest.approx(1.0, abs=1e-4)
    assert image_to_image[0].source is None  # pixels are never stored as a source
    assert {h.text for h in image_to_text} == set(texts)
    assert all(a.score >= b.score for a, b in itertools.pairwise(image_to_text))


def test_scores_are_cosine_similarities(store: MultimodalStore, clip_encoder) -> None:
    store.add_texts(["alpha", "beta"])
    hits = store.search("gamma", k=2, modality="text")
    query = clip_encoder.embed_texts(["gamma"])[0]
    expected = {t: float(query @ clip_encoder.embed_texts([t])[0]) for t in ("alpha", "beta")}
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.text], abs=1e-4)


def test_mixed_modalities_are_fused_by_rank_not_scale(store: MultimodalStore) -> None:
    store.add_texts(["a red circle"] * 4, ids=["t1", "t2", "t3", "t4"])
    store.add_images([image(c, seed=i) for i, c in enumerate(COLOURS.values())])
    fused = store.search("a red circle", k=4)
    by_score = store.search("a red circle", k=4, fusion="score")
    # Near-duplicate texts score far above any image; raw scores would show texts only.
    assert [h.modality for h in by_score] == ["text"] * 4
    assert sorted(h.modality for h in fused) == ["image", "image", "text", "text"]
    assert fused[0].text == "a red circle"


def test_metadata_filter(store: MultimodalStore) -> None:
    store.add_images(
        [image(c, seed=i) for i, c in enumerate(COLOURS.values())],
        metadatas=[{"colour": name, "n": i} for i, name in enumerate(COLOURS)],
    )
    hits = store.search("anything", k=10, where={"colour": "blue"})
    assert [h.metadata["colour"] for h in hits] == ["blue"]
    hits = store.search("anything", k=10, modality="image", where={"n": {"$gte": 2}})
    assert sorted(h.metadata["n"] for h in hits) == [2, 3]


def test_search_checks_k_modality_and_vector_length(store: MultimodalStore) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        store.search("x", k=0)
    with pytest.raises(ValueError, match="modality must be 'image', 'text', 'pair' or None"):
        store.search("x", modality="audio")  # type: ignore[arg-type]  # the wrong type is what the test passes
    with pytest.raises(ValueError, match="this store holds"):
        store.search_by_vector([0.1, 0.2])


def test_adding_same_content_again_changes_nothing(store: MultimodalStore, clip_encoder) -> None:
    first = store.add_texts(["one", "two"])
    before = clip_encoder.forward_count
    again = store.add_texts(["one", "two"])
    assert (first.added, again.added, again.skipped) == (2, 0, 2)
    assert again.ids == first.ids and clip_encoder.forward_count == before
    assert store.count("text") == 2
    updated = store.add_texts(["one"], metadatas=[{"tag": "x"}])
    assert updated.updated == 1 and store.get(first.ids[:1])[0].metadata == {"tag": "x"}


def test_ids_depend_on_content_and_model(tmp_path, store: MultimodalStore, tiny_encoders) -> None:
    picture = image(COLOURS["red"])
    a = store.add_images([picture]).ids[0]
    b = store.add_images([np.asarray(picture)]).ids[0]  # same pixels, other input type
    assert a == b and store.count("image") == 1
    with MultimodalStore(tiny_encoders["siglip"], path=tmp_path / "other", collection="test") as other:
        assert other.add_images([picture]).ids[0] != a


def test_bad_image_names_item_and_stores_nothing(store: MultimodalStore) -> None:
    store.add_texts(["kept"])
    with pytest.raises(ImageInputError, match=r"image 1\b"):
        store.add_images([image(COLOURS["red"]), b"\x89PNG broken", image(COLOURS["blue"])])
    assert store.count("image") == 0 and store.count("text") == 1


def test_bad_metadata_and_ids_are_named(store: MultimodalStore) -> None:
    with pytest.raises(ValueError, match="metadata of item 1: value of 'tags' must be"):
        store.add_texts(["a", "b"], metadatas=[{}, {"tags": ["x"]}])
    with pytest.raises(ValueError, match="reserved"):
        store.add_texts(["a"], metadatas=[{"modality": "image"}])
    with pytest.raises(ValueError, match="got 1 metadatas for 2 items"):
        store.add_texts(["a", "b"], metadatas=[{}])
    with pytest.raises(ValueError, match="id of item 1 must be a non-empty string"):
        store.add_texts(["a", "b"], ids=["x", ""])
    with pytest.raises(ValueError, match="ids must be unique"):
        store.add_texts(["a", "b"], ids=["x", "x"])
    with pytest.raises(TypeError, match="text 1: expected str, got int"):
        store.add_texts(["a", 3])  # type: ignore[list-item]  # the wrong type is what the test passes
    assert store.count() == 0


def test_get_delete_and_count(store: MultimodalStore) -> None:
    text_ids = store.add_texts(["x", "y"]).ids
    image_ids = store.add_images([image(COLOURS["red"])], ids=["my-image"]).ids
    assert image_ids == ["my-image"]
    records = store.get([image_ids[0], "missing", text_ids[1]])
    assert [(r.id, r.modality) for r in records] == [("my-image", "image"), (text_ids[1], "text")]
    assert store.delete([text_ids[0], "missing"]) == 1
    assert (store.count(), store.count("text"), store.count("image")) == (2, 1, 1)


@pytest.mark.parametrize(
    ("method", "single", "name"),
    [
        ("add_texts", "a red circle", "texts"),
        ("add_images", "photo.png", "images"),
        ("add_images", Path("photo.png"), "images"),
        ("get", "abc", "ids"),
        ("delete", "abc", "ids"),
    ],
)
def test_a_single_item_is_refused_not_split(store: MultimodalStore, method: str, single: object, name: str) -> None:
    store.add_texts(["a", "b", "c"], ids=["a", "b", "c"])
    with pytest.raises(NotASequenceError, match=rf"{name} must be a list of items, not a single \w+; wrap it"):
        getattr(store, method)(single)
    assert store.count() == 3  # "abc" did not delete ids a, b and c


def test_a_single_image_object_is_refused(store: MultimodalStore) -> None:
    with pytest.raises(NotASequenceError, match="images must be a list of items, not a single Image"):
        store.add_images(image(COLOURS["red"]))  # type: ignore[arg-type]  # the wrong type is what the test passes
    with pytest.raises(NotASequenceError, match="not a single ndarray"):
        store.add_images(np.asarray(image(COLOURS["red"])))


class _NoChroma:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"Chroma was called ({name}) for an empty id list")


def test_empty_get_and_delete_do_not_call_chroma(store: MultimodalStore, monkeypatch) -> None:
    monkeypatch.setattr(store, "_collections", _NoChroma())
    assert store.get([]) == []
    assert store.delete([]) == 0
    assert store.get(iter([])) == []


def test_model_mismatch_is_refused(tmp_path, tiny_encoders) -> None:
    path = tmp_path / "db"
    with MultimodalStore(tiny_encoders["clip"], path=path) as opened:
        opened.add_texts(["kept"])
    with pytest.raises(StoreMismatchError, match="was built with model") as info:
        MultimodalStore(tiny_encoders["siglip"], path=path)
    assert "another collection name or path" in str(info.value)
    with MultimodalStore(tiny_encoders["clip"], path=path) as reopened:
        assert reopened.count() == 1
    assert MultimodalStore.recorded_model(path) == tiny_encoders["clip"].model_id
    assert MultimodalStore.recorded_model(tmp_path / "nothing-here") is None


def test_invalid_collection_name() -> None:
    with pytest.raises(ValueError, match="invalid collection name"):
        MultimodalStore(object(), collection="ab")  # type: ignore[arg-type]  # the wrong type is what the test passes


def test_public_names_stay_importable() -> None:
    import mmrag.store as store_module

    assert set(store_module.__all__) >= {
        "IMAGE_EXTENSIONS", "TEXT_EXTENSIONS", "Hit", "IndexReport", "Modality", "MultimodalStore", "Record",
        "merge_ranked",
    }  # fmt: skip  # aligned by hand
    assert all(hasattr(store_module, name) for name in store_module.__all__)
    assert mmrag.MultimodalStore is store_module.MultimodalStore and mmrag.Hit is store_module.Hit
    assert frozenset({".txt", ".md"}) == store_module.TEXT_EXTENSIONS


def test_reopening_in_fresh_process_gives_same_results(tmp_path, clip_encoder) -> None:
    path = tmp_path / "db"
    folder = make_folder(tmp_path)
    with MultimodalStore(clip_encoder, path=path) as opened:
        opened.index_folder(folder)
        expected = [(h.id, round(h.score, 4)) for h in opened.search("a red circle", k=6)]
    result = run_python(f"""
        import json, mmrag
        from mmrag.store import MultimodalStore
        enc = mmrag.load_encoder({clip_encoder.model_id!r}, device="cpu")
        with MultimodalStore(enc, path={str(path)!r}) as store:
            print(json.dumps([(h.id, round(h.score, 4)) for h in store.search("a red circle", k=6)]))
    """)
    assert [tuple(x) for x in json.loads(result.stdout.strip().splitlines()[-1])] == expected, result.stderr
