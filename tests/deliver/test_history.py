"""The sent-alert log (``deliver.history``): what one entry holds, the Inbox's filters, time
ranges, the search's matching (pure, with hypothesis), and the log itself on a private Redis,
written by the real delivery worker sending to a local Slack and SMTP server."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from hypothesis import given
from hypothesis import strategies as st
from support.channel_fixtures import enqueue, make_match
from support.servers import SlackServer, SmtpServer

from monitor.deliver.channels import EmailChannel, SlackChannel
from monitor.deliver.history import (
    InboxFilter,
    ItemHistory,
    SentAlert,
    SentLog,
    TimeRange,
    Triage,
    entry_time,
    is_entry_id,
    parse_moment,
    query_terms,
    search_query,
    sent_fields,
    time_range,
)
from monitor.deliver.policy import DigestSchedule, Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.worker import DeliveryPolicy, DeliveryWorker
from monitor.model import Item, Severity
from monitor.redisio import Keys
from monitor.rules.expr import Term
from monitor.rules.match import ItemText, node_hits
from monitor.rules.terms import TermSyntaxError

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PREFIX = "h"
KEYS = Keys(PREFIX)


def alert(entry_id: str = "1-0", **changes: Any) -> SentAlert:
    """A log entry as the log reads it back, from a match as the rules make it."""
    fields = sent_fields(make_match(), "slack", NOW, "alert")
    head = json.loads(fields["head"])
    head.update({k: v for k, v in changes.items() if k != "match"})
    fields = {"head": json.dumps(head), "match": changes.get("match", fields["match"])}
    read = SentAlert.from_fields(entry_id, fields)
    assert read is not None
    return read


def item(title: str, summary: str = "", **changes: Any) -> Item:
    return Item(
        "i1", changes.pop("source", "wire"), title, summary, "https://x.example/1", NOW, **changes
    )


# -- one entry ----------------------------------------------------------------------------------


def test_an_entry_holds_the_match_as_sent_and_flat_copies_of_what_the_inbox_filters_on() -> None:
    match = dataclasses.replace(make_match(tags=("minerals", "kz")), story="s1")
    fields = sent_fields(match, "email", NOW, "digest")
    read = SentAlert.from_fields("5-1", fields)
    assert read is not None
    assert (read.rule, read.severity, read.channel, read.via) == (
        "kz-tungsten",
        Severity.HIGH,
        "email",
        "digest",
    )
    assert (read.key, read.story, read.tags, read.sent) == (
        match.key,
        "s1",
        ("minerals", "kz"),
        NOW,
    )
    assert read.match() == match


def test_an_entry_masks_a_token_in_the_items_link() -> None:
    match = make_match()
    secret = dataclasses.replace(match.item, link="https://u:hunter2@feed.example/a?token=s3cr3t")
    fields = sent_fields(dataclasses.replace(match, item=secret), "slack", NOW, "alert")
    assert "hunter2" not in json.dumps(fields)
    assert "s3cr3t" not in json.dumps(fields)
    assert "feed.example" in fields["match"]


@pytest.mark.parametrize("missing", ["key", "rule", "sent"])
def test_an_entry_without_its_fields_is_not_read_as_an_alert(missing: str) -> None:
    fields = sent_fields(make_match(), "slack", NOW, "alert")
    head = json.loads(fields["head"])
    del head[missing]
    assert SentAlert.from_fields("1-0", {**fields, "head": json.dumps(head)}) is None
    assert SentAlert.from_fields("1-0", {"head": fields["head"]}) is None
    assert SentAlert.from_fields("1-0", {**fields, "head": "[1, 2]"}) is None
    assert SentAlert.from_fields("1-0", {**fields, "head": "{no"}) is None


def test_an_entry_whose_match_is_not_json_has_no_match() -> None:
    assert alert(match="{not json").match() is None


@pytest.mark.parametrize(
    ("text", "valid"),
    [("1700000000000-0", True), ("1-12", True), ("1-", False), ("abc", False), ("(1-0", False)],
)
def test_only_stream_ids_are_cursors(text: str, valid: bool) -> None:
    assert is_entry_id(text) is valid


# -- time ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("", False, None),
        ("24h", False, NOW - timedelta(hours=24)),
        ("7d", False, NOW - timedelta(days=7)),
        ("30m", False, NOW - timedelta(minutes=30)),
        ("2w", True, NOW - timedelta(weeks=2)),
        ("2026-03-01", False, datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01", True, datetime(2026, 3, 1, 23, 59, 59, 999000, tzinfo=UTC)),
        ("2026-03-01T06:30", False, datetime(2026, 3, 1, 6, 30, tzinfo=UTC)),
        ("2026-03-01 06:30", False, datetime(2026, 3, 1, 6, 30, tzinfo=UTC)),
        ("2026-03-01T06:30+05:00", False, datetime(2026, 3, 1, 1, 30, tzinfo=UTC)),
    ],
)
def test_a_time_is_a_span_back_from_now_a_date_or_a_date_and_time(
    text: str, end: bool, expected: datetime | None
) -> None:
    assert parse_moment(text, NOW, end=end) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "2026-13-01", "5y", "-3h"])
def test_an_unreadable_time_says_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="write 24h, 7d"):
        parse_moment(text, NOW)


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        time_range("2026-03-02", "2026-03-01", NOW)
    assert time_range("2026-03-01", "2026-03-01", NOW).holds(
        datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    )


def _id_ms(bound: str) -> float:
    if bound in ("-", "+"):
        return float("-inf") if bound == "-" else float("inf")
    return int(bound.lstrip("(").partition("-")[0])


moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda m: m.replace(microsecond=m.microsecond // 1000 * 1000))


@given(moments, st.none() | moments, st.none() | moments)
def test_a_range_holds_exactly_the_entries_its_stream_bounds_read(
    moment: datetime, since: datetime | None, until: datetime | None
) -> None:
    span = TimeRange(since, until)
    low, high = span.bounds()
    ms = int(moment.timestamp() * 1000)
    assert span.holds(moment) == (_id_ms(low) <= ms <= _id_ms(high))
    assert entry_time(f"{ms}-3") == moment


def test_a_page_cursor_reads_only_older_entries_and_never_past_the_range() -> None:
    span = TimeRange(until=datetime(2026, 3, 1, tzinfo=UTC))
    assert span.bounds("1000-0") == ("-", "(1000-0")
    late = f"{int(NOW.timestamp() * 1000)}-0"  # a cursor after the range's end
    assert span.bounds(late)[1].startswith(str(int(span.until.timestamp() * 1000)))  # type: ignore[union-attr]


# -- the Inbox's filters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "shown"),
    [
        ({}, True),
        ({"rule": "KZ-Tungsten"}, True),
        ({"rule": "kz-other"}, False),
        ({"tag": "Minerals"}, True),
        ({"tag": "mineral"}, False),
        ({"severity": "high"}, True),
        ({"severity": "medium"}, True),
        ({"severity": "critical"}, False),
        ({"channel": "slack"}, True),
        ({"channel": "email"}, False),
        ({"source": "WIRE"}, True),
        ({"source": "portal"}, False),
        ({"lang": "ru"}, False),
        ({"rule": "kz-tungsten", "channel": "slack", "severity": "low"}, True),
        ({"rule": "kz-tungsten", "channel": "email"}, False),
    ],
)
def test_each_filter_narrows_the_inbox(form: dict[str, str], shown: bool) -> None:
    assert InboxFilter.parse(form).accepts(alert()) is shown


def test_an_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown severity"):
        InboxFilter.parse({"severity": "urgent"})


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFG-", min_size=1, max_size=12)


@given(words, words, words, st.sampled_from(list(Severity)))
def test_a_filter_naming_an_alerts_own_values_always_shows_it(
    rule: str, channel: str, source: str, severity: Severity
) -> None:
    read = alert(rule=rule, channel=channel, source=source, severity=severity.label)
    assert InboxFilter().accepts(read)
    assert InboxFilter(rule=rule.upper(), channel=channel, source=source.lower()).accepts(read)
    assert InboxFilter(severity=severity).accepts(read)
    above = [s for s in Severity if s > severity]
    assert all(not InboxFilter(severity=s).accepts(read) for s in above)


# -- search -------------------------------------------------------------------------------------


def test_a_query_is_words_and_quoted_phrases() -> None:
    assert query_terms('tungsten "Upper Kairakty"  auction*') == [
        "tungsten",
        "Upper Kairakty",
        "auction*",
    ]
    assert query_terms('"unclosed phrase') == ["unclosed phrase"]
    assert query_terms('  "" ') == []


@pytest.mark.parametrize(
    ("query", "title", "summary", "found"),
    [
        ("哈萨克斯坦", "哈薩克斯坦鎢礦拍賣", "", True),  # Simplified finds Traditional
        ("哈薩克斯坦", "哈萨克斯坦钨矿拍卖", "", True),  # and the other way round
        ("钨", "", "上凯拉克特鎢礦", True),
        ("kazakh*", "Kazakhstan auctions tungsten", "", True),
        ("kazakh", "Kazakhstan auctions tungsten", "", False),  # whole words, as rules
        ("TUNGSTEN", "tungsten deposit", "", True),
        ("sao paulo", "São Paulo mining fair", "", True),
        ("Şymkent", "Shymkent and SYMKENT", "", True),
        ('"upper kairakty"', "", "bids for the Upper Kairakty deposit", True),
        ('"kairakty upper"', "", "bids for the Upper Kairakty deposit", False),
        ("tungsten auction", "Tungsten news", "The auction is in March.", True),
        ("tungsten auction", "Tungsten news", "Nothing else.", False),
        ("wall", "W", "", False),
    ],
)
def test_search_finds_what_a_rule_term_would(
    query: str, title: str, summary: str, found: bool
) -> None:
    assert (search_query(query).hits(item(title, summary)) is not None) is found


def test_search_hits_point_into_the_original_text_for_marking() -> None:
    target = item("Updates: 哈薩克斯坦 tender", "The KAZAKHSTAN ministry said so.")
    hits = search_query("哈萨克斯坦 kazakhstan").hits(target)
    assert hits is not None
    for hit in hits:
        assert getattr(target, hit.field)[hit.start : hit.end] == hit.text
    assert {(h.field, h.text) for h in hits} == {
        ("title", "哈薩克斯坦"),
        ("summary", "KAZAKHSTAN"),
    }


def test_search_filters_by_source_and_language() -> None:
    ru = item("Вольфрам", source="portal", lang="ru")
    assert search_query("вольфрам", source="Portal", lang="RU").hits(ru) is not None
    assert search_query("вольфрам", source="wire").hits(ru) is None
    assert search_query("", lang="en").hits(ru) is None
    assert search_query("").hits(ru) == ()


@pytest.mark.parametrize(("query", "says"), [("*", "only a wildcard"), ("ka*", "too short")])
def test_a_search_term_rules_would_refuse_is_refused_with_the_hint(query: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        search_query(query)


latin_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10)


@given(st.lists(latin_words, min_size=1, max_size=8), st.data())
def test_any_word_of_a_title_finds_it_in_any_case_and_by_its_prefix(
    title_words: list[str], data: st.DataObject
) -> None:
    word = data.draw(st.sampled_from(title_words))
    target = item(" ".join(w.capitalize() for w in title_words))
    for query in (word, word.upper(), word[:3] + "*"):
        hits = search_query(query).hits(target)
        assert hits is not None
        assert all(target.title[h.start : h.end] == h.text for h in hits)
    assert search_query(word + "zzq").hits(target) is None


pieces = st.sampled_from(
    [
        "Kazakh",
        "kazakhstan",
        "KAZAKHSTAN'S",
        "São",
        "sao",
        "Paulo",
        "ﬁre",
        "fire",
        "ＡＢＣ",
        "abc",
        "哈薩克斯坦",
        "哈萨克斯坦",
        "鎢",
        "钨",
        "Вольфрам",
        "вольфрама",
        "Ёлка",
        "елка",
        "Kazakh\u00adstan",
        "up-per",
        "upper",
        " ",
        "-",
        ". ",
        "\n",
        "7",
        "2026",
    ]
)
queries = st.sampled_from(
    [
        "kazakh*",
        "kazakhstan",
        "sao paulo",
        "fire",
        "abc",
        "哈萨克斯坦",
        "鎢",
        "вольфрам*",
        "елка",
        "upper",
        "per",
        "2026",
        "abc*",
        '"sao paulo"',
        "kazakhstan's",
    ]
)


@given(st.lists(pieces, max_size=10), st.lists(pieces, max_size=10), queries)
def test_a_one_term_search_finds_exactly_what_the_same_rule_term_finds(
    title: list[str], summary: list[str], query: str
) -> None:
    """The search is the rules' matching: same folding, same words, same hits."""
    target = item("".join(title), "".join(summary))
    terms = query_terms(query)
    if len(terms) != 1:  # "sao paulo" unquoted is two terms, both wanted: not one rule term
        return
    try:
        term = Term.parse(terms[0])
    except TermSyntaxError:
        return
    expected = node_hits(term, ItemText(target), ("title", "summary"))
    found = search_query(query).hits(target)
    assert (found is None) == (expected is None)
    if found is not None and expected is not None:
        assert {(h.field, h.start, h.end) for h in expected} <= {
            (h.field, h.start, h.end) for h in found
        }


