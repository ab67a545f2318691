"""The pure core of story clustering: fingerprints, evidence extraction and the decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.ingest.normalize import canonical_url
from monitor.model import Item
from monitor.rules.text import fold
from monitor.stories.cluster import (
    SHORT_TEXT,
    SLOTS,
    STRONG_LINK,
    Candidate,
    Decision,
    Extractor,
    Features,
    MemoryStories,
    band_keys,
    choose_story,
    dates,
    decode_signature,
    encode_signature,
    figures,
    minhash,
    plan,
    shingles,
    similarity,
    story_id_for,
)
from monitor.stories.lexicon import Lexicon
from monitor.stories.story import (
    FollowUpPolicy,
    Story,
    StoryItem,
    StoryUpdate,
    corroborated,
    follow_up_reason,
)

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
EXTRACTOR = Extractor()
WIRE = (
    "Kazakhstan's Ministry of Industry and Construction will auction subsoil use rights to the "
    "Upper Kairakty tungsten deposit in Karaganda region on March 20, with a starting price of "
    "45 billion tenge ($90 million), the ministry said on Monday."
)


def item(
    item_id: str,
    title: str,
    summary: str = "",
    lang: str = "en",
    link: str = "",
    published: datetime = NOW,
) -> Item:
    url = link or f"https://x.example/{item_id}"
    return Item(item_id, "feed", title, summary, url, published, lang)


def folded(text: str) -> str:
    return fold(text).text


# --- figures and dates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20 million tonnes", {"t:2e+07"}),
        ("2000万吨", {"t:2e+07"}),
        ("20 млн тонн", {"t:2e+07"}),
        ("20 млн тонна кен", {"t:2e+07"}),
        ("$110 million", {"usd:1.1e+08"}),
        ("1.1亿美元", {"usd:1.1e+08"}),
        ("110 млн долларов", {"usd:1.1e+08"}),
        ("$1,1 млрд", {"usd:1.1e+09"}),
        ("0.1%", {"pct:0.1"}),
        ("0,1 %", {"pct:0.1"}),
        ("百分之0.1", {"pct:0.1"}),
        ("45 billion tenge", {"kzt:4.5e+10"}),
        ("450亿坚戈", {"kzt:4.5e+10"}),
        ("135,000 tonnes", {"t:1.35e+05"}),
        ("the 135,000-tonne quota", {"t:1.35e+05"}),
        ("13.5万吨", {"t:1.35e+05"}),
        ("in 2025, 12 people", set()),
        ("3 thousand visitors", set()),
    ],
)
def test_figures_agree_across_languages(text: str, expected: set[str]) -> None:
    assert figures(folded(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on March 20", {"d:03-20"}),
        ("on 20 March", {"d:03-20"}),
        ("Mar. 20", {"d:03-20"}),
        ("20 марта", {"d:03-20"}),
        ("3 мая", {"d:05-03"}),
        ("20 наурызда", {"d:03-20"}),
        ("1 желтоқсаннан бастап", {"d:12-01"}),
        ("3月20日", {"d:03-20"}),
        ("May 2025", set()),
        ("20 млн тонн", set()),
    ],
)
def test_dates_agree_across_languages(text: str, expected: set[str]) -> None:
    assert dates(folded(text)) == expected


def test_the_lexicon_names_one_deposit_in_every_language() -> None:
    texts = ["Upper Kairakty", "Верхнее Кайракты", "Жоғарғы Қайрақты", "上凯拉克特钨矿"]
    for text in texts:
        assert "upper-kairakty" in EXTRACTOR.lexicon.find_in(text), text


def test_lowercase_us_is_not_the_united_states() -> None:
    assert "usa" not in EXTRACTOR.lexicon.find_in("Tell us about tungsten")


def test_an_empty_lexicon_finds_nothing() -> None:
    assert Lexicon([]).find_in("Upper Kairakty") == frozenset()


# --- fingerprints ------------------------------------------------------------------------


def test_chinese_is_shingled_by_characters() -> None:
    assert "哈萨克" in shingles(folded("哈萨克斯坦钨矿"))
    assert "upper kairakty" in shingles(folded("Upper Kairakty deposit"))


def test_signatures_survive_the_store_encoding() -> None:
    signature = minhash(shingles(folded(WIRE)))
    assert len(signature) == SLOTS
    assert decode_signature(encode_signature(signature)) == signature
    assert similarity(decode_signature(""), signature) == 0.0
    assert band_keys(decode_signature("")) == ()


def test_headlines_alone_are_compared_exactly() -> None:
    """One-permutation MinHash fills its 48 slots from a headline's four or five word pairs,
    and estimated two synthetic headlines sharing one pair of three as the same text; short
    texts are compared on their shingles instead."""
    first = EXTRACTOR.features(item("a", "Tungsten report f001p0"))
    second = EXTRACTOR.features(item("b", "Tungsten report f002p0"))
    assert len(first.signature) < SLOTS
    assert similarity(first.signature, second.signature) == pytest.approx(1 / 3, abs=0.01)
    assert EXTRACTOR.same_event(first, second) == 0
    reprint = EXTRACTOR.features(item("c", "Tungsten report f001p0"))
    assert similarity(first.signature, reprint.signature) == 1.0
    assert EXTRACTOR.same_event(first, reprint) > 0


def test_a_retitled_headline_still_finds_the_story() -> None:
    """A short text's index keys are its shingles, so changing one word of eight leaves
    most of them shared: the story is a candidate, and the texts are near-duplicates."""
    wire = EXTRACTOR.features(
        item("a", "Kazakhstan puts the Upper Kairakty tungsten deposit up for auction")
    )
    reprint = EXTRACTOR.features(
        item("b", "Kazakhstan puts the Upper Kairakty tungsten deposit up for sale")
    )
    shared = set(wire.index_keys()) & set(reprint.index_keys())
    assert len([key for key in shared if key.startswith("bs:")]) >= 2
    assert EXTRACTOR.same_event(wire, reprint) > 0


def test_a_headline_and_a_full_text_are_not_near_duplicates() -> None:
    headline = minhash(shingles(folded("Kazakhstan tungsten auction")))
    full = minhash(shingles(folded(WIRE)))
    assert len(headline) < SLOTS <= len(full)
    assert similarity(headline, full) == 0.0
    assert decode_signature(encode_signature(headline)) == headline


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=3), min_size=1, max_size=12))
def test_short_texts_score_their_exact_shingle_overlap(words: list[str]) -> None:
    text = " ".join(words)
    variant = " ".join([*words[:-1], "zzz"])
    a, b = shingles(folded(text)), shingles(folded(variant))
    if len(a) >= SHORT_TEXT or len(b) >= SHORT_TEXT:
        return
    exact = len(a & b) / len(a | b)
    # 16-bit hashes of a handful of shingles collide rarely; allow one collision's worth.
    assert similarity(minhash(a), minhash(b)) == pytest.approx(exact, abs=1 / len(a | b) + 1e-9)


texts = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "Zs", "P"]), max_size=300
)


@settings(max_examples=60, deadline=None)
@given(texts)
def test_a_text_is_always_similar_to_itself(text: str) -> None:
    features = EXTRACTOR.features(item("a", text))
    twin = EXTRACTOR.features(item("b", text))
    assert features.signature == twin.signature
    if shingles(folded(text)):
        assert similarity(features.signature, twin.signature) == 1.0
        assert EXTRACTOR.same_event(features, twin) > 0


@settings(max_examples=60, deadline=None)
@given(texts, texts)
def test_the_decision_is_symmetric(first: str, second: str) -> None:
    a = EXTRACTOR.features(item("a", first))
    b = EXTRACTOR.features(item("b", second))
    assert EXTRACTOR.same_event(a, b) == EXTRACTOR.same_event(b, a)


headlines = st.text(alphabet=st.sampled_from("abcdefghij klmnop"), min_size=0, max_size=60)
trackers = st.dictionaries(
    st.sampled_from(["utm_source", "utm_medium", "utm_campaign", "fbclid", "utm_content"]),
    st.text(alphabet="abcxyz0123", min_size=1, max_size=8),
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(headlines, trackers)
def test_a_reprint_under_another_title_and_tracking_link_joins(
    title: str, params: dict[str, str]
) -> None:
    """Portals reprint the wire's text under their own headline, with tracking parameters."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    link = canonical_url(f"https://portal.example/a/1?{query}")
    original = EXTRACTOR.features(item("wire", "Kazakhstan to auction Upper Kairakty", WIRE))
    reprint = EXTRACTOR.features(item("portal", title, WIRE, link=link))
    assert EXTRACTOR.same_event(original, reprint) > 0
    assert link == "https://portal.example/a/1"


