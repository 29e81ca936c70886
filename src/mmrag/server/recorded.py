"""What a store recorded about its model: the model id and, for Visualized-BGE, the text model.

Shared by ``mmrag serve``, ``mmrag index`` and ``mmrag search``, which load the
store's own model when ``--model`` is not given. A Visualized-BGE checkpoint
needs its BGE text model too; the store records it (in its collections'
metadata), so ``mmrag search --db DIR`` reopens such a store without
``--text-model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["RecordedModel", "recorded_model"]


class RecordedModel(NamedTuple):
    """The model a store was built with (``None`` fields: not recorded, or no such store).

    Attributes:
        model: The recorded model id (what :func:`mmrag.load_encoder` takes).
        text_model: The recorded Visualized-BGE text model (hub id or directory).
    """

    model: str | None = None
    text_model: str | None = None

    def load_arguments(self, model: str | None, text_model: str | None) -> tuple[str | None, str | None]:
        """The model and text model to load, given what the user asked for.

        Args:
            model: ``--model`` (``None``: the recorded one).
            text_model: ``--text-model`` (``None``: the recorded one, when the
                model is the recorded one too).

        Returns:
            ``(model, text_model)``; ``model`` is ``None`` when neither says one.
        """
        if model is None:
            return self.model, text_model or self.text_model
        return model, text_model


def recorded_model(*, db: str | Path | None = None, client: Any = None, collection: str = "mmrag") -> RecordedModel:
    """Read what store ``collection`` (in the embedded ``db``, or on a Chroma ``client``) recorded.

    Args:
        db: An embedded store directory (opened and closed again here).
        client: A Chroma client (used when ``db`` is ``None``).
        collection: The logical store name.

    Returns:
        The recorded model and text model; empty when there is no such store.

    Raises:
        mmrag.StoreLockedError: Another process has ``db`` open.
    """
    from mmrag.store.collection_pair import recorded_signature
    from mmrag.store.embedded import EmbeddedDatabase

    if db is None:
        return _from_signature(recorded_signature(client, collection)) if client is not None else RecordedModel()
    path = Path(db).expanduser().resolve()
    if not path.is_dir():
        return RecordedModel()
    database = EmbeddedDatabase.open(path)
    try:
        return _from_signature(recorded_signature(database.client, collection))
    finally:
        database.close()


def _from_signature(signature: dict[str, Any]) -> RecordedModel:
    model, text_model = signature.get("model_id"), signature.get("text_model")
    return RecordedModel(str(model) if model else None, str(text_model) if text_model else None)
