"""The preset table."""

from __future__ import annotations

import mmrag
from mmrag.encoders.presets import DEFAULT_MODEL, get_preset


def test_required_aliases_exist() -> None:
    aliases = {preset.alias for preset in mmrag.list_models()}
    assert {
        "clip-vit-b-32",
        "clip-vit-l-14",
        "siglip2-base-224",
        "siglip2-base-512",
        "chinese-clip-vit-b-16",
    } <= aliases


def test_default_is_a_multilingual_siglip2_base() -> None:
    preset = get_preset(DEFAULT_MODEL)
    assert preset is not None and preset.hub_id == "google/siglip2-base-patch16-224"
    assert "multilingual" in preset.languages
    assert mmrag.list_models()[0].alias == DEFAULT_MODEL


def test_rows_are_complete() -> None:
    for preset in mmrag.list_models():
        families = {"clip", "siglip", "siglip2", "chinese_clip", "blip2", "visualized_bge"}
        assert preset.dim > 0 and preset.family in families
        assert preset.languages and preset.license


def test_names_from_other_libraries_point_at_real_presets() -> None:
    from mmrag.encoders.names import OPEN_CLIP_WEIGHTS, OPENAI_CLIP_NAMES

    for alias in OPENAI_CLIP_NAMES.values():
        preset = get_preset(alias)
        assert preset is not None and preset.family == "clip"
    for row in OPEN_CLIP_WEIGHTS:
        preset = get_preset(row.model)
        if preset is None:  # a hub id: a transformers-format copy, or an OpenCLIP-format repo converted on load
            assert row.model.startswith("laion/CLIP-") and row.model.count("/") == 1
        else:  # SigLIP weights are SigLIP presets, OpenAI weights CLIP presets
            assert preset.family == ("siglip" if "SigLIP" in row.architecture else "clip")
        assert row.pretrained == row.pretrained.lower().replace("-", "_")  # OpenCLIP's normalised tag
