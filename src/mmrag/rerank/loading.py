"""``load_reranker``: from aliases, hub ids, local directories or loaded encoders to a :class:`Reranker`.

Dispatch looks only at the checkpoint's config (never at its name), see
:func:`reranker_kind`. Loading is as safe as :func:`mmrag.load_encoder`:
safetensors only unless ``use_safetensors=False``, no remote code unless
``trust_remote_code=True``, and a clear :class:`~mmrag.ModelNotAvailableError`
when a model is neither cached nor downloadable. A checkpoint that lacks
weights for part of the scoring model (e.g. a BLIP captioning checkpoint, or a
base encoder without a trained classification head) is refused instead of
silently scoring with random weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeGuard, Union

from mmrag.encoders.base import Encoder
from mmrag.encoders.blip2 import Blip2FeatureEncoder, load_blip2_encoder
from mmrag.encoders.loading import LoadRequest, load_encoder, pick_dtype, supported_model_types
from mmrag.encoders.sources import load_model_config, model_not_available_error, resolve_model_source
from mmrag.errors import InvalidInputError, UnsupportedModelError
from mmrag.logs import logger
from mmrag.options import LoadOptions, LoadOverrides
from mmrag.rerank.base import ALL_PAIRS, Calibration, PairKey, RerankBackend
from mmrag.rerank.blip2_itc import Blip2ItcBackend
from mmrag.rerank.cross_encoder import CrossEncoderBackend
from mmrag.rerank.dual import DualEncoderBackend
from mmrag.rerank.itm import Blip2ItmBackend, BlipItmBackend
from mmrag.rerank.reranker import Reranker

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig
    from typing_extensions import Unpack

__all__ = [
    "RERANKER_PRESETS",
    "Blip2Score",
    "RerankerKind",
    "RerankerModels",
    "RerankerPreset",
    "RerankerSpec",
    "describe_reranker_spec",
    "get_reranker_preset",
    "list_rerankers",
    "load_reranker",
    "reranker_kind",
]

_log = logger("rerank")

DEFAULT_RERANK_BATCH_SIZE = 32
"""(query, candidate) pairs per model call when :attr:`LoadOptions.batch_size` is ``None``."""

RerankerKind = Literal["blip_itm", "blip2_itm", "blip2_itc", "cross_encoder", "dual"]
"""The backend families :func:`load_reranker` builds."""

Blip2Score = Literal["itm", "itc"]
"""Which BLIP-2 score :func:`load_reranker` uses: the ITM head, or the ITC score (max over queries)."""

_BLIP2_SCORES: tuple[Blip2Score, ...] = ("itm", "itc")

RerankerSpec = Union[str, "os.PathLike[str]", Encoder, RerankBackend]
"""One model: a reranker alias, an encoder alias, a hub id, a local directory,
a loaded :class:`~mmrag.Encoder` or a ready :class:`~mmrag.rerank.RerankBackend`."""

RerankerModels = Union[RerankerSpec, Sequence[RerankerSpec], Mapping[str, RerankerSpec]]  # noqa: UP007 - runtime alias
"""What :func:`load_reranker` takes: one model, a list of models, or a pair->model mapping."""

_KIND_PAIRS: dict[str, frozenset[PairKey]] = {
    "blip_itm": BlipItmBackend.pairs,
    "blip2_itm": Blip2ItmBackend.pairs,
    "blip2_itc": Blip2ItcBackend.pairs,
    "cross_encoder": CrossEncoderBackend.pairs,
    "dual": DualEncoderBackend.pairs,
}
_ROUTE_KEY_ALIASES: dict[str, tuple[PairKey, ...]] = {
    "text<->image": ("text->image", "image->text"),
    "image<->text": ("text->image", "image->text"),
}


@dataclass(frozen=True)
class RerankerPreset:
    """A short alias for a well-known reranker checkpoint.

    Attributes:
        alias: Name accepted by :func:`load_reranker`.
        hub_id: Hugging Face hub id.
        kind: The backend it loads as.
        languages: Languages of its text side (ISO codes or ``"multilingual"``).
        license: Licence of the published weights (check the model card).
        notes: Size, resolution and hardware hints.
    """

    alias: str
    hub_id: str
    kind: RerankerKind
    languages: tuple[str, ...]
    license: str
    notes: str = ""


RERANKER_PRESETS: dict[str, RerankerPreset] = {
    preset.alias: preset
    for preset in (
        RerankerPreset("blip-itm-base-coco", "Salesforce/blip-itm-base-coco", "blip_itm", ("en",), "BSD-3-Clause",
                       "BLIP ViT-B/16 + BERT-base ITM head fine-tuned on COCO, 384 px (~224M params)."),
        RerankerPreset("blip-itm-large-coco", "Salesforce/blip-itm-large-coco", "blip_itm", ("en",), "BSD-3-Clause",
                       "BLIP ViT-L/16 ITM head fine-tuned on COCO, 384 px (~470M params)."),
        RerankerPreset("blip-itm-base-flickr", "Salesforce/blip-itm-base-flickr", "blip_itm", ("en",),
                       "BSD-3-Clause", "BLIP ViT-B/16 ITM head fine-tuned on Flickr30k, 384 px."),
        RerankerPreset("blip-itm-large-flickr", "Salesforce/blip-itm-large-flickr", "blip_itm", ("en",),
                       "BSD-3-Clause", "BLIP ViT-L/16 ITM head fine-tuned on Flickr30k, 384 px."),
        RerankerPreset("blip2-itm-vit-g", "Salesforce/blip2-itm-vit-g", "blip2_itm", ("en",), "MIT",
                       "BLIP-2 Q-Former ITM head on EVA ViT-g/14 (~1.2B params), 224 px: wants a GPU."),
        RerankerPreset("bge-reranker-base", "BAAI/bge-reranker-base", "cross_encoder", ("en", "zh"), "MIT",
                       "XLM-RoBERTa base text cross-encoder (~278M params), 512 tokens."),
        RerankerPreset("bge-reranker-large", "BAAI/bge-reranker-large", "cross_encoder", ("en", "zh"), "MIT",
                       "XLM-RoBERTa large text cross-encoder (~560M params), 512 tokens."),
        RerankerPreset("bge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3", "cross_encoder", ("multilingual",),
                       "Apache-2.0", "XLM-RoBERTa large (BGE-M3) cross-encoder (~568M params), up to 8192 tokens."),
    )
}  # fmt: skip  # aligned by hand
"""Reranker aliases. Any :func:`mmrag.list_models` alias also works (as a dual encoder)."""


def list_rerankers() -> list[RerankerPreset]:
    """List the reranker presets.

    Returns:
        Every :class:`RerankerPreset`, in table order.

    Example:
        >>> [p.alias for p in mmrag.list_rerankers()][:2]
        ['blip-itm-base-coco', 'blip-itm-large-coco']
    """
    return list(RERANKER_PRESETS.values())


def get_reranker_preset(alias: str) -> RerankerPreset | None:
    """Look up a reranker preset by alias (case-insensitive).

    Args:
        alias: E.g. ``"bge-reranker-base"``.

    Returns:
        The preset, or ``None``.
    """
    return RERANKER_PRESETS.get(alias.strip().lower())


def describe_reranker_spec(model: Any) -> str | list[str] | dict[str, str]:
    """A JSON-serialisable description of what :func:`load_reranker` was (or will be) given.

    Paths and aliases stay as given; loaded encoders and backends become their
    ``model_id`` (or ``name``). Adapters use it to record the reranker's model
    as a plain field.

    Args:
        model: One spec, a list of specs or a ``{pair: spec}`` mapping, as
            :func:`load_reranker` takes.

    Returns:
        A string, a list of strings or a ``{pair: string}`` dict, in the
        shape of ``model``.

    Example:
        >>> describe_reranker_spec(["blip-itm-base-coco", "bge-reranker-base"])
        ['blip-itm-base-coco', 'bge-reranker-base']
    """

    def one(spec: Any) -> str:
        if isinstance(spec, (str, os.PathLike)):
            return os.fspath(spec)
        return str(getattr(spec, "model_id", None) or getattr(spec, "name", None) or type(spec).__name__)

    if isinstance(model, Mapping):
        return {str(key): one(spec) for key, spec in model.items()}
    if isinstance(model, (str, os.PathLike)) or not isinstance(model, Sequence):
        return one(model)
    return [one(spec) for spec in model]


def load_reranker(
    model: RerankerModels,
    *,
    options: LoadOptions | None = None,
    calibration: Mapping[PairKey, Calibration] | None = None,
    blip2_score: Blip2Score = "itm",
    **overrides: Unpack[LoadOverrides],
) -> Reranker:
    """Load a reranker made of one or several models.

    Three forms:

    * **One model**: ``load_reranker("blip-itm-base-coco")``. It serves the
      pairs its kind can score: BLIP/BLIP-2 ITM ``text->image`` and
      ``image->text``; a cross-encoder ``text->text``; a dual encoder all four.
    * **A list**: ``load_reranker(["blip-itm-base-coco", "bge-reranker-base",
      "siglip2-large-256"])``. Each pair goes to the first listed model that
      scores it *jointly* (ITM or cross-encoder); a dual encoder only gets the
      pairs no such model serves (here ``image->image``). A listed model left
      with no pair is an error.
    * **A mapping** from pair to model, for full control:
      ``load_reranker({"text<->image": "blip2-itm-vit-g", "text->text":
      "bge-reranker-v2-m3"})``. Keys: ``"text->text"``, ``"text->image"``,
      ``"image->text"``, ``"image->image"`` (query->candidate) and
      ``"text<->image"`` for both cross-modal directions. A model named for
      several pairs is loaded once.

    A model is a reranker alias (:func:`list_rerankers`), an encoder alias
    (:func:`mmrag.list_models`), a hub id, a local ``save_pretrained``
    directory, a loaded :class:`~mmrag.Encoder`, or a
    :class:`~mmrag.rerank.RerankBackend`. Its kind comes from its config, see
    :func:`reranker_kind`.

    Args:
        model: One model, a list of models, or a pair->model mapping.
        options: How to load every model (:class:`~mmrag.LoadOptions`); its
            ``batch_size`` is the most (query, candidate) pairs per model call
            (default 32) and its ``image_limits`` apply to image queries and
            candidates.
        calibration: Optional per-pair :class:`~mmrag.rerank.Calibration` of
            the log-odds.
        blip2_score: How BLIP-2 checkpoints (``Blip2ForImageTextRetrieval``)
            score text<->image pairs: ``"itm"`` (default), the match head's
            probability; or ``"itc"``, BLIP-2's contrastive score, the
            maximum over the query tokens of the query-text cosine, exactly
            ``logits_per_image`` of ``use_image_text_matching_head=False``
            (see :class:`~mmrag.rerank.Blip2ItcBackend`). With ``"itc"`` a
            loaded BLIP-2 encoder scores by ITC too; otherwise a loaded
            encoder is a dual encoder (cosine of its single vectors).
        **overrides: Any :class:`~mmrag.LoadOptions` field, applied on top of
            ``options`` (``device="cpu"``, ``batch_size=16`` ...).

    Returns:
        A :class:`~mmrag.Reranker`.

    Raises:
        ModelNotAvailableError: A model is neither local nor downloadable, or
            has no safetensors weights.
        UnsupportedModelError: A checkpoint is none of the supported kinds, or
            lacks weights of its scoring head.
        InvalidInputError: ``model`` is none of the forms above, bad route
            keys, a model named for a pair it cannot score, a listed model
            left unused, or an empty list (a ``ValueError``).
        TypeError: An override that is not a :class:`~mmrag.LoadOptions` field.

    Example:
        >>> rr = mmrag.load_reranker(["blip-itm-base-coco", "bge-reranker-base"], device="cpu")
        >>> rr.rerank("a dog on the beach", ["beach.jpg", "A dog runs on sand.", "cat.png"], top_n=2)
        [RankedItem(index=0, score=0.91, ...), RankedItem(index=1, score=0.88, ...)]
    """
    opts = LoadOptions.merge(options, overrides)
    if blip2_score not in _BLIP2_SCORES:
        raise InvalidInputError(f"blip2_score must be 'itm' or 'itc', got {blip2_score!r}")
    resolved = _Options(
        opts, opts.torch_device(), opts.torch_dtype(), opts.batch_size_or(DEFAULT_RERANK_BATCH_SIZE), blip2_score
    )
    if isinstance(model, Mapping):
        plans, assigned = _explicit_routes(model, resolved)
    else:
        plans = _unique_plans(_spec_list(model), resolved)
        assigned = _default_routes(plans)
    loaded = {id(plan): plan.load() for plan in plans}
    routes = {pair: loaded[id(plan)] for pair, plan in assigned.items()}
    return Reranker(routes, batch_size=resolved.batch_size, image_limits=opts.image_limits, calibration=calibration)


def reranker_kind(config: PretrainedConfig, model: str = "") -> RerankerKind:
    """Which backend a checkpoint loads as, from its config alone.

    * ``model_type == "blip"`` -> ``"blip_itm"`` (``BlipForImageTextRetrieval``;
      other BLIP architectures such as captioning are refused);
    * ``model_type == "blip-2"`` with ``Blip2ForImageTextRetrieval`` in
      ``architectures`` -> ``"blip2_itm"``;
    * an ``architectures`` entry ending in ``ForSequenceClassification`` ->
      ``"cross_encoder"`` (1- or 2-label heads only);
    * a ``model_type`` :func:`mmrag.load_encoder` supports -> ``"dual"``.

    Args:
        config: The checkpoint's config.
        model: The name the user gave, for error messages.

    Returns:
        The kind.

    Raises:
        UnsupportedModelError: None of the rules applies.
    """
    architectures = tuple(getattr(config, "architectures", None) or ())
    model_type = str(getattr(config, "model_type", ""))
    name = repr(model or getattr(config, "_name_or_path", "") or model_type)
    if model_type == "blip":
        if architectures and "BlipForImageTextRetrieval" not in architectures:
            raise UnsupportedModelError(
                f"{name} is a BLIP {'/'.join(architectures)} checkpoint without an image-text matching head; "
                "use a BlipForImageTextRetrieval checkpoint such as Salesforce/blip-itm-base-coco"
            )
        return "blip_itm"
    if model_type == "blip-2":
        qformer = getattr(config, "qformer_config", None)
        if "Blip2ForImageTextRetrieval" in architectures or (
            not architectures and getattr(qformer, "use_qformer_text_input", False)
        ):
            return "blip2_itm"
        raise UnsupportedModelError(
            f"{name} is a BLIP-2 {'/'.join(architectures) or 'model'} checkpoint without an image-text matching "
            "head; use a Blip2ForImageTextRetrieval checkpoint such as Salesforce/blip2-itm-vit-g"
        )
    if any(arch.endswith("ForSequenceClassification") for arch in architectures):
        if getattr(config, "num_labels", 1) not in (1, 2):
            raise UnsupportedModelError(
                f"{name} has a {config.num_labels}-label classification head; a cross-encoder reranker needs "
                "1 label (a relevance logit) or 2 labels (no match, match)"
            )
        return "cross_encoder"
    if model_type in supported_model_types():
        return "dual"
    raise UnsupportedModelError(
        f"{name} (model_type {model_type!r}, architectures {list(architectures)}) is not a reranker mmrag can load; "
        "supported: BLIP / BLIP-2 image-text retrieval checkpoints, *ForSequenceClassification text cross-encoders, "
        f"and dual encoders of model types {', '.join(supported_model_types())}"
    )


# ------------------------------------------------------------------ planning
@dataclass(frozen=True)
class _Options:
    """The caller's options with device, dtype and batch size resolved once for every model."""

    load: LoadOptions
    device: torch.device
    dtype: torch.dtype | None
    batch_size: int
    blip2_score: Blip2Score = "itm"


