"""Ingestion benchmark: a user's first and second poll of 1,000 feeds, against local servers.

    python bench/bench_ingest.py [--feeds 1000] [--items 50] [--workers -1] [--rounds 2]

Pass 1 polls every feed for the first time (every item is new); then 10 % of the feeds gain
five items and pass 2 polls again, the other 90 % answering 304.  ``--rounds`` more passes
follow, each with another tenth of the feeds gaining five items: the steady state of a daemon
polling every five minutes, from which the share of one core that ``--feeds`` feeds need is
printed.  Feeds are served by a local aiohttp server in its own process (with
ETag/Last-Modified), Redis is a private redis-server, and the daemon's own
``Monitor.poll_all`` does the work with the shipped rules.

Prints, per pass: wall time, CPU seconds (the event loop and the parser processes, and Redis'
apart), peak memory and new items; then the parse+normalize rate of one core alone.  Peak
memory is the PSS of the daemon, its fork server and parsers (Redis apart), sampled every
0.2 s: the parsers share the fork server's imported modules, which RSS would count three
times.  Feed text is synthetic (English, Chinese and Russian word lists, about 2 % of words
from the watched topics); nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.ingest.prepare import prepare_feed  # noqa: E402
from monitor.model import Source  # noqa: E402

if TYPE_CHECKING:
    from aiohttp import web

    from monitor.app.daemon import Monitor

# The daemon's own modules (scheduler, delivery, templates, metrics) and the feed server's are
# imported inside the functions that use them: the parser processes import this file as their
# main module, and should hold only what a real daemon's parsers hold (see monitor.cli).

WORDS = {
    "en": [
        "Kazakhstan",
        "tungsten",
        "deposit",
        "mining",
        "rights",
        "bid",
        "joint",
        "venture",
        "ministry",
        "export",
        "permit",
        "rare",
        "earth",
        "investment",
        "critical",
        "minerals",
        "Central",
        "Asia",
        "government",
        "company",
        "licence",
        "the",
        "of",
        "and",
        "to",
        "in",
        "for",
        "with",
        "on",
        "said",
        "officials",
        "market",
        "prices",
        "supply",
        "chain",
        "metals",
    ],
    "zh": list(
        "哈萨克斯坦钨矿稀土出口管制许可投资关键矿产中亚政府公司开采权联合企业市场价格供应链金属"
    ),
    "ru": [
        "Казахстан",
        "вольфрам",
        "месторождение",
        "добыча",
        "права",
        "заявка",
        "совместное",
        "предприятие",
        "министерство",
        "экспорт",
        "лицензия",
        "редкоземельные",
        "металлы",
        "инвестиции",
        "критически",
        "важные",
        "минералы",
        "Центральная",
        "Азия",
        "правительство",
        "компания",
        "рынок",
        "цены",
        "поставки",
    ],
}


FILLER = {
    "en": [
        "the",
        "a",
        "of",
        "and",
        "to",
        "in",
        "for",
        "on",
        "with",
        "said",
        "year",
        "week",
        "market",
        "city",
        "people",
        "report",
        "new",
        "government",
        "minister",
        "plan",
        "talks",
        "state",
        "company",
        "officials",
        "percent",
        "million",
        "local",
        "news",
        "region",
        "court",
        "police",
        "school",
        "energy",
        "water",
        "price",
        "bank",
        "trade",
        "meeting",
        "week",
        "sources",
    ],
    "zh": list(
        "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
    ),
    "ru": [
        "и",
        "в",
        "не",
        "на",
        "что",
        "с",
        "по",
        "это",
        "как",
        "к",
        "из",
        "за",
        "от",
        "для",
        "о",
        "год",
        "время",
        "человек",
        "дело",
        "жизнь",
        "день",
        "рука",
        "работа",
        "слово",
        "место",
        "лицо",
        "друг",
        "глаз",
        "вопрос",
        "дом",
        "сторона",
        "страна",
        "мир",
        "случай",
        "голова",
        "ребенок",
        "сила",
        "конец",
        "вид",
        "система",
        "часть",
        "город",
        "отношение",
        "женщина",
        "деньги",
        "земля",
        "машина",
        "вода",
        "отец",
        "проблема",
        "час",
        "право",
        "нога",
        "решение",
        "дверь",
        "образ",
        "история",
        "власть",
        "закон",
        "война",
        "бог",
        "голос",
        "тысяча",
        "книга",
        "возможность",
        "результат",
        "ночь",
        "стол",
        "имя",
        "область",
        "статья",
        "число",
        "компания",
        "народ",
        "жена",
        "группа",
        "развитие",
        "процесс",
        "суд",
        "условие",
        "средство",
        "начало",
        "свет",
        "пора",
        "путь",
        "душа",
        "уровень",
        "форма",
        "связь",
        "минута",
        "улица",
        "вечер",
        "качество",
        "мысль",
        "дорога",
        "мать",
        "действие",
        "месяц",
        "государство",
        "язык",
        "любовь",
        "взгляд",
        "мама",
        "век",
        "школа",
        "цель",
        "общество",
        "деятельность",
        "организация",
        "президент",
        "комната",
        "порядок",
        "момент",
        "театр",
        "письмо",
        "утро",
        "помощь",
        "ситуация",
        "роль",
        "рубль",
        "смысл",
        "состояние",
        "квартира",
        "орган",
        "внимание",
        "тело",
        "труд",
        "сын",
        "мера",
        "смерть",
    ],
}
TOPIC_SHARE = 0.02
"""Share of words drawn from the watched topics' vocabulary: news that mostly is not about
critical minerals, as real feeds are (text made only of topic words is the worst case for
matching; the README gives that figure too)."""


def paragraph(rng: random.Random, lang: str, words: int, share: float = TOPIC_SHARE) -> str:
    joiner = "" if lang == "zh" else " "
    return joiner.join(
        rng.choice(WORDS[lang] if rng.random() < share else FILLER[lang]) for _ in range(words)
    )


def item_xml(rng: random.Random, feed: int, number: int, lang: str) -> str:
    body_words = 150 if lang == "zh" else 65
    summary = (
        f"<p>{paragraph(rng, lang, body_words)}</p><p>{paragraph(rng, lang, body_words)}</p>"
        f'<p><a href="https://news{feed}.example/a/{number}">more</a></p>'
    )
    return (
        f"<item><title>{paragraph(rng, lang, 12)}</title>"
        f"<link>https://news{feed}.example/{number}?utm_source=rss</link>"
        f'<guid isPermaLink="false">feed{feed}-item{number}</guid>'
        f"<pubDate>Sun, 22 Nov 2026 {number % 24:02d}:00:00 GMT</pubDate>"
        f"<description><![CDATA[{summary}]]></description></item>"
    )


def feed_body(feed: int, count: int, extra: int = 0) -> bytes:
    """A feed of ``count`` items (~80 KB at 50); ``extra`` newer items go on top, the others
    stay byte-identical, as a real feed gains items."""
    lang = ("en", "zh", "ru")[feed % 3]
    fresh = [
        item_xml(random.Random(10**7 + feed * 1000 + n), feed, count + n, lang)
        for n in range(extra)
    ]
    rng = random.Random(feed)
    items = fresh + [item_xml(rng, feed, n, lang) for n in range(count)]
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Synthetic feed {feed}</title><link>https://news{feed}.example/</link>"
        f"<language>{lang}</language>{''.join(items)}</channel></rss>"
    ).encode()


def serve(port: int, feeds: int, items: int, ready: object) -> None:
    """The feed server process: in-memory bodies, ETag and Last-Modified, a bump endpoint."""
    from aiohttp import web

    bodies = {n: feed_body(n, items) for n in range(feeds)}
    extra = dict.fromkeys(range(feeds), 0)

    async def feed(request: web.Request) -> web.Response:
        number = int(request.match_info["n"])
        body = bodies[number]
        etag = '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        headers = {"ETag": etag, "Last-Modified": "Sun, 22 Nov 2026 06:00:00 GMT"}
        return web.Response(body=body, content_type="application/rss+xml", headers=headers)

    async def bump(request: web.Request) -> web.Response:
        """Round r: every tenth feed (those numbered r mod 10) gains five items."""
        tenth = int(request.query.get("round", "0")) % 10
        for number in range(tenth, feeds, 10):
            extra[number] += NEW_PER_BUMP
            bodies[number] = feed_body(number, items, extra=extra[number])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/feed/{n}.xml", feed)
    app.router.add_post("/bump", bump)
    ready.set()  # type: ignore[attr-defined]
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


NEW_PER_BUMP = 5


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the fork server, its parser processes, redis-server)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def pss_mb(pids: list[int]) -> dict[int, float]:
    """Proportional set size of each process: pages shared between the processes (the fork
    server's imported modules) count once in the total, not once per process as RSS would."""
    found: dict[int, float] = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    found[pid] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return found


class MemorySampler:
    """The peak PSS of the daemon and its processes, sampled while a pass runs.  Redis and
    the feed server are apart, with their children: redis-server forks to write its snapshot,
    and that child's pages are Redis' memory, not the daemon's."""

    def __init__(self, exclude: list[int]) -> None:
        self.exclude = set(exclude)
        self.peak = 0.0
        #: Each process's PSS in the sample with the peak total.
        self.parts: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def _sample(self) -> None:
        apart = self.exclude.union(*(descendants(pid) for pid in self.exclude))
        tree = [os.getpid(), *descendants(os.getpid())]
        parts = pss_mb([p for p in tree if p not in apart])
        if sum(parts.values()) > self.peak:
            self.peak, self.parts = sum(parts.values()), parts

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        """Stop sampling, with one last sample: a pass shorter than the interval has had
        none, and would report 0 MB."""
        self._stop.set()
        self._thread.join()
        self._sample()


def config_text(port: int, feeds: int, workers: int, data: Path) -> str:
    lines = [f"redis: {{url: embedded, data_dir: '{data}'}}", "feeds:"]
    lines += [
        f"  - {{name: f{n}, url: 'http://127.0.0.1:{port}/feed/{n}.xml', allow_private: true}}"
        for n in range(feeds)
    ]
    lines += [
        f"rules: {{paths: ['{REPO / 'rules'}']}}",
        "channels: {console: {}}",  # matches are queued; this benchmark does not deliver
        "health: {port: 0}",
        "http: {host_gap: 0s, per_host: 50, max_concurrency: 50}",
        # Every item alerts, whatever its date, so that the work is the same in any year.
        f"ingest: {{workers: {workers}, backfill: 'off'}}",
        "log: {level: warning, format: json}",
    ]
    return "\n".join(lines) + "\n"


async def run_passes(config: Path, port: int, feeds: int, rounds: int, server: int) -> None:
    from monitor.app.daemon import Monitor
    from monitor.app.logs import configure_logging
    from monitor.settings import load_settings

    settings = load_settings(config)
    configure_logging(level="warning", fmt="json")
    async with Monitor(settings) as daemon:
        embedded = daemon.parts.redis.server
        redis_pids = [embedded._process.pid] if embedded and embedded._process else []
        apart = [*redis_pids, server]
        await measured_pass(daemon, "pass 1 (first poll)", redis_pids, apart)
        steady: list[float] = []
        for number in range(rounds + 1):
            await bump(port, number)
            label = "pass 2 (10 % changed)" if number == 0 else f"round {number + 2} (10 % changed)"
            steady.append(await measured_pass(daemon, label, redis_pids, apart))
        per_round = sum(steady) / len(steady)
        print(
            f"steady state: {per_round:.2f} CPU s per pass of {feeds:,} feeds, so "
            f"{feeds:,} feeds every 5 minutes use {per_round / 300 * 100:.1f} % of one core"
        )


async def bump(port: int, number: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        await session.post(f"http://127.0.0.1:{port}/bump?round={number}")


async def measured_pass(
    daemon: Monitor, label: str, redis_pids: list[int], apart: list[int]
) -> float:
    """One pass over every feed; prints what it cost and returns the CPU seconds."""
    pool = daemon.parts.pool
    parsers = pool.pids() if pool is not None else []
    before = [cpu_seconds([os.getpid()]), cpu_seconds(parsers), cpu_seconds(redis_pids)]
    started = time.perf_counter()
    with MemorySampler(exclude=apart) as memory:
        results = await daemon.poll_all()
    wall = time.perf_counter() - started
    parsers = pool.pids() if pool is not None else []
    after = [cpu_seconds([os.getpid()]), cpu_seconds(parsers), cpu_seconds(redis_pids)]
    own, parsing, redis = (a - b for a, b in zip(after, before, strict=True))
    new = sum(r.new_items for r in results)
    failed = [r for r in results if r.status == "error"]
    statuses = {s: sum(r.status == s for r in results) for s in ("ok", "not-modified")}
    print(
        f"{label}: wall {wall:6.2f} s  cpu {own + parsing:6.2f} s "
        f"(event loop {own:.1f} + parsers {parsing:.1f}; redis-server {redis:.1f})  "
        f"new items {new:6d}  {statuses}  failed {len(failed)}  "
        f"peak memory (PSS) {memory.peak:.0f} MB; peak RSS: daemon "
        f"{peak_rss_mb([os.getpid()]):.0f} MB, parsers {peak_rss_mb(parsers):.0f} MB"
    )
    print(f"  PSS at the peak: {peak_breakdown(memory.parts, parsers)}")
    if failed:
        print("  first failure:", failed[0].error)
    return own + parsing


def peak_breakdown(parts: dict[int, float], parsers: list[int]) -> str:
    """Where the peak PSS was: the daemon, its parser processes, and the rest (the fork
    server and multiprocessing's resource tracker)."""
    daemon = parts.get(os.getpid(), 0.0)
    parsing = sum(size for pid, size in parts.items() if pid in parsers)
    rest = sum(parts.values()) - daemon - parsing
    return f"daemon {daemon:.0f} MB, parsers {parsing:.0f} MB, fork server etc. {rest:.0f} MB"


def parse_rate(feeds: int, items: int) -> None:
    bodies = [feed_body(n, items) for n in range(min(feeds, 200))]
    now = datetime.now(UTC)
    started = time.perf_counter()
    count = 0
    for number, body in enumerate(bodies):
        source = Source(name=f"f{number}", url=f"https://news{number}.example/feed.xml")
        count += len(prepare_feed(source, body, {}, source.url, now).items)
    elapsed = time.perf_counter() - started
    size = sum(map(len, bodies)) / len(bodies) / 1024
    print(
        f"parse+normalize alone, one core: {count / elapsed:,.0f} items/s "
        f"({elapsed / len(bodies) * 1000:.1f} ms per {items}-item feed of {size:.0f} KB)"
    )


def main() -> None:
    from monitor.app.embedded_redis import free_port

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--workers", type=int, default=-1, help="-1: one parser per core")
    parser.add_argument(
        "--rounds", type=int, default=2, help="steady-state passes after pass 2 (10 %% changed)"
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(
        target=serve, args=(port, args.feeds, args.items, ready), daemon=True
    )
    server.start()
    if not ready.wait(600):  # building 10,000 synthetic feeds takes a minute or two
        raise SystemExit("the feed server did not start")
    time.sleep(0.5)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "monitor.yaml"
            config.write_text(config_text(port, args.feeds, args.workers, Path(tmp) / "redis"))
            assert server.pid is not None
            asyncio.run(run_passes(config, port, args.feeds, args.rounds, server.pid))
        parse_rate(args.feeds, args.items)
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
