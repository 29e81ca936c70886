"""BLIP-2 features, Visualized-BGE and OpenCLIP through the store, both adapters, the service and the CLI.

Each family's tiny random-weight model (BLIP-2: built in ``tests/conftest.py``; Visualized-BGE and OpenCLIP:
the checkpoints committed under ``tests/encoders/golden``) is loaded once. The Visualized-BGE checkpoint has a
file name no preset implies, so its text model is given explicitly (``text_model=`` / ``--text-model``) when
indexing and must be found again from the store's record by ``mmrag search --db`` and ``mmrag serve --db``.

Per family, one folder is indexed with ``mmrag index`` in a subprocess; a copy of that store is served by one
real uvicorn process on loopback (started without ``--model``: it reopens the recorded model) while
``mmrag search`` runs on the original. Every vector the adapters, the service and the CLI give is compared
with the encoder's own.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from server_helpers import ServerProcess

import mmrag
from mmrag.server.recorded import recorded_model
from mmrag.store import MultimodalStore

GOLDEN = Path(__file__).parent / "encoders" / "golden"
VISUALIZED_BGE_PTH = GOLDEN / "visualized_bge" / "tiny_base_en.pth"  # not an official name: no text model implied
VISUALIZED_BGE_TEXT_MODEL = GOLDEN / "visualized_bge" / "tiny-bge-base-en-v1.5"
OPEN_CLIP_DIR = GOLDEN / "open_clip" / "gelu"
FAMILIES = ("blip2", "visualized_bge", "open_clip")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220)}
TEXTS = {"cat": "a cat sleeping on a sofa", "bridge": "the old stone bridge over the river at night"}
CPU = ("--device", "cpu", "--image-workers", "0")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass
class Family:
    """One family's encoder and the ``--model`` (``--text-model``) options that load the same model."""

    name: str
    encoder: Any
    load_args: tuple[str, ...]


@pytest.fixture(scope="session")
def visualized_bge_encoder() -> Any:
    """The tiny Visualized-BGE checkpoint with its text model given explicitly."""
    return mmrag.load_encoder(VISUALIZED_BGE_PTH, text_model=VISUALIZED_BGE_TEXT_MODEL, device="cpu", batch_size=4)


@pytest.fixture(scope="session")
def open_clip_encoder() -> Any:
    """The tiny OpenCLIP (GELU) checkpoint directory."""
    return mmrag.load_encoder(OPEN_CLIP_DIR, device="cpu", batch_size=4)


