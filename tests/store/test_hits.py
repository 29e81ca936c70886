"""Hits a notebook can show: thumbnails as data URIs, escaped text cards, scores, and no error for a missing file."""

from __future__ import annotations

import base64
import io
import re

from PIL import Image

from mmrag.inputs import ImageLimits
from mmrag.store import Hit
from mmrag.store.hits import HitList, hit_html, hits_html
from mmrag.testing import speckled_image


def _image_hit(source: str | None, score: float = 0.8123) -> Hit:
    return Hit(id="img-1", modality="image", source=source, text=None, metadata={"album": "holiday"}, score=score)


def _text_hit(text: str, score: float = 0.4567, source: str | None = None) -> Hit:
    return Hit(id="txt-1", modality="text", source=source or text, text=text, metadata={}, score=score)


def _data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)]


def test_an_image_hit_is_an_inline_thumbnail_with_its_score(tmp_path) -> None:
    path = tmp_path / "big photo.png"
    speckled_image((200, 40, 40), size=(600, 300)).save(path)
    page = hits_html([_image_hit(str(path))])
    (thumbnail,) = _data_uris(page)
    with Image.open(io.BytesIO(thumbnail)) as decoded:
        assert decoded.format == "JPEG" and max(decoded.size) == 128 and decoded.size == (128, 64)
    assert "0.812" in page and "image" in page and "#1" in page
    assert "big photo.png" in page and "album: holiday" in page


def test_a_text_hit_is_an_escaped_card_and_chinese_is_shown_as_is() -> None:
    page = hits_html([_text_hit("<script>alert('x')</script> & 红色的圆形")])
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; 红色的圆形" in page
    assert "0.457" in page and "text" in page
    page.encode("utf-8")  # renders as UTF-8 text, no surrogate or escaping of CJK


def test_a_missing_file_shows_a_placeholder_and_never_raises(tmp_path) -> None:
    hits = [_image_hit(str(tmp_path / "gone.jpg")), _image_hit(None), _text_hit("still here")]
    page = hits_html(hits)
    assert page.count('class="mmrag-missing"') == 2
    assert "file not found" in page and "no source stored" in page
    assert "still here" in page and "#3" in page


def test_limits_apply_to_thumbnails(tmp_path) -> None:
    path = tmp_path / "a.png"
    speckled_image((1, 2, 3)).save(path)
    page = hits_html([_image_hit(str(path))], limits=ImageLimits(allow_local_paths=False))
    assert _data_uris(page) == [] and "local file paths are disabled" in page


def test_urls_are_left_to_the_browser_unless_asked() -> None:
    page = hits_html([_image_hit('https://example.com/cat.png?a=1&b="2"')])
    assert 'src="https://example.com/cat.png?a=1&amp;b=&quot;2&quot;"' in page  # escaped, not fetched


def test_a_hit_list_is_a_list_that_renders_as_a_grid(tmp_path) -> None:
    path = tmp_path / "a.png"
    speckled_image((9, 9, 9)).save(path)
    hits = HitList([_image_hit(str(path), 0.9), _text_hit("a red circle", 0.5)])
    assert hits == [hits[0], hits[1]] and isinstance(hits, list)
    page = hits._repr_html_()
    assert page.startswith('<div class="mmrag-hits"') and page.count('class="mmrag-hit"') == 2
    assert isinstance(hits[:1], HitList) and hits[:1]._repr_html_().count('class="mmrag-hit"') == 1
    assert "#1" in hit_html(hits[1]) and "a red circle" in hit_html(hits[1])
    assert "no hits" in HitList()._repr_html_()
