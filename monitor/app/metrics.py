"""Prometheus metrics: what the daemon did, for /metrics.

One ``Metrics`` object per daemon holds its own registry (no module-level collectors), so
tests and several daemons in one process never share counts.
"""

from __future__ import annotations

import platform
from collections import Counter as Tally
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from monitor import __version__
from monitor.model import PollResult

if TYPE_CHECKING:
    from monitor.deliver.feedback import RuleStats
    from monitor.deliver.worker import DeliveryReport

POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: A host's queue can be long (forty feeds on one site, ``http.host_gap`` apart, is forty
#: seconds for the last of them); the first bucket counts the polls that did not wait at all.
HOST_WAIT_BUCKETS = (0.001, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The daemon's counters and gauges; ``render()`` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The standard process_* (CPU, memory, open files, start time) and python_info series
        # every Prometheus dashboard expects of a process.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.build_info = Gauge(
            "monitor_build_info",
            "Always 1; the labels say which monitor and Python run",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(version=__version__, python=platform.python_version()).set(1)
        self.polls = Counter(
            "monitor_polls", "Feed polls by feed and outcome", ["feed", "outcome"], registry=r
        )
        self.poll_seconds = Histogram(
            "monitor_poll_duration_seconds",
            "Time one poll took, less its wait for the host's turn",
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.host_wait_seconds = Histogram(
            "monitor_poll_host_wait_seconds",
            "Time one poll waited for its host's turn (http.per_host, http.host_gap)",
            buckets=HOST_WAIT_BUCKETS,
            registry=r,
        )
        # When each feed last succeeded and last failed, by the clock of the replica that
        # polled it: the latest of either across replicas says whether a feed is failing now,
        # however far its backoff has spread its polls (a rate of failed polls would not).
        self.feed_last_success = Gauge(
            "monitor_feed_last_success_timestamp_seconds",
            "When the feed's last successful poll (ok or not modified) ended, Unix time",
            ["feed"],
            registry=r,
        )
        self.feed_last_failure = Gauge(
            "monitor_feed_last_failure_timestamp_seconds",
            "When the feed's last failed poll ended, Unix time",
            ["feed"],
            registry=r,
        )
        self.new_items = Counter("monitor_new_items", "Items seen for the first time", registry=r)
        self.deduplicated = Counter(
            "monitor_items_deduplicated", "Feed entries already seen", registry=r
        )
        self.matches = Counter("monitor_matches", "Matches queued for delivery", registry=r)
        self.rule_matches = Counter(
            "monitor_rule_matches",
            "Matches queued for delivery, by rule (a series appears once a rule matches)",
            ["rule"],
            registry=r,
        )
        self.alerts_sent = Counter(
            "monitor_alerts_sent", "Alerts a channel accepted", ["channel"], registry=r
        )
        self.alerts_failed = Counter(
            "monitor_alerts_failed",
            "Alerts a channel did not accept for now, left for a retry",
            ["channel"],
            registry=r,
        )
        self.alerts_dead = Counter(
            "monitor_alerts_dead", "Alerts a channel refused for good", ["channel"], registry=r
        )
        self.consumer_lag = Gauge(
            "monitor_consumer_lag",
            "Matches in the stream the delivery group has not read yet",
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "monitor_consumer_lag_seconds",
            "How long the oldest match still waiting for delivery has waited",
            registry=r,
        )
        self.stream_length = Gauge(
            "monitor_stream_length", "Matches in the delivery stream", registry=r
        )
        self.pending = Gauge(
            "monitor_stream_pending", "Matches read but not yet acknowledged", registry=r
        )
        self.dead_letters = Gauge("monitor_dead_letters", "Dead letters kept", registry=r)
        self.rule_reloads = Counter(
            "monitor_rule_reloads", "Rule reloads by result", ["result"], registry=r
        )
        self.redis_reconnects = Counter(
            "monitor_redis_reconnects", "Times Redis came back after an outage", registry=r
        )
        self.rules = Gauge("monitor_rules", "Rules loaded", registry=r)
        # Feedback from the desk (the Slack app's buttons), read from Redis about once a
        # minute: every replica reports the same numbers, so aggregate with max, not sum.
        self.rule_alerts = Gauge(
            "monitor_rule_alerts",
            "Alerts of a rule sent over the window (7d, 30d)",
            ["rule", "window"],
            registry=r,
        )
        self.rule_feedback = Gauge(
            "monitor_rule_feedback",
            "Alerts of a rule sent over the window and judged, by verdict",
            ["rule", "window", "verdict"],
            registry=r,
        )
        self.rule_precision = Gauge(
            "monitor_rule_precision",
            "Alerts judged relevant among those judged, over the window (absent before a vote)",
            ["rule", "window"],
            registry=r,
        )

    def observe_poll(self, result: PollResult) -> None:
        outcome = result.status
        self.polls.labels(feed=result.source, outcome=outcome).inc()
        if outcome == "skipped":
            return
        ended = self.feed_last_failure if outcome == "error" else self.feed_last_success
        ended.labels(feed=result.source).set_to_current_time()
        self.poll_seconds.observe(result.duration)
        self.host_wait_seconds.observe(result.host_wait)
        self.new_items.inc(result.new_items)
        self.deduplicated.inc(max(0, result.entries - result.new_items))
        self.matches.inc(result.matches)
        for rule, count in Tally(result.matched_rules).items():
            self.rule_matches.labels(rule=rule).inc(count)

    def digest_sent(self, channel: str) -> None:
        """A digest is one message a channel accepted: counted as an alert sent."""
        self.alerts_sent.labels(channel=channel).inc()

    def observe_queue(self, counts: dict[str, int]) -> None:
        self.stream_length.set(counts.get("queued", 0))
        self.pending.set(counts.get("pending", 0))
        self.dead_letters.set(counts.get("dead", 0))

    def observe_delivery(self, report: DeliveryReport) -> None:
        """Count one delivery pass: sent, failed for now and dead, by channel."""
        for channel, count in report.channels.items():
            self.alerts_sent.labels(channel=channel).inc(count)
        for channel, count in report.failed_channels.items():
            self.alerts_failed.labels(channel=channel).inc(count)
        for channel, count in report.dead_channels.items():
            self.alerts_dead.labels(channel=channel).inc(count)
        if report.rule_stats is not None:
            self.observe_rule_stats(report.rule_stats)

    def observe_rule_stats(self, stats: Iterable[RuleStats]) -> None:
        """Set each rule's feedback gauges (``rules stats`` shows the same numbers)."""
        for each in stats:
            labels = {"rule": each.rule, "window": each.window_label}
            self.rule_alerts.labels(**labels).set(each.sent)
            self.rule_feedback.labels(**labels, verdict="relevant").set(each.relevant)
            self.rule_feedback.labels(**labels, verdict="not_relevant").set(each.not_relevant)
            if each.precision is not None:
                self.rule_precision.labels(**labels).set(each.precision)

    def observe_lag(self, unread: int, oldest_seconds: float) -> None:
        self.consumer_lag.set(unread)
        self.consumer_lag_seconds.set(oldest_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
