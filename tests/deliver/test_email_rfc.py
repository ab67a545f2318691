"""Alert and digest emails stay within the mail RFCs whatever the feeds put in them.

Each message is serialised with ``as_bytes()`` (what smtplib sends) and checked line by line:
lines of at most 78 characters (RFC 5322 2.1.1), encoded-words of at most 75 (RFC 2047 2),
quoted-printable and base64 lines of at most 76 (RFC 2045 6.7, 6.8), headers folded only at
whitespace.  Read back with ``policy.default``, the subject is the one ``email_subject``
made and the two bodies are exactly what the pipeline before 78-column folding delivered.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.deliver.render.digest import Digest
from monitor.deliver.render.email_mime import (
    BODY_LINE_CHARS,
    ENCODED_WORD_CHARS,
    LINE_CHARS,
    body_transfer_encoding,
    digest_context,
    digest_email,
    digest_html,
    email_html,
    email_message,
    email_subject,
    email_text,
    fold_text,
)
from monitor.deliver.templates import shipped
from monitor.model import Item, Match, Severity, TermHit

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
SENDER = "Monitor <alerts@example.org>"
RECIPIENTS = ("analyst@example.org", "Desk <desk@example.org>")
ENCODED_WORD = re.compile(rb"=\?[^?]+\?[QBqb]\?[^?]*\?=")
HARD_LIMIT = 998
LEGACY_POLICY = policy.default.clone(max_line_length=998)
"""The policy the module used before: only the bodies' decoded form is compared with it."""

RUSSIAN_TITLE = (
    "Казахстан объявил тендер на разработку вольфрамового месторождения Верхнее Кайракты, "
    "заявки принимаются до конца марта, сообщает министерство промышленности и строительства"
)
CHINESE_TITLE = (
    "哈萨克斯坦宣布上凯拉克特钨矿开发招标，投标截止日期为三月底，工业和建设部表示，"
    "多家中国企业已表达参与意向，专家认为该项目将改变全球钨市场格局"
)
ENGLISH_TITLE = (
    "Kazakhstan opens the tender for the Upper Kairakty tungsten deposit, with bids due at the "
    "end of March, the ministry of industry and construction said on Monday in Astana"
)
LONG_LINK = "https://news.example.com/2026/03/01/" + "kazakhstan-tungsten-tender-" * 8 + "x?id=42"
TERMS = {"ru": "вольфрам", "zh": "钨", "en": "tungsten"}
SENTENCES = {
    "ru": "Министерство сообщило, что вольфрам и вольфрамовый концентрат пойдут на экспорт. ",
    "zh": "该部表示，钨精矿将用于出口，钨价格可能上涨，钨储量巨大。",
    "en": "The ministry said tungsten and tungsten concentrate would be exported soon. ",
}
TITLES = {"ru": RUSSIAN_TITLE, "zh": CHINESE_TITLE, "en": ENGLISH_TITLE}


def every_hit(text: str, term: str, field: str) -> tuple[TermHit, ...]:
    return tuple(
        TermHit(term, field, m.start(), m.end(), m.group())
        for m in re.finditer(re.escape(term), text)
    )


def news_match(lang: str, *, item: str = "wire:1", link: str = LONG_LINK) -> Match:
    """A match with a long title and summary in ``lang``, hits wherever the term appears."""
    title, summary, term = TITLES[lang], SENTENCES[lang] * 12, TERMS[lang]
    return Match(
        rule_id="kz-tungsten",
        rule_title=f"Kazakhstan tungsten · {TITLES[lang][:40]}",
        severity=Severity.HIGH,
        rule_version="rv-2026-03-01",
        item=Item(
            id=item,
            source="interfax-kz",
            title=title,
            summary=summary,
            link=link,
            published=datetime(2026, 3, 1, 6, 0, tzinfo=UTC),
        ),
        hits=every_hit(title, term, "title") + every_hit(summary, term, "summary"),
    )


def news_digest(*langs: str) -> Digest:
    matches = [news_match(lang, item=f"wire:{n}") for n, lang in enumerate(langs)]
    groups = (("Kazakhstan tungsten", tuple(matches[::2])), ("Вольфрам 钨", tuple(matches[1::2])))
    return Digest("email", NOW, "Asia/Almaty", groups)


