"""The fast HTML-to-text path must give BeautifulSoup's result on every input it accepts."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monitor.ingest.markup import (
    SIMPLE_TAGS,
    _soup_alts,
    html_to_text,
    image_alts,
    simple_html_to_text,
    soup_to_text,
)

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


# -- the last reference of the markup --------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("AT&T", "AT&T"),
        ("Shares of P&G", "Shares of P&G"),
        ("&#8220;Quoted&#8221; AT&T", "\u201cQuoted\u201d AT&T"),
        ("a &copy", "a \u00a9"),
        ("AT&T<b>x</b>AT&T", "AT&TxAT&T"),
        ("AT&T ", "AT&T "),
    ],
)
def test_a_reference_at_the_very_end_reads_as_mid_text(markup: str, text: str) -> None:
    """The standard library's parser dropped the "&" of "AT&T" at the end of a title."""
    assert html_to_text(markup) == text


# -- image alt text (``markup.image_alts``) --------------------------------------------------

ALT_VALUES = [
    '"Boguty deposit"',
    "'Қазақстан'",
    "钨矿",
    '"AT&amp;T &#8220;x&#8221;"',
    '""',
    '"a\nb"',
]
img_attributes = st.lists(
    st.tuples(
        st.sampled_from(["alt", "ALT", "src", "title", "data-alt"]), st.sampled_from(ALT_VALUES)
    ),
    max_size=3,
).map(lambda pairs: "".join(f" {name}={value}" for name, value in pairs))
alt_tokens = st.one_of(
    tokens,
    st.tuples(
        st.sampled_from(["img", "IMG", "Img", "imgx"]),
        img_attributes,
        st.sampled_from(["", "/", " /"]),
    ).map(lambda t: f"<{t[0]}{t[1]}{t[2]}>"),
    st.sampled_from(
        ["<img", "<img alt='x", "<!-- <img alt=hidden> -->", "<script><img alt=s></script>"]
    ),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(alt_tokens, max_size=10).map("".join))
@example('<p>x<img src=a alt="Workers at &amp; Boguty"></p><IMG alt=b>')
@example("<img alt=x alt=y>")
@example("<img/alt=q>")
@example('<a title="<img alt=x>">y</a>')
def test_image_alts_equal_beautifulsoups_reading(markup: str) -> None:
    """The regular-expression reading of alt texts gives what BeautifulSoup's tree gives."""
    assert image_alts(markup) == _soup_alts(markup)


@pytest.mark.parametrize(
    ("markup", "alts"),
    [
        ("<p>No image here</p>", ()),
        (
            '<img src="a.jpg" alt="Workers at the Boguty deposit">',
            ("Workers at the Boguty deposit",),
        ),
        ('<img alt="AT&amp;T  tower"><img alt="AT&amp;T tower"><img alt="">', ("AT&T tower",)),
        ("<!-- <img alt=old> --><img alt=new>", ("new",)),
    ],
)
def test_image_alts(markup: str, alts: tuple[str, ...]) -> None:
    """Alt texts in order, entities read, spaces squeezed, each once, none from comments."""
    assert image_alts(markup) == alts