def test_a_translation_joins_through_entities_figures_and_dates() -> None:
    english = EXTRACTOR.features(item("en", "Kazakhstan to auction Upper Kairakty", WIRE))
    chinese = EXTRACTOR.features(
        item(
            "zh",
            "哈萨克斯坦将拍卖上凯拉克特钨矿开采权",
            "哈萨克斯坦工业和建设部表示，将于3月20日拍卖上凯拉克特钨矿，起拍价为450亿坚戈。",
            lang="zh",
        )
    )
    assert similarity(english.signature, chinese.signature) < 0.1
    assert EXTRACTOR.same_event(english, chinese) > 0


def test_sharing_a_deposit_is_not_enough() -> None:
    auction = EXTRACTOR.features(item("a", "Upper Kairakty auction", WIRE))
    investment = EXTRACTOR.features(
        item(
            "b",
            "US firm to invest $1.1 billion in Kazakh tungsten",
            "Cove Kaz Capital will develop the Upper Kairakty tungsten deposit in Kazakhstan.",
        )
    )
    assert EXTRACTOR.same_event(auction, investment) == 0


def test_template_statistics_with_other_figures_are_a_series() -> None:
    january = EXTRACTOR.features(
        item("jan", "Tungsten exports rise 18%", "Kazakhstan exported 420 tonnes in January.")
    )
    february = EXTRACTOR.features(
        item("feb", "Tungsten exports fall 6%", "Kazakhstan exported 395 tonnes in February.")
    )
    assert EXTRACTOR.same_event(january, february) == 0


