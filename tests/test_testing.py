"""Tests for mmrag.testing: tiny real-architecture models that load through the Auto* classes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmrag
from mmrag import testing as mt

SRC = Path(mmrag.__file__).resolve().parents[1]  # the tree under test, for subprocesses

FAMILIES = mt.FAMILIES
CLASSES = {
    "clip": ("CLIPModel", "CLIPProcessor", "CLIPTokenizer", "CLIPImageProcessor"),
    "siglip": ("SiglipModel", "SiglipProcessor", "GemmaTokenizer", "SiglipImageProcessor"),
    "siglip2": ("Siglip2Model", "Siglip2Processor", "Siglip2Tokenizer", "Siglip2ImageProcessor"),
    "chinese_clip": ("ChineseCLIPModel", "ChineseCLIPProcessor", "BertTokenizer", "ChineseCLIPImageProcessor"),
}
ENGLISH = ["a photo of a cat", "A large blue square at the bottom", "the quick brown fox", "zebra xylophone 42!"]
CHINESE = ["一只红色的猫", "图片左边有一个小的蓝色圆形", "左边的蓝色小正方形", "狗在右边"]
TEXTS = [
    "a photo of a cat",
    "a photo of a dog",
    "a red circle",
    "a small blue square on the left",
    "红色的圆形",
    "一只狗在图片右边",
]
REQUIRED_ZH = "红绿蓝黄色圆形方猫狗一只的小大左右边在上下图片"


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.new("RGB", (20, 30), (255, 0, 0)),
        Image.new("RGB", (64, 48), (0, 0, 255)),
        Image.fromarray(rng.integers(0, 256, (57, 23, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (20, 300, 3), dtype=np.uint8)),  # extreme aspect ratio
        Image.new("L", (40, 40), 128).convert("RGB"),
    ]


def _features(output: object) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]  # a transformers 5 output object


def _max_offdiag_cos(x: torch.Tensor) -> float:
    x = torch.nn.functional.normalize(x.float(), dim=-1)
    sim = x @ x.T
    sim.fill_diagonal_(-1.0)
    return float(sim.max())


@pytest.fixture(scope="module")
def loaded(tiny_model_dirs: dict[str, Path]) -> dict[str, tuple[object, object]]:
    from transformers import AutoModel, AutoProcessor

    return {
        family: (AutoModel.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path))
        for family, path in tiny_model_dirs.items()
    }


# ------------------------------------------------------------------------------- corpus, tokenizers


def test_caption_corpus_is_bilingual_and_deterministic() -> None:
    corpus = mt.caption_corpus(0)
    assert corpus == mt.caption_corpus(0)
    assert corpus != mt.caption_corpus(1)
    assert 300 <= len(corpus) <= 3000
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in s) for s in corpus) > 100
    assert sum(s.isascii() for s in corpus) > 100


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_round_trip(family: str, tiny_model_dirs: dict[str, Path]) -> None:
    from transformers import AutoProcessor, AutoTokenizer

    before = mt.family_tokenizer(family)
    path = tiny_model_dirs[family]
    for after in (AutoTokenizer.from_pretrained(path), AutoProcessor.from_pretrained(path).tokenizer):
        assert type(after).__name__ == CLASSES[family][2] == type(before).__name__
        assert after.model_max_length == mt.MAX_TEXT_LENGTH[family]
        assert after.padding_side == "right"
        for text in ENGLISH + CHINESE:
            ids = before(text)["input_ids"]
            assert after(text)["input_ids"] == ids, text
            tokens = after.tokenize(text)  # no special tokens (CLIP's unk is also its eos/pad)
            assert tokens and before.unk_token not in tokens, (text, tokens)
        batch = after(ENGLISH + CHINESE, padding=True)["input_ids"]
        assert batch == before(ENGLISH + CHINESE, padding=True)["input_ids"]
    assert 300 <= len(before) <= 2500


def test_chinese_clip_tokenizer_splits_chinese_characters() -> None:
    tok = mt.family_tokenizer("chinese_clip")
    vocab = tok.get_vocab()
    assert all(ch in vocab for ch in REQUIRED_ZH)
    assert tok.tokenize("一只红色的猫在左边") == list("一只红色的猫在左边")
    assert tok.tokenize("A Photo of a CAT") == ["a", "photo", "of", "a", "cat"]
    ids = tok("红色的猫")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


def test_clip_tokenizer_matches_vocab_and_merges_files(tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    tok = mt.family_tokenizer("clip")
    vocab = tok.get_vocab()
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [m if isinstance(m, str) else " ".join(m) for m in merges]
    (tmp_path / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    from_files = CLIPTokenizer(vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt"))
    for text in ENGLISH + CHINESE:
        assert from_files(text)["input_ids"] == tok(text)["input_ids"], text
    assert tok.tokenize("a photo of a cat") == ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"]
    ids = tok("a cat")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id


def test_siglip_tokenizers_case_and_eos() -> None:
    gemma, siglip2 = mt.family_tokenizer("siglip"), mt.family_tokenizer("siglip2")
    assert siglip2("A Photo")["input_ids"] == siglip2("a photo")["input_ids"]  # Siglip2Tokenizer lowercases
    assert gemma("A Photo")["input_ids"] != gemma("a photo")["input_ids"]  # GemmaTokenizer does not
    for tok in (gemma, siglip2):
        assert tok.tokenize("a photo of a cat") == ["a", "▁photo", "▁of", "▁a", "▁cat"]
        assert tok("a cat")["input_ids"][-1] == tok.eos_token_id
        assert tok.unk_token_id not in tok("ünïcödé 龘 ☃")["input_ids"]  # byte fallback
        padded = tok(["a cat", "一只狗"], padding="max_length", max_length=64)["input_ids"]
        assert [len(p) for p in padded] == [64, 64] and padded[0][-1] == tok.pad_token_id


def test_train_tokenizer_kinds_and_errors() -> None:
    corpus = ["a red circle", "a blue square", "红色的圆形"] * 5
    assert type(mt.train_tokenizer("clip_bpe", corpus, vocab_size=600)).__name__ == "CLIPTokenizer"
    assert type(mt.train_tokenizer("metaspace_bpe", corpus)).__name__ == "Siglip2Tokenizer"
    assert type(mt.train_tokenizer("metaspace_bpe", corpus, lowercase=False)).__name__ == "GemmaTokenizer"
    wp = mt.train_tokenizer("wordpiece", corpus, model_max_length=40)
    assert type(wp).__name__ == "BertTokenizer" and wp.model_max_length == 40
    with pytest.raises(ValueError):
        mt.train_tokenizer("nope", corpus)  # type: ignore[arg-type]  # an unknown kind on purpose


_HASH_SCRIPT = """
import hashlib, json
from mmrag import testing as mt
out = []
for family in mt.FAMILIES:
    tok = mt.family_tokenizer(family)
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    out.append([sorted(tok.get_vocab().items()), model.get("merges", [])])
print(hashlib.sha256(json.dumps(out, ensure_ascii=False).encode()).hexdigest())
"""


def test_tokenizers_deterministic_across_processes() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    src = str(SRC)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", _HASH_SCRIPT], env=env, capture_output=True, text=True, check=True)
    out = []
    for family in mt.FAMILIES:
        tok = mt.family_tokenizer(family)
        model = json.loads(tok.backend_tokenizer.to_str())["model"]
        out.append([sorted(tok.get_vocab().items()), model.get("merges", [])])
    expected = hashlib.sha256(json.dumps(out, ensure_ascii=False).encode()).hexdigest()
    assert result.stdout.strip().splitlines()[-1] == expected


# ------------------------------------------------------------------------------- tiny models


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_classes(family: str, tiny_model_dirs: dict[str, Path], loaded) -> None:
    from transformers import AutoConfig, AutoImageProcessor

    path = tiny_model_dirs[family]
    assert (path / "model.safetensors").is_file()
    assert not list(path.glob("*.bin"))
    model, processor = loaded[family]
    model_cls, processor_cls, tokenizer_cls, image_processor_cls = CLASSES[family]
    assert type(model).__name__ == model_cls
    assert model.config.model_type == family
    assert AutoConfig.from_pretrained(path).model_type == family
    assert type(processor).__name__ == processor_cls
    assert type(processor.tokenizer).__name__ == tokenizer_cls
    assert type(AutoImageProcessor.from_pretrained(path)).__name__.startswith(image_processor_cls)
    assert type(processor.image_processor).__name__.startswith(image_processor_cls)


@pytest.mark.parametrize("family", FAMILIES)
def test_text_features(family: str, loaded) -> None:
    model, processor = loaded[family]
    inputs = processor(text=TEXTS, return_tensors="pt", **mt.text_kwargs(family))
    if family in ("siglip", "siglip2"):
        assert inputs["input_ids"].shape == (len(TEXTS), 64)
        assert model.config.text_config.max_position_embeddings == 64
    with torch.no_grad():
        feats = _features(model.get_text_features(**inputs))
    assert feats.shape == (len(TEXTS), 32)
    assert torch.isfinite(feats).all()
    assert _max_offdiag_cos(feats) < 0.99


@pytest.mark.parametrize("family", FAMILIES)
def test_image_features_mixed_sizes(family: str, loaded) -> None:
    model, processor = loaded[family]
    images = _images()
    inputs = processor(images=images, return_tensors="pt")
    direct = processor.image_processor(images=images, return_tensors="pt")
    assert set(inputs) == set(direct)
    for key in inputs:
        assert torch.equal(inputs[key], direct[key]), key
    with torch.no_grad():
        feats = _features(model.get_image_features(**inputs))
    assert feats.shape == (len(images), 32)
    assert torch.isfinite(feats).all()
    assert _max_offdiag_cos(feats) < 0.99


def test_siglip2_naflex_settings_consistent(loaded) -> None:
    model, processor = loaded["siglip2"]
    vision = model.config.vision_config
    assert vision.patch_size == processor.image_processor.patch_size == 16
    assert vision.num_patches == processor.image_processor.max_num_patches == 256
    inputs = processor(images=_images(), return_tensors="pt")
    assert set(inputs) == {"pixel_values", "pixel_attention_mask", "spatial_shapes"}
    assert inputs["pixel_values"].shape[1:] == (256, 3 * 16 * 16)
    assert (inputs["spatial_shapes"].prod(-1) <= 256).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_inputs_are_distinct(family: str, loaded) -> None:
    model, processor = loaded[family]
    with torch.no_grad():
        text_inputs = processor(text=list(mt.PROBE_TEXTS), return_tensors="pt", **mt.text_kwargs(family))
        text = _features(model.get_text_features(**text_inputs))
        image = _features(model.get_image_features(**processor(images=mt.probe_images(), return_tensors="pt")))
    assert _max_offdiag_cos(text) < 0.97
    assert _max_offdiag_cos(image) < 0.97


def _state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("family", FAMILIES)
def test_build_is_deterministic_and_seeded(family: str, tmp_path: Path, tiny_model_dirs: dict[str, Path]) -> None:
    rng_before = torch.random.get_rng_state()
    again = mt.build_tiny_model(family, tmp_path / "again")
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    reference, rebuilt = _state(tiny_model_dirs[family]), _state(again)
    assert reference.keys() == rebuilt.keys()
    assert all(torch.equal(reference[k], rebuilt[k]) for k in reference)
    other = _state(mt.build_tiny_model(family, tmp_path / "other", seed=1))
    assert any(not torch.equal(reference[k], other[k]) for k in reference if reference[k].is_floating_point())


def test_projection_dim(tmp_path: Path) -> None:
    from transformers import AutoModel, AutoProcessor

    for family in ("clip", "siglip2"):
        path = mt.build_tiny_model(family, tmp_path / family, projection_dim=48)
        model, processor = AutoModel.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)
        with torch.no_grad():
            inputs = processor(text=["a cat"], return_tensors="pt", **mt.text_kwargs(family))
            feats = _features(model.get_text_features(**inputs))
        assert feats.shape == (1, 48)


def test_unknown_family_and_arch(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        mt.build_tiny_model("nope", tmp_path / "x")
    with pytest.raises(KeyError):
        mt.build_random_model("nope", tmp_path / "y")
    with pytest.raises(KeyError):
        mt.arch_config("nope")


# ------------------------------------------------------------------------------- real-size presets


def test_arch_config_real_sizes() -> None:
    clip = mt.arch_config("clip-b-32")
    assert clip.model_type == "clip" and clip.projection_dim == 512
    assert (clip.vision_config.hidden_size, clip.vision_config.num_hidden_layers) == (768, 12)
    assert (clip.vision_config.patch_size, clip.vision_config.image_size) == (32, 224)
    assert (clip.text_config.hidden_size, clip.text_config.vocab_size) == (512, 49408)
    assert clip.text_config.max_position_embeddings == 77
    assert clip.text_config.eos_token_id == mt.family_tokenizer("clip").eos_token_id

    assert mt.arch_config("clip-b-16").vision_config.patch_size == 16
    large = mt.arch_config("clip-l-14")
    assert (large.vision_config.hidden_size, large.vision_config.num_hidden_layers) == (1024, 24)
    assert large.projection_dim == 768

    s2 = mt.arch_config("siglip2-b-16-512")
    assert s2.model_type == "siglip"
    assert (s2.vision_config.hidden_size, s2.vision_config.num_hidden_layers) == (768, 12)
    assert (s2.vision_config.patch_size, s2.vision_config.image_size) == (16, 512)
    assert (s2.text_config.max_position_embeddings, s2.text_config.vocab_size) == (64, 256000)

    assert {"clip-b-32", "clip-b-16", "clip-l-14", "siglip2-b-16-512"} <= set(mt.ARCHS)
    for arch, spec in mt.ARCHS.items():
        cfg = mt.arch_config(arch)
        assert cfg.model_type == spec.family, arch


def test_build_random_model_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real-size code path, exercised on a small preset (real presets take seconds and 100s of MB)."""
    from transformers import AutoModel, AutoProcessor

    spec = mt.ARCHS["clip-b-32"]
    small = mt.ArchSpec(
        "clip",
        {
            **spec.text,
            "vocab_size": 2048,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        {
            **spec.vision,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 64,
        },
        16,
        {"size": {"shortest_edge": 64}, "crop_size": {"height": 64, "width": 64}},
    )
    monkeypatch.setitem(mt.ARCHS, "small-test", small)
    path = mt.build_random_model("small-test", tmp_path / "small")
    model, processor = AutoModel.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)
    assert model.config.text_config.vocab_size == 2048
    with torch.no_grad():
        image = _features(model.get_image_features(**processor(images=_images(), return_tensors="pt")))
    assert image.shape == (len(_images()), 16) and torch.isfinite(image).all()


