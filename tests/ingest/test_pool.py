"""Parser processes prepare feeds exactly as the event loop would, with the daemon's rules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.commands import kill_daemon, process_running

from monitor.errors import FeedError
from monitor.ingest.fetch import FetchResult, hard_deadline
from monitor.ingest.pool.parsers import ParserPool, rules_payload
from monitor.ingest.prepare import PreparedFeed, prepare_feed
from monitor.model import Source
from monitor.rules import RuleSet, load_rules

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SOURCE = Source(name="wire", url="https://wire.example/feed.xml")
FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Wire</title>
<item><title>Kazakhstan weighs US and Chinese bids for the Upper Kairakty tungsten deposit</title>
<link>https://wire.example/1?utm_source=rss</link><guid>w-1</guid>
<description>&lt;p&gt;Astana is reviewing bids for the deposit.&lt;/p&gt;</description></item>
<item><title>Казахстан рассматривает заявки на вольфрамовое месторождение Верхнее Кайракты</title>
<link>https://wire.example/2</link><guid>w-2</guid></item>
<item><title>Weather: sunny in Almaty</title><link>https://wire.example/3</link><guid>w-3</guid></item>
</channel></rss>""".encode()


def response(body: bytes) -> FetchResult:
    return FetchResult(status=200, body=body, headers={}, url=SOURCE.url)


def matched_rules(prepared: PreparedFeed) -> list[list[str]]:
    return [
        [json.loads(match)["rule"] for match in item.record.match_json] for item in prepared.items
    ]


@pytest.fixture(scope="module")
def shipped_rules() -> RuleSet:
    return load_rules([REPO / "rules"])


async def test_items_that_cannot_alert_are_not_matched_in_a_worker_either(
    shipped_rules: RuleSet,
) -> None:
    """A first poll's archive (published before the backfill window, ``quiet_before``) is
    recorded without alerting, so it is not matched at all; the same items inside the
    window are.  The sample items carry no date: they are published when first seen (NOW)."""
    archive = NOW + timedelta(seconds=1)
    quiet = prepare_feed(SOURCE, FEED, {}, SOURCE.url, NOW, shipped_rules, quiet_before=archive)
    assert matched_rules(quiet) == [[], [], []]
    assert all(not item.record.rules for item in quiet.items)
    window = NOW - timedelta(hours=24)
    alerting = prepare_feed(SOURCE, FEED, {}, SOURCE.url, NOW, shipped_rules, quiet_before=window)
    assert matched_rules(alerting) == matched_rules(
        prepare_feed(SOURCE, FEED, {}, SOURCE.url, NOW, shipped_rules)
    )
    pool = ParserPool(1, shipped_rules)
    try:
        prepared = await pool.prepare(
            SOURCE, response(FEED), NOW, shipped_rules, frozenset(), archive
        )
    finally:
        pool.close()
    assert [i.record for i in prepared.items] == [i.record for i in quiet.items]


