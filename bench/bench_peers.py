"""Side by side with newsboat and rss2email: a first and a second poll of the same feeds.

    .venv/bin/python bench/bench_peers.py [--feeds 1000] [--rounds 2] [--skip newsboat] [--keep]

The corpus: ``--feeds`` RSS 2.0 feeds of ``--items`` (50) items each, in English, Chinese and
Russian in turn, each item with a summary of about 1 KB of HTML, dated every 6 hours back from
now (so a few items of each feed are inside monitor's default 24-hour backfill window).  For
the second poll every tenth feed gains five items on top (10 % of the feeds change; the other
90 % must answer 304 to a conditional GET).  Debian's nginx serves it, started here with its
own config on a free loopback port (ETag and Last-Modified on, an access log of statuses).

The tools, each from a fresh state, first poll then second poll, in turn, interleaved over
``--rounds`` rounds (the order rotates each round):

- monitor, ``monitor run --once`` with its defaults: the shipped rules (``rules/``), stories
  on, console alerts (to a file), log level info; against a private redis-server started here
  on a free port, a new one for each run.  Twice: ``backfill: off`` (every item alerts) and the
  default ``backfill: 24h``.  One change from the defaults: every feed here is on one host, so
  the per-host politeness (2 requests at a time, 1 s apart) would make the run a test of
  ``host_gap``; it is ``per_host: 50, host_gap: 0s``, as for a list spread over many hosts.
- newsboat (Debian), ``newsboat -x reload`` with its own config, url file and cache.
- rss2email (PyPI, in a venv of its own under ``~/.cache/monitor-bench``), ``r2e run
  --no-send``: every new item is still parsed and made into an email message, only the SMTP
  step is skipped.

For each tool and poll: wall time; CPU of the whole process tree (children included: for
monitor, its fork server, parser processes and resource tracker; plus Redis, measured from
/proc apart); peak PSS summed over the tree (Redis apart); and the new items, checked against
the exact number expected (monitor: its "pass complete" log line; newsboat: its cache's
``rss_item`` rows; rss2email: the seen entries in its data file), and nginx's 200s and 304s.
Then ratios per round, the issue's targets, and Redis' memory per stored item.  Absolute
times on a shared machine are noise: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol
from xml.sax.saxutils import quoteattr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_ingest import FILLER, WORDS  # noqa: E402
from peers_proc import Measured, become_subreaper, measure  # noqa: E402

LANGS = ("en", "zh", "ru")
NEW_PER_CHANGED = 5
CHANGED_EVERY = 10
ITEM_SPACING = timedelta(hours=6)
TOPIC_SHARE = 0.15
"""Share of an item's words drawn from the watched topics (``--topic-share``): as the matching
benchmark's "news" items, so that the shipped rules match a good part of the corpus and the
cost of matching, explaining and storing matches is in the figures."""
TOPIC = {
    "en": WORDS["en"],
    "ru": WORDS["ru"],
    # Words, not single characters (bench_ingest's list): Chinese rules name words.
    "zh": [
        "哈萨克斯坦",
        "钨矿",
        "稀土",
        "出口管制",
        "许可",
        "投资",
        "关键矿产",
        "中亚",
        "开采权",
        "合资",
        "矿床",
        "融资",
        "矿业",
        "美国",
        "中国",
        "出口",
        "收购",
        "项目",
        "勘探",
        "阿斯塔纳",
    ],
}
RSS2EMAIL = "rss2email==3.14"
TOOLS = ("monitor-backfill-off", "monitor-backfill-on", "newsboat", "rss2email")
NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


class Missing(SystemExit):
    """A peer or server this benchmark needs is not installed; says how to get it."""


# --- the corpus ---------------------------------------------------------------------------------


def paragraph(rng: random.Random, lang: str, words: int, share: float) -> str:
    joiner = "" if lang == "zh" else " "
    return joiner.join(
        rng.choice(TOPIC[lang] if rng.random() < share else FILLER[lang]) for _ in range(words)
    )


def item_xml(feed: int, number: int, published: datetime, share: float) -> str:
    """Item ``number`` of ``feed``: the same bytes whenever it is rendered."""
    rng = random.Random(feed * 100_003 + number)
    lang = LANGS[feed % 3]
    words = 150 if lang == "zh" else 65
    summary = (
        f"<p>{paragraph(rng, lang, words, share)}</p><p>{paragraph(rng, lang, words, share)}</p>"
        f'<p><a href="https://news{feed}.example/a/{number}">more</a></p>'
    )
    return (
        f"<item><title>{paragraph(rng, lang, 12, share)}</title>"
        f"<link>https://news{feed}.example/{number}</link>"
        f'<guid isPermaLink="false">feed{feed}-item{number}</guid>'
        f"<pubDate>{format_datetime(published)}</pubDate>"
        f"<description><![CDATA[{summary}]]></description></item>"
    )


def feed_xml(feed: int, items: int, extra: int, now: datetime, share: float) -> bytes:
    """``items`` items dated every 6 hours back from ``now`` (offset by a few minutes per feed),
    and ``extra`` newer ones on top, dated in the last minutes."""
    offset = timedelta(minutes=feed % 300)
    old = [
        item_xml(feed, n, now - offset - (items - 1 - n) * ITEM_SPACING, share)
        for n in range(items)
    ]
    new = [
        item_xml(feed, items + n, now - timedelta(minutes=extra - n), share) for n in range(extra)
    ]
    lang = LANGS[feed % 3]
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Synthetic feed {feed}</title><link>https://news{feed}.example/</link>"
        f"<description>Feed {feed}</description><language>{lang}</language>"
        f"{''.join(reversed(old + new))}</channel></rss>"
    ).encode()


@dataclass
class Corpus:
    """The served feeds (``www/feed/N.xml``), and the two versions of the feeds that change."""

    folder: Path
    feeds: int
    items: int
    share: float
    changed: list[int] = field(default_factory=list)
    size_mb: float = 0.0

    def build(self, now: datetime) -> None:
        for part in ("www/feed", "base", "changed"):
            (self.folder / part).mkdir(parents=True)
        self.changed = list(range(0, self.feeds, CHANGED_EVERY))
        total = 0
        for feed in range(self.feeds):
            body = feed_xml(feed, self.items, 0, now, self.share)
            total += len(body)
            (self.folder / "www/feed" / f"{feed}.xml").write_bytes(body)
            if feed in self.changed:
                (self.folder / "base" / f"{feed}.xml").write_bytes(body)
                changed = feed_xml(feed, self.items, NEW_PER_CHANGED, now, self.share)
                (self.folder / "changed" / f"{feed}.xml").write_bytes(changed)
        self.size_mb = total / 2**20

    def url(self, port: int, feed: int) -> str:
        return f"http://127.0.0.1:{port}/feed/{feed}.xml"

    def reset(self) -> None:
        """Every feed as on a first poll."""
        self._copy("base")

    def change(self) -> None:
        """Every tenth feed gains five items (a new body, so a new ETag)."""
        self._copy("changed")

    def _copy(self, version: str) -> None:
        for feed in self.changed:
            shutil.copyfile(
                self.folder / version / f"{feed}.xml", self.folder / "www/feed" / f"{feed}.xml"
            )

    def expected(self, phase: str) -> tuple[int, int, int]:
        """New items, 200s and 304s a correct tool sees on this poll."""
        if phase == "first":
            return self.feeds * self.items, self.feeds, 0
        changed = len(self.changed)
        return changed * NEW_PER_CHANGED, changed, self.feeds - changed


# --- the feed server ----------------------------------------------------------------------------


def find_binary(name: str, hint: str) -> str:
    """``name`` on PATH or in the sbin folders (nginx is in /usr/sbin, off a user's PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
    if found is None:
        raise Missing(f"{name} not found: {hint}")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ application/rss+xml xml; }}
    default_type application/octet-stream;
    log_format statuses '$status';
    access_log {run}/access.log statuses;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    sendfile on;
    etag on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
