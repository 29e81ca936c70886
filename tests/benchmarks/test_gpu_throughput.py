"""``benchmarks/gpu_throughput.py --smoke`` runs end to end on the CPU and reports every figure it promises."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_smoke_run_reports_rates_ratios_and_bars(run_script) -> None:
    stdout, result = run_script("gpu_throughput.py", "--smoke", "--device", "cpu")
    assert "SMOKE" in stdout and "default/model" in stdout  # the table was printed
    assert result["smoke"] is True and result["device"] == "cpu"
    assert [row["model"] for row in result["results"]] == ["tiny-clip", "tiny-siglip"]
    for row in result["results"]:
        for key in ("model_only", "default", "fast_decode", "per_item", "text_p50_ms"):
            assert row[key] > 0, key
        assert row["x_model_only_default"] == pytest.approx(row["default"] / row["model_only"], rel=0.01)
        assert row["gpu_decode_skipped"] == "the model runs on cpu, not CUDA"  # no error, a reason
        assert isinstance(row["meets_x_per_item"], bool) and isinstance(row["meets_text_p50"], bool)
    assert result["targets"]["x_model_only"] == {"clip-b-16": 0.6, "clip-l-14": 0.9, "siglip2-b-16-512": 0.9}