def alert_email(match: Match) -> EmailMessage:
    return email_message(match, sender=SENDER, recipients=RECIPIENTS, now=NOW, thread="story:s1")


def read_back(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects
    return parsed


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The decoded plain text and HTML of a multipart/alternative message."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


def legacy_bodies(text: str, html: str) -> tuple[str, str]:
    """What a reader decoded from the same two parts before this change (998-column QP)."""
    message = EmailMessage(policy=LEGACY_POLICY)
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return bodies(read_back(message.as_bytes()))


def header_blocks(raw: bytes) -> list[list[bytes]]:
    """The header lines of the message and of each of its parts."""
    blocks: list[list[bytes]] = []
    block: list[bytes] = []
    in_headers = True
    boundary = re.search(rb'boundary="([^"]+)"', raw)
    for line in raw.split(b"\n"):
        if in_headers and line == b"":
            blocks.append(block)
            block, in_headers = [], False
        elif in_headers:
            block.append(line)
        elif boundary and line.startswith(b"--" + boundary.group(1)):
            in_headers = not line.endswith(b"--")
    return blocks


def assert_folded_correctly(raw: bytes) -> None:
    """Each field starts "Name:", continuation lines start with a space and hold text, and
    no header line ends in a space (a fold left behind) unless its field is empty."""
    for block in header_blocks(raw):
        assert block
        assert re.match(rb"[!-9;-~]+:", block[0])
        for line in block:
            assert re.match(rb"[!-9;-~]+: |[ \t]\S", line), line
            empty_field = re.fullmatch(rb"[!-9;-~]+: ", line)
            assert empty_field or not line.endswith((b" ", b"\t")), line


def assert_within_rfcs(message: EmailMessage) -> bytes:
    """Every line at most 78 (body lines 76), every encoded-word at most 75, ASCII only."""
    raw = message.as_bytes()
    assert raw.isascii()
    lines = raw.split(b"\n")
    assert max(len(line) for line in lines) <= LINE_CHARS, max(lines, key=len)
    for word in ENCODED_WORD.findall(raw):
        assert len(word) <= ENCODED_WORD_CHARS, word
    assert_folded_correctly(raw)
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
        payload = part.get_payload()
        assert isinstance(payload, str)
        assert all(len(line) <= BODY_LINE_CHARS for line in payload.splitlines())
    return raw


def assert_reads_back(message: EmailMessage, subject: str, text: str, html: str) -> None:
    parsed = read_back(message.as_bytes())
    assert parsed["Subject"] == subject
    assert bodies(parsed) == legacy_bodies(text, html)


# --- alerts and digests in three scripts ------------------------------------------------------


@pytest.mark.parametrize("lang", ["ru", "zh", "en"])
def test_a_long_alert_stays_within_the_rfcs_and_reads_back_the_same(lang: str) -> None:
    match = news_match(lang)
    message = alert_email(match)
    assert_within_rfcs(message)
    assert_reads_back(message, email_subject(match), email_text(match), email_html(match))


@pytest.mark.parametrize("langs", [("ru", "zh", "en") * 4, ("zh",) * 9, ("en", "ru")])
def test_a_digest_of_long_alerts_stays_within_the_rfcs_and_reads_back_the_same(
    langs: tuple[str, ...],
) -> None:
    digest = news_digest(*langs)
    message = digest_email(digest, sender=SENDER, recipients=RECIPIENTS, now=NOW)
    assert_within_rfcs(message)
    text = shipped().render("email_digest.txt.j2", digest=digest_context(digest))
    subject = f"[digest] {len(langs)} alerts · 2026-03-02 08:00 Asia/Almaty"
    assert_reads_back(message, subject, text, digest_html(digest))


def test_a_long_russian_subject_is_several_encoded_words_and_keeps_its_spaces() -> None:
    match = news_match("ru")
    raw = assert_within_rfcs(alert_email(match))
    subject = raw.split(b"\nFrom:")[0].decode()
    assert len(ENCODED_WORD.findall(raw.split(b"\nFrom:")[0])) > 3
    assert subject.startswith("Subject: [HIGH] Kazakhstan tungsten =?utf-8?")  # ASCII stays
    assert read_back(raw)["Subject"] == email_subject(match)
    assert "Казахстан объявил тендер" in email_subject(match)


@pytest.mark.parametrize(
    ("lang", "encoding"), [("en", "quoted-printable"), ("ru", "base64"), ("zh", "base64")]
)
def test_each_body_part_takes_the_shorter_transfer_encoding(lang: str, encoding: str) -> None:
    match = news_match(lang)
    assert body_transfer_encoding(email_text(match)) == encoding
    plain = alert_email(match).get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain["Content-Transfer-Encoding"] == encoding


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Troops mass at the border\n", "quoted-printable"),
        ("<p>Tungsten · Kazakhstan — Upper Kairakty</p>\n", "quoted-printable"),
        ("Вольфрам\n", "base64"),
        ("钨矿招标\n", "base64"),
        ("", "quoted-printable"),
    ],
)
def test_body_transfer_encoding_keeps_mostly_ascii_readable(text: str, encoding: str) -> None:
    assert body_transfer_encoding(text) == encoding