@dataclass(frozen=True, eq=False)
class _Plan:
    """A model whose kind is known (from its config) but whose weights are not loaded yet."""

    label: str
    kind: str
    load: Callable[[], RerankBackend]

    @property
    def pairs(self) -> frozenset[PairKey]:
        return _KIND_PAIRS[self.kind]

    @property
    def specialised(self) -> bool:
        return self.kind != "dual"


_SPEC_KINDS = "a name, a path, an Encoder or a RerankBackend"


def _is_single_spec(model: object) -> TypeGuard[RerankerSpec]:
    return isinstance(model, (str, os.PathLike, Encoder, RerankBackend))


def _spec_list(model: RerankerSpec | Sequence[RerankerSpec]) -> list[RerankerSpec]:
    """One spec or a list of specs, as a list; anything else is named in the error."""
    if _is_single_spec(model):
        return [model]
    if not isinstance(model, Sequence):
        raise InvalidInputError(
            f"model must be one reranker model ({_SPEC_KINDS}), a list of them or a {{pair: model}} mapping, "
            f"got {_shown(model)}"
        )
    if not model:
        raise InvalidInputError("load_reranker needs at least one model")
    return list(model)


def _shown(value: object) -> str:
    return repr(value)[:80] if value is None or isinstance(value, (int, float)) else f"a {type(value).__name__}"