# --- choosing a story ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours_apart", "joins"),
    [(-73, False), (-71, True), (0, True), (71, True), (73, False)],
)
def test_the_window_is_measured_between_publication_times(hours_apart: int, joins: bool) -> None:
    """A reprint published more than the window before or after the wire opens its own
    story, whenever either arrives: no clock is read."""
    wire = EXTRACTOR.features(item("wire", "Upper Kairakty auction", WIRE))
    at = NOW + timedelta(hours=hours_apart)
    reprint = EXTRACTOR.features(item("reprint", "Kairakty under the hammer", WIRE, published=at))
    story = Candidate("s1", (wire,))
    chosen = choose_story(EXTRACTOR, reprint, [story], 72 * 3600.0)
    assert (chosen == "s1") is joins


def test_the_strongest_link_wins_and_ties_go_to_the_smaller_id() -> None:
    wire = EXTRACTOR.features(item("wire", "Upper Kairakty auction", WIRE))
    reprint = EXTRACTOR.features(item("reprint", "Kairakty under the hammer", WIRE))
    tied = [Candidate("s2", (wire,)), Candidate("s1", (wire,))]
    assert choose_story(EXTRACTOR, reprint, tied, 3600) == "s1"


BIDS_EN = "Kazakhstan weighs US and Chinese bids for Upper Kairakty tungsten deposit"
BIDS_RU = "США и Китай борются за вольфрамовое месторождение Верхнее Кайракты"
BIDS_ZH = "中美竞逐哈萨克斯坦上凯拉克特钨矿开采权"
PERMIT_EN = (
    "China requires export licences for products containing Chinese-origin rare earths, "
    "Ministry of Commerce says"
)
PERMIT_ZH = "商务部：含中国原产稀土的产品出口须申领许可"
PERMIT_RU = (
    "Министерство коммерции КНР ввело лицензирование экспорта товаров с редкоземельными металлами"
)


