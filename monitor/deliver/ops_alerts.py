"""Operational alerts about monitor itself: dead letters piling up, and Redis out of reach.

Feed-health alerts are raised by the pipeline (``schedule.health_match``); this module adds the
two incidents that concern the daemon rather than one feed, in the same style: a ``Match``
of a built-in rule (``dead-letters``, ``redis-unreachable``) tagged ``ops``, one alert when an
incident opens and one when it closes.  The decisions are pure functions of what was observed
and the time; ``OpsWatch`` is the thin shell the daemon calls every few seconds.

Where they go: to ``ops.channels`` when the config names some (for feed-health alerts too:
the delivery worker applies ``ops_routed``), else through the routes like any match, so a
route with ``tags: [ops]`` is the ops route.

With several replicas:

- dead letters live in Redis, so the incident does too: opening and closing it is one Lua
  script that also queues the alert, and only the replica whose script changed the state
  tells; the alert then has Redis' delivery guarantees (retries, exactly once per channel).
- Redis being unreachable cannot be told through Redis.  Each replica that cannot reach it for
  ``ops.redis_down_after`` sends the alert itself, straight to the ops route's channels, naming
  itself: N replicas losing Redis together send N alerts (which also tells the operator that
  it is Redis, not one replica's network).  The recovery goes through the queue once Redis is
  back, and only the first replica back tells it: the others find that this outage was told.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from monitor.deliver.channels import Channel, EmailChannel
from monitor.deliver.policy import Route, route_plan
from monitor.deliver.queue import AlertQueue
from monitor.errors import PermanentDeliveryError, StoreError, TransientDeliveryError
from monitor.model import Item, Match, Severity, span_text

log = structlog.get_logger("monitor.deliver.ops_alerts")

OPS_TAG = "ops"
DEAD_LETTERS_RULE = "dead-letters"
REDIS_RULE = "redis-unreachable"
DEAD_LETTERS_INCIDENT = "dead-letters"
CHECK_EVERY = 5.0
"""Seconds between two checks; the Redis alert is late by at most this much."""
PING_TIMEOUT = 5.0
ERROR_IN_TITLE = 120
"""Characters of Redis' error shown in the alert's title (Slack shows no summary)."""
SEND_TIMEOUT = 30.0
"""A direct send that takes longer is abandoned and tried again at the next check."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class OpsConfig(Protocol):
    """What ``OpsWatch`` reads from the ``ops`` settings (``monitor.settings.OpsSettings``)."""

    @property
    def channels(self) -> tuple[str, ...]: ...

    @property
    def dead_letters(self) -> int: ...

    @property
    def redis_down_after(self) -> timedelta | None: ...


# --- pure decisions ---------------------------------------------------------------------------


def dead_letter_change(count: int, threshold: int, is_open: bool) -> str | None:
    """Whether the dead-letter incident opens ("accumulating") or closes ("cleared") now.

    It opens when ``threshold`` or more dead letters wait, and stays open, without repeating,
    until they are fewer again: a dead letter is an alert nobody received, and it waits for a
    person to fix the cause and run ``monitor alerts retry``.  A threshold of 0 switches the
    alert off (closing an incident left open).
    """
    if is_open:
        return "cleared" if threshold <= 0 or count < threshold else None
    if threshold <= 0:
        return None
    return "accumulating" if count >= threshold else None


