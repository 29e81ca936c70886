"""OpenCLIP-format checkpoints: parity with the real open_clip library, hub ids, refusals.

The golden directories under ``golden/open_clip/`` were written once by ``make_golden.py`` with
``open_clip_torch`` 3.3.0: a tiny random-weight ViT + text transformer in OpenCLIP's own format
(``open_clip_config.json``, weights, a small byte-level BPE as ``vocab.json`` + ``merges.txt``) and
the vectors open_clip's ``encode_text`` / ``encode_image`` gave after its own tokenizer and
preprocessing. ``gelu``: GELU, shortest-edge resize + centre crop, bicubic, safetensors;
``quickgelu``: QuickGELU, squash resize, bilinear, other mean/std, a pickle ``.bin``.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from PIL import Image

import mmrag
from mmrag.encoders.open_clip import OPENAI_CLIP_TOKENIZER, convert_state_dict, parse_open_clip_config
from mmrag.encoders.transformers_dual import TransformersDualEncoder
from mmrag.errors import ModelNotAvailableError, UnsupportedModelError

GOLDEN = Path(__file__).parent / "golden" / "open_clip"
TEXTS = [  # the texts make_golden.py embedded (the last one is longer than the 24-token context)
    "a red circle",
    "a blue square on the left",
    "A Small GREEN triangle!!",
    "two yellow stars above a large purple square, drawn on a white background with thin black lines",
]
VARIANTS = {"gelu": True, "quickgelu": False}  # variant -> use_safetensors (quickgelu ships a pickle)
HUB_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


def _golden(variant: str) -> Any:
    return np.load(GOLDEN / variant / "golden.npz")


def _images(golden: Any) -> list[Image.Image]:
    return [Image.fromarray(golden[f"image_{i}"]) for i in range(3)]


@pytest.fixture(scope="module")
def open_clip_encoders() -> dict[str, TransformersDualEncoder]:
    loaded = {
        name: mmrag.load_encoder(GOLDEN / name, device="cpu", use_safetensors=flag) for name, flag in VARIANTS.items()
    }
    assert all(isinstance(encoder, TransformersDualEncoder) for encoder in loaded.values())
    return cast("dict[str, TransformersDualEncoder]", loaded)


def _cosines(encoder: mmrag.Encoder, golden: Any) -> tuple[np.ndarray, np.ndarray]:
    text = encoder.embed_texts(TEXTS)
    image = encoder.embed_images(_images(golden))
    return np.sum(text * golden["text"], axis=1), np.sum(image * golden["image"], axis=1)


def _assert_matches(encoder: mmrag.Encoder, golden: Any) -> None:
    text, image = _cosines(encoder, golden)
    # fp32 on both sides: 1e-5 (the issue asks >= 0.9999; GELU <-> QuickGELU moves these tiny models ~5e-5)
    assert text.min() >= 0.99999
    assert image.min() >= 0.99999


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vectors_match_open_clip(open_clip_encoders: dict[str, TransformersDualEncoder], variant: str) -> None:
    encoder, golden = open_clip_encoders[variant], _golden(variant)
    assert encoder.family == "clip"
    assert encoder.dim == 16
    assert encoder.model_id == str((GOLDEN / variant).resolve())
    _assert_matches(encoder, golden)
    # different inputs give clearly different vectors (the parity check is not vacuous)
    for vectors in (encoder.embed_texts(TEXTS), encoder.embed_images(_images(golden))):
        similarity = vectors @ vectors.T
        assert similarity[~np.eye(len(vectors), dtype=bool)].max() < 0.99


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tokens_match_open_clip_tokenizer(open_clip_encoders: dict[str, TransformersDualEncoder], variant: str) -> None:
    encoder, golden = open_clip_encoders[variant], _golden(variant)
    reference = golden["text_ids"]  # open_clip pads with 0; a long text is cut to 24 with the end token last
    ids = np.array(encoder.tokenizer(TEXTS, padding="max_length", truncation=True, max_length=24)["input_ids"])
    assert encoder.max_text_length == 24  # text_cfg.context_length
    assert np.array_equal(ids[reference != 0], reference[reference != 0])


def test_preprocess_config_is_honoured(open_clip_encoders: dict[str, TransformersDualEncoder]) -> None:
    squash = open_clip_encoders["quickgelu"].preprocessing
    assert "image_mean=[0.5,0.45,0.4]" in squash
    assert "resample=2" in squash  # bilinear
    assert "resample=3" in open_clip_encoders["gelu"].preprocessing  # bicubic


def test_activation_comes_from_the_config(
    open_clip_encoders: dict[str, TransformersDualEncoder], tmp_path: Path
) -> None:
    for variant, act in (("gelu", "gelu"), ("quickgelu", "quick_gelu")):
        config = open_clip_encoders[variant].model.config
        assert (config.text_config.hidden_act, config.vision_config.hidden_act) == (act, act)
    flipped = shutil.copytree(GOLDEN / "gelu", tmp_path / "flipped")
    config = json.loads((flipped / "open_clip_config.json").read_text())
    config["model_cfg"]["quick_gelu"] = True
    (flipped / "open_clip_config.json").write_text(json.dumps(config))
    text, image = _cosines(mmrag.load_encoder(flipped, device="cpu"), _golden("gelu"))
    assert min(text.min(), image.min()) < 0.99999  # the wrong activation is visible at this tolerance


def test_pickle_weights_need_opt_in(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="use_safetensors=False"):
        mmrag.load_encoder(GOLDEN / "quickgelu", device="cpu")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_pickle_needing_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    checkpoint = tmp_path / "evil"
    checkpoint.mkdir()
    shutil.copy(GOLDEN / "quickgelu" / "open_clip_config.json", checkpoint)
    shutil.copy(GOLDEN / "quickgelu" / "vocab.json", checkpoint)
    shutil.copy(GOLDEN / "quickgelu" / "merges.txt", checkpoint)
    marker = tmp_path / "code_ran"
    with (checkpoint / "open_clip_pytorch_model.bin").open("wb") as f:
        pickle.dump({"logit_scale": _Exploit(marker)}, f, protocol=2)
    with pytest.raises(ModelNotAvailableError, match="need code to unpickle"):
        mmrag.load_encoder(checkpoint, device="cpu", use_safetensors=False)
    assert not marker.exists()


def _hub_cache(root: Path, repo: str, files: Path, commit: str = "a" * 40) -> Path:
    """A Hugging Face hub cache holding ``files`` as the ``main`` snapshot of ``repo``."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    shutil.copytree(files, repo_dir / "snapshots" / commit)
    return root


