"""Pickling and copying a pydantic component that holds a loaded model (the adapters' embeddings).

A copy (``copy.copy``, ``copy.deepcopy``, ``model_copy``) shares the loaded
model with the original: encoders are thread-safe and their weights never
change. A pickle carries the settings, not the weights: the model loads again
(on first use) where it is unpickled. Locks and worker threads are never
carried over; each object gets its own.
"""

from __future__ import annotations

import copy
import logging
import pickle
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from pydantic import BaseModel

__all__ = ["SharesModelWhenCopied", "copy_sharing_model", "pickled_state", "restore_state"]

logger = logging.getLogger("mmrag")

_Model = TypeVar("_Model", bound=BaseModel)


def pickled_state(model: BaseModel, private: Mapping[str, Any]) -> dict[str, Any]:
    """What ``__getstate__`` returns: the fields that pickle, and ``private`` over the private attributes.

    Args:
        model: The component.
        private: Private attributes to pickle instead of the live ones (``None``
            for the model, the batcher and locks, so they are made again).

    Returns:
        The state for ``pickle``. A field that does not pickle (e.g. a callback
        handler holding a connection) is left out, with a warning, and gets its
        default back when unpickled.
    """
    state = BaseModel.__getstate__(model)
    fields: dict[str, Any] = {}
    for name, value in state["__dict__"].items():
        try:
            pickle.dumps(value)
        except Exception as exc:  # any failure means "does not pickle"
            logger.warning(
                "%s: field %r is not pickled (%s); it gets its default back", type(model).__name__, name, exc
            )
            continue
        fields[name] = value
    return {**state, "__dict__": fields, "__pydantic_private__": {**(state["__pydantic_private__"] or {}), **private}}


def restore_state(model: BaseModel, state: dict[str, Any], fresh: Mapping[str, Any]) -> None:
    """What ``__setstate__`` does: restore ``state``, ``fresh`` private attributes and defaults of left-out fields.

    Args:
        model: The object being unpickled.
        state: What :func:`pickled_state` returned.
        fresh: Private attributes made anew (locks).
    """
    private = {**(state.get("__pydantic_private__") or {}), **fresh}
    BaseModel.__setstate__(model, {**state, "__pydantic_private__": private})
    for name, info in type(model).model_fields.items():
        if name not in model.__dict__:
            model.__dict__[name] = info.get_default(call_default_factory=True)


def copy_sharing_model(model: _Model, memo: dict[int, Any] | None, fresh: Callable[[], Mapping[str, Any]]) -> _Model:
    """A copy of ``model`` that shares its loaded model; ``fresh()`` gives its own locks and batcher.

    Args:
        model: The component.
        memo: ``copy.deepcopy``'s memo for a deep copy (the fields are deep-copied); ``None`` for a shallow one.
        fresh: Private attributes the copy must not share (locks, the batcher).

    Returns:
        The copy.
    """
    cls = type(model)
    new = cls.__new__(cls)
    if memo is not None:
        memo[id(model)] = new
    fields = copy.deepcopy(model.__dict__, memo) if memo is not None else dict(model.__dict__)
    object.__setattr__(new, "__dict__", fields)
    object.__setattr__(new, "__pydantic_extra__", copy.copy(model.__pydantic_extra__))
    object.__setattr__(new, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    object.__setattr__(new, "__pydantic_private__", {**(model.__pydantic_private__ or {}), **fresh()})
    return new


class SharesModelWhenCopied:
    """Mixin for a pydantic component holding a model: copies share it, pickles reload it (see the module).

    The component names its private attributes through two hooks:
    :meth:`_fresh_private` (what each copy gets of its own: locks, no batcher)
    and :meth:`_pickled_private` (what a pickle carries instead of the live
    ones: no model, the options to load it again).
    """

    def _fresh_private(self) -> dict[str, Any]:
        raise NotImplementedError

    def _pickled_private(self) -> dict[str, Any]:
        raise NotImplementedError

    def __copy__(self) -> Any:
        return copy_sharing_model(cast("BaseModel", self), None, self._fresh_private)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        return copy_sharing_model(cast("BaseModel", self), {} if memo is None else memo, self._fresh_private)

    def __getstate__(self) -> dict[str, Any]:
        unshared = dict.fromkeys(self._fresh_private())  # locks and batchers are made anew, never pickled
        return pickled_state(cast("BaseModel", self), {**unshared, **self._pickled_private()})

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_state(cast("BaseModel", self), state, self._fresh_private())
