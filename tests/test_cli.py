"""The `mmrag` command, end to end in a subprocess, as a user runs it."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def mmrag_cmd(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("mmrag") or str(Path(sys.executable).with_name("mmrag"))
    command = [exe, *args] if Path(exe).exists() else [sys.executable, "-m", "mmrag", *args]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model_dirs):
    root = tmp_path_factory.mktemp("cli")
    photos = root / "photos"
    photos.mkdir()
    for name, colour in {"red": (230, 20, 20), "green": (20, 200, 40), "blue": (20, 40, 230)}.items():
        Image.fromarray(np.full((40, 40, 3), colour, np.uint8)).save(photos / f"{name}.png")
    (photos / "note.txt").write_text("a note about red things", encoding="utf-8")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    result = mmrag_cmd("index", "photos", "--db", "db", "--model", str(tiny_model_dirs["clip"]), cwd=root)
    return root, result


def test_index_prints_summary_and_failures(indexed) -> None:
    root, result = indexed
    assert result.returncode == 1, result.stderr  # one file failed
    assert "photos: added 4, updated 0, skipped 0, removed 0, failed 1" in result.stdout
    assert f"failed: {root / 'photos' / 'broken.jpg'}: cannot decode image" in result.stdout
    assert "Traceback" not in result.stderr


def test_reindex_skips_everything(indexed) -> None:
    root, _ = indexed
    result = mmrag_cmd("index", "photos", "--db", "db", cwd=root)  # the store remembers its model
    assert "added 0, updated 0, skipped 4, removed 0, failed 1" in result.stdout


def test_search_table_and_json(indexed) -> None:
    root, _ = indexed
    table = mmrag_cmd("search", "a note about red things", "--db", "db", "--k", "2", "--modality", "text", cwd=root)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["rank", "score", "modality", "item"]
    assert lines[2].split()[:3] == ["1", "1.0000", "text"] and '"a note about red things" [note.txt]' in lines[2]

    image = mmrag_cmd("search", "--image", "photos/green.png", "--db", "db", "--k", "3", "--json", cwd=root)
    hits = json.loads(image.stdout)
    assert hits[0]["source"] == str(root / "photos" / "green.png") and hits[0]["score"] == pytest.approx(1, abs=1e-4)
    assert [h["rank"] for h in hits] == [1, 2, 3]


def test_search_with_a_text_and_an_image_is_a_composed_query(indexed, tmp_path, tiny_model_dirs) -> None:
    import mmrag

    root, _ = indexed
    shutil.copytree(root / "db", tmp_path / "db")
    photos = root / "photos"
    encoder = mmrag.load_encoder(str(tiny_model_dirs["clip"]), device="cpu")
    with mmrag.MultimodalStore(encoder, path=tmp_path / "db") as store:
        pair_ids = store.add_pairs([photos / "red.png", photos / "blue.png"], ["make it blue", "make it blue"]).ids
    red = str(photos / "red.png")
    found = mmrag_cmd("search", "make it blue", "--image", red, "--db", "db", "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    fused = encoder.embed_fused([photos / "red.png"], ["make it blue"]).fused[0]
    assert hits[0]["id"] == pair_ids[0] and hits[0]["modality"] == "pair" and hits[0]["text"] == "make it blue"
    green = next(h for h in hits if h["source"] == str(photos / "green.png"))
    assert green["score"] == pytest.approx(float(encoder.embed_images([photos / "green.png"])[0] @ fused), abs=1e-4)
    pairs = mmrag_cmd("search", "make it blue", "--image", "photos/red.png", "--db", str(tmp_path / "db"),
                      "--modality", "pair", cwd=root)  # fmt: skip  # aligned by hand
    assert pairs.returncode == 0, pairs.stderr
    rows = pairs.stdout.splitlines()[2:]
    assert len(rows) == 2 and all(row.split()[2] == "pair" for row in rows) and "[red.png]" in rows[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("search", "x", "--db", "missing"), "no database at 'missing'"),
        (("search", "--db", "db"), "give a text query, --image PATH_OR_URL or both"),
        (("search", "--image", "nope.png", "--db", "db"), "file not found"),
        (("index", "not-a-folder", "--db", "db"), "not a folder: 'not-a-folder'"),
        (("index", "photos", "--db", "db", "--model", "./no-such-model"), "does not exist"),
    ],
)
def test_user_errors_are_one_line(indexed, args, message) -> None:
    root, _ = indexed
    result = mmrag_cmd(*args, cwd=root)
    assert result.returncode == 2
    assert result.stderr.startswith("mmrag: error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_models_lists_presets(tmp_path) -> None:
    result = mmrag_cmd("models", cwd=tmp_path)
    assert result.returncode == 0
    assert "clip-vit-b-32" in result.stdout and "default: siglip2-base-224" in result.stdout
    presets = json.loads(mmrag_cmd("models", "--json", cwd=tmp_path).stdout)
    assert {"alias", "hub_id", "family", "dim", "languages", "license", "notes"} <= set(presets[0])


def test_loading_options_reach_the_encoder(indexed) -> None:
    root, _ = indexed
    found = mmrag_cmd(
        "search", "a note about red things", "--db", "db", "--k", "1", "--json",
        "--device", "cpu", "--dtype", "fp32", "--batch-size", "2", "--local-files-only", cwd=root,
    )  # fmt: skip  # aligned by hand
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["text"] == "a note about red things"
    wrong_device = mmrag_cmd("search", "x", "--db", "db", "--device", "gpu", cwd=root)
    assert wrong_device.returncode == 2 and "mmrag: error: unknown device 'gpu'" in wrong_device.stderr
    zero = mmrag_cmd("index", "photos", "--db", "db", "--batch-size", "0", cwd=root)
    assert zero.returncode == 2 and "argument --batch-size: must be at least 1, got 0" in zero.stderr


def test_index_skips_links_that_leave_the_folder_unless_asked(tmp_path: Path) -> None:
    folder, outside = tmp_path / "photos", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("a secret caption", encoding="utf-8")
    (folder / "note.txt").write_text("a red circle", encoding="utf-8")
    (folder / "secret.txt").symlink_to(outside / "secret.txt")
    db = tmp_path / "db"
    first = mmrag_cmd("index", str(folder), "--db", str(db), "--model", "demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "skipped link:" in first.stdout and "secret.txt" in first.stdout
    assert "1 texts" in first.stdout
    second = mmrag_cmd("index", str(folder), "--db", str(db), "--model", "demo", "--follow-links", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "2 texts" in second.stdout


def test_an_unchanged_reindex_never_loads_the_model(tmp_path, tiny_model_dirs, monkeypatch, capsys) -> None:
    from transformers import AutoModel

    from mmrag.cli import main

    loads: list[str] = []
    real = AutoModel.from_pretrained
    monkeypatch.setattr(
        AutoModel, "from_pretrained", lambda source, *a, **k: loads.append(source) or real(source, *a, **k)
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, colour in {"red": (230, 20, 20), "blue": (20, 40, 230)}.items():
        Image.fromarray(np.full((40, 40, 3), colour, np.uint8)).save(photos / f"{name}.png")
    (photos / "note.txt").write_text("a note about red things", encoding="utf-8")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    truncated = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(truncated, "JPEG")
    (photos / "cut.jpg").write_bytes(truncated.getvalue()[:1000])  # a fine header: fails only when decoded
    db = str(tmp_path / "db")

    assert main(["index", str(photos), "--db", db, "--model", str(tiny_model_dirs["clip"]), "--device", "cpu"]) == 1
    first = capsys.readouterr().out
    assert "added 3, updated 0, skipped 0, removed 0, failed 2" in first and "cut.jpg: cannot decode" in first
    assert len(loads) == 1
    assert main(["index", str(photos), "--db", db, "--device", "cpu"]) == 1  # unchanged (the broken files fail again)
    assert "added 0, updated 0, skipped 3, removed 0, failed 2" in capsys.readouterr().out
    assert len(loads) == 1  # nothing decodes: the model was never loaded
    Image.fromarray(np.full((40, 40, 3), (20, 200, 40), np.uint8)).save(photos / "green.png")
    assert main(["index", str(photos), "--db", db, "--device", "cpu"]) == 1
    assert "added 1, updated 0, skipped 3, removed 0, failed 2" in capsys.readouterr().out
    assert len(loads) == 2  # a new file: loaded once, for it
