"""Model names users bring from other libraries, mapped to presets and transformers checkpoints.

:func:`resolve_model_alias` knows two kinds:

* OpenAI CLIP's ``clip.load`` names (:data:`OPENAI_CLIP_NAMES`): ``"ViT-B/32"``,
  ``"ViT-B/16"``, ``"ViT-L/14"``, ``"ViT-L/14@336px"``, which LlamaIndex's
  ``ClipEmbedding(model_name=...)`` uses too. Each is a preset.
* OpenCLIP's ``(model_name, pretrained)`` pairs (:data:`OPEN_CLIP_WEIGHTS`),
  written as one string the way ``open_clip.list_pretrained(as_str=True)``
  writes them: ``"ViT-B-32:laion2b_s34b_b79k"``. ``"ViT-B-32/laion2b_s34b_b79k"``
  works too, and so does OpenCLIP's ``"hf-hub:<repo>"``. Each pair maps to a
  preset, to the hub id of a transformers-format copy of the same weights, or
  (where none is published) to the OpenCLIP-format repository itself, which
  :mod:`mmrag.encoders.open_clip` converts on load.

A name that is recognisably one of these but cannot be loaded (a ResNet CLIP,
an OpenCLIP model without its pretrained tag, a tag not in the table) is
refused with a message listing the names that work, instead of a failed
download of a repository that does not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmrag.encoders.presets import PRESETS
from mmrag.errors import UnsupportedModelError

__all__ = ["OPENAI_CLIP_NAMES", "OPEN_CLIP_WEIGHTS", "OpenClipWeights", "resolve_model_alias"]

OPENAI_CLIP_NAMES: dict[str, str] = {
    "ViT-B/32": "clip-vit-b-32",
    "ViT-B/16": "clip-vit-b-16",
    "ViT-L/14": "clip-vit-l-14",
    "ViT-L/14@336px": "clip-vit-l-14-336",
}
"""OpenAI ``clip.available_models()`` names and the presets holding the same weights."""


@dataclass(frozen=True)
class OpenClipWeights:
    """One OpenCLIP ``(model_name, pretrained)`` pair and the transformers checkpoint with its weights.

    Attributes:
        architecture: OpenCLIP model name, e.g. ``"ViT-B-32"``.
        pretrained: OpenCLIP pretrained tag, e.g. ``"laion2b_s34b_b79k"``.
        model: A preset alias or hub id that loads the same weights: a
            transformers-format copy where one is published, else the
            OpenCLIP-format repository (converted to transformers' CLIP on load).
    """

    architecture: str
    pretrained: str
    model: str

    def __str__(self) -> str:
        return f"{self.architecture}:{self.pretrained}"


def _weights(architecture: str, *pairs: tuple[str, str]) -> list[OpenClipWeights]:
    return [OpenClipWeights(architecture, tag, model) for tag, model in pairs]


OPEN_CLIP_WEIGHTS: tuple[OpenClipWeights, ...] = (
    *_weights("ViT-B-32", ("openai", "clip-vit-b-32"), ("laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K")),
    *_weights("ViT-B-32-quickgelu", ("openai", "clip-vit-b-32")),
    *_weights("ViT-B-16", ("openai", "clip-vit-b-16")),
    # OpenCLIP-format repositories (no transformers copy published): converted on load
    *_weights("ViT-B-32", ("datacomp_xl_s13b_b90k", "laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K")),
    *_weights("ViT-B-32-256", ("datacomp_s34b_b86k", "laion/CLIP-ViT-B-32-256x256-DataComp-s34B-b86K")),
    *_weights(
        "ViT-B-16",
        ("laion2b_s34b_b88k", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"),
        ("datacomp_xl_s13b_b90k", "laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K"),
    ),
    *_weights("ViT-L-14", ("datacomp_xl_s13b_b90k", "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K")),
    *_weights("ViT-B-16-quickgelu", ("openai", "clip-vit-b-16")),
    *_weights("ViT-L-14", ("openai", "clip-vit-l-14"), ("laion2b_s32b_b82k", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K")),
    *_weights("ViT-L-14-quickgelu", ("openai", "clip-vit-l-14")),
    *_weights("ViT-L-14-336", ("openai", "clip-vit-l-14-336")),
    *_weights("ViT-L-14-336-quickgelu", ("openai", "clip-vit-l-14-336")),
    *_weights("ViT-H-14", ("laion2b_s32b_b79k", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K")),
    *_weights(
        "ViT-g-14",
        ("laion2b_s12b_b42k", "laion/CLIP-ViT-g-14-laion2B-s12B-b42K"),
        ("laion2b_s34b_b88k", "laion/CLIP-ViT-g-14-laion2B-s34B-b88K"),
    ),
    *_weights("ViT-bigG-14", ("laion2b_s39b_b160k", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k")),
    *_weights("ViT-B-16-SigLIP", ("webli", "siglip-base-224")),
    *_weights("ViT-SO400M-14-SigLIP-384", ("webli", "siglip-so400m-384")),
    *_weights("ViT-B-16-SigLIP2", ("webli", "siglip2-base-224")),
    *_weights("ViT-B-16-SigLIP2-256", ("webli", "siglip2-base-256")),
    *_weights("ViT-B-16-SigLIP2-384", ("webli", "siglip2-base-384")),
    *_weights("ViT-B-16-SigLIP2-512", ("webli", "siglip2-base-512")),
    *_weights("ViT-L-16-SigLIP2-256", ("webli", "siglip2-large-256")),
)
"""The OpenCLIP pairs mmrag loads: each has a transformers-format copy (a preset or a hub id)."""

_RESNET_CLIP = re.compile(r"rn\d+(x\d+)?(-quickgelu)?", re.IGNORECASE)  # RN50, RN50x4, RN101-quickgelu ...
_OPENAI_LIKE = re.compile(r"vit-[a-z0-9]+/\d+\S*", re.IGNORECASE)  # ViT-H/14 and other clip.load-style names
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def resolve_model_alias(name: str) -> str | None:
    """The preset alias or hub id that a model name from another library stands for.

    Args:
        name: What the user passed, e.g. ``"ViT-B/32"`` (OpenAI CLIP),
            ``"ViT-B-32:laion2b_s34b_b79k"`` or ``"ViT-B-32/laion2b_s34b_b79k"``
            (OpenCLIP model and pretrained tag), ``"hf-hub:laion/..."``.

    Returns:
        A preset alias or hub id for :func:`mmrag.load_encoder`, or ``None``
        when ``name`` is none of these (a preset, a hub id or a directory,
        which the caller handles as usual).

    Raises:
        UnsupportedModelError: ``name`` is a CLIP name mmrag cannot load: a
            ResNet CLIP (transformers has none), an OpenCLIP model without its
            pretrained tag, or a tag not in :data:`OPEN_CLIP_WEIGHTS`; the
            message lists the names that work.

    Example:
        >>> resolve_model_alias("ViT-L/14@336px")
        'clip-vit-l-14-336'
        >>> resolve_model_alias("ViT-B-32:laion2b_s34b_b79k")
        'laion/CLIP-ViT-B-32-laion2B-s34B-b79K'
        >>> resolve_model_alias("openai/clip-vit-base-patch32") is None
        True
    """
    text = name.strip()
    if "\\" in text or _WINDOWS_DRIVE.match(text):
        return None  # a Windows path
    for openai_name, alias in OPENAI_CLIP_NAMES.items():
        if text.casefold() == openai_name.casefold():
            return alias
    if text.casefold().startswith("hf-hub:"):
        return _hf_hub(text[len("hf-hub:") :].strip())
    if _RESNET_CLIP.fullmatch(text):
        raise UnsupportedModelError(
            f"model {name!r} is a ResNet CLIP, which transformers does not implement, so mmrag cannot load it; "
            f"the ViT CLIP models work: {_openai_names()}"
        )
    separator = ":" if ":" in text else "/"
    architecture, found, tag = text.partition(separator)
    known = _by_architecture(architecture)
    if known:
        return _open_clip(name, known, tag.strip() if found else "")
    if _OPENAI_LIKE.fullmatch(text):
        raise UnsupportedModelError(f"model {name!r} is not an OpenAI CLIP name mmrag knows; use {_openai_names()}")
    if separator == ":":  # hub ids and POSIX model paths never hold a colon this way
        raise UnsupportedModelError(
            f"model {name!r} looks like an OpenCLIP 'model:pretrained' name mmrag does not know; known: "
            f"{', '.join(map(str, OPEN_CLIP_WEIGHTS))}; or pass a preset alias (mmrag.list_models()) or the hub "
            "id of a transformers checkpoint"
        )
    return None


def _by_architecture(architecture: str) -> list[OpenClipWeights]:
    folded = architecture.strip().casefold()
    return [row for row in OPEN_CLIP_WEIGHTS if row.architecture.casefold() == folded]


def _open_clip(name: str, known: list[OpenClipWeights], tag: str) -> str:
    options = ", ".join(f"{str(row)!r} ({_describe(row.model)})" for row in known)
    if not tag:
        raise UnsupportedModelError(
            f"model {name!r} is an OpenCLIP model name without its pretrained weights; name them too: {options}"
        )
    cleaned = tag.casefold().replace("-", "_")  # OpenCLIP's own tag normalisation
    for row in known:
        if row.pretrained == cleaned:
            return row.model
    raise UnsupportedModelError(
        f"OpenCLIP weights {name!r} are not in mmrag's table of OpenCLIP names; for {known[0].architecture} it "
        f"knows {options}. Pass the weights' hub repository as 'hf-hub:<owner>/<repo>' (OpenCLIP-format "
        "checkpoints of ViT models convert on load), a local directory holding open_clip_config.json, or the hub "
        "id of a transformers CLIP checkpoint"
    )


def _hf_hub(repo: str) -> str:
    """OpenCLIP's ``hf-hub:<repo>``: the transformers copy of a known OpenCLIP-only repo, else the repo."""
    owner, _, repo_name = repo.partition("/")
    if owner.casefold() == "timm":  # OpenCLIP-format SigLIP repos, named after the OpenCLIP model
        known = _by_architecture(repo_name)
        if len(known) == 1:
            return known[0].model
    return repo


def _describe(model: str) -> str:
    return f"preset {model}" if model in PRESETS else model


def _openai_names() -> str:
    return ", ".join(f"{name!r} (preset {alias})" for name, alias in OPENAI_CLIP_NAMES.items())