def test_hf_hub_id_loads_from_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    files = shutil.copytree(GOLDEN / "gelu", tmp_path / "files", ignore=shutil.ignore_patterns("golden.npz"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(_hub_cache(tmp_path / "hub", HUB_REPO, files)))
    encoder = mmrag.load_encoder(f"hf-hub:{HUB_REPO}", device="cpu", local_files_only=True)
    assert encoder.model_id == HUB_REPO
    _assert_matches(encoder, _golden("gelu"))
    by_commit = mmrag.load_encoder(HUB_REPO, device="cpu", revision="a" * 40, local_files_only=True)
    _assert_matches(by_commit, _golden("gelu"))
    with pytest.raises(ModelNotAvailableError):
        mmrag.load_encoder(f"hf-hub:{HUB_REPO}", device="cpu", revision="b" * 40, local_files_only=True)


def test_default_tokenizer_is_openai_clip_bpe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    bare = shutil.copytree(GOLDEN / "gelu", tmp_path / "bare", ignore=shutil.ignore_patterns("*.txt", "vocab.json"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    with pytest.raises(ModelNotAvailableError, match=OPENAI_CLIP_TOKENIZER):
        mmrag.load_encoder(bare, device="cpu", local_files_only=True)
    # with OpenAI's tokenizer repo in the cache (here holding the golden BPE), the checkpoint loads from it
    tokenizer_files = tmp_path / "tokenizer"
    tokenizer_files.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GOLDEN / "gelu" / name, tokenizer_files)
    cache = _hub_cache(tmp_path / "hub", OPENAI_CLIP_TOKENIZER, tokenizer_files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    _assert_matches(mmrag.load_encoder(bare, device="cpu", local_files_only=True), _golden("gelu"))


def _config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((GOLDEN / "gelu" / "open_clip_config.json").read_text())
    for dotted, value in changes.items():
        section, _, field = dotted.rpartition("__")
        target = (
            config["model_cfg"][section] if section in ("vision_cfg", "text_cfg") else config[section or "model_cfg"]
        )
        target[field] = value
    return config


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"vision_cfg__timm_model_name": "convnext_base"}, "ConvNeXt"),
        ({"vision_cfg__timm_model_name": "vit_medium_patch16_gap_256"}, "timm_model_name"),
        ({"vision_cfg__layers": [3, 4, 6, 3]}, "ModifiedResNet"),
        ({"text_cfg__hf_model_name": "xlm-roberta-base"}, "hf_model_name"),
        ({"init_logit_bias": -10}, "init_logit_bias"),
        ({"custom_text": True}, "custom_text"),
        ({"vision_cfg__ls_init_value": 1e-4}, "ls_init_value"),
        ({"vision_cfg__pool_type": "avg"}, "pool_type"),
        ({"text_cfg__pool_type": "last"}, "pool_type"),
        ({"text_cfg__no_causal_mask": True}, "no_causal_mask"),
        ({"vision_cfg__image_size": [32, 48]}, "not square"),
        ({"preprocess_cfg__resize_mode": "longest"}, "resize_mode"),
        ({"text_cfg__some_new_switch": True}, "some_new_switch"),
    ],
)
def test_unconvertible_architectures_are_named(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(UnsupportedModelError, match=named):
        parse_open_clip_config(_config(**changes), "m")


def test_load_encoder_refuses_an_unconvertible_checkpoint(tmp_path: Path) -> None:
    checkpoint = shutil.copytree(GOLDEN / "gelu", tmp_path / "resnet")
    (checkpoint / "open_clip_config.json").write_text(json.dumps(_config(vision_cfg__layers=[1, 1, 1, 1])))
    with pytest.raises(UnsupportedModelError, match="ModifiedResNet"):
        mmrag.load_encoder(checkpoint, device="cpu")


def test_unknown_weights_are_refused() -> None:
    import torch

    state = {"logit_scale": torch.tensor(1.0), "visual.transformer.resblocks.0.ls_1.gamma": torch.ones(4)}
    with pytest.raises(UnsupportedModelError, match=r"ls_1\.gamma"):
        convert_state_dict(state, "m")


def test_converted_encoder_works_in_the_store(
    open_clip_encoders: dict[str, TransformersDualEncoder], tmp_path: Path
) -> None:
    encoder = open_clip_encoders["gelu"]
    with mmrag.MultimodalStore(encoder, path=tmp_path / "db") as store:
        store.add_texts(TEXTS[:3])
        hits = store.search(TEXTS[1], k=1)
    assert hits[0].text == TEXTS[1]


def test_a_timm_style_config_json_beside_open_clip_files_still_converts(tmp_path: Path) -> None:
    checkpoint = shutil.copytree(GOLDEN / "gelu", tmp_path / "timm_repo")
    (checkpoint / "config.json").write_text(json.dumps({"architecture": "vit_base_patch32_clip_224"}))  # no model_type
    _assert_matches(mmrag.load_encoder(checkpoint, device="cpu"), _golden("gelu"))


def test_a_directory_with_neither_config_says_both(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="open_clip_config.json"):
        mmrag.load_encoder(tmp_path, device="cpu")
