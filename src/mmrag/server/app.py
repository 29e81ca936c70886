"""The FastAPI application: ``/embed``, ``/similarity``, ``/v1/embeddings``, ``/search`` and probes.

Import this module only when FastAPI is installed (``pip install "mmrag[server]"``);
:func:`mmrag.server.create_app` checks that first.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI
from starlette.responses import Response

from mmrag.errors import InvalidFilterError
from mmrag.server.errors import ApiError, install_error_handlers
from mmrag.server.filters import check_where
from mmrag.server.limits import AdmissionMiddleware, BodyLimitMiddleware
from mmrag.server.middleware import ErrorGuardMiddleware, RequestStatsMiddleware
from mmrag.server.runtime import ItemError, Runtime
from mmrag.server.schemas import (
    EmbedRequest,
    EmbedResponse,
    OpenAIEmbeddingsRequest,
    SearchRequest,
    SimilarityRequest,
)
from mmrag.server.settings import ServerSettings

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["create_app"]


def create_app(settings: ServerSettings | None = None, *, on_fatal: Any = None) -> FastAPI:
    """Build the application; the model loads in the background when it starts.

    Args:
        settings: Server settings (default: ``ServerSettings()``).
        on_fatal: Called if the model or store cannot be loaded (the CLI stops
            the server then).

    Returns:
        The FastAPI app; its :class:`~mmrag.server.runtime.Runtime` is
        ``app.state.runtime``.

    Example:
        >>> app = create_app(ServerSettings(model="demo"))
        >>> # uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    settings = settings or ServerSettings()
    runtime = Runtime(settings, on_fatal=on_fatal)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        runtime.start_loading()
        try:
            yield
        finally:
            await asyncio.to_thread(runtime.close)

    app = FastAPI(
        title="mmrag",
        summary="Local multimodal (text + image) embeddings for RAG",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    # Outermost last: errors guarded, then counted; oversized or slow bodies refused; then admission (429).
    app.add_middleware(AdmissionMiddleware, admission=runtime.admission, on_leave=runtime.request_left)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout=settings.body_timeout)
    app.add_middleware(RequestStatsMiddleware, runtime=runtime)
    app.add_middleware(ErrorGuardMiddleware)

    @app.get("/health", summary="Liveness: 200 as soon as the process serves HTTP")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: 503 until the model is loaded")
    async def ready() -> dict[str, Any]:
        encoder, _ = runtime.require_ready()
        return {"status": "ready", "model_id": encoder.model_id, "dimension": encoder.dim}

    @app.get("/metrics", summary="Counters: forward passes, queue depth, requests served")
    async def metrics() -> dict[str, Any]:
        return runtime.metrics()

    @app.post("/embed", response_model=EmbedResponse, response_model_exclude_none=True)
    async def embed(body: EmbedRequest) -> Response:
        """Embed an image, a text, or both (then also the family's fused vector of the pair)."""
        if body.image is not None and body.image_base64 is not None:
            raise ApiError(422, "validation_error", "give `image` or `image_base64`, not both")
        image = body.image if body.image is not None else body.image_base64
        if image is None and body.text is None:
            raise ApiError(422, "validation_error", "give `image`, `text` or both")
        encoder, _ = runtime.require_ready()
        result: dict[str, Any] = {}
        texts = [body.text] if body.text is not None else []
        runtime.check_texts(texts, lambda _i: "text")
        with runtime.admitted(int(image is not None) + len(texts)):
            decoded = await _decode_or_400(runtime, [image], lambda _i: "image") if image is not None else []
            if texts:
                texts = await runtime.prepare_texts(texts, lambda _i: "text")
            if decoded and texts:  # the family's own fused vector (not always the sum of the two)
                pair = await runtime.embed_fused(decoded, texts)
                result["fused_embedding"] = pair.fused[0]
                vectors = [pair.image, pair.text]
            elif decoded:
                vectors = [await runtime.embed_images(decoded)]
            else:
                vectors = [await runtime.embed_texts(texts)]
        image_vec = vectors[0][0] if image is not None else None
        text_vec = vectors[-1][0] if body.text is not None else None
        if image_vec is not None:
            result["image_embedding"] = image_vec
        if text_vec is not None:
            result["text_embedding"] = text_vec
        result.update(dimension=encoder.dim, model_id=encoder.model_id)
        return json_response(result)

    @app.post("/similarity")
    async def similarity(body: SimilarityRequest) -> Response:
        """Rank candidates (texts or images) by cosine similarity to the query, best first."""
        encoder, _ = runtime.require_ready()
        candidates = body.candidates
        runtime.check_items(len(candidates), "candidates")
        query_texts = [body.query] if body.query_type == "text" else []
        candidate_texts = candidates if body.candidate_type == "text" else []
        runtime.check_texts(query_texts, lambda _i: "query")
        runtime.check_texts(candidate_texts, lambda i: f"candidate {i}")
        errors: list[ItemError] = []
        with runtime.admitted(len(candidates) + 1):
            if query_texts:
                query_texts = await runtime.prepare_texts(query_texts, lambda _i: "query")
            if candidate_texts:
                candidate_texts = await runtime.prepare_texts(candidate_texts, lambda i: f"candidate {i}")
            query_image = None
            if body.query_type == "image":
                query_image = (await _decode_or_400(runtime, [body.query], lambda _i: "query"))[0]
            candidate_images: list[Image.Image] = []
            valid = list(range(len(candidates)))
            if body.candidate_type == "image":
                decoded, errors = await runtime.resolve_images(candidates, label=lambda i: f"candidate {i}")
                if errors and not body.skip_invalid:
                    raise ApiError(400, "invalid_image", errors[0].message, index=errors[0].index)
                valid = [i for i, image in enumerate(decoded) if image is not None]
                candidate_images = [image for image in decoded if image is not None]
            query_vecs, candidate_vecs = await asyncio.gather(
                runtime.embed_images([query_image]) if query_image is not None else runtime.embed_texts(query_texts),
                runtime.embed_images(candidate_images)
                if body.candidate_type == "image"
                else runtime.embed_texts(candidate_texts),
            )
        scores = candidate_vecs @ query_vecs[0]
        order = np.argsort(-scores, kind="stable")[: body.top_k]
        result: dict[str, Any] = {
            "similarities": [[candidates[valid[j]], float(scores[j])] for j in order],
            "indices": [valid[j] for j in order],
            "model_id": encoder.model_id,
        }
        if body.skip_invalid:
            result["errors"] = [{"index": error.index, "message": error.message} for error in errors]
        return json_response(result)

    @app.post("/v1/embeddings")
    async def openai_embeddings(body: OpenAIEmbeddingsRequest) -> Response:
        """OpenAI-compatible embeddings; ``modality: "image"`` embeds images instead of texts."""
        encoder, _ = runtime.require_ready()
        inputs = _openai_inputs(body.input)
        runtime.check_items(len(inputs), "inputs")
        if body.dimensions is not None and body.dimensions != encoder.dim:
            raise ApiError(
                400,
                "invalid_request",
                f"dimensions={body.dimensions} is not supported: model {encoder.model_id!r} "
                f"returns {encoder.dim}-dimensional embeddings (omit `dimensions` or pass {encoder.dim})",
            )
        if body.modality == "text":
            runtime.check_texts(inputs, lambda i: f"input {i}")
        with runtime.admitted(len(inputs)):
            if body.modality == "image":
                vectors = await runtime.embed_images(await _decode_or_400(runtime, inputs, lambda i: f"input {i}"))
                prompt_tokens = 0
            else:
                texts = await runtime.prepare_texts(inputs, lambda i: f"input {i}")
                vectors, prompt_tokens = await asyncio.gather(
                    runtime.embed_texts(texts), runtime.run_cpu(runtime.tokens.count, encoder, texts)
                )
        data = [
            {"object": "embedding", "index": index, "embedding": _encode_vector(vector, body.encoding_format)}
            for index, vector in enumerate(vectors)
        ]
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        return json_response({"object": "list", "data": data, "model": encoder.model_id, "usage": usage})

    @app.post("/search")
    async def search(body: SearchRequest) -> Response:
        """Search the ``--db`` store with a text (``query``), an image (``image``) or both (a composed query)."""
        if settings.db is None and settings.chroma_url is None:
            raise ApiError(
                409,
                "store_not_configured",
                "this server has no store: start it with `mmrag serve --db DIR` (a directory built with "
                "`mmrag index`) to enable /search",
            )
        if body.query is None and body.image is None:
            raise ApiError(422, "validation_error", "give `query` (a text), `image`, or both (a composed query)")
        if body.query is not None and body.image is not None and not body.query.strip():
            raise ApiError(422, "validation_error", "a composed query needs a text: `query` is blank")
        encoder, _ = runtime.require_ready()
        store = runtime.store
        assert store is not None
        where = check_where(body.where)  # a malformed filter is a 400 before any work
        if body.query is not None:
            runtime.check_texts([body.query], lambda _i: "query")
        with runtime.admitted(1):
            if body.image is not None and body.query is not None:
                decoded = await _decode_or_400(runtime, [body.image], lambda _i: "image")
                texts = await runtime.prepare_texts([body.query], lambda _i: "query")
                vector = (await runtime.embed_fused(decoded, texts)).fused[0]
            elif body.image is not None:
                decoded = await _decode_or_400(runtime, [body.image], lambda _i: "image")
                vector = (await runtime.embed_images(decoded))[0]
            else:
                texts = await runtime.prepare_texts([body.query or ""], lambda _i: "query")
                vector = (await runtime.embed_texts(texts))[0]
        try:
            hits = await runtime.run_store(
                store.search_by_vector, vector, k=body.k, modality=body.modality, where=where, fusion=body.fusion
            )
        except InvalidFilterError:
            raise
        except ValueError as exc:  # what the check let through and Chroma still refuses (a ValueError)
            raise ApiError(400, "invalid_request", f"invalid search: {exc}", code="invalid_filter") from None
        results = [
            {
                "id": hit.id,
                "modality": hit.modality,
                "source": hit.source,
                "text": hit.text,
                "score": hit.score,
                "metadata": hit.metadata,
            }
            for hit in hits
        ]
        query_type = "text" if body.image is None else "image" if body.query is None else "composed"
        return json_response({"results": results, "query_type": query_type, "model_id": encoder.model_id})

    return app