def _spec_key(spec: RerankerSpec) -> tuple[str, object]:
    if isinstance(spec, str):
        return "name", spec.strip()
    if isinstance(spec, os.PathLike):
        return "name", os.path.abspath(os.fspath(spec))
    return "object", id(spec)


def _unique_plans(specs: Sequence[RerankerSpec], options: _Options) -> list[_Plan]:
    plans: dict[tuple[str, object], _Plan] = {}
    for spec in specs:
        key = _spec_key(spec)
        if key not in plans:
            plans[key] = _plan(spec, options)
    return list(plans.values())


def _plan(spec: RerankerSpec, options: _Options) -> _Plan:
    if isinstance(spec, RerankBackend):
        return _Plan(spec.name, spec.kind, lambda: spec)
    if isinstance(spec, Encoder):
        if options.blip2_score == "itc" and isinstance(spec, Blip2FeatureEncoder):
            return _Plan(f"blip2_itc({spec.model_id})", "blip2_itc", lambda: Blip2ItcBackend(spec))
        return _Plan(f"dual({spec.model_id})", "dual", lambda: DualEncoderBackend(spec))
    if not isinstance(spec, (str, os.PathLike)):
        raise InvalidInputError(f"a reranker model must be {_SPEC_KINDS}, got {_shown(spec)}")
    preset = get_reranker_preset(spec) if isinstance(spec, str) else None
    target: str | os.PathLike[str] = preset.hub_id if preset else spec
    source, model_id = resolve_model_source(target)
    config = load_model_config(source, revision=options.load.revision, local_files_only=options.load.local_files_only)
    kind = reranker_kind(config, str(spec))
    if kind == "blip2_itm" and options.blip2_score == "itc":
        kind = "blip2_itc"
    if kind == "dual":
        return _Plan(str(spec), kind, lambda: DualEncoderBackend(_load_dual_encoder(target, options)))
    request = LoadRequest(
        source=source,
        model_id=model_id,
        config=config,
        options=options.load,
        device=options.device,
        dtype=options.dtype,
        batch_size=options.batch_size,
    )
    return _Plan(str(spec), kind, lambda: _load_guarded(_LOADERS[kind], request, str(spec)))