@pytest.mark.parametrize(
    ("first", "second", "hours_apart", "joins"),
    [
        ((BIDS_EN, "en"), (BIDS_RU, "ru"), 7, True),
        # a ministry names the event as a deposit or a company does (the offline example)
        ((PERMIT_EN, "en"), (PERMIT_ZH, "zh"), -10, True),
        ((PERMIT_ZH, "zh"), (PERMIT_RU, "ru"), 3, True),
        ((PERMIT_EN, "en"), (PERMIT_RU, "ru"), -24 * 21, False),  # the ministry's next move
        # a ministry and a country, no commodity: the ministry is busy with many things
        ((PERMIT_EN, "en"), ("商务部就中美经贸磋商答记者问", "zh"), 2, False),
        ((BIDS_RU, "ru"), (BIDS_ZH, "zh"), 0, True),
        ((BIDS_EN, "en"), (BIDS_ZH, "zh"), -30, True),
        ((BIDS_EN, "en"), (BIDS_RU, "ru"), 40, False),  # days apart: another event
        ((BIDS_EN, "en"), (BIDS_RU, "ru"), -24 * 21, False),  # weeks apart
        # one language: two items on a deposit the same day are two things
        ((BIDS_EN, "en"), ("Upper Kairakty tungsten licence review in Astana", "en"), 2, False),
        # no commodity in common: a company is in the news for many reasons
        ((BIDS_EN, "en"), ("Верхнее Кайракты: новости недропользования", "ru"), 2, False),
        # the dates they name disagree: the tender's opening and its award
        (
            ("Upper Kairakty tungsten tender opens on March 20", "en"),
            ("Итоги тендера по вольфраму Верхнего Кайракты подведут 15 апреля", "ru"),
            2,
            False,
        ),
    ],
)
def test_cross_language_reports_naming_the_deposit_and_commodity_join_when_close(
    first: tuple[str, str], second: tuple[str, str], hours_apart: int, joins: bool
) -> None:
    """Translated headlines often share only the deposit (or company) and the commodity;
    published within a day and a half and in different languages, they are one event."""
    one = EXTRACTOR.features(item("one", first[0], lang=first[1]))
    at = NOW + timedelta(hours=hours_apart)
    two = EXTRACTOR.features(item("two", second[0], lang=second[1], published=at))
    assert (EXTRACTOR.same_event(one, two) > 0) is joins
    assert (EXTRACTOR.same_event(two, one) > 0) is joins


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from([BIDS_EN, BIDS_RU, BIDS_ZH, WIRE]), min_size=2, max_size=2),
    st.integers(min_value=-2000, max_value=2000),
)
def test_the_join_decision_is_symmetric_in_time(texts: list[str], minutes: int) -> None:
    langs = {BIDS_EN: "en", BIDS_RU: "ru", BIDS_ZH: "zh", WIRE: "en"}
    one = EXTRACTOR.features(item("one", texts[0], lang=langs[texts[0]]))
    at = NOW + timedelta(minutes=minutes)
    two = EXTRACTOR.features(item("two", texts[1], lang=langs[texts[1]], published=at))
    assert EXTRACTOR.same_event(one, two) == EXTRACTOR.same_event(two, one)


def test_story_ids_are_stable_and_short() -> None:
    assert story_id_for("reuters:abc") == story_id_for("reuters:abc")
    assert story_id_for("reuters:abc") != story_id_for("reuters:abd")
    assert len(story_id_for("x")) == 13


def test_memory_stories_group_reprints() -> None:
    stories = MemoryStories(EXTRACTOR)
    first = stories.add(item("wire", "Upper Kairakty auction", WIRE))
    second = stories.add(item("portal", "Kairakty under the hammer", WIRE))
    other = stories.add(item("x", "Wheat exports hit a record", "Kazakh wheat to China."))
    assert first == second != other


def test_memory_stories_find_an_older_report_that_arrives_later() -> None:
    """The index is read around the item's publication time, before and after: a reprint
    published two days before the wire, arriving after it, still joins it; one published
    months earlier does not."""
    stories = MemoryStories(EXTRACTOR)
    wire = stories.add(item("wire", "Upper Kairakty auction", WIRE))
    early = NOW - timedelta(hours=48)
    months = NOW - timedelta(days=90)
    assert stories.add(item("early", "Kairakty under the hammer", WIRE, published=early)) == wire
    assert stories.add(item("old", "Kairakty sale", WIRE, published=months)) != wire


# --- follow-ups and corroboration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (StoryUpdate("s", "i", created=True, new_language=True), None),
        (StoryUpdate("s", "i", created=False), None),
        (StoryUpdate("s", "i", created=False, duplicate=True, new_language=True), None),
        (StoryUpdate("s", "i", created=False, new_language=True), "new language"),
        (StoryUpdate("s", "i", created=False, new_kind=True), "new source kind"),
        (
            StoryUpdate("s", "i", created=False, new_owner=True, independent=3),
            "corroborated by 3 independent sources",
        ),
        (StoryUpdate("s", "i", created=False, new_owner=True, independent=4), None),
    ],
)
def test_follow_ups_only_when_something_that_matters_changes(
    update: StoryUpdate, reason: str | None
) -> None:
    assert follow_up_reason(update, FollowUpPolicy()) == reason


def _member(source: str, owner: str = "", kind: str = "news") -> StoryItem:
    return StoryItem(source + ":1", source, "en", "t", "", NOW, NOW, kind=kind, owner=owner)


def test_sister_outlets_are_one_independent_source() -> None:
    story = Story(
        "s",
        NOW,
        NOW,
        (
            _member("xinhua", owner="xinhua"),
            _member("xinhua-ru", owner="xinhua"),
            _member("reuters"),
        ),
    )
    assert story.owners == ("xinhua", "reuters")
    assert not corroborated(story, min_sources=3)
    assert corroborated(story, min_sources=2)


