"""The add path of ``add_texts``, ``add_images`` and ``add_pairs``: check, derive ids, skip the unchanged, embed.

Every item is checked (and every image decoded) before anything is written. An
item stored with the same id and metadata is skipped without embedding; one
whose metadata alone changed has its metadata rewritten; new items, and items
given an explicit id, are embedded in ``encoder.batch_size`` chunks and written
in blocks of the client's max batch size: new ids with Chroma ``add``, stored
ones with ``upsert``. A text's own text is its document only (no ``source``
copy; :func:`~mmrag.store.records.stored_source` reads it back). A pair is
one record: the image's source, the text as its document, and the vector
``encoder.embed_fused(images, texts).fused``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag.errors import InvalidInputError, TextInputError
from mmrag.inputs import ImageInput, as_items, image_source, resolve_image
from mmrag.progress import progress_bar
from mmrag.store.checks import check_ids, check_metadatas
from mmrag.store.collection_pair import CollectionPair
from mmrag.store.names import is_utf8, path_key, printable
from mmrag.store.records import (
    STORED_MODALITIES,
    IndexReport,
    Pending,
    StoredModality,
    pixel_digest,
    record_id,
    text_digest,
    user_metadata,
)

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
    items = checked_texts(texts)
    user_meta = check_metadatas(metadatas, len(items))
    record_ids = check_ids(ids, len(items)) or [record_id(model_key, "text", text_digest(t), None) for t in items]
    return [Pending(item_id, "text", text, {}, meta, text) for item_id, text, meta in zip(record_ids, items, user_meta)]


def checked_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, every item a valid string (``TextInputError`` naming the first bad index)."""
    items = as_items(texts, "texts")
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TextInputError(f"expected str, got {type(text).__name__}", index=index)
        if not is_utf8(text):
            raise TextInputError("holds a lone surrogate (not valid Unicode text)", index=index)
    return list(items)


def pending_pairs(
    images: Sequence[ImageInput],
    texts: Sequence[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    encoder: Encoder,
    model_key: str,
) -> list[Pending]:
    """Checked image-text pairs as pending writes, one record each (see ``MultimodalStore.add_pairs``)."""
    image_items = as_items(images, "images")
    text_items = checked_texts(texts)
    if len(image_items) != len(text_items):
        raise InvalidInputError(
            f"add_pairs needs one text per image: got {len(image_items)} images and {len(text_items)} texts"
        )
    user_meta = check_metadatas(metadatas, len(image_items))
    limits = encoder.image_limits
    decoded = [resolve_image(item, limits=limits, index=index) for index, item in enumerate(image_items)]
    sources = [image_source(item) or "" for item in image_items]
    pending = []
    for image, text, source, meta in zip(decoded, text_items, sources, user_meta):
        digest = text_digest(f"{pixel_digest(image)}|{text_digest(text)}")
        item_id = record_id(model_key, "pair", digest, path_key(source))
        pending.append(Pending(item_id, "pair", text, {"source": printable(source)}, meta, (image, text)))
    return pending


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
    collections: CollectionPair,
    encoder: Encoder,
    pending: list[Pending],
    explicit_ids: bool,
    show_progress: bool | None = False,
) -> IndexReport:
    """Write pending items, embedding only those not stored unchanged.

    An item given twice in one call (the same content-derived id) is written
    once, as its last occurrence; the repeats count as skipped.

    Args:
        collections: Where to write.
        encoder: Embeds the items (in chunks of its ``batch_size``).
        pending: The items, in input order.
        explicit_ids: The caller chose the ids: an existing one is overwritten.
        show_progress: ``True``/``False`` force a progress bar on/off; ``None``
            shows one (see :func:`mmrag.progress.progress_bar`) when more than
            one batch is embedded.

    Returns:
        What was added, updated and skipped; ``ids`` in input order.
    """
    report = IndexReport(ids=[item.id for item in pending])
    existing = collections.existing_metadata(pending)
    new: dict[str, Pending] = {}
    replacing: dict[str, Pending] = {}
    for item in pending:
        queued = new if item.id in new else replacing if item.id in replacing else None
        if queued is not None:
            report.skipped += 1
            queued[item.id] = item
            continue
        old = existing.get(item.id)
        if old is None:
            report.added += 1
            new[item.id] = item
        elif explicit_ids:
            report.updated += 1
            replacing[item.id] = item
        elif user_metadata(old) != item.user_metadata:
            report.updated += 1
            collections.update_metadata(item)
        else:
            report.skipped += 1
    groups = [
        (modality, [item for item in group.values() if item.modality == modality], replace)
        for modality in STORED_MODALITIES
        for group, replace in ((new, False), (replacing, True))
    ]
    total = sum(len(items) for _, items, _ in groups)
    show = False if show_progress is None and total <= encoder.batch_size else show_progress
    with progress_bar(total, show=show, desc="embedding", unit="item") as bar:
        for modality, items, replace in groups:
            report.embedded += _embed_and_write(collections, encoder, modality, items, replace=replace, bar=bar)
    return report


def _embed_and_write(
    collections: CollectionPair,
    encoder: Encoder,
    modality: StoredModality,
    items: list[Pending],
    *,
    replace: bool,
    bar: Any,  # a tqdm bar (untyped)
) -> int:
    """Embed items of one modality in encoder batches, written a full client batch at a time; how many."""
    if not items:
        return 0
    embed = _embedder(encoder, modality)
    size = max(1, encoder.batch_size)
    for start in range(0, len(items), collections.write_batch):
        block = items[start : start + collections.write_batch]
        vectors = []
        for i in range(0, len(block), size):
            vectors.append(embed([item.payload for item in block[i : i + size]]))
            bar.update(len(block[i : i + size]))
        collections.write(modality, block, np.concatenate(vectors), replace=replace)
    return len(items)


def _embedder(encoder: Encoder, modality: StoredModality) -> Callable[[list[Any]], np.ndarray]:
    """What embeds a list of payloads of ``modality``: images, texts, or ``(image, text)`` pairs (fused)."""
    if modality == "image":
        return encoder.embed_images
    if modality == "text":
        return encoder.embed_texts

    def embed_pairs(pairs: list[Any]) -> np.ndarray:
        return encoder.embed_fused([image for image, _ in pairs], [text for _, text in pairs]).fused

    return embed_pairs