def _default_routes(plans: Sequence[_Plan]) -> dict[PairKey, _Plan]:
    routes: dict[PairKey, _Plan] = {}
    for pair in ALL_PAIRS:
        able = [plan for plan in plans if pair in plan.pairs]
        preferred = [plan for plan in able if plan.specialised] or able
        if preferred:
            routes[pair] = preferred[0]
    for plan in plans:
        if not any(chosen is plan for chosen in routes.values()):
            raise InvalidInputError(
                f"model {plan.label!r} ({plan.kind}) would serve no pair: every pair it can score "
                f"({', '.join(sorted(plan.pairs))}) is taken by a model listed earlier or by a joint scorer; "
                "drop it, or name pairs explicitly with a mapping: load_reranker({'text->text': ...})"
            )
    return routes


def _explicit_routes(
    mapping: Mapping[str, RerankerSpec], options: _Options
) -> tuple[list[_Plan], dict[PairKey, _Plan]]:
    if not mapping:
        raise InvalidInputError("load_reranker needs at least one pair->model entry")
    plans: dict[tuple[str, object], _Plan] = {}
    routes: dict[PairKey, _Plan] = {}
    for key, spec in mapping.items():
        pairs = _route_pairs(key)
        spec_key = _spec_key(spec)
        if spec_key not in plans:
            plans[spec_key] = _plan(spec, options)
        plan = plans[spec_key]
        for pair in pairs:
            if pair not in plan.pairs:
                raise InvalidInputError(
                    f"model {plan.label!r} is a {plan.kind} reranker and cannot score {pair} pairs; "
                    f"it scores {', '.join(sorted(plan.pairs))}"
                )
            if pair in routes:
                raise InvalidInputError(f"pair {pair} is named twice")
            routes[pair] = plan
    return list(plans.values()), routes


