"""Constructor helpers for components that wrap a model: the adapters' embeddings and rerankers.

Each such component takes ``options=`` plus any :class:`~mmrag.LoadOptions`
field as a keyword, or an already loaded object instead; these functions
split, merge and check those arguments once for every adapter.
"""

from __future__ import annotations

from typing import Any

from mmrag.errors import InvalidInputError
from mmrag.options import LoadOptions
from mmrag.rerank import Reranker, RerankerModels, describe_reranker_spec, load_reranker

__all__ = ["options_for", "recorded_options", "reranker_from", "reranker_label"]


def options_for(
    what: str,
    loaded: object | None,
    options: LoadOptions | None,
    kwargs: dict[str, Any],
) -> LoadOptions:
    """Pop the loading options out of ``kwargs`` and merge them onto ``options``.

    Args:
        what: The name of the argument that takes a loaded object (``"encoder"``, ``"reranker"``).
        loaded: That argument's value; ``None`` when the constructor loads the model itself.
        options: The constructor's ``options=``.
        kwargs: The constructor's other keyword arguments; the option names are removed from it.

    Returns:
        The options to load with (the defaults when ``loaded`` is given).

    Raises:
        mmrag.InvalidInputError: ``loaded`` is given together with ``options`` or
            an option that differs from its default; the message names them.
    """
    picked = LoadOptions.split(kwargs)
    merged = LoadOptions.merge(options, picked)
    if loaded is not None:
        defaults = LoadOptions()
        clashing = ["options"] if options is not None else []
        clashing += sorted(name for name, value in picked.items() if value != getattr(defaults, name))
        if clashing:
            raise InvalidInputError(
                f"pass either {what}= or loading options, not both (got {what} and {', '.join(clashing)}); "
                f"the {what} is already loaded: pass them to mmrag.load_{what} instead"
            )
    return merged


def recorded_options(options: LoadOptions) -> dict[str, Any]:
    """The loading options a component keeps as plain, serialisable fields.

    Args:
        options: The options the model was loaded with.

    Returns:
        ``device`` and ``dtype`` as strings (``None`` for the default) and ``local_files_only``.
    """
    described = options.describe()
    return {
        "device": described.get("device"),
        "dtype": described.get("dtype"),
        "local_files_only": options.local_files_only,
    }


def reranker_from(
    reranker: Reranker | None,
    model: RerankerModels | None,
    options: LoadOptions | None,
    kwargs: dict[str, Any],
    *,
    batch_size: int | None,
) -> tuple[Reranker, LoadOptions | None]:
    """Adopt ``reranker`` or load ``model``: exactly one of the two.

    Args:
        reranker: A loaded reranker, or ``None``.
        model: What :func:`mmrag.load_reranker` takes, or ``None``.
        options: The constructor's ``options=``.
        kwargs: The constructor's other keyword arguments; the option names are removed from it.
        batch_size: The constructor's ``batch_size`` (pairs per model call), loaded with when given.

    Returns:
        The reranker, and the options it was loaded with (``None`` for an adopted one).

    Raises:
        mmrag.InvalidInputError: Neither or both of ``reranker`` and ``model``, or
            loading options beside ``reranker``.
    """
    either = "pass either reranker= (a loaded mmrag.Reranker) or model= (what load_reranker takes)"
    if model is None:
        if reranker is None:
            raise InvalidInputError(either)
        options_for("reranker", reranker, options, kwargs)
        return reranker, None
    if reranker is not None:
        raise InvalidInputError(either)
    opts = options_for("reranker", None, options, kwargs)
    opts = opts if batch_size is None else opts.replace(batch_size=batch_size)
    return load_reranker(model, options=opts), opts


def reranker_label(reranker: Reranker, model: RerankerModels | None) -> str | list[str] | dict[str, str]:
    """What a reranker was loaded from, as a plain value for the component's ``model`` field.

    Args:
        reranker: The reranker in use.
        model: What it was loaded from, or ``None`` when it was passed in loaded.

    Returns:
        :func:`mmrag.rerank.describe_reranker_spec` of ``model``, else ``{pair: model_id}`` of its routes.
    """
    if model is not None:
        return describe_reranker_spec(model)
    return {pair: backend.model_id for pair, backend in reranker.routes.items()}
