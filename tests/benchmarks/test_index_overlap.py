"""``benchmarks/index_overlap.py`` runs end to end and compares index_folder with embed_images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_run_reports_both_rates(tmp_path: Path) -> None:
    out = tmp_path / "overlap.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable, "index_overlap.py", "--n-images", "12", "--batch-size", "4", "--device-ms-per-image", "1",
        "--repeat", "1", "--json-out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT / "benchmarks", env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x embed_images" in done.stdout
    result = json.loads(out.read_text())
    assert [row["mode"] for row in result["results"]] == ["embed_images", "index_folder"]
    assert all(row["items_per_s"] > 0 for row in result["results"])