"""


class Nginx:
    """Debian's nginx serving ``www`` on a free loopback port, never the system's service."""

    def __init__(self, binary: str, folder: Path, www: Path) -> None:
        self.binary = binary
        self.run = folder / "nginx"
        self.www = www
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> None:
        self.run.mkdir()
        conf = self.run / "nginx.conf"
        conf.write_text(NGINX_CONF.format(run=self.run, port=self.port, www=self.www))
        self.process = subprocess.Popen(
            [self.binary, "-p", f"{self.run}/", "-e", str(self.run / "error.log"), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise SystemExit(f"nginx exited with {self.process.returncode}: {error.strip()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"nginx did not listen on 127.0.0.1:{self.port} within 10 s")

    def statuses(self) -> Counter[str]:
        """The statuses nginx logged since the last call (waits for the log to settle: a
        line is written after its response is sent)."""
        log = self.run / "access.log"
        size = -1
        while (now := log.stat().st_size) != size:
            size = now
            time.sleep(0.1)
        with log.open("rb") as handle:
            handle.seek(self._log_offset)
            lines = handle.read().decode().split()
            self._log_offset = handle.tell()
        return Counter(lines)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the tools ----------------------------------------------------------------------------------


@dataclass
class Poll:
    """One tool's one poll, and what it found."""

    tool: str
    round: int
    phase: str
    cost: Measured
    new_items: int | None
    expected: tuple[int, int, int]
    statuses: Counter[str]
    problem: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_cpu_s(self) -> float:
        """The tool's process tree plus its Redis (monitor's only)."""
        return self.cost.cpu_s + self.cost.apart_cpu_s

    @property
    def counts_ok(self) -> bool:
        return self.new_items == self.expected[0] and self.cost.returncode == 0 and not self.problem