def _load_args(name: str, blip2_dir: Path) -> tuple[str, ...]:
    """The ``--model`` (``--text-model``) options that load family ``name``'s tiny model."""
    if name == "blip2":
        return ("--model", str(blip2_dir))
    if name == "visualized_bge":
        return ("--model", str(VISUALIZED_BGE_PTH), "--text-model", str(VISUALIZED_BGE_TEXT_MODEL))
    return ("--model", str(OPEN_CLIP_DIR))


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest, tiny_blip2_dir: Path) -> Family:
    fixture = {"blip2": "blip2_encoder"}.get(request.param, f"{request.param}_encoder")
    return Family(request.param, request.getfixturevalue(fixture), _load_args(request.param, tiny_blip2_dir))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three noisy colour squares and two text files (clearly different inputs)."""
    root = tmp_path_factory.mktemp("families_docs")
    rng = np.random.default_rng(12)
    for name, colour in COLOURS.items():
        pixels = np.clip(np.array(colour) + rng.normal(0, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{name}.png")
    for name, text in TEXTS.items():
        (root / f"{name}.txt").write_text(text, encoding="utf-8")
    return root


def _images(folder: Path) -> list[str]:
    return [str(folder / f"{name}.png") for name in COLOURS]


@pytest.fixture(scope="module")
def store(family: Family, folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultimodalStore]:
    with MultimodalStore(family.encoder, path=tmp_path_factory.mktemp(f"store_{family.name}")) as opened:
        opened.add_images(_images(folder))
        opened.add_texts(list(TEXTS.values()))
        yield opened


def _close(got: Any, want: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), want, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------- store
def test_store_search_ranks_as_the_vectors_say(family: Family, folder: Path, store: MultimodalStore) -> None:
    encoder, images, texts = family.encoder, _images(folder), list(TEXTS.values())
    image_vectors, text_vectors = encoder.embed_images(images), encoder.embed_texts(texts)
    for n, image in enumerate(images):  # an image finds itself, then the others in cosine order
        hits = store.search(image, k=3, modality="image", query_type="image")
        assert hits[0].source == image and hits[0].score == pytest.approx(1.0, abs=1e-4)
        cosines = dict(zip(images, image_vectors @ image_vectors[n]))
        assert [hit.score for hit in hits] == pytest.approx(sorted(cosines.values(), reverse=True), abs=1e-4)
        assert all(hit.score == pytest.approx(float(cosines[hit.source]), abs=1e-4) for hit in hits)
    query = texts[1]
    by_text = store.search(query, k=2, modality="text")
    assert by_text[0].text == query and by_text[0].score == pytest.approx(1.0, abs=1e-4)
    to_images = store.search(query, k=3, modality="image")  # cross-modal: whatever the tiny model says, exactly
    cosines = dict(zip(images, image_vectors @ text_vectors[1]))
    assert sorted(hit.source for hit in to_images) == sorted(images)
    assert all(hit.score == pytest.approx(float(cosines[hit.source]), abs=1e-4) for hit in to_images)
    assert [hit.score for hit in to_images] == sorted((hit.score for hit in to_images), reverse=True)


# -------------------------------------------------------------------------------------- LlamaIndex
def test_llama_index_embedding_and_retriever(family: Family, folder: Path, store: MultimodalStore) -> None:
    from mmrag.llama_index import LocalMultiModalEmbedding, MultimodalStoreRetriever

    encoder, images, text = family.encoder, _images(folder), TEXTS["cat"]
    embedding = LocalMultiModalEmbedding(encoder=encoder)
    _close(embedding.get_text_embedding(text), encoder.embed_texts([text])[0])
    _close(embedding.get_image_embedding(images[2]), encoder.embed_images([images[2]])[0])
    _close(embedding.get_image_embedding_batch(images), encoder.embed_images(images))

    retriever = MultimodalStoreRetriever(store, k=3)
    same = retriever.image_to_image_retrieve(images[1])
    assert same[0].node.image_path == images[1] and same[0].score == pytest.approx(1.0, abs=1e-4)
    assert retriever.text_retrieve(text)[0].node.text == text


# --------------------------------------------------------------------------------------- LangChain
def test_langchain_embeddings_and_retriever(family: Family, folder: Path, store: MultimodalStore) -> None:
    from mmrag.langchain import LocalMultiModalEmbeddings, MultimodalStoreRetriever

    encoder, images, texts = family.encoder, _images(folder), list(TEXTS.values())
    embeddings = LocalMultiModalEmbeddings(encoder=encoder)
    _close(embeddings.embed_documents(texts), encoder.embed_texts(texts))
    _close(embeddings.embed_query(texts[0]), encoder.embed_texts(texts[:1])[0])
    _close(embeddings.embed_image(images), encoder.embed_images(images))

    retriever = MultimodalStoreRetriever(store=store, k=3)
    by_image = retriever.invoke("", image=images[0], modality="image")
    assert by_image[0].metadata["source"] == images[0] and by_image[0].metadata["score"] == pytest.approx(1, abs=1e-4)
    assert retriever.invoke(texts[0], modality="text")[0].page_content == texts[0]


# ----------------------------------------------------------------------------------- CLI + service
def test_text_model_option_reaches_the_server_settings() -> None:
    from mmrag.cli import _parser
    from mmrag.server.arguments import settings_from_args

    args = _parser().parse_args(["serve", "--model", "mine.pth", "--text-model", "BAAI/bge-base-en-v1.5"])
    settings = settings_from_args(args)
    assert (settings.model, settings.text_model) == ("mine.pth", "BAAI/bge-base-en-v1.5")
    for command in ("index", "search"):
        assert _parser().parse_args([command, "x", "--text-model", "some/dir"]).text_model == "some/dir"


def _mmrag(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start ``python -m mmrag ARGS`` (finish it with :func:`_finish`)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "mmrag", *args]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@dataclass
class Deployed:
    """A folder indexed by ``mmrag index``, searched by ``mmrag search``, and a server on a copy of the store."""

    root: Path
    index: subprocess.CompletedProcess[str]
    search: subprocess.CompletedProcess[str]
    server: ServerProcess


@pytest.fixture(scope="module")
def deployments(
    folder: Path, tiny_blip2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Deployed]]:
    """Every family deployed at once (the processes' start-up overlaps): index, then search and serve."""
    roots = {name: tmp_path_factory.mktemp(f"deployed_{name}") for name in FAMILIES}
    started = {
        name: _mmrag("index", str(folder), "--db", "db", *_load_args(name, tiny_blip2_dir), *CPU, cwd=roots[name])
        for name in FAMILIES
    }
    indexed = {name: _finish(process) for name, process in started.items()}
    servers: dict[str, ServerProcess] = {}
    try:
        for name, root in roots.items():
            assert indexed[name].returncode == 0, indexed[name].stderr
            shutil.copytree(root / "db", root / "served")  # one process per store directory: serve a copy
            args = ["--db", str(root / "served"), *CPU, "--no-access-log"]  # no --model: the store's record
            servers[name] = ServerProcess(args, root, name="server", guarded=False)
        query = ("search", TEXTS["bridge"], "--db", "db", "--k", "3", "--json", *CPU)
        searches = {name: _mmrag(*query, cwd=root) for name, root in roots.items()}
        searched = {name: _finish(process) for name, process in searches.items()}
        for server in servers.values():
            server.wait_ready()
        yield {name: Deployed(roots[name], indexed[name], searched[name], servers[name]) for name in FAMILIES}
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
def deployed(family: Family, deployments: dict[str, Deployed]) -> Deployed:
    return deployments[family.name]


@pytest.mark.slow
def test_cli_index_then_search_reopens_the_recorded_model(family: Family, deployed: Deployed) -> None:
    assert "added 5, updated 0, skipped 0, removed 0, failed 0" in deployed.index.stdout
    assert deployed.search.returncode == 0, deployed.search.stderr  # no --model/--text-model: the store's record
    hits = json.loads(deployed.search.stdout)
    assert hits[0]["modality"] == "text" and hits[0]["text"] == TEXTS["bridge"]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    recorded = recorded_model(db=deployed.root / "db")
    assert recorded.model == MultimodalStore.recorded_model(deployed.root / "db") == family.encoder.model_id
    wanted = str(VISUALIZED_BGE_TEXT_MODEL.resolve()) if family.name == "visualized_bge" else None
    assert recorded.text_model == wanted  # an absolute directory: valid from any working directory


@pytest.mark.slow
def test_service_embed_and_search(family: Family, folder: Path, deployed: Deployed) -> None:
    encoder, images = family.encoder, _images(folder)
    with httpx.Client(base_url=deployed.server.base_url, timeout=60.0) as client:
        text = client.post("/embed", json={"text": TEXTS["cat"]}).json()
        assert text["model_id"] == encoder.model_id and text["dimension"] == encoder.dim
        _close(text["text_embedding"], encoder.embed_texts([TEXTS["cat"]])[0])
        image_b64 = base64.b64encode(Path(images[2]).read_bytes()).decode()
        _close(
            client.post("/embed", json={"image": image_b64}).json()["image_embedding"],
            encoder.embed_images(images[2:])[0],
        )

        by_image = client.post("/search", json={"image": image_b64, "modality": "image", "k": 3}).json()["results"]
        assert by_image[0]["source"] == images[2] and by_image[0]["score"] == pytest.approx(1.0, abs=1e-4)
        by_text = client.post("/search", json={"query": TEXTS["cat"], "modality": "text", "k": 2}).json()["results"]
        assert by_text[0]["text"] == TEXTS["cat"]
