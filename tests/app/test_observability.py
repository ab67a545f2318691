"""What an operator sees: /metrics, /readyz, the heartbeat and `monitor status`."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from support.channel_fixtures import enqueue, make_match
from support.feed_server import FeedServer, rss
from support.servers import SlackServer

from monitor import __version__
from monitor.app.daemon import Monitor
from monitor.app.embedded_redis import EmbeddedRedis, free_port
from monitor.app.metrics import Metrics
from monitor.cli import main
from monitor.deliver.channels import ConsoleChannel, SlackChannel
from monitor.deliver.policy import RetryPolicy, Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.worker import DeliveryPolicy, DeliveryWorker
from monitor.model import PollResult
from monitor.redisio import Keys
from monitor.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_the_standard_process_series_build_info_and_digests_sent() -> None:
    """Issue 16: process_* and a build info series, and a digest counted as an alert sent."""
    metrics = Metrics()
    metrics.digest_sent("email")
    found = samples(metrics.render().decode())
    assert found[("process_cpu_seconds_total", ())] > 0
    assert found[("process_resident_memory_bytes", ())] > 0
    build = (("python", platform.python_version()), ("version", __version__))
    assert found[("monitor_build_info", build)] == 1
    assert found[("monitor_alerts_sent_total", (("channel", "email"),))] == 1


def test_poll_results_are_counted_by_feed_and_outcome() -> None:
    metrics = Metrics()
    metrics.observe_poll(
        PollResult(
            "wire",
            "ok",
            200,
            entries=5,
            new_items=2,
            matches=3,
            matched_rules=("kz",) * 2 + ("ree",),
        )
    )
    metrics.observe_poll(PollResult("wire", "not-modified", 304))
    metrics.observe_poll(PollResult("bad", "error", error="HTTP 500"))
    metrics.observe_queue({"queued": 4, "pending": 1, "dead": 2})
    found = samples(metrics.render().decode())
    assert found[("monitor_polls_total", (("feed", "wire"), ("outcome", "ok")))] == 1
    assert found[("monitor_polls_total", (("feed", "bad"), ("outcome", "error")))] == 1
    assert found[("monitor_new_items_total", ())] == 2
    assert found[("monitor_items_deduplicated_total", ())] == 3
    assert found[("monitor_matches_total", ())] == 3
    assert found[("monitor_rule_matches_total", (("rule", "kz"),))] == 2
    assert found[("monitor_rule_matches_total", (("rule", "ree"),))] == 1
    assert found[("monitor_poll_duration_seconds_count", ())] == 3
    assert found[("monitor_stream_length", ())] == 4
    assert found[("monitor_dead_letters", ())] == 2


def test_each_feeds_last_success_and_failure_and_the_wait_for_its_host() -> None:
    """The timestamps the MonitorFeedFailing rule compares across replicas, and the host
    wait observed beside (not inside) the poll's duration; a skipped poll touches neither."""
    metrics = Metrics()
    before = time.time()
    metrics.observe_poll(PollResult("wire", "ok", 200, duration=0.2, host_wait=3.0))
    metrics.observe_poll(PollResult("wire", "not-modified", 304, duration=0.1))
    metrics.observe_poll(PollResult("bad", "error", error="HTTP 500", duration=0.3, host_wait=0.7))
    metrics.observe_poll(PollResult("late", "skipped"))
    after = time.time()
    found = samples(metrics.render().decode())
    success = "monitor_feed_last_success_timestamp_seconds"
    failure = "monitor_feed_last_failure_timestamp_seconds"
    assert before <= found[(success, (("feed", "wire"),))] <= after
    assert before <= found[(failure, (("feed", "bad"),))] <= after
    assert (failure, (("feed", "wire"),)) not in found
    assert (success, (("feed", "bad"),)) not in found
    assert not any(labels == (("feed", "late"),) for _, labels in found)
    assert found[("monitor_poll_host_wait_seconds_count", ())] == 3
    assert found[("monitor_poll_host_wait_seconds_sum", ())] == pytest.approx(3.7)
    assert found[("monitor_poll_host_wait_seconds_bucket", (("le", "0.001"),))] == 1
    assert found[("monitor_poll_duration_seconds_sum", ())] == pytest.approx(0.6)


