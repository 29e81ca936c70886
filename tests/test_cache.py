"""The embedding cache: no second forward pass, one identity per vector space, memory bounds, a file that lasts."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mmrag
from mmrag.cache import EmbeddingCache, embed_with_cache, encoder_identity, image_key, text_key
from mmrag.errors import ImageInputError, InvalidInputError, NotASequenceError
from mmrag.testing import speckled_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SRC = str(Path(__file__).parents[1] / "src")
TEXTS = ["a red circle", "a small blue square", "红色的圆形"]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def demo_encoders() -> tuple[mmrag.Encoder, mmrag.Encoder]:
    """The bundled demo model loaded twice: by its alias, and by its recorded id with other options."""
    return mmrag.load_encoder("demo", device="cpu"), mmrag.load_encoder("mmrag/demo", device="cpu", batch_size=2)


# ------------------------------------------------------------------ no second forward pass
def test_second_call_runs_no_forward_pass_and_returns_the_same_vectors(clip_encoder) -> None:
    cache = EmbeddingCache()
    direct = clip_encoder.embed_texts(TEXTS)
    before = clip_encoder.forward_count
    first = embed_with_cache(cache, clip_encoder, TEXTS, "text")
    after_first = clip_encoder.forward_count
    second = embed_with_cache(cache, clip_encoder, TEXTS, "text")
    assert after_first - before == 1  # three texts, batch size 4: one forward pass
    assert clip_encoder.forward_count == after_first  # answered by the cache
    np.testing.assert_allclose(first, direct, atol=1e-6)
    np.testing.assert_array_equal(second, first)
    assert second.dtype == np.float32 and second.shape == (3, clip_encoder.dim)
    assert (cache.hits, cache.misses) == (3, 3)
    assert cache.stats.hit_rate == pytest.approx(0.5)


def test_only_the_misses_are_embedded_in_one_call_in_input_order(clip_encoder) -> None:
    cache = EmbeddingCache()
    embed_with_cache(cache, clip_encoder, TEXTS[:1], "text")
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return clip_encoder.embed_texts(texts)

    mixed = [TEXTS[1], TEXTS[0], TEXTS[2], TEXTS[1]]
    vectors = embed_with_cache(cache, clip_encoder, mixed, "text", embed=embed)
    assert calls == [[TEXTS[1], TEXTS[2]]]  # one call, each distinct miss once
    np.testing.assert_allclose(vectors, clip_encoder.embed_texts(mixed), atol=1e-6)


def test_images_from_paths_bytes_pil_and_arrays_are_cached(tmp_path, clip_encoder) -> None:
    picture = speckled_image((200, 30, 30), seed=1)
    path = tmp_path / "red.png"
    path.write_bytes(_png(picture))
    other = speckled_image((30, 30, 200), seed=2)
    items = [path, str(path), _png(picture), other, np.asarray(other)]
    cache = EmbeddingCache()
    before = clip_encoder.forward_count
    vectors = embed_with_cache(cache, clip_encoder, items, "image")
    assert clip_encoder.forward_count - before == 1  # 2 distinct images: the file's bytes and the pixels
    np.testing.assert_allclose(vectors, clip_encoder.embed_images(items), atol=1e-6)
    before = clip_encoder.forward_count
    again = embed_with_cache(cache, clip_encoder, [io.BytesIO(path.read_bytes()), np.asarray(other)], "image")
    assert clip_encoder.forward_count == before  # the same bytes from a file object, the same pixels
    np.testing.assert_array_equal(again, vectors[[0, 3]])


def test_a_file_object_is_read_once_and_still_embedded(clip_encoder) -> None:
    data = _png(speckled_image((10, 180, 10), seed=3))
    stream = io.BytesIO(data)
    vectors = embed_with_cache(EmbeddingCache(), clip_encoder, [stream], "image")
    assert stream.read() == b""  # consumed by the key, not read a second time
    np.testing.assert_allclose(vectors, clip_encoder.embed_images([data]), atol=1e-6)


def test_bad_items_raise_like_the_encoder(tmp_path, clip_encoder) -> None:
    cache = EmbeddingCache()
    with pytest.raises(NotASequenceError, match="wrap it in a list"):
        embed_with_cache(cache, clip_encoder, "a red circle", "text")
    with pytest.raises(ImageInputError, match=r"image 1 .*file not found"):
        embed_with_cache(cache, clip_encoder, [_png(speckled_image((1, 2, 3))), tmp_path / "missing.png"], "image")
    with pytest.raises(InvalidInputError, match="kind must be 'text' or 'image'"):
        embed_with_cache(cache, clip_encoder, ["x"], "audio")  # type: ignore[arg-type]  # the refusal is the point
    assert embed_with_cache(cache, clip_encoder, [], "text").shape == (0, clip_encoder.dim)


# ------------------------------------------------------------------ identities
def test_identity_is_the_same_for_every_load_of_one_model(demo_encoders, clip_encoder) -> None:
    by_alias, by_id = demo_encoders
    cache = EmbeddingCache()
    assert cache.identity(by_alias) == cache.identity(by_id) == encoder_identity(by_alias.signature)
    assert cache.identity(by_alias) != cache.identity(clip_encoder)
    changed = {**by_alias.signature, "preprocessing": "text:max_length=16"}
    assert encoder_identity(changed) != encoder_identity(by_alias)


def test_vectors_cached_through_one_load_serve_the_other(demo_encoders) -> None:
    by_alias, by_id = demo_encoders
    cache = EmbeddingCache()
    first = embed_with_cache(cache, by_alias, TEXTS, "text")
    before = by_id.forward_count
    second = embed_with_cache(cache, by_id, TEXTS, "text")
    assert by_id.forward_count == before
    np.testing.assert_array_equal(second, first)


def test_different_models_never_share_entries(demo_encoders, clip_encoder) -> None:
    demo = demo_encoders[0]
    cache = EmbeddingCache()
    demo_vectors = embed_with_cache(cache, demo, TEXTS, "text")
    before = clip_encoder.forward_count
    clip_vectors = embed_with_cache(cache, clip_encoder, TEXTS, "text")
    assert clip_encoder.forward_count == before + 1  # nothing of the demo model's was reused
    assert demo_vectors.shape[1] == demo.dim != clip_vectors.shape[1] == clip_encoder.dim
    assert cache.get(cache.identity(clip_encoder), text_key(TEXTS[0])) is not None
    assert cache.get(encoder_identity({"model_id": "x", "family": "clip", "dim": 64}), text_key(TEXTS[0])) is None


def test_identity_needs_a_complete_signature() -> None:
    with pytest.raises(InvalidInputError, match="lacks dim"):
        encoder_identity({"model_id": "x", "family": "clip"})
    with pytest.raises(InvalidInputError, match="positive integer"):
        encoder_identity({"model_id": "x", "family": "clip", "dim": 0})


# ------------------------------------------------------------------ refused vectors
def test_vectors_of_the_wrong_length_are_refused_and_nothing_is_stored(clip_encoder) -> None:
    cache = EmbeddingCache()
    identity = cache.identity(clip_encoder)
    keys = [text_key("a"), text_key("b")]
    with pytest.raises(InvalidInputError, match=f"holds vectors of length {clip_encoder.dim}"):
        cache.put_many(identity, keys, np.ones((2, clip_encoder.dim + 1), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="expected 2 vectors"):
        cache.put_many(identity, keys, np.ones((3, clip_encoder.dim)))
    with pytest.raises(InvalidInputError, match="one length per row"):
        cache.put_many(identity, keys, [np.ones(clip_encoder.dim), np.ones(3)])
    bad = np.ones((2, clip_encoder.dim))
    bad[1, 5] = np.nan
    with pytest.raises(InvalidInputError, match="vector 1 has a NaN"):
        cache.put_many(identity, keys, bad)
    assert cache.get_many(identity, keys) == [None, None]
    assert cache.stats.entries == 0


def test_an_unregistered_identity_takes_the_length_of_its_first_vectors() -> None:
    cache = EmbeddingCache()
    cache.put("space", "k1", [1.0, 0.0, 0.0])
    with pytest.raises(InvalidInputError, match="length 3"):
        cache.put("space", "k2", [1.0, 0.0])
    vector = cache.get("space", "k1")
    assert vector is not None and vector.dtype == np.float32 and vector.tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="read-only"):
        vector[0] = 5.0  # a caller cannot change what the cache holds


# ------------------------------------------------------------------ memory bounds
def test_memory_is_a_bounded_lru() -> None:
    cache = EmbeddingCache(max_entries=2)
    for name in ("a", "b"):
        cache.put("space", name, [1.0, 2.0])
    cache.get("space", "a")  # now "b" is the least recently used
    cache.put("space", "c", [3.0, 4.0])
    assert [cache.get("space", name) is not None for name in ("a", "b", "c")] == [True, False, True]
    by_bytes = EmbeddingCache(max_entries=None, max_bytes=3 * 4 * 8)  # three vectors of 8 float32s
    by_bytes.put_many("space", [str(i) for i in range(5)], np.ones((5, 8)))
    assert by_bytes.stats.entries == 3 and by_bytes.stats.bytes == 96
    with pytest.raises(InvalidInputError, match="max_entries"):
        EmbeddingCache(max_entries=-1)


def test_clear_forgets_one_identity_or_all(tmp_path) -> None:
    with EmbeddingCache(path=tmp_path) as cache:
        cache.put("one", "k", [1.0])
        cache.put("two", "k", [2.0])
        cache.clear("one")
        assert cache.get("one", "k") is None and cache.get("two", "k") is not None
        assert cache.disk_count() == 1
        cache.clear()
        assert cache.disk_count() == 0 and cache.get("two", "k") is None


# ------------------------------------------------------------------ on disk
def test_a_disk_cache_survives_a_new_process(tmp_path, clip_encoder) -> None:
    path = tmp_path / "cache" / "vectors.sqlite"
    with EmbeddingCache(path=path) as cache:
        vectors = embed_with_cache(cache, clip_encoder, TEXTS, "text")
        identity = cache.identity(clip_encoder)
    script = (
        "import json, sys\n"
        "from mmrag.cache import EmbeddingCache\n"
        "cache = EmbeddingCache(path=sys.argv[1])\n"
        "found = cache.get_many(sys.argv[2], json.loads(sys.argv[3]))\n"
        "print(json.dumps([None if v is None else v.tolist() for v in found]))\n"
    )
    keys = [text_key(text) for text in TEXTS]
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), identity, json.dumps(keys)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    read_back = json.loads(done.stdout)
    assert all(row is not None for row in read_back)
    np.testing.assert_allclose(np.array(read_back, dtype=np.float32), vectors, atol=1e-7)
    before = clip_encoder.forward_count
    with EmbeddingCache(path=path) as reopened:  # a new cache object: memory empty, the file full
        again = embed_with_cache(reopened, clip_encoder, TEXTS, "text")
        assert reopened.stats.entries == 3 and reopened.path == str(path.resolve())
    assert clip_encoder.forward_count == before
    np.testing.assert_array_equal(again, vectors)


def test_a_directory_path_gets_a_file_and_the_dimension_is_remembered(tmp_path, clip_encoder) -> None:
    with EmbeddingCache(path=tmp_path) as cache:
        identity = cache.identity(clip_encoder)
    with EmbeddingCache(path=tmp_path) as reopened:
        assert reopened.path == str(tmp_path.resolve() / "embeddings.sqlite")
        with pytest.raises(InvalidInputError, match=f"length {clip_encoder.dim}"):
            reopened.put(identity, "k", [1.0, 2.0])  # the file knows this identity's dimension


def test_threads_share_one_disk_cache(tmp_path) -> None:
    cache = EmbeddingCache(path=tmp_path / "c.sqlite", max_entries=50)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for step in range(40):
                key = f"k{(worker * 7 + step) % 60}"
                cache.put("space", key, np.full(4, int(key[1:]), dtype=np.float32))
                vector = cache.get("space", key)
                assert vector is not None and vector[0] == int(key[1:])
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert cache.disk_count("space") == 60 and cache.stats.entries <= 50
    cache.close()


def test_processes_write_one_file_at_once(tmp_path) -> None:
    path = tmp_path / "shared.sqlite"
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from mmrag.cache.embedding_cache import EmbeddingCache\n"
        "cache = EmbeddingCache(path=sys.argv[1])\n"
        "worker = int(sys.argv[2])\n"
        "for i in range(100):\n"
        "    cache.put_many('space', [f'{worker}-{i}', f'shared-{i}'], np.full((2, 8), i, dtype=np.float32))\n"
        "cache.close()\n"
    )
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(n)], env=env, stderr=subprocess.PIPE)
        for n in range(3)
    ]
    for worker in workers:
        _out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()
    with EmbeddingCache(path=path) as cache:
        assert cache.disk_count("space") == 3 * 100 + 100
        vector = cache.get("space", "2-99")
        assert vector is not None and vector.tolist() == [99.0] * 8


def test_a_corrupt_row_is_a_miss_not_an_error(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "c.sqlite"
    with EmbeddingCache(path=path) as cache:
        cache.put("space", "k", [1.0, 2.0, 3.0])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE vectors SET vector = ? WHERE key = 'k'", (b"\x00\x01",))
    conn.close()
    with EmbeddingCache(path=path) as reopened:
        assert reopened.get("space", "k") is None
        assert reopened.misses == 1


def test_keys_name_the_content() -> None:
    assert text_key("红色") == text_key("红色") != text_key("红色 ")
    picture = speckled_image((5, 5, 5), seed=4)
    data = _png(picture)
    assert image_key(data)[0] == image_key(io.BytesIO(data))[0]
    assert image_key(data)[0].startswith("b:") and image_key(picture)[0].startswith("p:")
    assert image_key(picture)[0] == image_key(np.asarray(picture))[0]
