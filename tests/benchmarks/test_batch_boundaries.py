"""``benchmarks/batch_boundaries.py`` runs end to end and reports both modes at every batch size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_run_reports_both_modes_per_batch_size(tmp_path: Path) -> None:
    out = tmp_path / "boundaries.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable, "batch_boundaries.py", "--n-images", "12", "--image-sizes", "80x60,60x90",
        "--batch-sizes", "4,12", "--size", "32", "--repeat", "1", "--json-out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT / "benchmarks", env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x per_batch" in done.stdout  # the table was printed
    result = json.loads(out.read_text())
    assert [(row["batch_size"], row["mode"]) for row in result["results"]] == [
        (4, "per_batch"), (4, "stream"), (12, "per_batch"), (12, "stream"),
    ]  # fmt: skip
    assert all(row["items_per_s"] > 0 for row in result["results"])
    assert all(row["x_per_batch"] == 1.0 for row in result["results"] if row["mode"] == "per_batch")