def redis_change(
    down_since: datetime | None, alerted: bool, after: timedelta | None, now: datetime
) -> str | None:
    """Whether this replica's Redis outage becomes an alert ("unreachable") or ends one
    ("recovered"); None otherwise.

    ``down_since`` is when this replica first failed to reach Redis (None while it can).  One
    alert per outage and one on recovery; an outage shorter than ``after`` (a restart, a
    failover) tells nobody.  ``after`` None switches the alert off.
    """
    if down_since is None:
        return "recovered" if alerted else None
    if alerted or after is None:
        return None
    return "unreachable" if now - down_since >= after else None


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut visibly: titles are all some channels show."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def scrub(text: str, secrets: Sequence[str]) -> str:
    """The text with every configured secret masked: an error can carry a URL or password."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _ops_match(rule: str, title: str, change: str, item: Item) -> Match:
    severity = Severity.INFO if change in ("cleared", "recovered") else Severity.HIGH
    return Match(rule, title, severity, OPS_TAG, item, tags=(OPS_TAG, change))


def dead_letter_match(
    change: str, count: int, threshold: int, since: datetime, now: datetime
) -> Match:
    """The alert for the dead-letter incident that began at ``since``.

    Its item id names the incident and the change, so delivery markers make each one go out
    once even if two replicas raced to queue it.
    """
    if change == "accumulating":
        title = f"{count} alert(s) could not be delivered; see 'monitor alerts dead'"
        summary = (
            f"At least {threshold} dead letter(s) are waiting. See 'monitor alerts dead' for "
            "the channel and reason, fix the cause, then 'monitor alerts retry --all'."
        )
    else:
        title = f"Dead letters handled: {count} left after {span_text(now - since)}"
        summary = f"Fewer than {threshold} dead letter(s) are waiting now."
    item = _ops_item(f"{DEAD_LETTERS_INCIDENT}:{since.isoformat()}:{change}", title, summary, now)
    return _ops_match(DEAD_LETTERS_RULE, "Dead letters", change, item)


def redis_match(
    change: str, replica: str, down_since: datetime, now: datetime, error: str | None
) -> Match:
    """The alert for one replica's Redis outage that began at ``down_since``."""
    lasted = span_text(now - down_since)
    if change == "unreachable":
        title = f"Redis unreachable for {lasted} from {replica}" + (
            f" ({clip(error, ERROR_IN_TITLE)})" if error else ""
        )
        summary = (
            "Redis does not answer or refuses writes (full, or a replica after a failover): "
            "feeds are not polled and queued alerts are not delivered until it is back; "
            "nothing already queued is lost." + (f" Last error: {error}" if error else "")
        )
    else:
        title = f"Redis reachable again after {lasted}"
        summary = f"{replica} reached Redis again; polling and delivery resume."
    item = _ops_item(f"redis:{replica}:{down_since.isoformat()}:{change}", title, summary, now)
    return _ops_match(REDIS_RULE, "Redis unreachable", change, item)


def _ops_item(incident: str, title: str, summary: str, now: datetime) -> Item:
    """An incident's news item; its id names the incident and the change, so each is told
    once (the send markers key on it)."""
    return Item(
        id=f"ops:{incident}", source="monitor", title=title, summary=summary, link="", published=now
    )


def ops_routed(match: Match, channels: Sequence[str]) -> Match:
    """An operational alert bound to the configured ops channels, when there are some.

    Only matches tagged ``ops`` and without a route of their own change; the rule-route
    mechanism then sends them to those channels instead of through the routes.
    """
    if not channels or OPS_TAG not in match.tags or match.route:
        return match
    return replace(match, route=tuple(channels))


