"""load_encoder: sources, presets, dtype/device choice, and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import mmrag
from mmrag.encoders.loading import pick_dtype, supported_model_types
from mmrag.errors import InvalidInputError, ModelNotAvailableError, UnsupportedModelError


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


def _config_dir(tmp_path, name: str, config: dict) -> object:
    target = tmp_path / name
    target.mkdir()
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_remote_code_architecture_is_refused_without_running_its_code(tmp_path) -> None:
    marker = tmp_path / "remote_code_ran"
    target = _config_dir(
        tmp_path,
        "remote",
        {"model_type": "my_dual_arch", "auto_map": {"AutoConfig": "configuration_my.MyConfig"}},
    )
    (target / "configuration_my.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom transformers import PretrainedConfig\n"
        "class MyConfig(PretrainedConfig):\n    model_type = 'my_dual_arch'\n"
    )
    for trust in (False, True):
        with pytest.raises(UnsupportedModelError) as info:
            mmrag.load_encoder(target, trust_remote_code=trust)
        message = str(info.value)
        assert "model_type 'my_dual_arch'" in message and "code shipped with the checkpoint" in message
        assert ", ".join(supported_model_types()) in message
    assert not marker.exists()


def test_model_type_unknown_to_transformers_is_named(tmp_path) -> None:
    import transformers

    target = _config_dir(tmp_path, "future", {"model_type": "clip_v9000"})
    with pytest.raises(UnsupportedModelError) as info:
        mmrag.load_encoder(target)
    message = str(info.value)
    assert "model_type 'clip_v9000'" in message and f"transformers {transformers.__version__}" in message
    assert "chinese_clip, clip, siglip, siglip2" in message
    with pytest.raises(UnsupportedModelError, match="no model_type"):
        mmrag.load_encoder(_config_dir(tmp_path, "untyped", {"hidden_size": 8}))


def test_unreadable_config_is_not_available(tmp_path) -> None:
    target = tmp_path / "broken"
    target.mkdir()
    (target / "config.json").write_text("{not json")
    with pytest.raises(ModelNotAvailableError, match="cannot load model from directory"):
        mmrag.load_encoder(target)


@pytest.mark.parametrize(
    ("model", "shown"),
    [(None, "got None"), (123, "got 123"), ("", "got an empty string"), ("   ", "got an empty string")],
)
def test_model_must_be_a_name_or_a_path(model, shown) -> None:
    with pytest.raises(InvalidInputError) as info:
        mmrag.load_encoder(model)
    message = str(info.value)
    assert message.startswith("model must be a preset alias") and "local directory" in message
    assert message.endswith(shown)


def test_unknown_loading_option_lists_the_fields(tiny_model_dirs) -> None:
    with pytest.raises(TypeError, match=r"unknown loading option\(s\) 'devise'; LoadOptions takes device, dtype"):
        mmrag.load_encoder(tiny_model_dirs["clip"], devise="cpu")
    with pytest.raises(TypeError, match="options must be a mmrag.LoadOptions, got dict"):
        mmrag.load_encoder(tiny_model_dirs["clip"], options={"device": "cpu"})


def test_options_object_and_overrides(tiny_model_dirs) -> None:
    options = mmrag.LoadOptions(device="cpu", dtype="bf16", batch_size=3)
    encoder = mmrag.load_encoder(tiny_model_dirs["clip"], options=options)
    assert (encoder.dtype, encoder.batch_size, str(encoder.device)) == (torch.bfloat16, 3, "cpu")
    override = mmrag.load_encoder(tiny_model_dirs["clip"], options=options, dtype=None, batch_size=5)
    assert (override.dtype, override.batch_size) == (torch.float32, 5)  # float32: the CPU default
    assert options.batch_size == 3  # the shared object is unchanged


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
