"""load_encoder: sources, presets, dtype/device choice, and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import mmrag
from mmrag.encoders.loading import pick_dtype
from mmrag.errors import ModelNotAvailableError, UnsupportedModelError


def test_local_directory_loads_and_records_absolute_path(tiny_model_dirs, monkeypatch) -> None:
    monkeypatch.chdir(tiny_model_dirs["clip"].parent)
    encoder = mmrag.load_encoder("./clip", device="cpu")
    assert encoder.model_id == str(tiny_model_dirs["clip"].resolve())
    assert encoder.family == "clip"


def test_uncached_hub_id_fails_with_download_hint() -> None:
    with pytest.raises(ModelNotAvailableError) as info:
        mmrag.load_encoder("openai/clip-vit-base-patch32", local_files_only=True)
    message = str(info.value)
    assert "hf download openai/clip-vit-base-patch32" in message
    assert "local directory" in message


def test_preset_alias_resolves_to_its_hub_id() -> None:
    with pytest.raises(ModelNotAvailableError, match="openai/clip-vit-base-patch32"):
        mmrag.load_encoder("clip-vit-b-32", local_files_only=True)


def test_missing_directory_is_named(tmp_path) -> None:
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        mmrag.load_encoder(str(tmp_path / "nope"))


def test_unknown_model_type_lists_supported_ones(tmp_path) -> None:
    target = tmp_path / "bert"
    target.mkdir()
    (target / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    with pytest.raises(UnsupportedModelError, match="model_type 'bert'.*clip") as info:
        mmrag.load_encoder(target)
    assert "siglip2" in str(info.value)


def test_pickle_weights_are_refused_by_default(tmp_path, tiny_model_dirs) -> None:
    source = tiny_model_dirs["clip"]
    target = tmp_path / "bin_only"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors"))
    from transformers import AutoModel

    torch.save(AutoModel.from_pretrained(source).state_dict(), target / "pytorch_model.bin")
    with pytest.raises(ModelNotAvailableError, match="use_safetensors=False"):
        mmrag.load_encoder(target, device="cpu")
    reference = mmrag.load_encoder(source, device="cpu").embed_texts(["a red circle"])
    loaded = mmrag.load_encoder(target, device="cpu", use_safetensors=False).embed_texts(["a red circle"])
    assert float(loaded[0] @ reference[0]) > 0.9999


def test_explicit_dtype_is_used(tiny_model_dirs) -> None:
    encoder = mmrag.load_encoder(tiny_model_dirs["siglip"], device="cpu", dtype="bf16")
    assert encoder.dtype == torch.bfloat16
    vectors = encoder.embed_texts(["a red circle"])
    assert vectors.dtype.name == "float32"


def test_bad_dtype_is_refused(tiny_model_dirs) -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        mmrag.load_encoder(tiny_model_dirs["clip"], device="cpu", dtype="int3")


def test_default_dtypes_per_device() -> None:
    cpu, mps = torch.device("cpu"), torch.device("mps")
    assert pick_dtype(None, cpu, torch.bfloat16) == torch.float32
    assert pick_dtype(None, mps, torch.bfloat16) == torch.float16
    assert pick_dtype(torch.float16, cpu, torch.bfloat16) == torch.float16