async def _decode_or_400(runtime: Runtime, items: Sequence[str], label: Callable[[int], str]) -> list[Image.Image]:
    """Decode every item (once; the result goes to the model as it is), or answer 400 for the first bad one."""
    images, errors = await runtime.resolve_images(items, label=label)
    if errors:
        first = errors[0]
        raise ApiError(400, "invalid_image", first.message, index=first.index if len(items) > 1 else None)
    return [image for image in images if image is not None]


def _openai_inputs(value: str | list[Any]) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not items:
        raise ApiError(422, "validation_error", "`input` must not be empty")
    for index, item in enumerate(items):
        if not isinstance(item, str):
            kind = "token-id arrays" if isinstance(item, (int, list)) else f"{type(item).__name__} values"
            raise ApiError(
                400, "invalid_request", f"input {index}: {kind} are not supported; send strings", index=index
            )
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "invalid_request", f"input {index}: not valid Unicode", index=index) from None
    return items


def _encode_vector(vector: np.ndarray, encoding_format: str) -> Any:
    if encoding_format == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def json_response(payload: Any, status: int = 200) -> Response:
    """Serialise ``payload`` (numpy arrays allowed) to a JSON response.

    Uses ``orjson`` when installed (it writes float32 vectors at their
    shortest exact form, fast), else the standard library.

    Args:
        payload: JSON-able data; numpy arrays and scalars are converted.
        status: HTTP status.

    Returns:
        An ``application/json`` response.
    """
    try:
        import orjson
    except ImportError:  # pragma: no cover - chromadb depends on orjson
        body = json.dumps(payload, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode()
    else:
        body = orjson.dumps(payload, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
