"""``scripts/train_demo_model.py``: a short run writes a loadable model, and the same run the same bytes.

The full run (about 1200 steps, minutes on the CPU) is what produced the
bundled model; here a few steps on a few images check the whole path: data,
tokenizer, training, ``save_pretrained``, the tokenizer reload check, and the
held-out evaluation through ``mmrag.load_encoder``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmrag

pytestmark = pytest.mark.slow  # two training runs in subprocesses, about a minute

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_model.py"
SHORT_RUN = ["--steps", "3", "--train-images", "48", "--batch-size", "16", "--eval-images", "24", "--threads", "1"]


def _train(out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *SHORT_RUN],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip  # aligned by hand
    assert result.returncode == 0, result.stderr[-3000:]
    figures, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("\n{") + 1 :])
    return figures


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    figures = _train(first)
    _train(second)
    return first, second, figures


def test_short_run_writes_a_model_mmrag_loads(two_runs: tuple[Path, Path, dict]) -> None:
    out, _, figures = two_runs
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"} <= {
        p.name for p in out.iterdir()
    }
    assert figures["steps"] == 3 and figures["n_images"] == 24 and figures["train_seed"] == 0
    assert {"t2i_colour_shape_en", "t2i_colour_shape_zh", "i2t_full_en", "i2t_full_zh_shape"} <= set(figures)
    shipped = json.loads((out / "config.json").read_text())["mmrag_neutral_cosine"]  # read by mmrag.rerank
    assert shipped == {"text->image": figures["neutral_cosine"], "image->text": figures["neutral_cosine"]}
    encoder = mmrag.load_encoder(out, device="cpu")
    assert encoder.dim == 64 and encoder.family == "clip"
    vectors = encoder.embed_texts(["a red circle", "红色的圆形", "a blue star"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[2])


def test_same_arguments_give_the_same_weights(two_runs: tuple[Path, Path, dict]) -> None:
    first, second, _ = two_runs
    for name in ("model.safetensors", "tokenizer.json", "vocab.json", "merges.txt", "config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
