"""``mmrag demo``: the main job end to end with the bundled model, and the page it writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmrag.demo import DemoQuery, run_demo
from mmrag.demo_data import sample_shapes


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DemoQuery]]:
    root = tmp_path_factory.mktemp("demo")
    return root, run_demo(root, device="cpu", quiet=True)


def _stem(path: str | None) -> str:
    return Path(path or "").name.split(".")[0]


def test_every_search_has_an_answer_and_finds_it(demo: tuple[Path, list[DemoQuery]]) -> None:
    _root, searches = demo
    drawn = {f"shape_{i:03d}": s for i, s in enumerate(sample_shapes(24, seed=0))}
    assert [s.title for s in searches] == [
        "text -> image", "text -> image (中文)", "text -> text", "image -> image", "image -> text",
    ]  # fmt: skip  # aligned by hand
    for search in searches[:2]:  # text -> image: the top image has the colour and shape asked for
        top = drawn[_stem(search.hits[0].source)]
        assert top.caption("en", "colour_shape") in search.expected, (search.query, search.expected)
        assert int(search.expected.split()[0]) >= 1
    text_to_text = searches[2]  # the two captions of the sample the query describes come first, EN and ZH
    assert {h.text.strip() for h in text_to_text.hits[:2]} == {
        t.strip("'") for t in re.findall(r"'[^']+'", text_to_text.expected)
    }
    assert searches[3].hits[0].source == searches[3].query and searches[3].hits[0].score > 0.999
    image_to_text = searches[4]
    assert {_stem(h.source) for h in image_to_text.hits[:2]} == {_stem(image_to_text.query)}
    assert {h.modality for s in searches for h in s.hits} == {"image", "text"}
    assert all(len(s.hits) == 4 for s in searches)


def test_results_page_links_existing_images(demo: tuple[Path, list[DemoQuery]]) -> None:
    root, searches = demo
    page = (root / "results.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == sum(s.query_is_image for s in searches) + sum(
        h.modality == "image" for s in searches for h in s.hits
    )
    assert all((root / src).is_file() for src in sources)
    assert page.count("<section>") == 5
    assert searches[1].query in page and searches[1].expected in page  # the Chinese query and what to expect


@pytest.mark.slow  # a fresh interpreter indexes and searches the whole demo again, about a minute
def test_cli_demo_prints_the_searches(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mmrag", "demo", "--dir", str(tmp_path / "d"), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip  # aligned by hand
    assert result.returncode == 0, result.stderr
    assert "added 72" in result.stdout and result.stdout.count("rank  score") == 5
    assert f"result grids: {tmp_path / 'd' / 'results.html'}" in result.stdout
