"""The fast HTML-to-text path must give BeautifulSoup's result on every input it accepts."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monitor.ingest.markup import SIMPLE_TAGS, html_to_text, simple_html_to_text, soup_to_text

TAG_NAMES = [*sorted(SIMPLE_TAGS), "P", "Br", "script", "style", "title", "blink", "svg"]

TEXT_PIECES = [*"ab Z\n\r\f\t;#x&>", "&amp;", "&lt;", "&gt;", "&#1178;", "&nbsp;", "&copy", "&#x"]
TEXT_PIECES += ["钨", "稀土", "Қ", "ё", "\u00ad", "\u200b", "\u3000"]
texts = st.lists(st.sampled_from(TEXT_PIECES), max_size=8).map("".join)
attribute_values = st.sampled_from(['"x"', "'y'", "z", '"a > b"', '"q&amp;r"', '""', "'<'"])
attributes = st.lists(
    st.tuples(st.sampled_from(["href", "class", "data-x", "title"]), attribute_values),
    max_size=2,
).map(lambda pairs: "".join(f" {name}={value}" for name, value in pairs))
start_tags = st.tuples(st.sampled_from(TAG_NAMES), attributes, st.sampled_from(["", "/", " /"]))
tokens = st.one_of(
    texts,
    start_tags.map(lambda t: f"<{t[0]}{t[1]}{t[2]}>"),
    st.sampled_from(TAG_NAMES).map(lambda name: f"</{name}>"),
    st.sampled_from(["<!-- c -->", "<", "a < b", "<![CDATA[x]]>", "<!DOCTYPE html>"]),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(tokens, max_size=14).map("".join))
@example("<p>a</p><p>b</p>")
@example("a</p>b")
@example("<p><b>x</p>y</b>")
@example("<p>a<p>b")
@example("<br/>x<hr>y<img src='a'>")
@example("<div/>x")
@example("<P>Caps</P>")
def test_fast_path_equals_beautifulsoup(markup: str) -> None:
    fast = simple_html_to_text(markup)
    if fast is not None:
        assert fast == soup_to_text(markup)


@pytest.mark.parametrize(
    "markup",
    [
        '<p>Kazakhstan opens <a href="https://x.example/a?b=1&amp;c=2">tender</a>.</p>',
        "<p>稀土 &amp; 钨</p><p><em>Reuters</em></p><br/><img src='a.png' alt=\"\">",
        '<div class="lead"><strong>Астана</strong> — вольфрам</div>',
    ],
)
def test_usual_summaries_take_the_fast_path(markup: str) -> None:
    """Typical feed summaries must not fall back to BeautifulSoup (else the path is useless)."""
    assert simple_html_to_text(markup) is not None
    assert html_to_text(markup) == soup_to_text(markup)


@pytest.mark.parametrize(
    "markup",
    [
        "<p>x</p><script>alert(1)</script>",
        "<p>x<!-- hidden --></p>",
        "<p>1 < 2</p>",
        "<custom-widget>x</custom-widget>",
        "<p>x</br></p>",
    ],
)
def test_anything_unusual_goes_to_beautifulsoup(markup: str) -> None:
    assert simple_html_to_text(markup) is None
    assert html_to_text(markup) == soup_to_text(markup)