# -- the log on Redis ---------------------------------------------------------------------------


async def test_the_log_pages_newest_first_with_a_cursor_and_stops_at_its_window(
    redis_client: aioredis.Redis,
) -> None:
    log = SentLog(redis_client, KEYS, keep=1000)
    for n in range(30):
        rule = "kz-tungsten" if n % 3 == 0 else "other"
        await log.record([make_match(rule, item=f"w:{n}")], "slack", NOW)
    first = await log.newest(InboxFilter(), TimeRange(), take=7, window=500)
    assert [a.key for a in first.rows] == [
        f"{'kz-tungsten' if n % 3 == 0 else 'other'}|w:{n}" for n in range(29, 22, -1)
    ]
    assert first.resume == first.rows[-1].id
    assert not first.cut
    wanted = InboxFilter(rule="kz-tungsten")
    page = await log.newest(wanted, TimeRange(), take=4, window=500)
    assert [a.key for a in page.rows] == [
        "kz-tungsten|w:27",
        "kz-tungsten|w:24",
        "kz-tungsten|w:21",
        "kz-tungsten|w:18",
    ]
    rest = await log.newest(wanted, TimeRange(), before=page.resume, take=4, window=500)
    assert [a.key for a in rest.rows] == [
        "kz-tungsten|w:15",
        "kz-tungsten|w:12",
        "kz-tungsten|w:9",
        "kz-tungsten|w:6",
    ]
    last = await log.newest(wanted, TimeRange(), before=rest.resume, take=4, window=500)
    assert [a.key for a in last.rows] == ["kz-tungsten|w:3", "kz-tungsten|w:0"]
    assert last.resume is None
    bounded = await log.newest(wanted, TimeRange(), take=4, window=5)
    assert bounded.cut  # the newest five hold one of the rule's: shown, with a way on
    assert bounded.scanned == 5
    assert [a.key for a in bounded.rows] == ["kz-tungsten|w:27"]
    assert (
        bounded.resume
        == (await log.newest(InboxFilter(), TimeRange(), take=5, window=5)).rows[-1].id
    )


