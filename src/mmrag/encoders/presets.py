"""The preset registry: short aliases for well-known checkpoints.

In the style of open_clip's pretrained tables, each preset maps an alias to a
hub id plus the facts a user needs to choose one: architecture family,
embedding dimension, languages and licence notes. ``load_encoder`` accepts an
alias, a hub id or a local directory; only aliases are looked up here (names
from other libraries, such as OpenAI CLIP's ``"ViT-B/32"``, are mapped to these
presets by :mod:`mmrag.encoders.names`).

The ``family`` column is the *architecture* the checkpoint loads as (its
config's ``model_type``). The fixed-resolution SigLIP 2 checkpoints are SigLIP
architecture models with SigLIP 2 weights and a multilingual Gemma tokenizer,
so their family is ``"siglip"``; only the NaFlex checkpoints are ``"siglip2"``.
BLIP-2 (``model_type`` ``"blip-2"``) is listed as ``"blip2"``, the encoder's
``family``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MODEL", "PRESETS", "ModelPreset", "get_preset", "list_models"]


@dataclass(frozen=True)
class ModelPreset:
    """One row of the preset table.

    Attributes:
        alias: Short name accepted by ``load_encoder`` (e.g. ``"clip-vit-b-32"``).
        hub_id: Hugging Face hub id the alias stands for.
        family: Architecture family, i.e. the config's ``model_type``.
        dim: Embedding dimension.
        languages: Languages the text tower was trained for (ISO codes, or
            ``"multilingual"``).
        license: Licence of the published weights.
        notes: Anything else worth knowing before choosing it.
        bundled: The weights ship inside the mmrag package (no download);
            ``hub_id`` is then a directory below ``mmrag/models``.
        weights_file: For checkpoints that are one file in a hub repo (a
            Visualized-BGE ``.pth``): its name in ``hub_id``.
        text_model: The text model such a checkpoint is built on (hub id);
            it supplies config and tokenizer.
    """

    alias: str
    hub_id: str
    family: str
    dim: int
    languages: tuple[str, ...]
    license: str
    notes: str = ""
    bundled: bool = False
    weights_file: str = ""
    text_model: str = ""

    def local_path(self) -> str | None:
        """Absolute directory of a bundled model, or ``None`` for hub models."""
        if not self.bundled:
            return None
        from importlib.resources import files

        return str(files("mmrag") / "models" / self.hub_id)


def _preset(
    alias: str,
    hub_id: str,
    family: str,
    dim: int,
    languages: tuple[str, ...],
    license: str,  # noqa: A002 - the ModelPreset field it fills is called license
    notes: str = "",
    *,
    bundled: bool = False,
    weights_file: str = "",
    text_model: str = "",
) -> tuple[str, ModelPreset]:
    return alias, ModelPreset(alias, hub_id, family, dim, languages, license, notes, bundled, weights_file, text_model)


PRESETS: dict[str, ModelPreset] = dict(
    [
        _preset(
            "siglip2-base-224",
            "google/siglip2-base-patch16-224",
            "siglip",
            768,
            ("multilingual",),
            "Apache-2.0",
            "Default. SigLIP 2 weights, 224 px, Gemma tokenizer (good for Chinese queries).",
        ),
        _preset(
            "siglip2-base-256",
            "google/siglip2-base-patch16-256",
            "siglip",
            768,
            ("multilingual",),
            "Apache-2.0",
            "SigLIP 2, 256 px.",
        ),
        _preset(
            "siglip2-base-384",
            "google/siglip2-base-patch16-384",
            "siglip",
            768,
            ("multilingual",),
            "Apache-2.0",
            "SigLIP 2, 384 px.",
        ),
        _preset(
            "siglip2-base-512",
            "google/siglip2-base-patch16-512",
            "siglip",
            768,
            ("multilingual",),
            "Apache-2.0",
            "SigLIP 2, 512 px: better on small details, ~5x slower per image than 224 px.",
        ),
        _preset(
            "siglip2-large-256",
            "google/siglip2-large-patch16-256",
            "siglip",
            1024,
            ("multilingual",),
            "Apache-2.0",
            "SigLIP 2 large, 256 px.",
        ),
        _preset(
            "siglip2-so400m-384",
            "google/siglip2-so400m-patch14-384",
            "siglip",
            1152,
            ("multilingual",),
            "Apache-2.0",
            "SigLIP 2 shape-optimised 400M, 384 px: strongest, needs a GPU.",
        ),
        _preset(
            "siglip2-base-naflex",
            "google/siglip2-base-patch16-naflex",
            "siglip2",
            768,
            ("multilingual",),
            "Apache-2.0",
            "NaFlex: keeps the aspect ratio (up to 256 patches of 16 px).",
        ),
        _preset(
            "siglip-base-224",
            "google/siglip-base-patch16-224",
            "siglip",
            768,
            ("en",),
            "Apache-2.0",
            "First-generation SigLIP, English.",
        ),
        _preset(
            "siglip-so400m-384",
            "google/siglip-so400m-patch14-384",
            "siglip",
            1152,
            ("en",),
            "Apache-2.0",
            "First-generation SigLIP so400m, English.",
        ),
        _preset(
            "clip-vit-b-32",
            "openai/clip-vit-base-patch32",
            "clip",
            512,
            ("en",),
            "MIT",
            "OpenAI CLIP ViT-B/32: fastest; English only.",
        ),
        _preset("clip-vit-b-16", "openai/clip-vit-base-patch16", "clip", 512, ("en",), "MIT", "OpenAI CLIP ViT-B/16."),
        _preset("clip-vit-l-14", "openai/clip-vit-large-patch14", "clip", 768, ("en",), "MIT", "OpenAI CLIP ViT-L/14."),
        _preset(
            "clip-vit-l-14-336",
            "openai/clip-vit-large-patch14-336",
            "clip",
            768,
            ("en",),
            "MIT",
            "OpenAI CLIP ViT-L/14 at 336 px.",
        ),
        _preset(
            "chinese-clip-vit-b-16",
            "OFA-Sys/chinese-clip-vit-base-patch16",
            "chinese_clip",
            512,
            ("zh",),
            "MIT",
            "Chinese-CLIP ViT-B/16 (RoBERTa-wwm text tower); Chinese queries.",
        ),
        _preset(
            "chinese-clip-vit-l-14",
            "OFA-Sys/chinese-clip-vit-large-patch14",
            "chinese_clip",
            768,
            ("zh",),
            "MIT",
            "Chinese-CLIP ViT-L/14.",
        ),
        _preset(
            "blip2-feature-vit-g",
            "Salesforce/blip2-itm-vit-g",
            "blip2",
            256,
            ("en",),
            "MIT",
            "BLIP-2 Q-Former ITC features on EVA ViT-g/14 (~1.2B params), 224 px: wants a GPU. "
            "Image vector = mean of the 32 query features; BLIP-2's own ITC score is their maximum "
            "(load_reranker(..., blip2_score='itc')).",
        ),
        _preset(
            "bge-visualized-base-en",
            "BAAI/bge-visualized",
            "visualized_bge",
            768,
            ("en",),
            "MIT",
            "Visualized-BGE on bge-base-en-v1.5 with an EVA02-CLIP-B/16 tower: text, image and composed "
            "image+text queries. Downloads Visualized_base_en_v1.5.pth plus the text model's config and tokenizer.",
            weights_file="Visualized_base_en_v1.5.pth",
            text_model="BAAI/bge-base-en-v1.5",
        ),
        _preset(
            "bge-visualized-m3",
            "BAAI/bge-visualized",
            "visualized_bge",
            1024,
            ("multilingual",),
            "MIT",
            "Visualized-BGE on bge-m3 with an EVA02-CLIP-L/14 tower; multilingual. Downloads Visualized_m3.pth "
            "plus the text model's config and tokenizer.",
            weights_file="Visualized_m3.pth",
            text_model="BAAI/bge-m3",
        ),
        _preset(
            "demo",
            "demo",
            "clip",
            64,
            ("en", "zh"),
            "Apache-2.0",
            "Tiny CLIP trained by mmrag on synthetic shapes; ships in the package (no download). "
            "Knows colour, shape, size and position words; for demos and tests only.",
            bundled=True,
        ),
    ]
)

DEFAULT_MODEL = "siglip2-base-224"
"""The alias used when no model is named: a multilingual SigLIP 2 base."""


def get_preset(alias: str) -> ModelPreset | None:
    """Look up a preset by alias.

    Args:
        alias: A preset alias such as ``"clip-vit-b-32"`` (case-insensitive).

    Returns:
        The preset, or ``None`` when ``alias`` is not a preset (it may still be
        a hub id or a local directory).

    Example:
        >>> get_preset("clip-vit-b-32").hub_id
        'openai/clip-vit-base-patch32'
    """
    return PRESETS.get(alias.strip().lower())


def list_models() -> list[ModelPreset]:
    """List the preset models.

    Returns:
        Every preset, in table order (the default first).

    Example:
        >>> import mmrag
        >>> [p.alias for p in mmrag.list_models()][:1]
        ['siglip2-base-224']
    """
    return list(PRESETS.values())