def _route_pairs(key: str) -> tuple[PairKey, ...]:
    text = str(key).strip().lower().replace(" ", "")
    if text in _ROUTE_KEY_ALIASES:
        return _ROUTE_KEY_ALIASES[text]
    if text in ALL_PAIRS:
        return (text,)
    raise InvalidInputError(f"unknown pair {key!r}; use {', '.join(ALL_PAIRS)} or 'text<->image'")


# ------------------------------------------------------------------- loading
def _load_guarded(loader: Callable[[LoadRequest], RerankBackend], request: LoadRequest, model: str) -> RerankBackend:
    try:
        return loader(request)
    except OSError as exc:
        raise model_not_available_error(model, request.source, exc, use_safetensors=request.use_safetensors) from exc


def _load_dual_encoder(target: str | os.PathLike[str], options: _Options) -> Encoder:
    return load_encoder(
        target,
        options=options.load,
        device=options.device,
        dtype=options.dtype,
        batch_size=options.batch_size,
    )


def _from_pretrained(model_class: Any, request: LoadRequest) -> Any:
    """Load weights (float16 on a GPU by default) and refuse checkpoints with missing weights."""
    import torch

    dtype = pick_dtype(request.dtype, request.device, torch.float16)
    _log.info("loading reranker %s on %s in %s", request.model_id, request.device, str(dtype).removeprefix("torch."))
    model, info = model_class.from_pretrained(
        request.source, config=request.config, dtype=dtype, use_safetensors=request.use_safetensors,
        output_loading_info=True, **request.hub_kwargs(),
    )  # fmt: skip  # aligned by hand
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise UnsupportedModelError(
            f"{request.model_id!r} has no weights for {len(missing)} parameters of {model_class.__name__} "
            f"({shown}); it is not a trained {model_class.__name__} checkpoint and would score at random"
        )
    return model.to(request.device).eval()