async def test_the_log_is_capped_and_triage_is_kept_per_alert(
    redis_client: aioredis.Redis,
) -> None:
    log = SentLog(redis_client, KEYS, keep=10)
    for n in range(300):
        await log.record([make_match(item=f"w:{n}")], "slack", NOW)
    assert await redis_client.xlen(KEYS.inbox) < 300  # trimmed (approximately) to the cap
    await log.ack("kz-tungsten|w:1", "ana", NOW)
    await log.assign("kz-tungsten|w:1", "vic", "ana", NOW + timedelta(minutes=1))
    triage = await log.triage(["kz-tungsten|w:1", "kz-tungsten|w:2"])
    assert triage["kz-tungsten|w:1"] == Triage("ana", NOW, "vic", "ana", NOW + timedelta(minutes=1))
    assert triage["kz-tungsten|w:2"] == Triage()
    assert 0 < await redis_client.ttl(KEYS.triage("kz-tungsten|w:1")) <= 90 * 86400


async def test_the_item_history_is_searched_newest_first(redis_client: aioredis.Redis) -> None:
    for n, title in enumerate(["哈薩克斯坦鎢礦", "Kazakhstan tungsten", "Unrelated", "哈萨克斯坦"]):
        entry = item(title)
        payload = json.dumps(dataclasses.replace(entry, id=f"i{n}").to_dict())
        await redis_client.xadd(KEYS.items, {"item": payload})
    await redis_client.xadd(KEYS.items, {"item": "{broken"})
    history = ItemHistory(redis_client, KEYS)
    found = await history.search(search_query("哈萨克斯坦"), TimeRange(), take=10, window=100)
    assert [f.item.id for f in found.rows] == ["i3", "i0"]
    assert (await history.get(found.rows[1].id)) == found.rows[1].item
    assert await history.get("999-0") is None
    assert await history.get("not an id") is None


