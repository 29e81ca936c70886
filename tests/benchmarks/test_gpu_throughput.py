"""``benchmarks/gpu_throughput.py --smoke`` runs end to end on the CPU and reports every figure it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_run_reports_rates_ratios_and_bars(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "gpu_throughput.py", "--smoke", "--device", "cpu", "--json-out", str(out)],
        cwd=ROOT / "benchmarks", env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SMOKE" in done.stdout and "default/model" in done.stdout  # the table was printed
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["device"] == "cpu"
    assert [row["model"] for row in result["results"]] == ["tiny-clip", "tiny-siglip"]
    for row in result["results"]:
        for key in ("model_only", "default", "fast_decode", "per_item", "text_p50_ms"):
            assert row[key] > 0, key
        assert row["x_model_only_default"] == pytest.approx(row["default"] / row["model_only"], rel=0.01)
        assert row["gpu_decode_skipped"] == "the model runs on cpu, not CUDA"  # no error, a reason
        assert isinstance(row["meets_x_per_item"], bool) and isinstance(row["meets_text_p50"], bool)
    assert result["targets"]["x_model_only"] == {"clip-b-16": 0.6, "clip-l-14": 0.9, "siglip2-b-16-512": 0.9}
