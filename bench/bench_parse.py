"""Parse benchmark: the lxml fast path against feedparser, on one core, interleaved.

    python bench/bench_parse.py [--rounds 7] [--feeds 60] [--items 50]

Three sets of bodies, each parsed by ``parse_feed`` with the fast path on and off in turn
(the order alternating from round to round, so that drift on a shared machine falls on both):

- the shared corpus's feeds that the fast path takes (``../shared/corpus``; its coverage, how
  many of the corpus's XML feeds take it, is printed first);
- ``--feeds`` generated feeds of ``--items`` items each, the ones ``bench_ingest`` serves
  (English, Chinese and Russian, ~1 KB HTML summaries);
- the same generated feeds through ``prepare_feed`` with the shipped rules (parse, clean,
  fingerprint, match: a parser process's whole job for a first poll).

Prints the median time per feed for each side and the ratio (feedparser ÷ fast) per round as
median and range; ratios from one run are what to compare, absolute times on a shared machine
are noise.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_ingest import feed_body  # noqa: E402

from monitor.ingest.fastparse import fast_parse  # noqa: E402
from monitor.ingest.parse import FAST_PARSE_ENV, NotAFeedError, parse_feed  # noqa: E402
from monitor.ingest.prepare import prepare_feed  # noqa: E402
from monitor.model import Source  # noqa: E402
from monitor.rules import load_rules  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
URL = "https://example.org/feed.xml"
NOT_FEEDS = {".json", ".csv", ".tsv", ".md", ".html"}


def corpus_feeds() -> tuple[list[bytes], list[bytes], int, int]:
    """All XML bodies of the corpus, those the fast path takes, and the same counts for the
    real-world feeds alone (``realfeeds``; the rest is feedparser's own test suite)."""
    bodies, real, real_taken = [], 0, 0
    taken = []
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.suffix in NOT_FEEDS or path.name == "LICENSE":
            continue
        body = path.read_bytes()
        body = gzip.decompress(body) if path.suffix == ".gz" else body
        bodies.append(body)
        took = fast_parse(body, {}) is not None
        if took:
            taken.append(body)
        if "realfeeds" in path.parts:
            real += 1
            real_taken += took
    return bodies, taken, real, real_taken


def parse_all(bodies: list[bytes], fast: bool) -> None:
    for body in bodies:
        with contextlib.suppress(NotAFeedError):
            parse_feed(body, {}, URL, fast=fast)


def timed(run: Callable[[], None]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def compare(
    name: str,
    count: int,
    fast: Callable[[], None],
    slow: Callable[[], None],
    rounds: int,
    labels: tuple[str, str] = ("fast path", "feedparser"),
) -> None:
    """Run both sides ``rounds`` times, alternating which goes first; print per-feed medians
    and the ratio of each round."""
    fast_times, slow_times, ratios = [], [], []
    fast()  # warm up: imports, caches, the date parser's regexes
    slow()
    for round_ in range(rounds):
        if round_ % 2:
            slow_time, fast_time = timed(slow), timed(fast)
        else:
            fast_time, slow_time = timed(fast), timed(slow)
        fast_times.append(fast_time)
        slow_times.append(slow_time)
        ratios.append(slow_time / fast_time)
    per_fast = statistics.median(fast_times) / count * 1000
    per_slow = statistics.median(slow_times) / count * 1000
    print(
        f"{name}: {labels[1]} {per_slow:.2f} ms/feed, {labels[0]} {per_fast:.2f} ms/feed; "
        f"ratio {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--feeds", type=int, default=60)
    parser.add_argument("--items", type=int, default=50)
    args = parser.parse_args()

    print(f"CPU seconds of this process, {args.rounds} interleaved rounds")
    if CORPUS.is_dir():
        bodies, taken, real, real_taken = corpus_feeds()
        print(
            f"coverage: {len(taken)} of {len(bodies)} corpus XML files take the fast path "
            f"({real_taken} of {real} real-world feeds)"
        )
        compare(
            f"corpus ({len(taken)} feeds it takes)",
            len(taken),
            lambda: parse_all(taken, True),
            lambda: parse_all(taken, False),
            args.rounds,
        )
    else:
        print(f"no corpus at {CORPUS}: skipping the corpus part")

    generated = [feed_body(n, args.items) for n in range(args.feeds)]
    assert all(fast_parse(body, {}) is not None for body in generated)
    compare(
        f"generated {args.items}-item feeds ({args.feeds})",
        len(generated),
        lambda: parse_all(generated, True),
        lambda: parse_all(generated, False),
        args.rounds,
    )

    rules = load_rules([REPO / "rules"])
    now = datetime.now(UTC)
    sources = [
        Source(name=f"f{n}", url=f"https://news{n}.example/feed.xml") for n in range(args.feeds)
    ]

    def prepare_all(fast: bool) -> Callable[[], None]:
        def run() -> None:
            os.environ[FAST_PARSE_ENV] = "1" if fast else "0"
            for source, body in zip(sources, generated, strict=True):
                prepare_feed(source, body, {}, source.url, now, rules)

        return run

    compare(
        f"prepare_feed, shipped rules, generated {args.items}-item feeds",
        len(generated),
        prepare_all(True),
        prepare_all(False),
        args.rounds,
    )
    os.environ.pop(FAST_PARSE_ENV, None)

    # A first poll's archive, older than the backfill window: recorded without alerting,
    # so (since issue 19 item 2) not matched at all.
    archive = now + timedelta(days=1)

    def prepare_archive(matched: bool) -> Callable[[], None]:
        def run() -> None:
            quiet = None if matched else archive
            for source, body in zip(sources, generated, strict=True):
                prepare_feed(source, body, {}, source.url, now, rules, quiet_before=quiet)

        return run

    compare(
        f"prepare_feed of an archive (before the backfill window), {args.items}-item feeds",
        len(generated),
        prepare_archive(False),
        prepare_archive(True),
        args.rounds,
        labels=("not matched", "matched"),
    )


if __name__ == "__main__":
    main()
