"""Footprint benchmark: RSS and CPU of one running daemon, and Redis memory per tracked item.

    python bench/bench_footprint.py [--feeds 5000] [--interval 5m] [--minutes 10] [--rules 1000]

The real daemon (``python -m monitor run``) runs as a child process against a private
redis-server and a local feed server in another process.  Every feed holds ``--items`` items
(synthetic English, Chinese and Russian text, dated in the past, so a feed's first poll records
them without alerting); on each later poll a feed gains a new item with probability
``--new-share`` (10 %) and otherwise answers 304 to the daemon's conditional GET.  The rules are
``--rules`` synthetic rules in the shapes analysts write, most of which name a word no item
contains (as most rules match most news not at all) and a few of which match sometimes; the
alerts go to a webhook on the feed server.  Every ``--sample`` seconds it records the resident
memory (RSS) and CPU time of the daemon and its parser processes together; Redis is measured on
its own.  At the end it reads ``INFO memory`` and ``MEMORY USAGE`` from Redis.

Nothing is scaled: the intervals are the real ones, so ten minutes are two polls per feed at
5-minute intervals (plus the first).  ``--interval 1m`` gives more polls in the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import redis  # noqa: E402
from aiohttp import web  # noqa: E402
from bench_ingest import WORDS, paragraph  # noqa: E402

from monitor.app.embedded_redis import EmbeddedRedis, free_port  # noqa: E402
from monitor.settings import parse_duration  # noqa: E402

LANGS = ("en", "zh", "ru")
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


# --- the feed server (its own process) ---------------------------------------------------------


def item_xml(rng: random.Random, feed: int, number: int, when: datetime) -> str:
    lang = LANGS[feed % 3]
    words = 60 if lang == "zh" else 30
    return (
        f"<item><title>{paragraph(rng, lang, 10)}</title>"
        f"<link>https://news{feed}.example/{number}</link>"
        f'<guid isPermaLink="false">feed{feed}-item{number}</guid>'
        f"<pubDate>{format_datetime(when)}</pubDate>"
        f"<description><![CDATA[<p>{paragraph(rng, lang, words)}</p>"
        f"<p>{paragraph(rng, lang, words)}</p>]]></description></item>"
    )


class Feeds:
    """In-memory feeds that gain an item on ``share`` of the polls that could see one."""

    OLD = datetime(2020, 1, 1, tzinfo=UTC)

    def __init__(self, count: int, items: int, share: float) -> None:
        self.share = share
        self.keep = items
        self.rng = random.Random(7)
        self.items = {
            n: [item_xml(random.Random(n * 1000 + i), n, i, self.OLD) for i in range(items)][::-1]
            for n in range(count)
        }
        self.next = dict.fromkeys(range(count), items)
        self.bodies = {n: self.render(n) for n in range(count)}
        self.stats = {"polls": 0, "full": 0, "not_modified": 0, "new_items": 0, "alerts": 0}

    def render(self, feed: int) -> tuple[bytes, str]:
        body = (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Synthetic feed {feed}</title><link>https://news{feed}.example/</link>"
            f"<language>{LANGS[feed % 3]}</language>{''.join(self.items[feed])}</channel></rss>"
        ).encode()
        return body, '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'

    def poll(self, feed: int, etag: str | None) -> tuple[int, bytes, str]:
        self.stats["polls"] += 1
        if etag is not None and self.rng.random() < self.share:
            number = self.next[feed]
            self.next[feed] += 1
            fresh = item_xml(random.Random(feed * 1000 + number), feed, number, datetime.now(UTC))
            self.items[feed] = [fresh, *self.items[feed][: self.keep - 1]]
            self.bodies[feed] = self.render(feed)
            self.stats["new_items"] += 1
        body, tag = self.bodies[feed]
        if etag == tag:
            self.stats["not_modified"] += 1
            return 304, b"", tag
        self.stats["full"] += 1
        return 200, body, tag


def serve(port: int, count: int, items: int, share: float, ready: Any) -> None:
    feeds = Feeds(count, items, share)

    async def feed(request: web.Request) -> web.Response:
        status, body, etag = feeds.poll(
            int(request.match_info["n"]), request.headers.get("If-None-Match")
        )
        if status == 304:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/rss+xml", headers={"ETag": etag})

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        feeds.stats["alerts"] += 1
        return web.Response(text="ok")

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(feeds.stats)

    app = web.Application()
    app.router.add_get("/feed/{n}.xml", feed)
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- rules and config ---------------------------------------------------------------------------


def rules_yaml(count: int) -> str:
    """``count`` rules: every 100th matches an item with either of two topic words in it; the
    others also need a word no item contains, so they cost index work but never alert."""
    rng = random.Random(11)
    topic = WORDS["en"][:20] + WORDS["ru"][:20]
    lines = ["rules:"]
    for number in range(count):
        first, second = rng.sample(topic, 2)
        rare = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(7))
        if number % 100 == 0:
            match = f"{{any: [{first}, {second}]}}"
        elif number % 3 == 0:
            match = f"{{all: [{first}, {rare}]}}"
        elif number % 3 == 1:
            match = f"{{all: [{rare}], any: [{first}, {second}, {rare}x]}}"
        else:
            match = f'{{any: ["{first} {rare}", "{rare} {second}"]}}'
        lines.append(
            f"  - {{id: r{number:04d}, title: Rule {number}, severity: medium, match: {match}}}"
        )
    return "\n".join(lines) + "\n"


def config_yaml(feeds: int, port: int, interval: str, redis_url: str, rules: Path) -> str:
    lines = [f"redis: {{url: '{redis_url}'}}", "feeds:"]
    lines += [
        f"  - {{name: f{n}, url: 'http://127.0.0.1:{port}/feed/{n}.xml', interval: {interval}}}"
        for n in range(feeds)
    ]
    lines += [
        f"rules: {{paths: ['{rules}']}}",
        f"channels: {{webhook: {{url: 'http://127.0.0.1:{port}/hook'}}}}",
        "health: {port: 0}",
        "http: {host_gap: 0s, per_host: 50, max_concurrency: 50}",
        "log: {level: warning, format: json}",
    ]
    return "\n".join(lines) + "\n"


# --- measuring ----------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """``pid`` and every live descendant, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
    tree, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, up in parents.items() if up == parent]
        tree += kids
        frontier += kids
    return tree