# --- header folding ---------------------------------------------------------------------------


def folded(name: str, text: str) -> bytes:
    return f"{name}: {fold_text(name, text)}\n".encode()


def unfold(name: str, header: bytes) -> str:
    parsed = read_back(header + b"\nbody\n")
    return str(parsed[name])


@pytest.mark.parametrize(
    "text",
    [
        "[HIGH] Kazakhstan tungsten: " + RUSSIAN_TITLE,
        "[HIGH] 钨: " + CHINESE_TITLE,
        "[HIGH] Kazakhstan tungsten: " + ENGLISH_TITLE,
        "looks encoded =?utf-8?q?hi?= but is not",
        "a link " + LONG_LINK + " in a title",
        LONG_LINK,
        "🚨 " * 40 + "end",
        "é" * 300,
    ],
)
def test_fold_text_keeps_every_line_and_encoded_word_short_and_the_text_exact(text: str) -> None:
    header = folded("Subject", text)
    assert all(len(line) <= LINE_CHARS for line in header.split(b"\n"))
    assert all(len(w) <= ENCODED_WORD_CHARS for w in ENCODED_WORD.findall(header))
    assert unfold("Subject", header) == text


def test_plain_english_is_folded_at_spaces_without_encoding() -> None:
    header = folded("Subject", "[HIGH] Kazakhstan tungsten: " + ENGLISH_TITLE)
    assert b"=?" not in header
    assert header.count(b"\n ") == 2


def test_text_that_looks_like_an_encoded_word_is_encoded_so_it_reads_as_written() -> None:
    header = folded("Subject", "=?utf-8?q?Wire_transfer_approved?=")
    assert unfold("Subject", header) == "=?utf-8?q?Wire_transfer_approved?="


@pytest.mark.parametrize("text", ["  two leading", "trailing ", "double  space", " "])
def test_irregular_spaces_survive_inside_encoded_words(text: str) -> None:
    header = folded("X-Monitor-Rule", text)
    assert unfold("X-Monitor-Rule", header) == text


def test_non_ascii_display_names_are_encoded_within_the_limits() -> None:
    recipients = ["Отдел анализа <desk@example.org>", '"Smith, J." <js@example.org>']
    sender = "Мониторинг 钨 <alerts@example.org>"
    message = email_message(news_match("en"), sender=sender, recipients=recipients, now=NOW)
    parsed = read_back(assert_within_rfcs(message))
    assert str(parsed["From"]) == sender
    assert [a.display_name for a in parsed["To"].addresses] == ["Отдел анализа", "Smith, J."]


def test_a_display_name_too_long_for_one_encoded_word_decodes_as_rfc_2047_says() -> None:
    """Split in two encoded-words, the name reads right by RFC 2047 6.2 (the space between
    them is dropped); Python 3.11's address parser alone would show an extra space."""
    name = "Мониторинг новостей о вольфрамовых месторождениях"
    message = email_message(
        news_match("en"), sender=f"{name} <alerts@example.org>", recipients=["a@x.org"], now=NOW
    )
    raw = assert_within_rfcs(message)
    from_field = re.search(rb"\nFrom: (.*?)\n(?! )", raw, re.DOTALL)
    assert from_field is not None
    value = from_field.group(1).decode().replace("\n", "")
    assert str(make_header(decode_header(value))) == f"{name} <alerts@example.org>"


