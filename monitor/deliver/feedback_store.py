"""Feedback in Redis: alerts sent per rule, the desk's votes, every button press, and what
the Slack app needs to remember about its messages (threads, item text, replays)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from monitor.deliver.feedback import (
    WINDOWS,
    Press,
    RuleStats,
    Vote,
    alert_text,
    latest_votes,
    rule_stats,
    silence_for,
)
from monitor.deliver.policy import Silence, story_key
from monitor.deliver.silences import SilenceStore
from monitor.model import Match
from monitor.redisio import Keys, guarded

KEEP_SENT = timedelta(days=35)
"""Sent times are kept a little past the longest window (30 days)."""
KEEP_VOTES = timedelta(days=90)
"""Votes outlive the windows: their items stay ``no_match`` candidates for a quarter."""
KEEP_LOG = 10_000
"""Button presses kept in the log stream (approximately: Redis trims whole nodes)."""
REPLAY_WINDOW = timedelta(minutes=10)
"""A request's signature is remembered this long: longer than Slack's 5-minute age limit,
so a replay is refused by one check or the other."""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(value: float) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


class FeedbackStore:
    """What the delivery worker, the Slack app channel, its interactivity endpoint and
    ``rules stats`` share.  Nothing secret is ever written here: a press is kept by who
    pressed what, never with the request's headers."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    # -- alerts sent --------------------------------------------------------------------------

    async def record_sent(self, match: Match, now: datetime) -> None:
        """Count one alert of the rule as sent at ``now`` (the first channel's send counts;
        later channels and retries of the same alert do not add to it)."""
        key = self.keys.feedback_sent(match.rule_id)

        async def write() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zadd(key, {match.key: _ms(now)}, nx=True)
                pipe.zremrangebyscore(key, "-inf", _ms(now - KEEP_SENT))
                pipe.sadd(self.keys.feedback_rules, match.rule_id)
                await pipe.execute()

        await guarded(write)

    async def sent_times(self, rule: str, since: datetime) -> list[datetime]:
        found: Any = await guarded(
            lambda: self.client.zrangebyscore(
                self.keys.feedback_sent(rule), _ms(since), "+inf", withscores=True
            )
        )
        return [_from_ms(score) for _, score in found]

    async def sent_at(self, alert: str, rule: str) -> datetime | None:
        score: Any = await guarded(lambda: self.client.zscore(self.keys.feedback_sent(rule), alert))
        return None if score is None else _from_ms(float(score))

    async def rules(self) -> list[str]:
        found: Any = await guarded(lambda: self.client.smembers(self.keys.feedback_rules))
        return sorted(found)

    # -- what Slack messages need ---------------------------------------------------------

    async def remember_alert(self, match: Match, now: datetime) -> None:
        """Keep the item's text for a later vote (a ``no_match`` candidate needs it; a
        button's value has no room for it)."""
        body = json.dumps(alert_text(match, now), ensure_ascii=False)
        seconds = int(KEEP_SENT.total_seconds())
        await guarded(lambda: self.client.set(self.keys.slack_alert(match.key), body, ex=seconds))

    async def alert_text(self, alert: str) -> dict[str, str]:
        body: Any = await guarded(lambda: self.client.get(self.keys.slack_alert(alert)))
        if not body:
            return {}
        data = json.loads(body)
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    async def thread(self, match: Match, channel: str) -> tuple[str, str] | None:
        """The Slack message (channel id, ts) this match's story and rule began with on
        ``channel``: its follow-ups are posted in that message's thread."""
        key = self.keys.slack_thread(match.rule_id, story_key(match), channel)
        value: Any = await guarded(lambda: self.client.get(key))
        if not value or " " not in value:
            return None
        channel_id, _, ts = str(value).partition(" ")
        return channel_id, ts

    async def keep_thread(
        self, match: Match, channel: str, channel_id: str, ts: str, ttl: timedelta
    ) -> None:
        """Remember the first message of a story and rule (a later one never replaces it)."""
        key = self.keys.slack_thread(match.rule_id, story_key(match), channel)
        seconds = max(1, int(ttl.total_seconds()))
        await guarded(lambda: self.client.set(key, f"{channel_id} {ts}", ex=seconds, nx=True))

    async def first_time(self, signature: str) -> bool:
        """True the first time a request signature is seen (within ``REPLAY_WINDOW``)."""
        seconds = int(REPLAY_WINDOW.total_seconds())
        key = self.keys.slack_seen(signature)
        fresh: Any = await guarded(lambda: self.client.set(key, "1", ex=seconds, nx=True))
        return bool(fresh)

    # -- presses and votes --------------------------------------------------------------------

    async def record_press(self, press: Press, now: datetime) -> None:
        """Log a press: who, what, when, and which alert, rule, story and source."""
        fields: dict[Any, Any] = {
            "at": now.isoformat(),
            "who": press.who,
            "action": press.action.value,
            "alert": press.ref.alert,
            "rule": press.ref.rule,
            "story": press.ref.story,
            "source": press.ref.source,
            "channel": press.channel_id,
            "ts": press.message_ts,
            "via": press.via,
        }
        await guarded(
            lambda: self.client.xadd(
                self.keys.feedback_log, fields, maxlen=KEEP_LOG, approximate=True
            )
        )

    async def presses(self, count: int = 100) -> list[dict[str, str]]:
        """The newest presses first."""
        found: Any = await guarded(
            lambda: self.client.xrevrange(self.keys.feedback_log, count=count)
        )
        return [dict(fields) for _, fields in found]

    async def vote(
        self, press: Press, now: datetime, *, known: Mapping[str, str] | None = None
    ) -> Vote:
        """Record a relevant / not relevant vote as the alert's latest.  The item's text is
        the one kept when the Slack app sent it, else ``known`` (``feedback.alert_text``:
        the console has the alert as sent)."""
        ref = press.ref
        text = await self.alert_text(ref.alert) or dict(known or {})
        sent = await self.sent_at(ref.alert, ref.rule)
        if sent is None and text.get("sent"):
            sent = datetime.fromisoformat(text["sent"])
        vote = Vote(
            alert=ref.alert,
            rule=ref.rule,
            relevant=press.action.value == "relevant",
            who=press.who,
            at=now,
            sent=sent or now,
            title=text.get("title", ""),
            summary=text.get("summary", ""),
            link=text.get("link", ""),
            source=text.get("source", ref.source),
            lang=text.get("lang", ""),
        )
        key = self.keys.feedback_votes(ref.rule)
        body = json.dumps(vote.to_dict(), ensure_ascii=False)

        async def write() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(key, ref.alert, body)
                pipe.sadd(self.keys.feedback_rules, ref.rule)
                await pipe.execute()

        await guarded(write)
        await self._prune_votes(ref.rule, now)
        return vote

    async def _prune_votes(self, rule: str, now: datetime) -> None:
        old = [v.alert for v in await self.votes(rule) if v.sent < now - KEEP_VOTES]
        if old:
            await guarded(lambda: self.client.hdel(self.keys.feedback_votes(rule), *old))

    async def votes(self, rule: str) -> list[Vote]:
        found: Any = await guarded(lambda: self.client.hgetall(self.keys.feedback_votes(rule)))
        votes = []
        for body in found.values():
            try:
                votes.append(Vote.from_dict(json.loads(body)))
            except (ValueError, KeyError, TypeError):
                continue  # a damaged record costs its vote, not the stats
        return latest_votes(votes)

    async def votes_on(self, alerts: Sequence[tuple[str, str]]) -> dict[str, Vote]:
        """The latest vote on each of ``alerts`` (rule, alert key) that has one, by alert."""
        if not alerts:
            return {}

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for rule, alert in alerts:
                    pipe.hget(self.keys.feedback_votes(rule), alert)
                found: list[Any] = await pipe.execute()
                return found

        found = await guarded(read)
        votes: dict[str, Vote] = {}
        for body in found:
            if not body:
                continue
            try:
                vote = Vote.from_dict(json.loads(body))
            except (ValueError, KeyError, TypeError):
                continue
            votes[vote.alert] = vote
        return votes

    # -- numbers ------------------------------------------------------------------------------

    async def stats(self, now: datetime, rules: list[str] | None = None) -> list[RuleStats]:
        """Each rule's numbers over 7 and 30 days, rule by rule."""
        longest = max(WINDOWS)
        found: list[RuleStats] = []
        for rule in rules if rules is not None else await self.rules():
            sent = await self.sent_times(rule, now - longest)
            votes = await self.votes(rule)
            found += [rule_stats(rule, sent, votes, now, window) for window in WINDOWS]
        return found


async def apply_press(
    press: Press,
    now: datetime,
    *,
    feedback: FeedbackStore,
    silences: SilenceStore,
    known: Mapping[str, str] | None = None,
) -> Silence | None:
    """Record a press (Slack's or the console's), then its effect: a vote (None back), or
    the silence a mute or a snooze asks for (``feedback.silence_for``), authored by whoever
    pressed.  The Slack endpoint and the console's Inbox both act through this one path."""
    await feedback.record_press(press, now)
    if press.action.is_vote:
        await feedback.vote(press, now, known=known)
        return None
    order = silence_for(press)
    if order is None:
        return None
    return await silences.add(
        rule=order.rule,
        tag=None,
        story=order.story,
        source=order.source,
        duration=order.duration,
        reason=order.reason,
        now=now,
        author=press.who,
    )