class Tool(Protocol):
    name: str

    def setup(self, folder: Path) -> None:
        """A fresh state for a first poll, in ``folder``."""

    def poll(self, phase: str) -> tuple[Measured, int | None, str, dict[str, Any]]:
        """One run: its cost, the new items it counted, a problem seen, extra figures."""

    def teardown(self) -> None: ...


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONITOR_CONFIG", "PYTHONPATH")}
    env.update(NO_PROXY)
    env.update(extra)
    return env


class MonitorTool:
    """``monitor run --once`` against a private redis-server, one per setup."""

    def __init__(self, code: Path, corpus: Corpus, port: int, *, backfill: bool) -> None:
        self.name = "monitor-backfill-on" if backfill else "monitor-backfill-off"
        self.code = code
        self.corpus = corpus
        self.port = port
        self.backfill = backfill
        self.redis: Any = None
        self.baseline = 0
        self.folder = Path()
        self.recorded = 0

    def config(self, redis_url: str) -> str:
        lines = [f"redis: {{url: '{redis_url}'}}", "feeds:"]
        lines += [
            f"  - {{name: f{n}, url: '{self.corpus.url(self.port, n)}'}}"
            for n in range(self.corpus.feeds)
        ]
        lines += [
            f"rules: {{paths: ['{self.code / 'rules'}']}}",
            "channels: {console: {}}",
            "health: {port: 0}",
            "http: {per_host: 50, host_gap: 0s}",
        ]
        if not self.backfill:
            lines.append("ingest: {backfill: 'off'}")
        return "\n".join(lines) + "\n"

    def setup(self, folder: Path) -> None:
        import redis

        from monitor.app.embedded_redis import EmbeddedRedis

        self.folder = folder
        self.redis = EmbeddedRedis(folder / "redis")
        self.redis.start()
        client = redis.Redis.from_url(self.redis.url)
        self.baseline = int(client.info("memory")["used_memory"])
        client.close()
        (folder / "monitor.yaml").write_text(self.config(self.redis.url), encoding="utf-8")
        self.recorded = 0

    def poll(self, phase: str) -> tuple[Measured, int | None, str, dict[str, Any]]:
        import redis

        redis_pid = self.redis._process.pid
        out = self.folder / f"{phase}.out"
        err = self.folder / f"{phase}.log"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            cost = measure(
                [sys.executable, "-m", "monitor", "run", "--once", "-c", "monitor.yaml"],
                env=clean_env(PYTHONPATH=str(self.code)),
                cwd=self.folder,
                stdout=stdout,
                stderr=stderr,
                apart=[redis_pid],
            )
        summary, problem = read_monitor_log(err)
        stages = monitor_stages(err, cost.started_at, cost.wall_s)
        client = redis.Redis.from_url(self.redis.url)
        used = int(client.info("memory")["used_memory"])
        history = int(client.xlen("monitor:items"))
        client.close()
        new = summary.get("new_items") if summary else None
        self.recorded += new or 0
        extra = {
            "matches": summary.get("matches") if summary else None,
            "failed": summary.get("failed") if summary else None,
            "alerts": summary.get("alerts_delivered") if summary else None,
            "redis_used_mb": used / 2**20,
            "redis_per_item": (used - self.baseline) / max(1, self.recorded),
            "history": history,
            "stages": stages,
        }
        if summary and summary.get("failed"):
            problem = problem or f"{summary['failed']} feeds failed"
        return cost, new, problem, extra

    def teardown(self) -> None:
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


