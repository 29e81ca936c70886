"""Names users bring from OpenAI CLIP, LlamaIndex's ClipEmbedding and OpenCLIP resolve offline to what mmrag loads."""

from __future__ import annotations

import pytest

import mmrag
from mmrag.encoders.names import OPEN_CLIP_WEIGHTS, OPENAI_CLIP_NAMES, resolve_model_alias
from mmrag.encoders.presets import get_preset
from mmrag.encoders.sources import resolve_model_source
from mmrag.errors import ModelNotAvailableError, UnsupportedModelError


def _hub_id(model: str) -> str:
    preset = get_preset(model)
    return preset.hub_id if preset is not None else model


@pytest.mark.parametrize(
    ("name", "hub_id"),
    [
        ("ViT-B/32", "openai/clip-vit-base-patch32"),
        ("ViT-B/16", "openai/clip-vit-base-patch16"),
        ("ViT-L/14", "openai/clip-vit-large-patch14"),
        ("ViT-L/14@336px", "openai/clip-vit-large-patch14-336"),
        ("vit-b/32", "openai/clip-vit-base-patch32"),  # case does not matter
        (" ViT-L/14 ", "openai/clip-vit-large-patch14"),
    ],
)
def test_openai_clip_names_are_the_clip_presets(name: str, hub_id: str) -> None:
    assert resolve_model_source(name) == (hub_id, hub_id)


@pytest.mark.parametrize(
    "name", ["ViT-B-32:laion2b_s34b_b79k", "ViT-B-32/laion2b_s34b_b79k", "vit-b-32:LAION2B-S34B-B79K"]
)
def test_an_open_clip_pair_is_its_transformers_copy(name: str) -> None:
    expected = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert resolve_model_source(name) == (expected, expected)


def test_an_open_clip_pair_without_a_transformers_copy_is_its_open_clip_repo() -> None:
    expected = "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"  # OpenCLIP's format only: converted on load
    assert resolve_model_source("ViT-B-16:laion2b_s34b_b88k") == (expected, expected)


@pytest.mark.parametrize("row", OPEN_CLIP_WEIGHTS, ids=str)
def test_every_open_clip_pair_in_the_table_resolves(row) -> None:
    assert resolve_model_source(f"{row.architecture}:{row.pretrained}")[0] == _hub_id(row.model)


def test_every_openai_name_in_the_table_resolves() -> None:
    for name, alias in OPENAI_CLIP_NAMES.items():
        assert resolve_model_alias(name) == alias


@pytest.mark.parametrize(
    ("name", "hub_id"),
    [
        ("hf-hub:laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
        ("hf-hub:timm/ViT-B-16-SigLIP2-256", "google/siglip2-base-patch16-256"),  # OpenCLIP-format repo: its copy
        ("hf-hub:someone/their-clip", "someone/their-clip"),
    ],
)
def test_open_clip_hub_names_are_hub_ids(name: str, hub_id: str) -> None:
    assert resolve_model_source(name) == (hub_id, hub_id)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("ViT-B-32", ["without its pretrained weights", "'ViT-B-32:openai' (preset clip-vit-b-32)",
                      "'ViT-B-32:laion2b_s34b_b79k' (laion/CLIP-ViT-B-32-laion2B-s34B-b79K)"]),
        ("ViT-B-16:commonpool_l_s1b_b8k", ["not in mmrag's table", "'hf-hub:<owner>/<repo>'",
                                          "'ViT-B-16:openai' (preset clip-vit-b-16)"]),
        ("RN50", ["ResNet CLIP", "'ViT-B/32' (preset clip-vit-b-32)"]),
        ("RN50x4", ["ResNet CLIP"]),
        ("ViT-H/14", ["not an OpenAI CLIP name", "'ViT-L/14@336px' (preset clip-vit-l-14-336)"]),
        ("EVA02-L-14:merged2b_s4b_b131k", ["OpenCLIP 'model:pretrained' name", "ViT-H-14:laion2b_s32b_b79k"]),
    ],
)  # fmt: skip  # aligned by hand
def test_names_that_cannot_load_say_what_can(name: str, says: list[str]) -> None:
    with pytest.raises(UnsupportedModelError) as caught:
        resolve_model_source(name)
    for part in says:
        assert part in str(caught.value)
    assert "hf download" not in str(caught.value)


@pytest.mark.parametrize(
    "name", ["openai/clip-vit-base-patch32", "google/siglip2-base-patch16-224", "clip-vit-b-32", "mmrag/demo"]
)
def test_ordinary_names_are_left_alone(name: str) -> None:
    assert resolve_model_alias(name) is None


def test_a_directory_of_that_name_wins(tmp_path, monkeypatch) -> None:
    (tmp_path / "ViT-B-32").mkdir()
    (tmp_path / "ViT-B-32" / "config.json").write_text('{"model_type": "clip"}')
    monkeypatch.chdir(tmp_path)
    assert resolve_model_source("ViT-B-32")[0] == str((tmp_path / "ViT-B-32").resolve())


def test_the_offline_error_names_the_hub_id_not_the_foreign_name() -> None:
    with pytest.raises(ModelNotAvailableError) as caught:
        mmrag.load_encoder("ViT-B/32", local_files_only=True)
    message = str(caught.value)
    assert "hf download openai/clip-vit-base-patch32" in message
    assert "hf download ViT-B/32" not in message