def busy_feed(items: int) -> bytes:
    entries = "".join(
        f"<item><title>Kazakhstan tungsten tender {n}</title><link>https://w.example/{n}</link>"
        f"<guid>g{n}</guid><description>Astana reviews bids for the deposit {n}.</description>"
        "</item>"
        for n in range(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>W</title>'
        f"{entries}</channel></rss>"
    ).encode()


async def test_polls_waiting_for_a_parser_turn_do_not_run_out_their_deadline(
    shipped_rules: RuleSet,
) -> None:
    """Sixteen polls at once with one parser process: each parse takes well under its poll's
    deadline, but together they take several deadlines; the wait for a turn stops the
    deadline's clock (``fetch.clock_paused``), so none is abandoned.  The deadline is set
    from one parse timed here, so the test holds on a fast machine and a busy one alike."""
    body = busy_feed(60)
    pool = ParserPool(1, shipped_rules)

    async def prepare() -> PreparedFeed:
        return await pool.prepare(SOURCE, response(body), NOW, shipped_rules, frozenset())

    async def poll(deadline: float) -> PreparedFeed:
        async with hard_deadline(deadline):
            return await prepare()

    try:
        await prepare()  # the pool's start is not what is measured
        started = time.monotonic()
        await prepare()
        deadline = 5 * (time.monotonic() - started)
        started = time.monotonic()
        prepared = await asyncio.gather(*(poll(deadline) for _ in range(16)))
        took = time.monotonic() - started
    finally:
        pool.close()
    assert all(p.error is None and len(p.items) == 60 for p in prepared)
    assert took > deadline, "the test needs the parses together to outlast one deadline"


async def test_a_worker_matches_as_the_event_loop_does(shipped_rules: RuleSet) -> None:
    """The rules cross into the worker by pickling; anything cached per process (string
    hashes differ between processes) must not make the worker's index disagree."""
    expected = prepare_feed(SOURCE, FEED, {}, SOURCE.url, NOW, shipped_rules)
    assert any(matched_rules(expected)), "the sample feed must match a shipped rule"
    pool = ParserPool(1, shipped_rules)
    try:
        prepared = await pool.prepare(SOURCE, response(FEED), NOW, shipped_rules, frozenset())
    finally:
        pool.close()
    assert prepared.rules_version == shipped_rules.version
    assert matched_rules(prepared) == matched_rules(expected)
    assert [i.record for i in prepared.items] == [i.record for i in expected.items]


async def test_a_parser_process_outlives_a_ctrl_c(shipped_rules: RuleSet) -> None:
    """Ctrl-C signals the whole process group; the daemon shuts its pool down in order, so
    a parser must not die of the SIGINT meanwhile."""
    pool = ParserPool(1, shipped_rules)
    try:
        await pool.prepare(SOURCE, response(FEED), NOW, shipped_rules, frozenset())
        (worker,) = pool.pids()
        os.kill(worker, signal.SIGINT)
        prepared = await pool.prepare(SOURCE, response(FEED), NOW, shipped_rules, frozenset())
        assert pool.pids() == [worker]
    finally:
        pool.close()
    assert prepared.items


async def test_a_dead_parser_process_costs_its_feeds_one_poll_not_every_poll(
    shipped_rules: RuleSet,
) -> None:
    """A parser killed (out of memory, say) breaks the process pool; the pool is replaced,
    the feed it held fails this pass as a feed error, and the next poll is prepared."""
    pool = ParserPool(1, shipped_rules)
    try:
        await pool.prepare(SOURCE, response(FEED), NOW, shipped_rules, frozenset())
        (worker,) = pool.pids()
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(FeedError, match="parser process preparing this feed died"):
            await pool.prepare(SOURCE, response(FEED), NOW, shipped_rules, frozenset())
        prepared = await pool.prepare(SOURCE, response(FEED), NOW, shipped_rules, frozenset())
        assert pool.pids() != [worker]
    finally:
        pool.close()
    assert matched_rules(prepared)


async def test_new_rules_reach_the_workers(shipped_rules: RuleSet, tmp_path: Path) -> None:
    rule = tmp_path / "weather.yaml"
    rule.write_text(
        "rules:\n  - id: weather\n    title: Weather\n    severity: info\n"
        "    match: {any: [sunny]}\n    examples: {match: [sunny day], no_match: [rain]}\n"
    )
    pool = ParserPool(1, shipped_rules)
    try:
        await pool.use_rules(load_rules([rule]))
        prepared = await pool.prepare(SOURCE, response(FEED), NOW, shipped_rules, frozenset())
    finally:
        pool.close()
    assert matched_rules(prepared) == [[], [], ["weather"]]


def test_entries_known_from_the_last_body_are_not_prepared_again(shipped_rules: RuleSet) -> None:
    first = prepare_feed(SOURCE, FEED, {}, SOURCE.url, NOW, shipped_rules)
    assert first.entries == 3
    assert len(first.items) == 3
    known = frozenset(first.fingerprints[:2])
    again = prepare_feed(SOURCE, FEED, {}, SOURCE.url, NOW, shipped_rules, known)
    assert again.entries == 3
    assert [i.record for i in again.items] == [first.items[2].record]
    assert again.fingerprints == first.fingerprints


def test_rules_keep_their_meaning_in_a_process_with_another_hash_seed(
    shipped_rules: RuleSet, tmp_path: Path
) -> None:
    """String hashes differ between processes: a rule set rebuilt from its pickled parts in a
    process with another hash seed must match exactly as the original does."""
    payload = tmp_path / "rules.pickle"
    payload.write_bytes(pickle.dumps(rules_payload(shipped_rules)))
    expected = matched_rules(prepare_feed(SOURCE, FEED, {}, SOURCE.url, NOW, shipped_rules))
    script = (
        "import pickle, sys, json\n"
        "from datetime import datetime, UTC\n"
        "from monitor.rules import RuleSet\n"
        "from monitor.model import Source\n"
        "from monitor.ingest.prepare import prepare_feed\n"
        "rules = RuleSet(**pickle.loads(open(sys.argv[1], 'rb').read()))\n"
        "feed = sys.stdin.buffer.read()\n"
        "source = Source(name='wire', url='https://wire.example/feed.xml')\n"
        "now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)\n"
        "prepared = prepare_feed(source, feed, {}, source.url, now, rules)\n"
        "print(json.dumps([[json.loads(m)['rule'] for m in i.record.match_json]"
        " for i in prepared.items]))\n"
    )
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(payload)],
            input=FEED,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=REPO,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout) == expected