def read_monitor_log(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The "pass complete" record of a ``run --once`` log, and its first error, if any."""
    summary: dict[str, Any] | None = None
    problem = ""
    lines = path.read_text(errors="replace").splitlines()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if record.get("event") == "pass complete":
            summary = record
        elif record.get("level") in ("error", "critical") and not problem:
            problem = f"{record.get('event')}: {record.get('error', record.get('exception', ''))}"
    if summary is None and not problem:
        tail = [line for line in lines if line.strip()][-3:]
        problem = " | ".join(tail) or "no 'pass complete' line and no output"
    return summary, problem[:600]


def monitor_stages(path: Path, launched: float, wall: float) -> str:
    """Where a ``run --once`` spent its wall time, from its log's timestamps: start-up (to
    "monitor started"), polling (to the last "poll" line), delivery and the rest (to the
    "pass complete" line), shutdown (to the process's exit)."""
    marks: dict[str, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            at = datetime.fromisoformat(record["timestamp"]).timestamp() - launched
        except (ValueError, KeyError, TypeError):
            continue
        event = record.get("event")
        if event in ("monitor started", "poll", "pass complete"):
            marks[str(event)] = at
    if len(marks) < 3:
        return ""
    started, polled, done = marks["monitor started"], marks["poll"], marks["pass complete"]
    return (
        f"start-up {started:.1f} s, polls {polled - started:.1f} s, "
        f"delivery {done - polled:.1f} s, exit {wall - done:.1f} s"
    )


class NewsboatTool:
    """``newsboat -x reload`` with its own config, url file, cache and home."""

    def __init__(self, binary: str, corpus: Corpus, port: int) -> None:
        self.name = "newsboat"
        self.binary = binary
        self.corpus = corpus
        self.port = port
        self.folder = Path()
        self.before = 0

    def setup(self, folder: Path) -> None:
        self.folder = folder
        (folder / "home").mkdir()
        urls = [self.corpus.url(self.port, n) for n in range(self.corpus.feeds)]
        (folder / "urls").write_text("\n".join(urls) + "\n")
        (folder / "config").write_text("# newsboat's defaults\n")
        self.before = 0

    def items(self) -> int:
        cache = self.folder / "cache.db"
        if not cache.exists():
            return 0
        with sqlite3.connect(cache) as db:
            return int(db.execute("SELECT COUNT(*) FROM rss_item").fetchone()[0])

    def poll(self, phase: str) -> tuple[Measured, int | None, str, dict[str, Any]]:
        argv = [self.binary, "-x", "reload", "-u", "urls", "-c", "cache.db", "-C", "config"]
        home = str(self.folder / "home")
        env = clean_env(HOME=home, XDG_CONFIG_HOME=home, XDG_DATA_HOME=home)
        with (self.folder / f"{phase}.log").open("wb") as out:
            cost = measure(argv, env=env, cwd=self.folder, stdout=out, stderr=out)
        now = self.items()
        new, self.before = now - self.before, now
        problem = "" if cost.returncode == 0 else self._tail(phase)
        return cost, new, problem, {"items": now}

    def _tail(self, phase: str) -> str:
        text = (self.folder / f"{phase}.log").read_text(errors="replace").strip()
        return " | ".join(text.splitlines()[-3:])[:600]

    def teardown(self) -> None:
        pass


class Rss2emailTool:
    """``r2e run --no-send`` with its own config and data file (feeds added by OPML)."""

    def __init__(self, r2e: str, corpus: Corpus, port: int) -> None:
        self.name = "rss2email"
        self.r2e = r2e
        self.corpus = corpus
        self.port = port
        self.folder = Path()
        self.before = 0

    def argv(self, *command: str) -> list[str]:
        return [self.r2e, "-c", "r2e.cfg", "-d", "r2e.json", *command]

    def env(self) -> dict[str, str]:
        home = str(self.folder / "home")
        return clean_env(HOME=home, XDG_CONFIG_HOME=home, XDG_DATA_HOME=home)

    def setup(self, folder: Path) -> None:
        self.folder = folder
        (folder / "home").mkdir()
        outlines = "".join(
            f"<outline type='rss' text='f{n}' xmlUrl={quoteattr(self.corpus.url(self.port, n))}/>"
            for n in range(self.corpus.feeds)
        )
        opml = f"<?xml version='1.0'?><opml version='1.0'><body>{outlines}</body></opml>"
        (folder / "feeds.opml").write_text(opml)
        for command in (["new", "bench@example.org"], ["opmlimport", "feeds.opml"]):
            subprocess.run(
                self.argv(*command), cwd=folder, env=self.env(), check=True, capture_output=True
            )
        self.before = 0

    def seen(self) -> int:
        data = json.loads((self.folder / "r2e.json").read_text())
        return sum(len(feed.get("seen") or {}) for feed in data["feeds"])

    def poll(self, phase: str) -> tuple[Measured, int | None, str, dict[str, Any]]:
        with (self.folder / f"{phase}.log").open("wb") as out:
            cost = measure(
                self.argv("run", "--no-send"),
                env=self.env(),
                cwd=self.folder,
                stdout=out,
                stderr=out,
            )
        now = self.seen()
        new, self.before = now - self.before, now
        # It logs every feed at INFO; warnings and errors are what went wrong.
        log = (self.folder / f"{phase}.log").read_text(errors="replace").splitlines()
        bad = [line for line in log if "[WARNING]" in line or "[ERROR]" in line]
        if cost.returncode != 0:
            bad += log[-3:]
        problem = f"{len(bad)} warnings/errors, first: {bad[0]}" if bad else ""
        return cost, new, problem[:600], {"seen": now}

    def teardown(self) -> None:
        pass


def rss2email_binary(given: str | None) -> str:
    """``--r2e`` if given, else rss2email 3.14 in a venv of its own, made on first use."""
    if given:
        if not Path(given).is_file():
            raise Missing(f"--r2e {given}: no such file")
        return given
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    venv = cache / "monitor-bench" / "rss2email-3.14"
    r2e = venv / "bin" / "r2e"
    if r2e.is_file():
        return str(r2e)
    print(f"installing {RSS2EMAIL} into {venv} (once) ...", flush=True)
    python = shutil.which("python3") or sys.executable
    try:
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", RSS2EMAIL], check=True, capture_output=True
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(venv, ignore_errors=True)
        said = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        raise Missing(
            f"rss2email could not be installed into {venv}: {' '.join(said)} "
            "(needs python3-venv and PyPI; or pass --r2e PATH, or --skip rss2email)"
        ) from None
    return str(r2e)


def version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


# --- running ------------------------------------------------------------------------------------


def run_tool(tool: Tool, corpus: Corpus, nginx: Nginx, folder: Path, number: int) -> list[Poll]:
    """A fresh state, a first poll, the change, a second poll."""
    corpus.reset()
    folder.mkdir()
    tool.setup(folder)
    nginx.statuses()  # forget the setup's requests, if any
    polls = []
    try:
        for phase in ("first", "second"):
            if phase == "second":
                corpus.change()
            cost, new, problem, extra = tool.poll(phase)
            poll = Poll(
                tool.name,
                number,
                phase,
                cost,
                new,
                corpus.expected(phase),
                nginx.statuses(),
                problem,
                extra,
            )
            polls.append(poll)
            print(line(poll), flush=True)
    finally:
        tool.teardown()
    return polls


def line(poll: Poll) -> str:
    new = poll.expected[0]
    cost = poll.cost
    redis = f" + Redis {cost.apart_cpu_s:.1f}" if poll.tool.startswith("monitor") else ""
    memory = f"{cost.peak_pss_mb:.0f} MB"
    if poll.tool.startswith("monitor"):
        memory += f" + Redis {cost.apart_peak_pss_mb:.0f} MB"
    check = "ok" if poll.counts_ok else "WRONG"
    statuses = f"200 × {poll.statuses.get('200', 0)}, 304 × {poll.statuses.get('304', 0)}"
    others = {k: v for k, v in poll.statuses.items() if k not in ("200", "304")}
    text = (
        f"  round {poll.round} {poll.tool:21} {poll.phase:6} wall {cost.wall_s:7.2f} s  "
        f"CPU {cost.cpu_s:7.2f} s{redis}  PSS {memory}  procs {cost.processes}  "
        f"new {poll.new_items} (expected {new}: {check})  {statuses}"
        + (f" others {dict(others)}" if others else "")
    )
    if poll.tool.startswith("monitor"):
        text += f"  matches {poll.extra.get('matches')} alerts {poll.extra.get('alerts')}"
        if poll.extra.get("stages"):
            text += f"\n    {poll.extra['stages']}"
    if cost.returncode != 0:
        text += f"\n    exit status {cost.returncode}"
    if poll.problem:
        text += f"\n    problem: {poll.problem}"
    if cost.lingering:
        text += f"\n    still running 30 s after exit (not counted): {cost.lingering}"
    return text


# --- reporting ----------------------------------------------------------------------------------


def by(polls: list[Poll], tool: str, number: int, phase: str) -> Poll | None:
    return next(
        (p for p in polls if p.tool == tool and p.round == number and p.phase == phase), None
    )


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 else "-"


def print_ratios(polls: list[Poll], rounds: int) -> None:
    for number in range(1, rounds + 1):
        print(f"\nround {number}: ratios (monitor ÷ peer; below 1 is monitor ahead)")
        for variant in ("monitor-backfill-on", "monitor-backfill-off"):
            for peer in ("newsboat", "rss2email"):
                parts = []
                for phase in ("first", "second"):
                    mine, theirs = by(polls, variant, number, phase), by(polls, peer, number, phase)
                    if mine is None or theirs is None:
                        continue
                    parts.append(
                        f"{phase} poll wall {ratio(mine.cost.wall_s, theirs.cost.wall_s)} "
                        f"CPU {ratio(mine.total_cpu_s, theirs.total_cpu_s)}"
                    )
                mine, theirs = by(polls, variant, number, "first"), by(polls, peer, number, "first")
                if mine is not None and theirs is not None:
                    peak_mine = max(
                        p.cost.peak_pss_mb for p in polls if p.tool == variant and p.round == number
                    )
                    peak_theirs = max(
                        p.cost.peak_pss_mb for p in polls if p.tool == peer and p.round == number
                    )
                    parts.append(f"PSS {ratio(peak_mine, peak_theirs)} (Redis apart)")
                if parts:
                    print(f"  {variant} ÷ {peer}: " + "; ".join(parts))
        print_targets(polls, number)


def print_targets(polls: list[Poll], number: int) -> None:
    """The issue's targets, for the default config (backfill on)."""
    first = by(polls, "monitor-backfill-on", number, "first")
    second = by(polls, "monitor-backfill-on", number, "second")
    nb_first = by(polls, "newsboat", number, "first")
    nb_second = by(polls, "newsboat", number, "second")
    r2e_second = by(polls, "rss2email", number, "second")
    if first is None or second is None:
        return
    checks = []
    if nb_first is not None:
        checks.append(
            ("first poll wall ≤ newsboat's ÷ 3", first.cost.wall_s <= nb_first.cost.wall_s / 3)
        )
        checks.append(("first poll CPU ≤ newsboat's", first.total_cpu_s <= nb_first.total_cpu_s))
    checks.append(("second poll wall ≤ 2 s", second.cost.wall_s <= 2.0))
    if r2e_second is not None:
        checks.append(
            (
                "second poll wall ≤ rss2email's ÷ 5",
                second.cost.wall_s <= r2e_second.cost.wall_s / 5,
            )
        )
    new, _full, not_modified = second.expected
    checks.append(
        (
            f"second poll exactly {not_modified} × 304 and {new} new items",
            second.statuses.get("304", 0) == not_modified and second.new_items == new,
        )
    )
    if nb_first is not None and nb_second is not None:
        mine = max(first.cost.peak_pss_mb, second.cost.peak_pss_mb)
        theirs = max(nb_first.cost.peak_pss_mb, nb_second.cost.peak_pss_mb)
        checks.append(("daemon + parsers PSS ≤ newsboat's peak PSS", mine <= theirs))
    print("  issue 19 targets (default config, backfill on):")
    for text, met in checks:
        print(f"    {'met    ' if met else 'NOT MET'}  {text}")


def print_markdown(polls: list[Poll]) -> None:
    print("\n| round | tool | poll | wall | CPU (tree + Redis) | peak PSS (+ Redis) | new items |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for poll in polls:
        cost = poll.cost
        monitor = poll.tool.startswith("monitor")
        cpu = f"{poll.total_cpu_s:.1f} s" + (
            f" ({cost.cpu_s:.1f} + {cost.apart_cpu_s:.1f})" if monitor else ""
        )
        memory = f"{cost.peak_pss_mb:.0f} MB" + (
            f" (+ {cost.apart_peak_pss_mb:.0f} MB)" if monitor else ""
        )
        new = f"{poll.new_items:,}" if poll.new_items is not None else "?"
        if not poll.counts_ok:
            new += f" (expected {poll.expected[0]:,})"
        print(
            f"| {poll.round} | {poll.tool} | {poll.phase} | {cost.wall_s:.2f} s | {cpu} | "
            f"{memory} | {new} |"
        )


def print_redis(polls: list[Poll]) -> None:
    for poll in polls:
        if poll.tool.startswith("monitor") and poll.phase == "second":
            extra = poll.extra
            print(
                f"  round {poll.round} {poll.tool}: Redis used_memory {extra['redis_used_mb']:.1f}"
                f" MB after both polls, {extra['redis_per_item']:,.0f} bytes per item recorded"
                f" (history stream {extra['history']:,} entries)"
            )


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=1000, help="feeds in the corpus")
    parser.add_argument("--items", type=int, default=50, help="items per feed")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every tool in turn")
    parser.add_argument(
        "--topic-share",
        type=float,
        default=TOPIC_SHARE,
        help="share of words from the watched topics (0.15: about half the items match)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        help=f"leave a tool out (repeat, or comma-separated): monitor, {', '.join(TOOLS)}",
    )
    parser.add_argument("--r2e", help="an rss2email 'r2e' to use instead of the benchmark's own")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, caches)")
    args = parser.parse_args(argv)
    skip = {name for given in args.skip for name in given.split(",") if name}
    unknown = skip - {"monitor", *TOOLS}
    if unknown:
        parser.error(
            f"--skip: unknown {', '.join(sorted(unknown))}; choose from monitor, {', '.join(TOOLS)}"
        )
    if "monitor" in skip:
        skip |= {"monitor-backfill-off", "monitor-backfill-on"}
    args.skip = skip
    return args


def preflight(args: argparse.Namespace) -> dict[str, str]:
    """Find (or install) every tool before building anything; fail naming what is missing."""
    from monitor.app.embedded_redis import INSTALL_HINT, find_server

    found = {"nginx": find_binary("nginx", "apt-get install nginx (it serves the corpus)")}
    if not {"monitor-backfill-off", "monitor-backfill-on"} <= args.skip:
        redis_server = find_server()
        if redis_server is None:
            raise Missing(f"redis-server not found: {INSTALL_HINT}")
        found["redis-server"] = redis_server
    if "newsboat" not in args.skip:
        found["newsboat"] = find_binary("newsboat", "apt-get install newsboat, or --skip newsboat")
    if "rss2email" not in args.skip:
        found["rss2email"] = rss2email_binary(args.r2e)
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    found = preflight(args)
    if not become_subreaper():
        print("warning: not a child subreaper; CPU of orphaned descendants may be missed")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (1 min)")
    print("versions:", "; ".join(describe(found)))
    folder = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    folder.chmod(0o755)  # nginx's worker runs as nobody when started as root
    corpus = Corpus(folder / "corpus", args.feeds, args.items, args.topic_share)
    started = time.perf_counter()
    corpus.build(datetime.now(UTC))
    print(
        f"corpus: {args.feeds:,} feeds × {args.items} items, {corpus.size_mb:.1f} MB "
        f"(built in {time.perf_counter() - started:.0f} s), {args.topic_share:.0%} topic words; "
        "second poll: "
        f"{len(corpus.changed)} feeds gain {NEW_PER_CHANGED} items each",
        flush=True,
    )
    nginx = Nginx(found["nginx"], folder, corpus.folder / "www")
    nginx.start()
    code = snapshot(folder / "code")
    tools = build_tools(args, found, code, corpus, nginx.port)
    polls: list[Poll] = []
    try:
        for number in range(1, args.rounds + 1):
            turn = (number - 1) % len(tools)
            order = tools[turn:] + tools[:turn]
            print(f"\nround {number}: {', '.join(t.name for t in order)}", flush=True)
            for tool in order:
                polls += run_tool(tool, corpus, nginx, folder / f"r{number}-{tool.name}", number)
    finally:
        nginx.stop()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print_ratios(polls, args.rounds)
    print("\nRedis memory per stored item (growth of INFO used_memory ÷ items recorded):")
    print_redis(polls)
    print_markdown(polls)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (1 min)")
    return 0 if all(p.counts_ok for p in polls) else 1


def build_tools(
    args: argparse.Namespace, found: dict[str, str], code: Path, corpus: Corpus, port: int
) -> list[Tool]:
    tools: list[Tool] = []
    for backfill in (False, True):
        tool = MonitorTool(code, corpus, port, backfill=backfill)
        if tool.name not in args.skip:
            tools.append(tool)
    if "newsboat" not in args.skip:
        tools.append(NewsboatTool(found["newsboat"], corpus, port))
    if "rss2email" not in args.skip:
        tools.append(Rss2emailTool(found["rss2email"], corpus, port))
    return tools


def snapshot(code: Path) -> Path:
    """A copy of ``monitor/`` and ``rules/`` as they are now, which every monitor run of this
    benchmark imports (``PYTHONPATH``): a run measures one version of the code even while the
    work tree changes under it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "monitor", code / "monitor", ignore=ignore)
    shutil.copytree(REPO / "rules", code / "rules", ignore=ignore)
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "monitor", "rules"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    print(
        f"monitor code: commit {head or '?'}"
        + (f" plus {len(changed)} uncommitted files in monitor/ and rules/" if changed else "")
        + f", copied to {code} for this run",
        flush=True,
    )
    return code


def describe(found: dict[str, str]) -> list[str]:
    from monitor import __version__

    described = [f"monitor {__version__}", version([found["nginx"], "-v"])]
    if "redis-server" in found:
        described.append(version([found["redis-server"], "--version"]))
    if "newsboat" in found:
        described.append(version([found["newsboat"], "-v"]))
    if "rss2email" in found:
        described.append(version([found["rss2email"], "--version"]))
    return described


if __name__ == "__main__":
    raise SystemExit(main())
