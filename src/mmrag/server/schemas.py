"""Request and response bodies (pydantic models; FastAPI validates requests against them).

Unknown request fields are ignored, as the services these endpoints imitate
do, so existing clients that send extras keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "EmbedRequest",
    "EmbedResponse",
    "OpenAIEmbeddingsRequest",
    "SearchRequest",
    "SimilarityRequest",
]

Modality = Literal["text", "image"]
StoreModality = Literal["text", "image", "pair"]


def _valid_text(value: str) -> str:
    """Refuse strings that cannot be UTF-8 encoded (lone surrogates from ``\\ud800`` escapes)."""
    if value.isascii():  # the common case, checked in a fraction of the time encoding takes
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode (lone surrogate at position {exc.start})") from None
    return value


Text = Annotated[str, AfterValidator(_valid_text)]
"""A string that tokenizers can take (valid Unicode)."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EmbedRequest(_Request):
    """``POST /embed``: an image, a text, or both.

    With both, the answer also holds ``fused_embedding``: the family's fused
    vector of the pair (``encoder.embed_fused``; for dual encoders such as
    CLIP and SigLIP the normalised sum of the two vectors, for Visualized-BGE
    its joint image+text encoding), the vector ``add_pairs`` stores and a
    composed ``/search`` queries with.

    Attributes:
        image: Base64, a data URI or an http(s) URL (a server path only below
            ``--allow-local-root``).
        image_base64: Alias of ``image`` accepted for compatibility.
        text: The text.
    """

    image: str | None = None
    image_base64: str | None = None
    text: Text | None = None


class EmbedResponse(BaseModel):
    """``POST /embed`` answer. Keys for an absent input are omitted; ``fused_embedding`` needs both (see above)."""

    fused_embedding: list[float] | None = None
    image_embedding: list[float] | None = None
    text_embedding: list[float] | None = None
    dimension: int
    model_id: str


class SimilarityRequest(_Request):
    """``POST /similarity``: rank candidates by cosine similarity to a query.

    Attributes:
        query: A text, or an image (base64, data URI, URL).
        candidates: Texts or images, embedded together in batches.
        query_type: What ``query`` is.
        candidate_type: What the candidates are.
        skip_invalid: Leave bad candidates out (listed in ``errors``) instead
            of failing the request with 400.
        top_k: Return only the best ``top_k`` (default: all).
    """

    query: Text
    candidates: list[Text] = Field(min_length=1)
    query_type: Modality = "text"
    candidate_type: Modality = "text"
    skip_invalid: bool = False
    top_k: int | None = Field(default=None, ge=1)


class OpenAIEmbeddingsRequest(_Request):
    """``POST /v1/embeddings``, OpenAI-compatible, plus ``modality``.

    Attributes:
        input: One string or a list of strings (token-id arrays are refused).
        model: Accepted and ignored: the server has one model, named in the answer.
        encoding_format: ``"float"`` or ``"base64"`` (little-endian float32).
        dimensions: Must equal the model's dimension if given.
        user: Ignored.
        modality: ``"text"`` (default) or ``"image"`` (inputs are base64,
            data URIs or URLs).
    """

    input: str | list[Any]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    modality: Modality = "text"


class SearchRequest(_Request):
    """``POST /search`` over the ``--db`` store.

    Attributes:
        query: A text query.
        image: An image query (base64, data URI, URL). Given together with
            ``query``, a composed query ("this shoe, but in red"): the query
            vector is the family's fused vector of the two (as ``/embed``).
        k: Most results.
        modality: Search only ``"image"``, ``"text"`` or ``"pair"`` records; all when omitted.
        where: Chroma-style metadata filter, e.g. ``{"album": "2024"}``.
        fusion: How two modalities merge: ``"rrf"`` or ``"score"``.
    """

    query: Text | None = None
    image: str | None = None
    k: int = Field(default=10, ge=1, le=1000)
    modality: StoreModality | None = None
    where: dict[str, Any] | None = None
    fusion: Literal["rrf", "score"] = "rrf"