# --- what cannot be folded ----------------------------------------------------------------------


def test_only_an_unbreakable_configured_address_makes_a_line_longer_than_78() -> None:
    """Folding happens only at whitespace, and an addr-spec has none (RFC 5322 3.4.1), so a
    long address from the configuration is the one line that can exceed 78; RFC 5321 caps an
    address at 254 characters, far inside the hard limit of 998."""
    address = "x" * (254 - len("@example.org")) + "@example.org"
    message = email_message(
        news_match("ru"), sender=SENDER, recipients=["a@example.org", address], now=NOW
    )
    raw = message.as_bytes()
    long_lines = [line for line in raw.split(b"\n") if len(line) > LINE_CHARS]
    assert long_lines == [b" " + address.encode()]
    assert all(len(line) <= HARD_LIMIT for line in raw.split(b"\n"))
    assert str(read_back(raw)["To"]) == f"a@example.org, {address}"


def test_a_sender_domain_longer_than_dns_allows_is_not_put_in_the_message_id() -> None:
    sender = "alerts@" + "d" * 300 + ".example"
    message = email_message(news_match("en"), sender=sender, recipients=["a@x.org"], now=NOW)
    assert str(message["Message-ID"]).endswith("@monitor.local>")


# --- any text at all ----------------------------------------------------------------------------

ascii_word = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=90)
word = (
    ascii_word
    | st.text(alphabet="вольфрамКазахстан钨矿招标é🚨", min_size=1, max_size=30)
    | st.sampled_from(["=?utf-8?q?x?=", "?=", "=?", "_", "\u00a0", "\u3000", LONG_LINK])
)
mixed_text = st.lists(word, max_size=40).map(" ".join)
"""Titles made of words (long ASCII ones, encoded-word look-alikes, other scripts), the
cases that decide between plain and encoded text and where a line folds."""
any_text = st.text(max_size=400) | mixed_text


@settings(deadline=None, max_examples=150)
@given(title=any_text, summary=any_text, rule_title=st.text(max_size=80), rule_id=any_text)
def test_any_alert_stays_within_the_rfcs_and_reads_back_the_same(
    title: str, summary: str, rule_title: str, rule_id: str
) -> None:
    start = len(summary) // 2
    summary = summary[:start] + " tungsten " + summary[start:]
    base = news_match("en")
    item = dataclasses.replace(base.item, title=title, summary=summary)
    hits = (TermHit("tungsten", "summary", start + 1, start + 9, "tungsten"),)
    match = dataclasses.replace(
        base, item=item, hits=hits, rule_title=rule_title, rule_id=rule_id or "r"
    )
    message = alert_email(match)
    assert_within_rfcs(message)
    assert_reads_back(message, email_subject(match), email_text(match), email_html(match))
    assert read_back(message.as_bytes())["X-Monitor-Rule"] == str(message["X-Monitor-Rule"])


@settings(deadline=None, max_examples=50)
@given(titles=st.lists(any_text, min_size=1, max_size=6), topic=st.text(max_size=60))
def test_any_digest_stays_within_the_rfcs_and_reads_back_the_same(
    titles: list[str], topic: str
) -> None:
    base = news_match("zh")
    matches = tuple(
        dataclasses.replace(base, item=dataclasses.replace(base.item, id=f"w:{n}", title=t))
        for n, t in enumerate(titles)
    )
    digest = Digest("email", NOW, "UTC", ((topic, matches),))
    message = digest_email(digest, sender=SENDER, recipients=RECIPIENTS, now=NOW)
    assert_within_rfcs(message)
    text = shipped().render("email_digest.txt.j2", digest=digest_context(digest))
    subject = f"[digest] {len(titles)} alerts · 2026-03-02 03:00 UTC"
    assert_reads_back(message, subject, text, digest_html(digest))