#: Compiled modules only the daemon's side needs (settings, HTTP, templates); a parser process
#: that maps one of them has imported the daemon as well as the parsing modules.
DAEMON_ONLY = ("pydantic_core", "aiohttp", "markupsafe", "yarl", "multidict")
CONSOLE_SCRIPT = Path(sys.executable).parent / "monitor"


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def children(pid: int) -> list[int]:
    """A process's children, whichever of its threads started them (the daemon starts its
    fork server from a thread)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]


def parser_processes(daemon: int) -> list[int]:
    """The children of the daemon's fork server (its child running multiprocessing's)."""
    servers = [
        pid
        for pid in children(daemon)
        if b"multiprocessing.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return [pid for server in servers for pid in children(server)]


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the monitor command is not installed")
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_parser_processes_of_the_installed_command_load_only_parsing(
    tmp_path: Path, own_redis: Any
) -> None:
    """The container runs the console script, whose parser processes import it again as
    their main module (see ``monitor.cli``): they must not load the daemon with it."""
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"redis: {{url: '{own_redis.url}'}}\n"
        "feeds: [{name: wire, url: 'http://127.0.0.1:9/feed.xml', allow_private: true}]\n"
        f"rules: {{paths: ['{REPO / 'rules'}']}}\n"
        "channels: {console: {}}\nhealth: {port: 0}\ningest: {workers: 2}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    daemon = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "run", "-c", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        parsers = wait_for_parsers(daemon.pid, count=2)
        assert "pydantic_core" in mapped_files(daemon.pid)  # the check can see a daemon module
        for pid in parsers:
            maps = mapped_files(pid)
            assert "re2" in maps  # the parsing side is there: the rules' regex engine
            assert [name for name in DAEMON_ONLY if name in maps] == []
    finally:
        kill_daemon(daemon)


def wait_for_parsers(daemon: int, count: int, within: float = 60) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            parsers = parser_processes(daemon)
            if len(parsers) >= count and all("re2" in mapped_files(pid) for pid in parsers):
                return parsers
        time.sleep(0.2)
    raise AssertionError(f"the daemon did not start {count} parser processes in {within} s")


DAEMON_SCRIPT = """
import asyncio, os, sys
from pathlib import Path
from monitor.rules import load_rules
from monitor.ingest.pool.parsers import ParserPool

async def main() -> None:
    pool = ParserPool(2, load_rules([Path(sys.argv[1])]))
    pool.start()
    await pool._started
    print(" ".join(map(str, pool.pids())), flush=True)
    await asyncio.sleep(600)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_parser_processes_exit_when_the_daemon_is_killed(tmp_path: Path) -> None:
    """After a SIGKILL of the daemon (say, by the out-of-memory killer), its parser processes
    and their fork server must not stay behind, orphaned, for good."""
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON_SCRIPT)
    daemon = subprocess.Popen(
        [sys.executable, str(script), str(REPO / "rules")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        assert daemon.stdout is not None
        parsers = [int(pid) for pid in daemon.stdout.readline().split()]
        server = list({parent(pid) for pid in parsers})
        assert len(parsers) == 2
        assert still_running([*parsers, *server], within=0) == [*parsers, *server]
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(10)
        left = still_running([*parsers, *server], within=10)
        assert left == [], f"still running 10 s after the daemon was killed: {left}"
    finally:
        kill_daemon(daemon)
        if daemon.stdout is not None:
            daemon.stdout.close()


def still_running(pids: list[int], within: float) -> list[int]:
    """The processes among ``pids`` still alive (zombies count as gone) after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        alive = [pid for pid in pids if process_running(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
