"""``CrossModalReranker``: a LlamaIndex node postprocessor that reranks text and image nodes."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # re-exported without __all__
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from mmrag.components import recorded_options, reranker_from, reranker_label
from mmrag.llama_index._nodes import node_candidate, rerank_query, rescored
from mmrag.options import LoadOptions
from mmrag.rerank import Reranker, RerankerModels, rerank_known_modalities

__all__ = ["RETRIEVAL_SCORE_KEY", "CrossModalReranker"]

dispatcher = get_dispatcher("mmrag.llama_index")

RETRIEVAL_SCORE_KEY = "retrieval_score"
"""Metadata key under which :class:`CrossModalReranker` keeps the first-stage score."""


class CrossModalReranker(BaseNodePostprocessor):
    """Rerank retrieved text and image nodes with an mmrag :class:`~mmrag.Reranker`.

    A LlamaIndex node postprocessor: put it in a query engine's
    ``node_postprocessors`` or call :meth:`postprocess_nodes` on what a
    retriever returned (:class:`MultimodalStoreRetriever`, a
    ``MultiModalVectorStoreIndex`` retriever, any other).

    * **Candidates**: an ``ImageNode`` is scored as an image, read from its
      ``image`` (base64), else ``image_path``, else ``image_url`` (LlamaIndex's
      own order); a ``Node`` with an ``image_resource`` likewise; every other
      node as the text ``node.get_content(metadata_mode)``.
    * **Query**: the bundle's ``image_path`` if it has one (an image query,
      e.g. ``QueryBundle("", image_path="photo.jpg")``), else its
      ``query_str`` (always a text, even if it names an image file).
    * **Output**: new ``NodeWithScore`` objects, best first, at most
      ``top_n``; ``score`` is the reranker's match probability in ``[0, 1]``
      (see :mod:`mmrag.rerank` for what it means across modalities). Each node
      is a copy with the original metadata plus ``retrieval_score`` (the
      first-stage score, when there was one; hidden from the LLM and from
      embedding). The nodes passed in are not modified.

    All candidates go to the reranker in **one** scoring call, texts and images
    mixed, which batches them per backend (``ceil(n / batch_size)`` model
    calls per modality). Only when a text would be misread as an image by
    :func:`mmrag.inputs.is_image_query` (e.g. a text that is just an http URL)
    are texts and images scored in two calls, one per modality.

    Args:
        reranker: A loaded :class:`~mmrag.Reranker` to use (it may be shared).
        model: Instead of ``reranker``: what :func:`mmrag.load_reranker`
            takes, e.g. ``"blip-itm-base-coco"``, ``["blip-itm-base-coco",
            "bge-reranker-base"]`` or a local directory.
        options: How to load ``model`` (:class:`mmrag.LoadOptions`); only with ``model``.
        batch_size: Most (query, candidate) pairs per model call; default: the
            reranker's own (32 when loading ``model``).
        top_n: Most nodes to return; ``None`` keeps all, reordered.
        metadata_mode: What text candidates include: ``MetadataMode.NONE``
            (the text alone, the default) or e.g. ``MetadataMode.EMBED``.
        **kwargs: Any :class:`mmrag.LoadOptions` field (``device="cpu"``,
            ``dtype="float16"``, ``local_files_only=True``...), applied on top
            of ``options`` (only with ``model``); and other postprocessor
            fields, e.g. ``callback_manager``.

    Raises:
        mmrag.InvalidInputError: Neither or both of ``reranker`` and ``model``,
            or loading options with ``reranker``.
        mmrag.ModelNotAvailableError: ``model`` cannot be found or downloaded.

    Example:
        >>> from mmrag.llama_index import CrossModalReranker
        >>> reranker = CrossModalReranker(model=["blip-itm-base-coco", "bge-reranker-base"], top_n=3)
        >>> nodes = retriever.retrieve("a dog on the beach")  # doctest: +SKIP
        >>> best = reranker.postprocess_nodes(nodes, query_str="a dog on the beach")  # doctest: +SKIP
        >>> engine = index.as_query_engine(node_postprocessors=[reranker])  # doctest: +SKIP
    """

    model: str | list[str] | dict[str, str] | None = Field(
        default=None,
        description="What the reranker was loaded from (alias, hub id, path; a list or pair->model mapping).",
    )
    device: str | None = Field(default=None, description="Device the model was loaded on; None: the best available.")
    dtype: str | None = Field(default=None, description="Weight dtype the model was loaded with; None: the default.")
    batch_size: int = Field(default=32, description="Most (query, candidate) pairs per model call.", gt=0)
    top_n: int | None = Field(default=None, description="Most nodes to return; None keeps all, reordered.", ge=0)
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.NONE,
        description="Which metadata text candidates include (MetadataMode); NONE scores the text alone.",
    )
    local_files_only: bool = Field(default=False, description="Never use the network when loading the model.")

    _reranker: Reranker = PrivateAttr()
    _owns_reranker: bool = PrivateAttr(default=False)

    def __init__(
        self,
        reranker: Reranker | None = None,
        *,
        model: RerankerModels | None = None,
        options: LoadOptions | None = None,
        batch_size: int | None = None,
        top_n: int | None = None,
        metadata_mode: MetadataMode = MetadataMode.NONE,
        **kwargs: Any,
    ) -> None:
        loaded, opts = reranker_from(reranker, model, options, kwargs, batch_size=batch_size)
        super().__init__(
            model=reranker_label(loaded, model),
            batch_size=loaded.batch_size if batch_size is None else batch_size,
            top_n=top_n,
            metadata_mode=metadata_mode,
            **(recorded_options(opts) if opts is not None else {}),
            **kwargs,
        )
        self._reranker = loaded
        self._owns_reranker = opts is not None

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex records for this component.

        Returns:
            ``"CrossModalReranker"``.
        """
        return "CrossModalReranker"

    @property
    def reranker(self) -> Reranker:
        """The mmrag reranker doing the scoring."""
        return self._reranker

    def close(self) -> None:
        """Stop the reranker's prefetch threads, if this object loaded it (it stays usable)."""
        if self._owns_reranker:
            self._reranker.close()

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        """Rescore ``nodes`` for the query, best first, at most ``top_n``.

        Args:
            nodes: Retrieved nodes (text and image nodes may be mixed).
            query_bundle: The query: its ``image_path`` (image query) or ``query_str``.

        Returns:
            Copies of the best nodes with the reranker's scores.

        Raises:
            mmrag.InvalidInputError: No query, an empty query, or an image node without an image.
            mmrag.UnsupportedPairError: The reranker serves no backend for a
                needed (query, candidate) modality pair.
            mmrag.ImageInputError: A query or node image could not be read.
        """
        query, query_type = rerank_query(query_bundle)
        top_n = self.top_n
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=len(nodes) if top_n is None else top_n,
                model_name=str(self.model),
            )
        )
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        candidates = [node_candidate(result.node, self.metadata_mode) for result in nodes]
        payload: dict[str, Any] = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: str(self.model),
            EventPayload.QUERY_STR: query_bundle.query_str if query_bundle is not None else "",
            EventPayload.TOP_K: top_n,
        }
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            ranked = rerank_known_modalities(
                self._reranker,
                query,
                query_type,
                [item for item, _ in candidates],
                [modality for _, modality in candidates],
                top_n,
                self.batch_size,
            )
            reranked = [rescored(nodes[item.index], item.score, RETRIEVAL_SCORE_KEY) for item in ranked]
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked
