"""``benchmarks/throughput.py`` (the issue's headline benchmark) runs end to end and compares with its anchors."""

from __future__ import annotations


def test_a_small_run_reports_every_mode_against_the_anchors(run_script) -> None:
    modes = "per_item,naive_batched,mmrag_default,fast_decode"
    stdout, result = run_script(
        "throughput.py", "--n-images", "12", "--repeat", "1", "--image-sizes", "120x90,90x140", "--modes", modes
    )
    assert "x naive" in stdout and "PIL inputs: parent-side cost per image" in stdout
    rows = {row["mode"]: row for row in result["results"]}
    assert list(rows) == modes.split(",")
    assert rows["naive_batched"]["x_naive_batched"] == 1.0 and all(row["items_per_s"] > 0 for row in rows.values())
    assert rows["mmrag_default"]["min_cos_vs_per_item"] >= 0.9999  # exact mode: the anchor's vectors
    assert result["environment"]["cpus"] >= 1 and "loadavg_start" in result["environment"]