def test_an_official_source_corroborates_when_the_rule_accepts_it() -> None:
    story = Story("s", NOW, NOW, (_member("mofcom", kind="official"),))
    assert corroborated(story, min_sources=3, official=True)
    assert not corroborated(story, min_sources=3)
    assert story.provenance() == ["mofcom (official, en)"]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([WIRE, "哈萨克斯坦将于3月20日拍卖上凯拉克特钨矿，起拍价为450亿坚戈。", ""]),
    texts,
)
def test_features_survive_the_store_round_trip(summary: str, title: str) -> None:
    """What the store keeps of a member (signature text, evidence tokens) is the member."""
    features = EXTRACTOR.features(item("a", title, summary))
    rebuilt = EXTRACTOR.from_evidence(
        features.item_id,
        features.lang,
        encode_signature(features.signature),
        features.evidence,
        features.published,
    )
    assert rebuilt == features


# --- corrections for items that arrive out of order (cluster.plan) ---------------------------


@pytest.fixture(scope="module")
def labelled_features() -> dict[str, Features]:
    from test_stories_quality import load_labelled

    return {one.id: EXTRACTOR.features(one) for one in load_labelled().items}


def test_an_item_linking_two_stories_strongly_merges_them(
    labelled_features: dict[str, Features],
) -> None:
    """mq-en-2 arrived before the reports that tie it to its event and opened a story; mq-en-3
    links both that story (4.0) and the event's (5.5) strongly: it joins the stronger and
    absorbs the other."""
    f = labelled_features
    candidates = [Candidate("s-event", (f["mq-ru-2"],)), Candidate("s-early", (f["mq-en-2"],))]
    decision = plan(EXTRACTOR, f["mq-en-3"], candidates, 72 * 3600.0)
    assert decision == Decision("s-event", decision.score, absorbs=("s-early",))
    assert decision.score >= STRONG_LINK


def test_an_item_linking_a_weak_member_strongly_adopts_it(
    labelled_features: dict[str, Features],
) -> None:
    """ck-en-4 (Cove Kaz, which also names the Kairakty auction's deposit) reached the auction's
    story first, on a weak link; the first Cove Kaz report opens its own story and takes it."""
    f = labelled_features
    auction = Candidate("s-auction", (f["ka-en-4"], f["ck-en-4"]), weak=frozenset({"ck-en-4"}))
    decision = plan(EXTRACTOR, f["ck-en-1"], [auction], 72 * 3600.0)
    assert decision == Decision(None, 0.0, adopts=(("s-auction", f["ck-en-4"]),))


def test_a_weak_link_corrects_nothing(labelled_features: dict[str, Features]) -> None:
    """An item that joins on a weak link is too little evidence to move other items, even
    one it links strongly."""
    f = labelled_features
    auction = Candidate("s-auction", (f["ka-en-4"],))
    holding = Candidate("s-other", (f["ka-en-1"], f["ck-en-1"]), weak=frozenset({"ck-en-1"}))
    decision = plan(EXTRACTOR, f["ck-en-4"], [auction, holding], 72 * 3600.0)
    assert decision.story == "s-auction"
    assert 0 < decision.score < STRONG_LINK
    assert decision.absorbs == ()
    assert decision.adopts == ()


def test_memory_stories_apply_the_corrections(labelled_features: dict[str, Features]) -> None:
    f = labelled_features
    stories = MemoryStories(EXTRACTOR)
    early = stories.add_features(f["mq-en-2"])
    event = stories.add_features(f["mq-ru-2"])
    assert early != event
    assert stories.add_features(f["mq-en-3"]) == event
    assert stories.assignment["mq-en-2"] == event
    assert early not in stories.members


def test_stories_an_analyst_split_apart_are_never_merged_or_raided(
    labelled_features: dict[str, Features],
) -> None:
    """The bridging report of the merge test, with the two stories split apart by an
    analyst (``Candidate.apart``): it joins the stronger and corrects nothing."""
    f = labelled_features
    candidates = [
        Candidate("s-event", (f["mq-ru-2"],), apart=frozenset({"s-early"})),
        Candidate("s-early", (f["mq-en-2"],), weak=frozenset()),
    ]
    decision = plan(EXTRACTOR, f["mq-en-3"], candidates, 72 * 3600.0)
    assert decision.story == "s-event"
    assert decision.absorbs == ()
    one_way = [
        Candidate("s-event", (f["mq-ru-2"],)),
        Candidate("s-early", (f["mq-en-2"],), apart=frozenset({"s-event"})),
    ]
    assert plan(EXTRACTOR, f["mq-en-3"], one_way, 72 * 3600.0).absorbs == ()