def test_import_is_light() -> None:
    code = (
        "import sys; import mmrag; assert 'mmrag.testing' not in sys.modules; before = set(sys.modules); "
        "import mmrag.testing; new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "assert not new & {'torch', 'transformers', 'tokenizers'}, new"
    )
    env = {**os.environ}
    src = str(SRC)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)


# ------------------------------------------------------------------------------- package layout


def test_every_public_name_resolves() -> None:
    import importlib

    assert sorted(mt.__all__) == sorted(set(mt.__all__))
    for name in mt.__all__:
        assert getattr(mt, name) is not None, name
    for module in ("building", "chinese_clip", "clip", "corpus", "dual_encoders", "families", "images",
                   "real_size", "rerankers", "siglip", "tokenizers"):  # fmt: skip  # aligned by hand
        sub = importlib.import_module(f"mmrag.testing.{module}")
        assert sub.__all__ and all(hasattr(sub, name) for name in sub.__all__), module
    from mmrag.testing.dual_encoders import RECIPES
    from mmrag.testing.real_size import ARCHS

    assert mt.ARCHS is ARCHS  # patching the package's dict reaches the builder
    assert set(RECIPES) == set(mt.FAMILIES)


def test_draw_model_retries_then_names_what_failed() -> None:
    from mmrag.testing.building import MAX_INIT_ATTEMPTS, draw_model

    rng_before = torch.random.get_rng_state()
    drawn: list[float] = []

    def make() -> float:
        drawn.append(float(torch.rand(())))
        return drawn[-1]

    assert draw_model(make, None, seed=3, what="x") == drawn[0]
    assert draw_model(make, lambda value: None if len(drawn) > 3 else "too early", seed=3, what="x") == drawn[-1]
    assert drawn[1] == drawn[0] and len(set(drawn[1:])) == 3  # same seed first, then fresh seeds
    with pytest.raises(RuntimeError, match=r"could not draw a thing \(no good\)"):
        draw_model(make, lambda value: "no good", seed=3, what="a thing")
    assert len(drawn) == 4 + MAX_INIT_ATTEMPTS
    assert torch.equal(torch.random.get_rng_state(), rng_before)


# ------------------------------------------------------------------------------- the session's guards (conftest)


def test_hub_clients_are_offline() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_network_is_blocked_but_loopback_works(tmp_path: Path) -> None:
    import socket
    import urllib.request

    for address in (("192.0.2.1", 80), ("2001:db8::1", 443, 0, 0)):  # documentation-only addresses
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family) as sock, pytest.raises(RuntimeError, match="tests must not use the network"):
            sock.connect(address)
    with pytest.raises(RuntimeError, match="tests must not use the network"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(RuntimeError, match="tests must not use the network"):
        urllib.request.urlopen("http://192.0.2.1/", timeout=1)

    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        peer, _ = server.accept()
        with peer:
            client.sendall(b"ping")
            assert peer.recv(4) == b"ping"
    if hasattr(socket, "AF_UNIX"):
        path = str(tmp_path / "s.sock")
        with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
            server.bind(path)
            server.listen()
            client.connect(path)
            assert client.getpeername() == path
