"""``benchmarks/index_overlap.py`` runs end to end and compares index_folder with embed_images."""

from __future__ import annotations


def test_a_small_run_reports_both_rates(run_script) -> None:
    stdout, result = run_script(
        "index_overlap.py", "--n-images", "12", "--batch-size", "4", "--device-ms-per-image", "1", "--repeat", "1"
    )
    assert "x embed_images" in stdout
    assert [row["mode"] for row in result["results"]] == ["embed_images", "index_folder"]
    assert all(row["items_per_s"] > 0 for row in result["results"])
