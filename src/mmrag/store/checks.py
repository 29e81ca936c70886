"""Checks of what callers hand the store: modality, ``k``, fusion, query vectors and metadata values.

Each check raises :class:`~mmrag.InvalidInputError` (a ``ValueError``) whose
message names the argument or the item, before Chroma is asked anything:
Chroma would answer NaN scores, store NaN as nothing, turn a huge int into a
float, or fail with a message that names no item.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmrag.errors import InvalidInputError
from mmrag.store.names import is_utf8
from mmrag.store.records import INTERNAL_PREFIX, RESERVED_KEYS, STORED_MODALITIES, StoredModality

__all__: list[str] = []  # internal to mmrag.store

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FUSIONS = ("rrf", "score")
_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,54}[a-zA-Z0-9]$")


def check_collection_name(name: object) -> None:
    """Refuse a store name Chroma cannot make ``<name>_images`` and ``<name>_texts`` collections of.

    Raises:
        InvalidInputError: Not 3-56 letters, digits, ``.``, ``_`` or ``-``, starting and ending with a letter or digit.
    """
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name) or ".." in name:
        raise InvalidInputError(
            f"invalid collection name {name!r}: use 3-56 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )


def check_modality(modality: object) -> tuple[StoredModality, ...]:
    """The modalities ``modality`` names: one, or all for ``None``.

    Raises:
        InvalidInputError: Anything but ``"image"``, ``"text"``, ``"pair"`` or ``None``.
    """
    if modality is None:
        return STORED_MODALITIES
    if modality == "image" or modality == "text" or modality == "pair":
        return (modality,)
    raise InvalidInputError(f"modality must be 'image', 'text', 'pair' or None, got {modality!r}")


def check_k(k: object) -> int:
    """``k``, checked.

    Raises:
        InvalidInputError: ``k`` is not an int of at least 1.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidInputError(f"k must be an integer of at least 1, got {k!r}")
    if k < 1:
        raise InvalidInputError(f"k must be at least 1, got {k}")
    return int(k)


def check_fusion(fusion: object) -> None:
    """Refuse an unknown ``fusion`` (also where it is unused: one modality needs no merging).

    Raises:
        InvalidInputError: ``fusion`` is not ``"rrf"`` or ``"score"``.
    """
    if fusion not in FUSIONS:
        raise InvalidInputError(f"fusion must be 'rrf' or 'score', got {fusion!r}")


def query_vector(vector: np.ndarray | Sequence[float], dim: int) -> np.ndarray:
    """A query vector scaled to unit length (cosine ignores length), as float32.

    Scaling in float64 keeps huge and tiny vectors from overflowing or vanishing
    in Chroma's float32 arithmetic.

    Raises:
        InvalidInputError: Not numbers, not ``dim`` long, NaN or infinite
            entries, or all zeros (no direction to compare).
    """
    try:
        query = np.asarray(vector, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"query vector must be a sequence of numbers: {exc}") from None
    if query.shape[0] != dim:
        raise InvalidInputError(f"query vector has {query.shape[0]} dimensions; this store holds {dim}")
    bad = np.flatnonzero(~np.isfinite(query))
    if bad.size:
        raise InvalidInputError(
            f"query vector must be finite; entry {int(bad[0])} is {query[bad[0]]} ({bad.size} non-finite entries)"
        )
    scale = float(np.max(np.abs(query))) if query.size else 0.0
    if scale == 0.0:
        raise InvalidInputError("query vector is all zeros: a zero vector has no direction to compare")
    query = query / scale  # now the largest entry is 1: the norm cannot overflow
    unit: np.ndarray = (query / np.linalg.norm(query)).astype(np.float32)
    return unit


def check_metadata_value(where: str, key: str, value: Any) -> None:
    """Refuse a metadata value Chroma cannot store as given.

    Args:
        where: The item, for the message (e.g. ``"metadata of item 3"``).
        key: The key, for the message.
        value: The value.

    Raises:
        InvalidInputError: Not str, int, float or bool; a NaN or infinite
            float; an int outside 64 bits; a string that is not valid Unicode.
    """
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInputError(f"{where}: value of {key!r} is outside the 64-bit integer range: {value}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{where}: value of {key!r} must be a finite number, got {value}")
    elif isinstance(value, str):
        if not is_utf8(value):
            raise InvalidInputError(f"{where}: value of {key!r} holds a lone surrogate (not valid Unicode text)")
    else:
        raise InvalidInputError(
            f"{where}: value of {key!r} must be str, int, float or bool, got {type(value).__name__}"
        )


def check_metadata_key(where: str, key: object) -> str:
    """A metadata key Chroma accepts.

    Raises:
        InvalidInputError: Not a non-empty string, starts with ``$`` or is not valid Unicode.
    """
    if not isinstance(key, str) or not key or key.startswith("$") or not is_utf8(key):
        raise InvalidInputError(f"{where}: key {key!r} must be a non-empty string not starting with '$'")
    return key


def check_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None, n: int) -> list[dict[str, Any]]:
    """One checked metadata dict per item (empty where ``None``).

    Raises:
        InvalidInputError: Not one per item, a reserved or unusable key, or a
            value Chroma cannot store (see :func:`check_metadata_value`); the
            message names the item and the key.
    """
    if metadatas is None:
        return [{} for _ in range(n)]
    if isinstance(metadatas, Mapping):
        raise InvalidInputError("metadatas must be a list with one mapping (or None) per item, not a single mapping")
    metas = list(metadatas)
    if len(metas) != n:
        raise InvalidInputError(f"got {len(metas)} metadatas for {n} items; pass one per item (or None)")
    checked = []
    for index, meta in enumerate(metas):
        where = f"metadata of item {index}"
        if meta is not None and not isinstance(meta, Mapping):
            raise InvalidInputError(f"{where} must be a mapping or None, got {type(meta).__name__}")
        meta = dict(meta or {})
        for key, value in meta.items():
            if not isinstance(key, str) or key in RESERVED_KEYS or key.startswith(INTERNAL_PREFIX):
                raise InvalidInputError(
                    f"{where}: key {key!r} is reserved or not a string "
                    "('modality', 'source' and 'mmrag_*' belong to mmrag)"
                )
            check_metadata_key(where, key)
            check_metadata_value(where, key, value)
        checked.append(meta)
    return checked


def check_ids(ids: Sequence[str] | None, n: int) -> list[str] | None:
    """The caller's record ids, checked; ``None`` when none were given.

    Raises:
        InvalidInputError: Not one per item, an empty, non-string or
            non-Unicode id, or duplicates.
    """
    if ids is None:
        return None
    if isinstance(ids, str):
        raise InvalidInputError("ids must be a list with one id per item, not a single string")
    chosen = list(ids)
    if len(chosen) != n:
        raise InvalidInputError(f"got {len(chosen)} ids for {n} items; pass one per item")
    for index, record_id in enumerate(chosen):
        if not isinstance(record_id, str) or not record_id or not is_utf8(record_id):
            raise InvalidInputError(f"id of item {index} must be a non-empty string, got {record_id!r}")
    if len(set(chosen)) != len(chosen):
        raise InvalidInputError("ids must be unique within one call")
    return chosen
