"""What the encoders log on the "mmrag" logger: device and dtype on load, truncated texts once per encoder."""

from __future__ import annotations

import logging

import pytest

import mmrag

LONG = "a photo of a cat on a red sofa " * 20  # far beyond the demo model's 32 tokens


def test_loading_logs_model_device_and_dtype(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mmrag"):
        encoder = mmrag.load_encoder("demo", device="cpu")
    loaded = [r.getMessage() for r in caplog.records if r.name == "mmrag.encoders"]
    assert "loading mmrag/demo (clip) on cpu in float32" in loaded
    encoder.close()


def test_truncation_warns_once_per_encoder_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    encoder = mmrag.load_encoder("demo", device="cpu")
    assert encoder.count_truncated([LONG, "short", LONG]) == 2
    with caplog.at_level(logging.DEBUG, logger="mmrag"):
        encoder.embed_texts(["short"])
        encoder.embed_texts([LONG, "short"])
        encoder.embed_texts([LONG])
    cut = [r for r in caplog.records if r.name == "mmrag.encoders" and "truncated" in r.getMessage()]
    assert [r.levelno for r in cut] == [logging.WARNING, logging.DEBUG]
    assert cut[0].getMessage().startswith("1 of 2 texts were longer than 32 tokens and were truncated")
    encoder.close()