@dataclass
class Sample:
    at: float
    rss_mb: float
    cpu_s: float
    processes: int
    main_rss_mb: float = 0.0
    """The daemon's own process, without its parser processes."""
    polls: int = 0


def sample(pids: list[int], started: float) -> Sample:
    rss = cpu = main = 0.0
    alive = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue
        alive += 1
        cpu += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICK
        rss += pages * PAGE / 2**20
        if pid == pids[0]:
            main = pages * PAGE / 2**20
    return Sample(time.monotonic() - started, rss, cpu, alive, main)


def redis_figures(client: redis.Redis, baseline: int) -> dict[str, float]:
    """Memory per tracked item: the growth of ``used_memory`` over the items recorded, and
    MEMORY USAGE of the keys that hold them."""
    info: Any = client.info("memory")
    items = int(client.xlen("monitor:items"))
    seen = list(client.scan_iter("monitor:seen:*", count=1000))
    sampled = random.Random(3).sample(seen, min(500, len(seen)))
    seen_bytes = sum(int(client.memory_usage(key) or 0) for key in sampled) / max(1, len(sampled))
    history = int(client.memory_usage("monitor:items", samples=0) or 0)
    feeds = list(client.scan_iter("monitor:feed:*", count=1000))
    feed_bytes = sum(int(client.memory_usage(key) or 0) for key in feeds[:500]) / max(
        1, min(500, len(feeds))
    )
    used = int(info["used_memory"])
    return {
        "used_mb": used / 2**20,
        "rss_mb": int(info["used_memory_rss"]) / 2**20,
        "items": items,
        "seen_keys": len(seen),
        "per_item": (used - baseline) / max(1, items),
        "seen_key_bytes": seen_bytes,
        "history_per_item": history / max(1, items),
        "history_mb": history / 2**20,
        "feed_hash_bytes": feed_bytes,
        "keys": int(client.dbsize()),
    }