# -- written by the delivery worker -------------------------------------------------------------


def worker(queue: AlertQueue, channels: dict[str, Any], **policy: Any) -> DeliveryWorker:
    return DeliveryWorker(
        queue,
        channels,
        DeliveryPolicy(routes=(Route(channels=tuple(channels)),), **policy),
        consumer="w1",
        clock=lambda: NOW,
    )


async def test_each_alert_the_worker_sends_is_logged_once_per_channel(
    redis_client: aioredis.Redis, slack_server: SlackServer, smtp_server: SmtpServer
) -> None:
    queue = AlertQueue(redis_client, KEYS)
    await queue.ensure_group()
    slack = SlackChannel(slack_server.url, timeout=5)
    mail = EmailChannel(
        host=smtp_server.host,
        port=smtp_server.port,
        sender="m@example.org",
        recipients=("desk@example.org",),
        timeout=5,
    )
    try:
        sender = worker(queue, {"slack": slack, "email": mail})
        first, second = make_match(item="w:1"), make_match(item="w:2", title="Another tender")
        await enqueue(redis_client, PREFIX, first, second)
        report = await sender.run_once()
        assert report.delivered == 2
        again = await sender.run_once()  # nothing new: nothing logged twice
        assert again.read == 0
    finally:
        await slack.close()
        await mail.close()
    logged = await SentLog(redis_client, KEYS).newest(
        InboxFilter(), TimeRange(), take=10, window=100
    )
    assert sorted((a.key, a.channel) for a in logged.rows) == [
        ("kz-tungsten|w:1", "email"),
        ("kz-tungsten|w:1", "slack"),
        ("kz-tungsten|w:2", "email"),
        ("kz-tungsten|w:2", "slack"),
    ]
    assert all(a.sent == NOW and a.via == "alert" for a in logged.rows)
    assert slack_server.secret not in json.dumps([a.match_json for a in logged.rows])


