"""mmrag.errors: the tree, its machine-readable codes, and the service's one code table."""

from __future__ import annotations

import contextlib
import importlib

import pytest

import mmrag
from mmrag import errors
from mmrag.errors import (
    ImageInputError,
    InvalidFilterError,
    InvalidInputError,
    MissingDependencyError,
    MmragError,
    ModelNotAvailableError,
    NotASequenceError,
    OverloadedError,
    TextInputError,
    UnsupportedModelError,
    error_codes,
)

# Every module that may define an MmragError subclass (optional adapters only where installed).
_MODULES = ("mmrag.batching", "mmrag.inputs", "mmrag.store", "mmrag.rerank", "mmrag.server", "mmrag.server.runtime")
_OPTIONAL = ("mmrag.llama_index", "mmrag.langchain", "mmrag.chroma")


def _mmrag_error_classes() -> list[type[MmragError]]:
    for name in _MODULES:
        importlib.import_module(name)
    for name in _OPTIONAL:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    found, pending = [], [MmragError]
    while pending:
        cls = pending.pop()
        if cls.__module__.split(".")[0] == "mmrag" and cls not in found:
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_codes_are_unique_per_class_of_this_module() -> None:
    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes) == len(classes)
    assert error_codes()["invalid_image"] is ImageInputError
    assert list(error_codes()) == sorted(error_codes())
    assert {cls.code for cls in classes} <= set(error_codes())


@pytest.mark.parametrize(
    ("error", "builtins"),
    [
        (InvalidInputError("x"), (ValueError,)),
        (NotASequenceError("x"), (ValueError, TypeError)),
        (TextInputError("not a string", index=2), (ValueError, TypeError)),
        (ImageInputError("bad", index=1, item="'a.png'"), (ValueError,)),
        (InvalidFilterError("x"), (ValueError,)),
        (UnsupportedModelError("x"), (ValueError,)),
        (ModelNotAvailableError("x"), (OSError,)),
        (MissingDependencyError("x"), (ImportError,)),
    ],
)
def test_errors_are_also_the_builtin_python_expects(error: MmragError, builtins: tuple[type, ...]) -> None:
    assert isinstance(error, MmragError)
    for builtin in builtins:
        assert isinstance(error, builtin)


def test_item_errors_name_the_item() -> None:
    assert str(ImageInputError("not a supported image format", index=3, item="'cat.eps'")) == (
        "image 3 ('cat.eps'): not a supported image format"
    )
    assert str(TextInputError("a text must be a string, got int", index=0)) == (
        "text 0: a text must be a string, got int"
    )
    hint = MissingDependencyError.for_extra("llama-index", "mmrag.llama_index", "llama_index.core")
    assert str(hint) == (
        "mmrag.llama_index needs 'llama_index.core', which is not installed: pip install \"mmrag[llama-index]\""
    )


def test_queue_full_is_an_overload() -> None:
    assert issubclass(mmrag.QueueFullError, OverloadedError)
    assert mmrag.QueueFullError.code == "overloaded"


def test_every_error_code_has_a_service_mapping() -> None:
    """A new error class with a new code fails here until server/errors.py maps it."""
    from mmrag.server.errors import ERROR_MAPPINGS

    classes = _mmrag_error_classes()
    missing = sorted({cls.code for cls in classes} - set(ERROR_MAPPINGS))
    assert not missing, f"no HTTP mapping in mmrag.server.errors.ERROR_MAPPINGS for code(s) {missing}"
    assert set(ERROR_MAPPINGS) <= set(error_codes()), "a mapping for a code no error has"
    for code, mapping in ERROR_MAPPINGS.items():
        assert 400 <= mapping.status < 600 and mapping.type, code
