"""Redis plumbing shared by ``store`` and ``queue``: every key name, and error translation.

Every key monitor uses is named here, so no two modules can disagree.

``P`` is the configured prefix (``monitor`` by default)::

    P:seen:<key>                 an item identity already handled (string, expires after dedup.ttl)
    P:feed:<name>                a feed's state: validators and health (hash)
    P:lease:<name>               which replica polls the feed this interval (string, expires)
    P:heartbeat:<consumer>       a daemon's dead-man signal (hash, expires)
    P:items                      every new item, for backtests (stream, trimmed to the retention)
    P:matches                    matches waiting for delivery (stream; consumer group "deliver")
    P:dead                       matches a channel refused for good, with the reason (stream)
    P:sent:<rule|item>:<unit>    delivery marker: "sending" while a worker sends, then "done"
                                 (or "dead" when the channel refused it for good); a unit is a
                                 channel, or channel#<digest> for a subset of its recipients
    P:retry                      matches waiting for their next attempt (sorted set by due time)
    P:suppressed                 matches not sent on purpose: throttled, silenced (stream, capped)
    P:inbox                      alerts as sent: the match, channel, time, story (stream, capped
                                 at delivery.keep_sent; deliver.history)
    P:triage:<rule|item>         an alert's ack and assignment in the console: who, when (hash,
                                 expires 90 days after its last change)
    P:throttle:<rule|story>:<ch> highest severity alerted for a story, with its owner (string,
                                 expires after delivery.throttle)
    P:silence:<id>               one silence (JSON string, expires with the silence)
    P:silences                   ids of the silences (set; expired ids are pruned when read)
    P:digest:<channel>           matches held for a channel's next digest (sorted set by time)
    P:digest:<channel>:<window>  the matches of one digest window being sent (sorted set)
    P:digests                    per channel, the end of the last digest window sent (hash)
    P:pace-next:<channel>        a channel's rate limit: "<next post time, Redis ms>:<token of the
                                 post in flight>" (string, kept 7 days; missing = wait once)
    P:story:<id>                 a story: first/last seen, counts, which languages, sources,
                                 kinds and owners it has (hash, expires after stories.retention)
    P:story:<id>:items           the story's items, oldest first (list of JSON, same expiry)
    P:story:<id>:members         features of its first members, for clustering (list of JSON)
    P:story:<id>:rules           each rule's state in the story: its kept match (m:), the item
                                 that made it alert (a:) or escalate (e:), the item count at
                                 its last message (t:) (hash, expires with the story)
    P:story:<id>:merged          the story this one was merged into (string, same expiry)
    P:stories                    story ids by last item time, for listing (sorted set)
    P:stories:ix:<bucket>        candidate index of one 12-hour bucket: LSH band, entity, figure
                                 or date -> recent story ids (hash, expires after the window)
    P:stories:item:<item>        the story an item joined (string, expires after the window)
    P:volume:<series>            a volume rule's match counts by time bucket (hash, expires)
    P:volume:<series>:firing     a volume rule fired for the current burst (string, expires)
    P:first:<rule>|<entity>      a rule saw this entity once (string, expires after a year)
    P:ops:dead-letters           the open dead-letter incident: when it began (JSON string)
    P:ops:redis-recovered        when the last Redis outage told to the ops route ended (ms)
    P:ops:probe                  written by every ops check: does Redis take writes? (string)
    P:feedback:rules             rules with alerts sent or votes, for ``rules stats`` (set)
    P:feedback:sent:<rule>       a rule's alerts sent: alert key -> first send time, ms (sorted
                                 set, older than 35 days trimmed on write)
    P:feedback:votes:<rule>      each alert's latest vote: alert key -> JSON (hash; votes on
                                 alerts older than 90 days pruned on write)
    P:feedback:log               every Slack button press: who, what, when, alert, rule, story,
                                 source (stream, capped)
    P:slack:alert:<alert>        the item text a Slack message's buttons may need (title,
                                 summary, link, lang) and when it was sent (JSON, 35 days)
    P:slack:thread:<rule>|<story>:<channel>  "<channel id> <ts>" of the Slack message a story's
                                 follow-ups thread under (string, expires with the story)
    P:slack:seen:<signature>     a Slack request already handled: a replay is refused (string,
                                 10 minutes)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import RedisError

from monitor.errors import StoreError

DELIVERY_GROUP = "deliver"
T = TypeVar("T")


async def guarded(operation: Callable[[], Awaitable[T]]) -> T:
    """Run one Redis operation, turning every Redis or socket failure into ``StoreError``,
    so callers handle one kind of outage whatever the client library raised.

    It also gives back a cancellation the client library lost: on Python 3.11 redis-py
    writes each command under ``asyncio.wait_for``, which returns normally when the write
    finishes just as the task is cancelled.  The command then goes on, its error is
    caught as an outage, and a loop that retries outages never ends (a shutdown, or a
    test's teardown, waits on it for ever).  A cancel request that arrived during the
    operation is therefore raised here, whatever the operation did.
    """
    task = asyncio.current_task()
    cancels = task.cancelling() if task is not None else 0
    try:
        result = await operation()
    except RedisError as exc:
        _raise_lost_cancel(task, cancels)
        raise StoreError(f"Redis: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        _raise_lost_cancel(task, cancels)
        raise StoreError(f"Redis: {exc}") from None
    _raise_lost_cancel(task, cancels)
    return result


def _raise_lost_cancel(task: asyncio.Task[object] | None, cancels_before: int) -> None:
    """Raise ``CancelledError`` when the task was asked to cancel during an operation that
    then carried on as if it had not been (see ``guarded``)."""
    if task is not None and task.cancelling() > cancels_before:
        raise asyncio.CancelledError("cancelled during a Redis command")


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix; several deployments can share a Redis with distinct ones."""

    prefix: str = "monitor"

    @property
    def items(self) -> str:
        return f"{self.prefix}:items"

    @property
    def matches(self) -> str:
        return f"{self.prefix}:matches"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    def lease(self, feed: str) -> str:
        return f"{self.prefix}:lease:{feed}"

    def heartbeat(self, consumer: str) -> str:
        return f"{self.prefix}:heartbeat:{consumer}"

    @property
    def heartbeats(self) -> str:
        """The pattern matching every daemon's heartbeat key."""
        return f"{self.prefix}:heartbeat:*"

    def seen(self, key: str) -> str:
        return f"{self.prefix}:seen:{key}"

    def feed(self, name: str) -> str:
        return f"{self.prefix}:feed:{name}"

    def sent(self, match_key: str, channel: str) -> str:
        return f"{self.prefix}:sent:{match_key}:{channel}"

    @property
    def retry(self) -> str:
        return f"{self.prefix}:retry"

    @property
    def suppressed(self) -> str:
        return f"{self.prefix}:suppressed"

    @property
    def inbox(self) -> str:
        return f"{self.prefix}:inbox"

    def triage(self, alert_key: str) -> str:
        return f"{self.prefix}:triage:{alert_key}"

    def throttle(self, rule: str, story: str, channel: str) -> str:
        return f"{self.prefix}:throttle:{rule}|{story}:{channel}"

    def silence(self, silence_id: str) -> str:
        return f"{self.prefix}:silence:{silence_id}"

    @property
    def silences(self) -> str:
        return f"{self.prefix}:silences"

    def digest(self, channel: str) -> str:
        return f"{self.prefix}:digest:{channel}"

    def digest_window(self, channel: str, window_ms: int) -> str:
        return f"{self.prefix}:digest:{channel}:{window_ms}"

    @property
    def digests(self) -> str:
        return f"{self.prefix}:digests"

    def pace(self, channel: str) -> str:
        return f"{self.prefix}:pace-next:{channel}"

    def ops(self, incident: str) -> str:
        return f"{self.prefix}:ops:{incident}"

    def story(self, story_id: str) -> str:
        return f"{self.prefix}:story:{story_id}"

    def story_items(self, story_id: str) -> str:
        return f"{self.prefix}:story:{story_id}:items"

    def story_members(self, story_id: str) -> str:
        return f"{self.prefix}:story:{story_id}:members"

    def story_rules(self, story_id: str) -> str:
        return f"{self.prefix}:story:{story_id}:rules"

    def story_merged(self, story_id: str) -> str:
        return f"{self.prefix}:story:{story_id}:merged"

    @property
    def stories(self) -> str:
        return f"{self.prefix}:stories"

    def story_index(self, bucket: int) -> str:
        return f"{self.prefix}:stories:ix:{bucket}"

    def story_item(self, item_id: str) -> str:
        return f"{self.prefix}:stories:item:{item_id}"

    def volume(self, series: str) -> str:
        return f"{self.prefix}:volume:{series}"

    def volume_firing(self, series: str) -> str:
        return f"{self.prefix}:volume:{series}:firing"

    def first_mention(self, rule: str, entity: str) -> str:
        return f"{self.prefix}:first:{rule}|{entity}"

    @property
    def feedback_rules(self) -> str:
        return f"{self.prefix}:feedback:rules"

    def feedback_sent(self, rule: str) -> str:
        return f"{self.prefix}:feedback:sent:{rule}"

    def feedback_votes(self, rule: str) -> str:
        return f"{self.prefix}:feedback:votes:{rule}"

    @property
    def feedback_log(self) -> str:
        return f"{self.prefix}:feedback:log"

    def slack_alert(self, alert: str) -> str:
        return f"{self.prefix}:slack:alert:{alert}"

    def slack_thread(self, rule: str, story: str, channel: str) -> str:
        return f"{self.prefix}:slack:thread:{rule}|{story}:{channel}"

    def slack_seen(self, signature: str) -> str:
        return f"{self.prefix}:slack:seen:{signature}"
