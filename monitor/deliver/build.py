"""Builds the delivery side from the settings: channels, routes, retry, digests, the worker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import aiohttp

from monitor.deliver.channels import (
    AppriseChannel,
    Channel,
    ConsoleChannel,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
)
from monitor.deliver.channels.slack_app import REDIS_MARGIN, SlackAppChannel, SlackWebApi
from monitor.deliver.feedback_store import FeedbackStore
from monitor.deliver.policy import DigestSchedule, RetryPolicy, Route, send_lease_for
from monitor.deliver.queue import AlertQueue
from monitor.deliver.templates import Templates
from monitor.deliver.translate import AlertTranslator, LibreTranslate, TranslationCache
from monitor.deliver.worker import MAX_PACE_WAIT, DeliveryPolicy, DeliveryWorker, utcnow
from monitor.model import Severity
from monitor.settings import RouteSettings, Settings


def build_channels(
    settings: Settings,
    session: aiohttp.ClientSession,
    feedback: FeedbackStore | None = None,
) -> dict[str, Channel]:
    """One channel object per active channel in the config (ValueError if one is unsafe).
    ``feedback``: where the Slack app keeps its threads and its alerts' text."""
    config = settings.channels
    templates = Templates(settings.resolve_path(settings.delivery.templates))
    templates.check()
    channels: dict[str, Channel] = {}
    if config.console is not None and config.console.enabled:
        channels["console"] = ConsoleChannel()
    if config.slack is not None and config.slack.active and config.slack.app:
        channels["slack"] = SlackAppChannel(
            slack_api(settings, session),
            config.slack.channel.strip(),
            feedback=feedback,
            buttons=config.slack.buttons,
            min_interval=config.slack.rate_limit,
            templates=templates,
            thread_ttl=max(settings.stories.retention, settings.stories.window),
        )
    elif config.slack is not None and config.slack.active:
        channels["slack"] = SlackChannel(
            config.slack.webhook_url.get_secret_value(),
            session=session,
            timeout=config.slack.timeout.total_seconds(),
            min_interval=config.slack.rate_limit,
            templates=templates,
        )
    if config.email is not None and config.email.active:
        email = config.email
        channels["email"] = EmailChannel(
            host=email.host,
            port=email.port,
            sender=email.sender,
            recipients=email.to,
            username=email.username or None,
            password=email.password.get_secret_value() if email.password else None,
            starttls=email.starttls,
            ssl=email.ssl,
            timeout=email.timeout.total_seconds(),
            templates=templates,
        )
    if config.webhook is not None and config.webhook.active:
        hook = config.webhook
        channels["webhook"] = WebhookChannel(
            hook.url.get_secret_value(),
            session=session,
            timeout=hook.timeout.total_seconds(),
            secret=hook.secret.get_secret_value() if hook.secret else None,
            headers=hook.headers,
        )
    if config.apprise is not None and config.apprise.active:
        desk = config.apprise
        channels["apprise"] = AppriseChannel(
            [url.get_secret_value() for url in desk.urls],
            timeout=desk.timeout.total_seconds(),
            min_interval=desk.rate_limit,
            body_format=desk.format,
        )
    return channels


def slack_api(settings: Settings, session: aiohttp.ClientSession | None) -> SlackWebApi:
    """The Slack Web API client of app mode (the channel's, and the button endpoint's)."""
    slack = settings.channels.slack
    assert slack is not None
    return SlackWebApi(
        slack.bot_token.get_secret_value(),
        api_url=slack.api_url,
        session=session,
        timeout=slack.timeout.total_seconds(),
    )


def route(config: RouteSettings) -> Route:
    return Route(
        channels=config.channels,
        rules=config.rules,
        tags=config.tags,
        min_severity=Severity.parse(config.min_severity) if config.min_severity else None,
        fallback=config.fallback,
        to=config.to,
        group_by=config.group_by,
    )


def send_leases(settings: Settings) -> dict[str, timedelta]:
    """Per active channel, a send lease that outlasts its worst send: its total deadline
    (``timeout``), the wait for a rate-limited slot, and a margin."""
    config = settings.channels
    pace = timedelta(seconds=MAX_PACE_WAIT)
    leases: dict[str, timedelta] = {}
    if config.slack is not None and config.slack.active:
        wait = pace if config.slack.rate_limit > timedelta(0) else timedelta(0)
        deadline = config.slack.timeout + (REDIS_MARGIN if config.slack.app else timedelta(0))
        leases["slack"] = send_lease_for(settings.delivery.send_lease, [deadline], wait)
    if config.apprise is not None and config.apprise.active:
        wait = pace if config.apprise.rate_limit > timedelta(0) else timedelta(0)
        leases["apprise"] = send_lease_for(
            settings.delivery.send_lease, [config.apprise.timeout], wait
        )
    for name, channel in (("email", config.email), ("webhook", config.webhook)):
        if channel is not None and channel.active:
            leases[name] = send_lease_for(
                settings.delivery.send_lease, [channel.timeout], timedelta(0)
            )
    return leases


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    """The worker's policy: routes (every active channel when none are configured), retry
    schedule, throttle window and digest schedules."""
    delivery = settings.delivery
    routes = tuple(route(r) for r in settings.routes) or (
        Route(channels=settings.channels.active_names()),
    )
    digests = {
        name: DigestSchedule(d.schedule, d.timezone, Severity.parse(d.bypass))
        for name, d in settings.channels.digests().items()
    }
    return DeliveryPolicy(
        routes=routes,
        sent_ttl=max(settings.dedup.ttl, delivery.throttle),
        send_lease=delivery.send_lease,
        leases=send_leases(settings),
        claim_idle=delivery.reclaim_after,
        retry=RetryPolicy(delivery.retry_after, delivery.retry_max, delivery.max_attempts),
        throttle=delivery.throttle,
        burst=delivery.burst,
        digests=digests,
    )


def build_translator(
    settings: Settings, session: aiohttp.ClientSession, queue: AlertQueue
) -> AlertTranslator | None:
    """The machine translation of foreign alerts, when ``translation`` configures one:
    LibreTranslate on the delivery session, cached in the queue's Redis."""
    config = settings.translation
    if config is None or not config.active:
        return None
    provider = LibreTranslate(
        config.url,
        session=session,
        api_key=config.api_key.get_secret_value() if config.api_key else None,
    )
    cache = TranslationCache(queue.client, queue.keys, ttl=config.cache_ttl)
    return AlertTranslator(provider, cache, deadline=config.deadline, cooldown=config.cooldown)


def build_worker(
    settings: Settings,
    queue: AlertQueue,
    channels: Mapping[str, Channel],
    *,
    consumer: str,
    clock: Callable[[], datetime] = utcnow,
    translator: AlertTranslator | None = None,
) -> DeliveryWorker:
    return DeliveryWorker(
        queue,
        channels,
        delivery_policy(settings),
        consumer=consumer,
        clock=clock,
        translator=translator,
    )