def stats(port: int) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as answer:
        return dict(json.loads(answer.read()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=5000)
    parser.add_argument("--items", type=int, default=10, help="items kept in each feed")
    parser.add_argument("--interval", default="5m", help="every feed's poll interval")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to measure")
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--new-share", type=float, default=0.10, help="polls that find an item")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    args = parser.parse_args(argv)
    parse_duration(args.interval)  # refuse a bad --interval before starting anything

    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        folder = Path(tmp)
        server = EmbeddedRedis(folder / "redis")
        server.start()
        client = redis.Redis.from_url(server.url, decode_responses=True)
        baseline = int(client.info("memory")["used_memory"])
        port = free_port()
        ready = multiprocessing.get_context("spawn").Event()
        feed_server = multiprocessing.get_context("spawn").Process(
            target=serve, args=(port, args.feeds, args.items, args.new_share, ready), daemon=True
        )
        feed_server.start()
        ready.wait(120)
        time.sleep(1)
        rules = folder / "rules.yaml"
        rules.write_text(rules_yaml(args.rules), encoding="utf-8")
        config = folder / "monitor.yaml"
        config.write_text(
            config_yaml(args.feeds, port, args.interval, server.url, rules), encoding="utf-8"
        )
        log = (folder / "daemon.log").open("w")
        env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        print(
            f"{args.feeds} feeds every {args.interval}, {args.items} items each, "
            f"{args.new_share:.0%} of polls with a new item, {args.rules} rules; "
            f"measuring {args.minutes:g} min",
            flush=True,
        )
        print(
            " time   RSS MB (main)  CPU s (cum)  CPU % (last)  procs  polls   new  alerts",
            flush=True,
        )
        started = time.monotonic()
        samples: list[Sample] = []
        redis_pid = server._process.pid if server._process else 0
        redis_cpu0 = sample([redis_pid], started).cpu_s
        try:
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(args.sample)
                if daemon.poll() is not None:
                    print(f"the daemon exited with {daemon.returncode}; see its log", flush=True)
                    return 1
                now = sample(children_of(daemon.pid), started)
                previous = samples[-1] if samples else Sample(0, 0, 0, 0)
                samples.append(now)
                share = 100 * (now.cpu_s - previous.cpu_s) / max(1e-9, now.at - previous.at)
                seen = stats(port)
                now.polls = seen["polls"]
                print(
                    f"{now.at:5.0f}s {now.rss_mb:7.1f} ({now.main_rss_mb:5.1f}) "
                    f"{now.cpu_s:11.1f} {share:12.1f}% {now.processes:6d} {seen['polls']:6d} "
                    f"{seen['new_items']:5d} {seen['alerts']:7d}",
                    flush=True,
                )
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
            log.close()
        events: dict[str, int] = {}
        for line in (folder / "daemon.log").read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            key = f"{record.get('level')}: {record.get('event')}"
            if key not in events and record.get("level") in ("error", "critical"):
                print("first", key, "-", record.get("error", ""), flush=True)
            events[key] = events.get(key, 0) + 1
        if events:
            print("daemon log lines:", json.dumps(events, ensure_ascii=False), flush=True)
        redis_sample = sample([redis_pid], started)
        figures = redis_figures(client, baseline)
        seen = stats(port)
        feed_server.terminate()
        client.close()
        server.stop()

    first = next((s for s in samples if s.polls >= args.feeds), samples[-1])
    steady = samples[-1]
    steady_cpu = 100 * (steady.cpu_s - first.cpu_s) / max(1e-9, steady.at - first.at)
    print()
    print("| what | figure |")
    print("|---|---:|")
    print(f"| run | {args.feeds:,} feeds, {args.interval} interval, {steady.at / 60:.1f} min |")
    print(f"| polls answered by the feed server | {seen['polls']:,} |")
    print(f"| polls with a new item | {seen['new_items']:,} |")
    print(f"| alerts delivered (webhook) | {seen['alerts']:,} |")
    print(f"| daemon + parser processes, RSS at the end | {steady.rss_mb:.0f} MB |")
    print(f"| ... the daemon's own process | {steady.main_rss_mb:.0f} MB |")
    print(f"| RSS, highest sample | {max(s.rss_mb for s in samples):.0f} MB |")
    print(f"| CPU, first {first.at:.0f} s (every feed's first poll) | {first.cpu_s:.1f} s |")
    print(f"| CPU after that, average | {steady_cpu:.1f} % of one core |")
    print(f"| RSS after the first polls | {first.rss_mb:.0f} MB |")
    print(f"| Redis CPU over the run | {redis_sample.cpu_s - redis_cpu0:.1f} s |")
    print(
        f"| Redis used_memory / RSS at the end | {figures['used_mb']:.1f} / "
        f"{figures['rss_mb']:.1f} MB |"
    )
    print(f"| items tracked (history stream) | {figures['items']:,.0f} |")
    print(f"| seen keys | {figures['seen_keys']:,.0f} |")
    print(
        f"| Redis memory per tracked item (growth of used_memory / items) | "
        f"{figures['per_item']:,.0f} bytes |"
    )
    print(f"| ... of which history stream, per item | {figures['history_per_item']:,.0f} bytes |")
    print(f"| one seen key (MEMORY USAGE, mean of 500) | {figures['seen_key_bytes']:,.0f} bytes |")
    print(f"| one feed's state hash | {figures['feed_hash_bytes']:,.0f} bytes |")
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    raise SystemExit(main())
