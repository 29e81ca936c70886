"""Text cross-encoders: any ``AutoModelForSequenceClassification`` relevance model.

The bge-reranker family (``BAAI/bge-reranker-base``, ``-large``,
``-v2-m3``; XLM-RoBERTa with one output logit) and sentence-transformers
``cross-encoder/*`` checkpoints read the query and a passage together and
output a relevance logit. The backend's log-odds are that logit for one-label
heads (``sigmoid(logit)`` is the usual relevance score) and
``logits[1] - logits[0]`` for two-label heads (``softmax(logits)[1]``).

The scores equal plain transformers::

    inputs = tokenizer([query] * n, passages, padding=True, truncation=True,
                       max_length=512, return_tensors="pt")
    logits = model(**inputs).logits
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from mmrag.errors import UnsupportedModelError
from mmrag.inputs import Modality
from mmrag.rerank.base import Batch, PairKey, RerankBackend, RerankQuery, move_batch, text_limit

if TYPE_CHECKING:
    import torch

__all__ = ["CrossEncoderBackend", "cross_encoder_positions"]


class CrossEncoderBackend(RerankBackend):
    """A text-text relevance model with a sequence-classification head.

    Serves ``text->text`` only. Each (query, passage) pair is tokenised as a
    sentence pair and truncated (longest first) to :attr:`max_length` tokens.

    Args:
        model: A loaded ``*ForSequenceClassification`` model with 1 or 2
            labels, in eval mode on its device.
        tokenizer: Its tokenizer.
        model_id: Hub id or absolute local path, recorded on the backend.
        max_length: Token limit per pair; default: the smaller of the
            tokenizer's ``model_max_length`` and the position limit.

    Raises:
        UnsupportedModelError: The head has neither 1 nor 2 labels.
    """

    kind: ClassVar[str] = "cross_encoder"
    pairs: ClassVar[frozenset[PairKey]] = frozenset({"text->text"})
    specialised: ClassVar[bool] = True

    def __init__(self, model: Any, tokenizer: Any, *, model_id: str, max_length: int | None = None) -> None:
        parameter = next(model.parameters())
        super().__init__(model_id=model_id, device=parameter.device, dtype=parameter.dtype)
        self.num_labels = int(model.config.num_labels)
        if self.num_labels not in (1, 2):
            raise UnsupportedModelError(
                f"{model_id!r} has a {self.num_labels}-label classification head; a cross-encoder reranker needs "
                "1 label (a relevance logit) or 2 labels (no match, match)"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length or text_limit(tokenizer, cross_encoder_positions(model.config))

    def encode_query(self, query: RerankQuery) -> str:
        """The query text itself (it is tokenised with every passage).

        Args:
            query: The resolved text query.

        Returns:
            The query text.
        """
        return query.text or ""

    def prepare(self, context: str, items: list[Any], modality: Modality) -> Batch:
        """Tokenise one batch of (query, passage) pairs.

        Args:
            context: The query text.
            items: Candidate passages.
            modality: ``"text"``.

        Returns:
            The tokenizer's tensors.
        """
        return self.tokenizer(
            [context] * len(items), items, padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        )  # fmt: skip  # aligned by hand

    def forward(self, context: str, batch: Batch) -> torch.Tensor:
        """Relevance log-odds for one batch.

        Args:
            context: The query text (unused).
            batch: What :meth:`prepare` returned.

        Returns:
            Shape ``(n,)``.
        """
        logits: torch.Tensor = self.model(**move_batch(batch, self.device)).logits.float()
        return logits[:, 0] if self.num_labels == 1 else logits[:, 1] - logits[:, 0]


def cross_encoder_positions(config: Any) -> int | None:
    """Tokens a text model's position embeddings cover.

    RoBERTa-style models (XLM-RoBERTa, the bge rerankers) start positions
    after the padding index, so they hold ``max_position_embeddings -
    pad_token_id - 1`` tokens (512 of 514).

    Args:
        config: The model config.

    Returns:
        The token budget, or ``None`` when the config does not say.
    """
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    if "roberta" in str(getattr(config, "model_type", "")) and isinstance(config.pad_token_id, int):
        positions -= config.pad_token_id + 1
    return positions
