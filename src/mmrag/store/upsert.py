"""The add path of ``add_texts`` and ``add_images``: check, derive ids, skip what is stored unchanged, embed the rest.

Every item is checked (and every image decoded) before anything is written. An
item stored with the same id and metadata is skipped without embedding; one
whose metadata alone changed has its metadata rewritten; new items, and items
given an explicit id, are embedded in ``encoder.batch_size`` chunks and upserted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mmrag.errors import TextInputError
from mmrag.inputs import ImageInput, as_items, image_source, resolve_image
from mmrag.store.checks import check_ids, check_metadatas
from mmrag.store.collection_pair import CollectionPair
from mmrag.store.names import is_utf8, path_key, printable
from mmrag.store.records import MODALITIES, IndexReport, Pending, pixel_digest, record_id, text_digest, user_metadata

if TYPE_CHECKING:
    from mmrag.encoders.base import Encoder

__all__: list[str] = []  # internal to mmrag.store


def pending_texts(
    texts: Sequence[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    ids: Sequence[str] | None,
    model_key: str,
) -> list[Pending]:
    """Checked texts as pending writes (see ``MultimodalStore.add_texts`` for what is raised)."""
    items = as_items(texts, "texts")
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TextInputError(f"expected str, got {type(text).__name__}", index=index)
        if not is_utf8(text):
            raise TextInputError("holds a lone surrogate (not valid Unicode text)", index=index)
    user_meta = check_metadatas(metadatas, len(items))
    record_ids = check_ids(ids, len(items)) or [record_id(model_key, "text", text_digest(t), None) for t in items]
    return [
        Pending(item_id, "text", text, {"source": text}, meta, text)
        for item_id, text, meta in zip(record_ids, items, user_meta)
    ]


def pending_images(
    images: Sequence[ImageInput],
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    ids: Sequence[str] | None,
    encoder: Encoder,
    model_key: str,
) -> list[Pending]:
    """Decoded, checked images as pending writes (see ``MultimodalStore.add_images``)."""
    items = as_items(images, "images")
    user_meta = check_metadatas(metadatas, len(items))
    explicit = check_ids(ids, len(items))
    limits = encoder.image_limits
    decoded = [resolve_image(item, limits=limits, index=index) for index, item in enumerate(items)]
    sources = [image_source(item) or "" for item in items]
    record_ids = explicit or [
        record_id(model_key, "image", pixel_digest(image), path_key(source)) for image, source in zip(decoded, sources)
    ]
    return [  # a path that is not UTF-8 is stored readably (see mmrag.store.names)
        Pending(item_id, "image", None, {"source": printable(source)}, meta, image)
        for item_id, image, source, meta in zip(record_ids, decoded, sources, user_meta)
    ]


def write_pending(
    collections: CollectionPair, encoder: Encoder, pending: list[Pending], *, explicit_ids: bool
) -> IndexReport:
    """Write pending items, embedding only those not stored unchanged.

    Args:
        collections: Where to write.
        encoder: Embeds the items (in chunks of its ``batch_size``).
        pending: The items, in input order.
        explicit_ids: The caller chose the ids: an existing one is overwritten.

    Returns:
        What was added, updated and skipped; ``ids`` in input order.
    """
    report = IndexReport(ids=[item.id for item in pending])
    existing = collections.existing_metadata(pending)
    todo: list[Pending] = []
    for item in pending:
        old = existing.get(item.id)
        if old is None:
            report.added += 1
            todo.append(item)
        elif explicit_ids:
            report.updated += 1
            todo.append(item)
        elif user_metadata(old) != item.user_metadata:
            report.updated += 1
            collections.update_metadata(item)
        else:
            report.skipped += 1
    for modality in MODALITIES:
        group = [item for item in todo if item.modality == modality]
        for start in range(0, len(group), encoder.batch_size):
            chunk = group[start : start + encoder.batch_size]
            payloads = [item.payload for item in chunk]
            vectors = encoder.embed_images(payloads) if modality == "image" else encoder.embed_texts(payloads)
            report.embedded += len(chunk)
            collections.upsert(modality, chunk, vectors)
    return report