def direct_plan(
    match: Match, channels: Sequence[str], routes: Sequence[Route], active: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """The channels (with any route recipients) an ops alert goes to when it is sent
    directly, without Redis: the same choice the delivery worker would make."""
    addressable = [name for name in active if name == "email"]
    return route_plan(ops_routed(match, channels), routes, active, addressable)


# --- the shell ----------------------------------------------------------------------------------


class OpsWatch:
    """Checks Redis and the dead letters and raises the alerts (see the module doc).

    ``config`` returns the current ``ops`` settings (``channels``, ``dead_letters``,
    ``redis_down_after``), so a config reload takes effect at the next check.
    """

    def __init__(
        self,
        queue: AlertQueue,
        channels: Mapping[str, Channel],
        routes: Sequence[Route],
        *,
        replica: str,
        config: Callable[[], OpsConfig],
        secrets: Sequence[str] = (),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.queue = queue
        self.channels = channels
        self.routes = tuple(routes)
        self.replica = replica
        self.config = config
        self.secrets = tuple(secrets)
        self.clock = clock
        self.down_since: datetime | None = None
        self.last_error: str | None = None
        self.redis_alerted = False
        self._alert: Match | None = None
        self._untold: dict[str, tuple[str, ...]] = {}

    async def tick(self) -> None:
        """One check: does Redis take writes (and for how long not), and how many dead
        letters wait."""
        now = self.clock()
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await self.queue.probe()
            await self._redis_reachable(now)
            await self._check_dead_letters(now)
        except (StoreError, TimeoutError) as exc:
            await self._redis_unreachable(now, str(exc) or "no answer within 5 s")

    # -- Redis -------------------------------------------------------------------------------

    async def _redis_unreachable(self, now: datetime, error: str) -> None:
        if self.down_since is None:
            self.down_since = now
        self.last_error = scrub(error, self.secrets)
        change = redis_change(self.down_since, self.redis_alerted, self._after(), now)
        if change == "unreachable":
            self.redis_alerted = True
            self._alert = redis_match(change, self.replica, self.down_since, now, self.last_error)
            config = self.config()
            self._untold = direct_plan(self._alert, config.channels, self.routes, [*self.channels])
            log.warning(
                "ops alert: redis unreachable",
                since=self.down_since.isoformat(),
                channels=sorted(self._untold),
            )
        if self._untold:
            await self._send_direct()

    async def _send_direct(self) -> None:
        """Tell each ops channel that has not accepted the alert yet; a channel that fails
        for now is tried again at the next check, one that refuses for good is given up."""
        assert self._alert is not None
        match = ops_routed(self._alert, self.config().channels)
        for name, extra in sorted(self._untold.items()):
            channel = self.channels.get(name)
            try:
                if channel is None:
                    raise PermanentDeliveryError(name, "the channel is not active")
                async with asyncio.timeout(SEND_TIMEOUT):
                    if extra and isinstance(channel, EmailChannel):
                        own = tuple(channel.recipients)
                        await channel.send_to(match, tuple(dict.fromkeys((*own, *extra))))
                    else:
                        await channel.send(match)
            except (TransientDeliveryError, TimeoutError) as exc:
                log.warning("ops alert not accepted; trying again", channel=name, error=str(exc))
                continue
            except PermanentDeliveryError as exc:
                log.error("ops alert refused", channel=name, error=str(exc))
            except Exception as exc:  # a channel bug must not stop the watch
                log.error("ops alert failed", channel=name, error=repr(exc))
            else:
                log.info("ops alert sent directly", channel=name, rule=match.rule_id)
            del self._untold[name]

    async def _redis_reachable(self, now: datetime) -> None:
        if self.down_since is None:
            return
        down_since = self.down_since
        if redis_change(None, self.redis_alerted, self._after(), now) == "recovered":
            match = redis_match("recovered", self.replica, down_since, now, None)
            match = ops_routed(match, self.config().channels)
            told = await self.queue.tell_redis_recovered(down_since, now, match)
            log.info(
                "ops alert: redis reachable again" if told else "redis recovery already told",
                outage=span_text(now - down_since),
            )
        self.down_since = None
        self.redis_alerted = False
        self._untold = {}

    def _after(self) -> timedelta | None:
        return self.config().redis_down_after

    # -- dead letters ------------------------------------------------------------------------

    async def _check_dead_letters(self, now: datetime) -> None:
        config = self.config()
        state = await self.queue.ops_state(DEAD_LETTERS_INCIDENT)
        count = await self.queue.dead_count()
        change = dead_letter_change(count, config.dead_letters, state is not None)
        if change is None:
            return
        if change == "accumulating":
            since, expected = now, None
            value: str | None = json.dumps({"since": now.isoformat(), "count": count})
        else:
            since, expected, value = _incident_start(state, now), state, None
        match = dead_letter_match(change, count, config.dead_letters, since, now)
        match = ops_routed(match, config.channels)
        if await self.queue.ops_transition(DEAD_LETTERS_INCIDENT, expected, value, match):
            log.warning("ops alert: dead letters", change=change, dead=count)


def _incident_start(state: str | None, now: datetime) -> datetime:
    try:
        return datetime.fromisoformat(json.loads(state or "{}")["since"])
    except (ValueError, KeyError, TypeError):
        return now