async def test_a_log_write_redis_refuses_is_logged_and_the_send_still_counts(
    redis_client: aioredis.Redis, slack_server: SlackServer
) -> None:
    """A key of the wrong type refuses every write for good: the alert is still marked sent
    and acknowledged (no resend), and nothing is left waiting in the worker's backlog."""
    queue = AlertQueue(redis_client, KEYS)
    await queue.ensure_group()
    await redis_client.set(KEYS.inbox, "not a stream")
    slack = SlackChannel(slack_server.url, timeout=5)
    try:
        sender = worker(queue, {"slack": slack})
        await enqueue(redis_client, PREFIX, make_match(item="w:1"))
        with structlog.testing.capture_logs() as logs:
            report = await sender.run_once()
        assert report.delivered == 1
        assert report.channels == {"slack": 1}
        assert not sender.has_backlog
        assert await redis_client.get(KEYS.sent("kz-tungsten|w:1", "slack")) == "done"
        warned = [e for e in logs if e["event"] == "sent alert not logged"]
        assert [e["channel"] for e in warned] == ["slack"]
        assert (await sender.run_once()).read == 0
    finally:
        await slack.close()
    assert len(slack_server.requests) == 1


async def test_a_digest_logs_each_of_its_alerts(
    redis_client: aioredis.Redis, smtp_server: SmtpServer
) -> None:
    queue = AlertQueue(redis_client, KEYS)
    await queue.ensure_group()
    mail = EmailChannel(
        host=smtp_server.host,
        port=smtp_server.port,
        sender="m@example.org",
        recipients=("desk@example.org",),
        timeout=5,
    )
    now = [datetime(2026, 3, 2, 7, 30, tzinfo=UTC)]
    sender = DeliveryWorker(
        queue,
        {"email": mail},
        DeliveryPolicy(
            routes=(Route(channels=("email",)),),
            digests={"email": DigestSchedule("0 8 * * *")},
        ),
        consumer="w1",
        clock=lambda: now[0],
    )
    try:
        assert await sender.flush_digests() == 0
        await enqueue(
            redis_client,
            PREFIX,
            *(make_match(item=f"w:{n}", severity=Severity.LOW) for n in range(3)),
        )
        assert (await sender.run_once()).digested == 3
        now[0] = datetime(2026, 3, 2, 8, 0, 30, tzinfo=UTC)
        assert await sender.flush_digests() == 1
    finally:
        await mail.close()
    logged = await SentLog(redis_client, KEYS).newest(
        InboxFilter(), TimeRange(), take=10, window=100
    )
    assert sorted(a.key for a in logged.rows) == [f"kz-tungsten|w:{n}" for n in range(3)]
    assert {(a.channel, a.via, a.sent) for a in logged.rows} == {("email", "digest", now[0])}
