"""``benchmarks/batch_boundaries.py`` runs end to end and reports both modes at every batch size."""

from __future__ import annotations


def test_a_small_run_reports_both_modes_per_batch_size(run_script) -> None:
    stdout, result = run_script(
        "batch_boundaries.py", "--n-images", "12", "--image-sizes", "80x60,60x90",
        "--batch-sizes", "4,12", "--size", "32", "--repeat", "1",
    )  # fmt: skip
    assert "x per_batch" in stdout  # the table was printed
    assert [(row["batch_size"], row["mode"]) for row in result["results"]] == [
        (4, "per_batch"), (4, "stream"), (12, "per_batch"), (12, "stream"),
    ]  # fmt: skip
    assert all(row["items_per_s"] > 0 for row in result["results"])
    assert all(row["x_per_batch"] == 1.0 for row in result["results"] if row["mode"] == "per_batch")