def _load_blip_itm(request: LoadRequest) -> RerankBackend:
    from transformers import AutoProcessor, BlipForImageTextRetrieval

    model = _from_pretrained(BlipForImageTextRetrieval, request)
    processor = AutoProcessor.from_pretrained(request.source, **request.hub_kwargs())  # type: ignore[no-untyped-call]  # AutoProcessor is unannotated
    return BlipItmBackend(model, processor, model_id=request.model_id)


def _load_blip2_itm(request: LoadRequest) -> RerankBackend:
    from transformers import AutoProcessor, Blip2ForImageTextRetrieval

    model = _from_pretrained(Blip2ForImageTextRetrieval, request)
    processor = AutoProcessor.from_pretrained(request.source, **request.hub_kwargs())  # type: ignore[no-untyped-call]  # AutoProcessor is unannotated
    return Blip2ItmBackend(model, processor, model_id=request.model_id)


def _load_blip2_itc(request: LoadRequest) -> RerankBackend:
    return Blip2ItcBackend(load_blip2_encoder(request))


def _load_cross_encoder(request: LoadRequest) -> RerankBackend:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = _from_pretrained(AutoModelForSequenceClassification, request)
    tokenizer = AutoTokenizer.from_pretrained(request.source, **request.hub_kwargs())
    return CrossEncoderBackend(model, tokenizer, model_id=request.model_id)


_LOADERS: dict[str, Callable[[LoadRequest], RerankBackend]] = {
    "blip_itm": _load_blip_itm,
    "blip2_itm": _load_blip2_itm,
    "blip2_itc": _load_blip2_itc,
    "cross_encoder": _load_cross_encoder,
}