async def test_the_wait_for_the_hosts_turn_is_its_own_histogram_not_poll_time(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
    """Issue 16: two feeds on one host, turns 1.5 s apart: the second poll waits its turn.
    The wait is observed in monitor_poll_host_wait_seconds, and both polls' own work, well
    under a second on loopback, in monitor_poll_duration_seconds."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: t, title: T, severity: high, match: {any: [tungsten]}}\n")
    lines = []
    for name in ("first", "second"):
        feed_server.put(f"/{name}.xml", rss([{"title": "Weather", "guid": name}]))
        lines.append(f'  - {{name: {name}, url: "{feed_server.url(f"/{name}.xml")}"}}')
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{own_redis.url}"}}\nfeeds:\n' + "\n".join(lines) + "\n"
        f'rules: {{paths: ["{rules}"]}}\nchannels: {{console: {{}}}}\n'
        "ingest: {workers: 0}\nhttp: {host_gap: 1.5s}\n"
    )
    async with Monitor(load_settings(config, env={})) as daemon:
        results = await daemon.poll_all()
        found = samples(daemon.metrics.render().decode())
    assert [result.status for result in results] == ["ok", "ok"]
    times = sorted(feed_server.times["/first.xml"] + feed_server.times["/second.xml"])
    assert times[1] - times[0] >= 1.4  # the gap was kept
    waits = sorted(result.host_wait for result in results)
    assert waits[0] < 0.5 < 1.0 < waits[1]
    assert found[("monitor_poll_host_wait_seconds_count", ())] == 2
    assert found[("monitor_poll_host_wait_seconds_sum", ())] == pytest.approx(sum(waits))
    assert found[("monitor_poll_host_wait_seconds_bucket", (("le", "1.0"),))] == 1
    assert found[("monitor_poll_duration_seconds_count", ())] == 2
    assert found[("monitor_poll_duration_seconds_bucket", (("le", "1.0"),))] == 2


async def test_sent_failed_and_dead_by_channel_and_consumer_lag(
    redis_client: aioredis.Redis, slack_server: SlackServer
) -> None:
    """A delivery pass where Slack takes one alert, fails one for now and refuses one for
    good, while the console takes all three; and the lag before and after."""
    queue = AlertQueue(redis_client, Keys("m"))
    await queue.ensure_group()
    old = f"{int(time.time() * 1000) - 90_000}-0"  # queued 90 s ago
    matches = [make_match(item=f"w:{n}", title=f"Story {n}") for n in range(3)]
    await redis_client.xadd("m:matches", {"match": json.dumps(matches[0].to_dict())}, id=old)
    await enqueue(redis_client, "m", *matches[1:])
    metrics = Metrics()
    metrics.observe_lag(*await queue.lag())
    before = samples(metrics.render().decode())
    assert before[("monitor_consumer_lag", ())] == 3
    assert 85 <= before[("monitor_consumer_lag_seconds", ())] < 300

    slack = SlackChannel(slack_server.url, min_interval=timedelta(0))
    slack_server.reply(503, "unavailable")
    slack_server.reply(404, "no_service")
    policy = DeliveryPolicy(
        routes=(Route(channels=("slack", "console")),),
        retry=RetryPolicy(timedelta(hours=1), timedelta(hours=1)),
    )
    worker = DeliveryWorker(
        queue, {"slack": slack, "console": ConsoleChannel()}, policy, consumer="w"
    )
    try:
        metrics.observe_delivery(await worker.run_once())
    finally:
        await slack.close()
    metrics.observe_lag(*await queue.lag())
    found = samples(metrics.render().decode())
    assert found[("monitor_alerts_sent_total", (("channel", "console"),))] == 3
    assert found[("monitor_alerts_sent_total", (("channel", "slack"),))] == 1
    assert found[("monitor_alerts_failed_total", (("channel", "slack"),))] == 1
    assert found[("monitor_alerts_dead_total", (("channel", "slack"),))] == 1
    assert ("monitor_alerts_dead_total", (("channel", "console"),)) not in found
    assert found[("monitor_consumer_lag", ())] == 0  # read, and acknowledged or rescheduled
    assert found[("monitor_consumer_lag_seconds", ())] == 0


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until(check: object, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    pytest.fail("condition not reached in time")


@pytest.mark.slow
def test_metrics_readyz_and_status_of_a_running_daemon(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        "rules:\n  - {id: w, title: W, severity: low, match: {any: [tungsten]}}\n"
    )
    feed_server.put("/a.xml", rss([{"title": "tungsten news", "guid": "1"}]))
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{own_redis.url}"}}\n'
        f'feeds: [{{name: a, url: "{feed_server.url("/a.xml")}", interval: 10s}}]\n'
        f'rules: {{paths: ["{rules}"]}}\nchannels: {{console: {{}}}}\n'
        f"health: {{port: {port}}}\nlog: {{format: json}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "-c", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def polled() -> bool:
            try:
                status, body = fetch(f"{base}/metrics")
            except OSError:
                return False
            found = samples(body) if status == 200 else {}
            return found.get(("monitor_polls_total", (("feed", "a"), ("outcome", "ok")))) == 1

        wait_until(polled)
        found = samples(fetch(f"{base}/metrics")[1])
        assert found[("monitor_new_items_total", ())] == 1
        assert found[("monitor_rules", ())] == 1
        assert ("monitor_consumer_lag", ()) in found
        assert ("monitor_consumer_lag_seconds", ()) in found
        assert found[("monitor_poll_host_wait_seconds_count", ())] >= 1
        assert found[("monitor_feed_last_success_timestamp_seconds", (("feed", "a"),))] > 0
        status, body = fetch(f"{base}/readyz")
        assert status == 200
        assert json.loads(body)["rules"] == "1"

        def status_shows_the_daemon() -> bool:
            main(["status", "-c", str(config)])
            return "daemon       " in capsys.readouterr().out

        wait_until(status_shows_the_daemon)  # the first heartbeat is written at start
        assert main(["status", "-c", str(config)]) == 0
        out = capsys.readouterr().out
        assert "1 healthy, 0 failing or stale" in out
        assert "rules        1 loaded" in out

        own_redis.kill()
        wait_until(lambda: fetch(f"{base}/readyz")[0] == 503)
        assert "Redis" in json.loads(fetch(f"{base}/readyz")[1])["reason"]
        own_redis.restart_if_dead()
        wait_until(lambda: fetch(f"{base}/readyz")[0] == 200)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, stderr
    # Stopped: no longer listed as up, and status says something is wrong (issue 16).
    assert main(["status", "-c", str(config)]) == 1
    assert "daemons      none running" in capsys.readouterr().out
    once = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--once", "-c", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert once.returncode == 0, once.stderr
    assert main(["status", "-c", str(config)]) == 1  # a finished pass is no daemon either
    assert "daemons      none running" in capsys.readouterr().out
