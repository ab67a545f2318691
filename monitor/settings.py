"""The config file: read once, ${VAR}-interpolated, validated, with errors at path:line:col.

The daemon refuses to start on a config it does not fully understand (unknown keys included)
rather than run with a guess; secrets come from the environment through ``${VAR}`` so the file
itself can live in git.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.errors import ConfigError
from monitor.model import PageSelectors, Source
from monitor.yamlsrc import YamlDocument, YamlPath, YamlSourceError, load_yaml_file

DEFAULT_CONFIG = "monitor.yaml"
CONFIG_ENV = "MONITOR_CONFIG"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


def parse_duration(value: object) -> timedelta:
    """Read ``90s``, ``10m``, ``1.5h``, ``30d`` (or a bare number of seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 10m, 2h or 7d")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNIT_SECONDS[unit])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _duration_or_off(value: object) -> timedelta | None:
    if value is None or str(value).strip().lower() in {"off", "none", "no", "false"}:
        return None
    return parse_duration(value)


OptionalDuration = Annotated[timedelta | None, BeforeValidator(_duration_or_off)]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently switch a feature off."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _host_port(address: str) -> str:
    """``host:port`` (``[::1]:26379`` for IPv6), checked here so a typo fails at load."""
    host, sep, port = address.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port; write e.g. sentinel-1:26379")
    return address


HostPort = Annotated[str, BeforeValidator(lambda value: _host_port(str(value)))]


def split_host_port(address: str) -> tuple[str, int]:
    """``"sentinel-1:26379"`` -> ``("sentinel-1", 26379)``; brackets come off an IPv6 host."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class SentinelSettings(_Strict):
    """Redis behind Sentinel: the client asks the sentinels which server is the master, and
    asks again after a failover, so the daemon follows a promoted replica by itself."""

    master: str = Field(min_length=1, description="the master name the sentinels monitor")
    sentinels: tuple[HostPort, ...] = Field(
        min_length=1, description="sentinel addresses, host:port (26379 is Sentinel's port)"
    )
    password: SecretStr | None = Field(default=None, description="the Redis servers' password")
    sentinel_password: SecretStr | None = Field(
        default=None, description="the sentinels' own password (requirepass in sentinel.conf)"
    )
    db: int = Field(default=0, ge=0, description="database number on the master")
    socket_timeout: Duration = Field(
        default=timedelta(seconds=5),
        description="each command's and each sentinel query's timeout: how long a dead master "
        "can hold a call before the client asks the sentinels again",
    )
    connect_timeout: Duration = Field(
        default=timedelta(seconds=5), description="connecting to a server or a sentinel"
    )


class RedisSettings(_Strict):
    # Declared before ``url`` so that url's validator sees it: the two are exclusive.
    sentinel: SentinelSettings | None = Field(
        default=None, description="Redis behind Sentinel instead of 'url' (high availability)"
    )
    url: str = Field(
        default="embedded",
        description="'embedded' for a private redis-server, or a redis://, rediss://, unix:// URL",
    )
    data_dir: Path = Field(default=Path("data/redis"), description="embedded Redis: AOF directory")
    binary: str = Field(default="redis-server", description="embedded Redis: the server command")
    key_prefix: str = Field(default="monitor", description="prefix of every key monitor writes")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str, info: ValidationInfo) -> str:
        if info.data.get("sentinel") is not None:
            raise ValueError(
                "set either redis.url or redis.sentinel, not both: with Sentinel the "
                "sentinels name the master, so remove 'url'"
            )
        if url == "embedded" or urlsplit(url).scheme in {"redis", "rediss", "unix"}:
            return url
        raise ValueError("use 'embedded' or a redis://host:6379/0 (rediss://, unix://) URL")


class PageSettings(_Strict):
    """CSS selectors for a ``kind: page`` source (an outlet's news section without a feed)."""

    item: str = Field(min_length=1)
    title: str = Field(min_length=1)
    link: str = "a"
    date: str | None = None
    summary: str | None = None


class BasicAuthSettings(_Strict):
    username: str
    password: SecretStr


class FeedSettings(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str
    kind: Literal["feed", "page"] = "feed"
    page: PageSettings | None = None
    interval: Duration = timedelta(minutes=10)
    tags: tuple[str, ...] = ()
    timeout: Duration = timedelta(seconds=30)
    max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_items: int = Field(default=500, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: BasicAuthSettings | None = None
    allow_private: bool = False

    @model_validator(mode="after")
    def _page_needs_selectors(self) -> FeedSettings:
        if self.kind == "page" and self.page is None:
            raise ValueError("a 'kind: page' source needs 'page: {item: ..., title: ...}'")
        if self.kind == "feed" and self.page is not None:
            raise ValueError("'page' selectors only apply to 'kind: page' sources")
        return self

    @field_validator("url")
    @classmethod
    def _fetchable(cls, url: str) -> str:
        if urlsplit(url).scheme not in {"http", "https", "file"}:
            raise ValueError("feed URLs must be http://, https:// or file:")
        return url

    @field_validator("interval")
    @classmethod
    def _not_too_often(cls, interval: timedelta) -> timedelta:
        if interval < timedelta(seconds=10):
            raise ValueError("poll at most every 10s; publishers block aggressive pollers")
        return interval


class RulesSettings(_Strict):
    paths: tuple[Path, ...] = (Path("rules"),)


SeverityName = Literal["info", "low", "medium", "high", "critical"]


class DigestSettings(_Strict):
    """Digest mode for a channel: matches collect and go out as one message on a schedule."""

    schedule: str = Field(description="cron: minute hour day-of-month month day-of-week")
    timezone: str = Field(default="UTC", description="IANA zone the schedule is read in")
    bypass: SeverityName = Field(
        default="critical", description="matches of this severity or higher are sent at once"
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(schedule, timezone="UTC")
        except ValueError as exc:
            raise ValueError(
                f"not a cron schedule ({exc}); e.g. '0 8 * * *' (daily 08:00)"
            ) from None
        return schedule

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {zone!r}; use an IANA name like Asia/Almaty"
            ) from None
        return zone


class ConsoleChannelSettings(_Strict):
    enabled: bool = True
    digest: DigestSettings | None = None


class SlackInteractivitySettings(_Strict):
    """Where the daemon listens for Slack's button presses (its own small HTTP server)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8082, ge=0, lt=65536, description="0 switches the endpoint off")
    path: str = Field(default="/slack/actions", pattern=r"^/[A-Za-z0-9/_.-]*$")


class SlackChannelSettings(_Strict):
    webhook_url: SecretStr = SecretStr("")
    bot_token: SecretStr = Field(
        default=SecretStr(""),
        description="Slack app mode instead of webhook_url: the Bot User OAuth Token (xoxb-...)",
    )
    channel: str = Field(default="", description="app mode: the channel id (C0123...) to post to")
    signing_secret: SecretStr = Field(
        default=SecretStr(""),
        description="app mode: the app's signing secret; turns on the feedback buttons",
    )
    api_url: str = Field(default="https://slack.com/api", pattern=r"^https?://\S+$")
    interactivity: SlackInteractivitySettings = SlackInteractivitySettings()
    enabled: bool = True
    timeout: Duration = timedelta(seconds=10)
    rate_limit: Duration = Field(
        default=timedelta(seconds=1), description="least time between two posts; 0 switches off"
    )
    digest: DigestSettings | None = None

    @property
    def active(self) -> bool:
        """An empty webhook or token (``${SLACK_WEBHOOK_URL:-}`` with the variable unset)
        switches it off."""
        return self.enabled and (bool(self.webhook_url.get_secret_value()) or self.app)

    @property
    def app(self) -> bool:
        """Posting as a Slack app (bot token) rather than to an incoming webhook."""
        return bool(self.bot_token.get_secret_value())

    @property
    def buttons(self) -> bool:
        """Alerts carry feedback buttons: app mode with a signing secret to check presses."""
        return self.app and bool(self.signing_secret.get_secret_value())

    @model_validator(mode="after")
    def _one_mode(self) -> SlackChannelSettings:
        # No value is echoed: each of these is a credential.
        token = self.bot_token.get_secret_value().strip()
        if token and self.webhook_url.get_secret_value():
            raise ValueError(
                "set either webhook_url (incoming webhook) or bot_token + channel (Slack app), "
                "not both"
            )
        if token and not token.startswith("xoxb-"):
            raise ValueError("bot_token is not a bot token; use the app's xoxb-... token")
        if token and not re.fullmatch(r"#?[A-Za-z0-9_.-]{1,80}", self.channel.strip()):
            raise ValueError("bot_token needs channel: the channel id (C0123ABCD) to post to")
        if self.signing_secret.get_secret_value() and self.webhook_url.get_secret_value():
            raise ValueError(
                "signing_secret is for the Slack app (bot_token); webhook posts carry no buttons"
            )
        return self


class EmailChannelSettings(_Strict):
    host: str = ""
    port: int = Field(default=587, gt=0, lt=65536)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(default="", alias="from")
    to: tuple[str, ...] = ()
    enabled: bool = True
    timeout: Duration = timedelta(seconds=30)
    digest: DigestSettings | None = None

    @property
    def active(self) -> bool:
        """An empty host (``${SMTP_HOST:-}`` unset) switches the channel off."""
        return self.enabled and bool(self.host)

    @model_validator(mode="after")
    def _complete_when_active(self) -> EmailChannelSettings:
        if self.active and (not self.sender or not self.to):
            raise ValueError("an email channel needs 'from' and at least one address in 'to'")
        if self.ssl and self.starttls:
            raise ValueError("choose one of 'ssl' (implicit TLS, port 465) and 'starttls'")
        return self


class WebhookChannelSettings(_Strict):
    url: SecretStr = SecretStr("")
    secret: SecretStr | None = Field(
        default=None, description="signs each body: X-Monitor-Signature: sha256=<hex HMAC>"
    )
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    timeout: Duration = timedelta(seconds=10)
    digest: DigestSettings | None = None

    @property
    def active(self) -> bool:
        """An empty URL (``${WEBHOOK_URL:-}`` unset) switches the channel off."""
        return self.enabled and bool(self.url.get_secret_value())


def _apprise_urls(value: object) -> object:
    """One string (``${APPRISE_URLS}``) may hold several URLs separated by spaces or new
    lines; an empty one (a variable unset) is no URL at all."""
    items = value.split() if isinstance(value, str) else value
    if isinstance(items, list | tuple):
        return tuple(item for item in items if not (isinstance(item, str) and not item.strip()))
    return items


_APPRISE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]{0,31}://\S+$")


class AppriseChannelSettings(_Strict):
    """Apprise URLs (Teams, Telegram, Matrix, Discord, ntfy, SMS gateways ...): each one is a
    secret, since tokens sit inside it."""

    urls: Annotated[tuple[SecretStr, ...], BeforeValidator(_apprise_urls)] = Field(
        default=(), description="Apprise URLs, each sent every alert; a string may hold several"
    )
    format: Literal["text", "markdown"] = Field(
        default="text", description="the body as plain text, or as Markdown for chat apps"
    )
    enabled: bool = True
    timeout: Duration = timedelta(seconds=10)
    rate_limit: Duration = Field(
        default=timedelta(seconds=1), description="least time between two posts; 0 switches off"
    )
    digest: DigestSettings | None = None

    @field_validator("urls")
    @classmethod
    def _url_shaped(cls, urls: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for number, url in enumerate(urls, start=1):
            if not _APPRISE_URL.match(url.get_secret_value().strip()):
                # The URL itself is not echoed: it holds the service's token.
                raise ValueError(f"URL {number} is not an Apprise URL (service://...)")
        return urls

    @property
    def active(self) -> bool:
        """No URL (``${APPRISE_URLS:-}`` unset) switches the channel off."""
        return self.enabled and bool(self.urls)

    def secrets(self) -> tuple[str, ...]:
        """Each URL, and the parts of it that look like tokens, for the log masker: a library
        that quotes a URL's token alone must not leak it either."""
        found: list[str] = []
        for url in self.urls:
            text = url.get_secret_value().strip()
            found.append(text)
            rest = text.partition("://")[2]
            userinfo, at, _ = rest.partition("/")[0].rpartition("@")
            if at and ":" in userinfo:
                found.append(userinfo.partition(":")[2])  # a password, however short
            found += [part for part in re.split(r"[/:@?&=#,]+", rest) if len(part) >= 16]
        return tuple(found)


CHANNEL_KINDS = ("console", "slack", "email", "webhook", "apprise")


class ChannelsSettings(_Strict):
    console: ConsoleChannelSettings | None = None
    slack: SlackChannelSettings | None = None
    email: EmailChannelSettings | None = None
    webhook: WebhookChannelSettings | None = None
    apprise: AppriseChannelSettings | None = None

    def active_names(self) -> tuple[str, ...]:
        names = []
        if self.console is not None and self.console.enabled:
            names.append("console")
        for name in CHANNEL_KINDS[1:]:
            channel = getattr(self, name)
            if channel is not None and channel.active:
                names.append(name)
        return tuple(names)

    def configured_names(self) -> tuple[str, ...]:
        return tuple(name for name in CHANNEL_KINDS if getattr(self, name))

    def digests(self) -> dict[str, DigestSettings]:
        """Channels in digest mode, with their schedules."""
        found = {}
        for name in CHANNEL_KINDS:
            channel = getattr(self, name)
            if channel is not None and channel.digest is not None:
                found[name] = channel.digest
        return found


class RouteSettings(_Strict):
    """Which matches go where: every criterion given must hold; none given matches all."""

    channels: tuple[str, ...] = Field(min_length=1)
    rules: tuple[str, ...] = Field(default=(), description="rule ids (any of)")
    tags: tuple[str, ...] = Field(default=(), description="rule or feed tags (any of)")
    min_severity: SeverityName | None = None
    fallback: bool = Field(default=False, description="only for matches that no other route takes")
    to: tuple[str, ...] = Field(default=(), description="extra email recipients on this route")
    group_by: Literal["item", "rule"] = Field(
        default="item",
        description="item: one message per article listing every rule it matched; "
        "rule: one message per rule",
    )


class LogSettings(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class HttpSettings(_Strict):
    user_agent: str = "monitor/{version} (+https://github.com/monitor-news/monitor)"
    max_concurrency: int = Field(default=50, gt=0)
    per_host: int = Field(default=2, gt=0, description="requests in flight to one host")
    host_gap: Duration = Field(
        default=timedelta(seconds=1), description="minimum time between requests to one host"
    )


class IngestSettings(_Strict):
    workers: int = Field(
        default=-1,
        ge=-1,
        description="processes that parse feeds: -1 one per core, 0 or 1 on the event loop",
    )
    parse_budget: Duration = Field(
        default=timedelta(seconds=10),
        description="CPU time one feed's parse may take in a parser process; past it the poll"
        " fails and the feed backs off (a stuck parse is killed after 3x this plus 10s)",
    )
    file_readers: int = Field(
        default=4, gt=0, description="threads of their own that read file: feeds at once"
    )
    backfill: OptionalDuration = Field(
        default=timedelta(hours=24),
        description="on a feed's first poll, older items are recorded as seen, not alerted;"
        " 'off' alerts on everything",
    )
    health_alert_after: OptionalDuration = Field(
        default=timedelta(hours=1),
        description="a feed failing this long raises one operational alert; 'off' never",
    )


class DedupSettings(_Strict):
    ttl: Duration = timedelta(days=30)


class HistorySettings(_Strict):
    retention: Duration = Field(
        default=timedelta(days=30), description="how long new items are kept for backtests"
    )


class DeliverySettings(_Strict):
    retry_after: Duration = Field(
        default=timedelta(seconds=30),
        description="first retry of an alert a channel did not accept; doubles each attempt",
    )
    retry_max: Duration = Field(
        default=timedelta(hours=1), description="longest wait between two attempts"
    )
    max_attempts: int = Field(
        default=10, ge=1, description="attempts before an alert goes to the dead letters"
    )
    reclaim_after: Duration = Field(
        default=timedelta(minutes=1),
        description="an alert a dead worker left unacknowledged is taken over after this",
    )
    send_lease: Duration = Field(
        default=timedelta(minutes=2),
        description="how long a send may take before another worker may try it again;"
        " raised per channel to its timeout (+ 5s for a rate-limited slot) + 2s at least",
    )
    throttle: Duration = Field(
        default=timedelta(hours=4),
        description="a story alerted by a rule is not alerted again by it for this long",
    )
    burst: int = Field(
        default=3, ge=1, description="more alerts than this at once to Slack are grouped"
    )
    keep_dead: int = Field(default=10_000, gt=0, description="dead letters kept (oldest dropped)")
    keep_log: int = Field(
        default=10_000, gt=0, description="silenced and throttled matches kept for inspection"
    )
    keep_sent: int = Field(
        default=50_000, gt=0, description="alerts as sent kept for the console's inbox"
    )
    templates: Path = Field(
        default=Path("templates"), description="folder of templates overriding the shipped ones"
    )

    @model_validator(mode="after")
    def _retry_bounds(self) -> DeliverySettings:
        if self.retry_max < self.retry_after:
            raise ValueError("retry_max must be at least retry_after")
        return self


class OpsSettings(_Strict):
    """Operational alerts about monitor itself (feed health, dead letters, Redis outages)."""

    channels: tuple[str, ...] = Field(
        default=(),
        description="channels for operational alerts; empty: the routes decide (tag 'ops')",
    )
    dead_letters: int = Field(
        default=1, ge=0, description="alert when this many dead letters wait; 0 never"
    )
    redis_down_after: OptionalDuration = Field(
        default=timedelta(minutes=2),
        description="alert when Redis has been unreachable this long; 'off' never",
    )
    heartbeat_url: SecretStr | None = Field(
        default=None,
        description="dead-man switch: an http(s) URL fetched (GET) on every healthy heartbeat "
        "(every 15 s), e.g. a healthchecks.io check, so an outside service alerts when the "
        "pings stop; a secret, masked in logs; empty: off",
    )

    @field_validator("heartbeat_url")
    @classmethod
    def _http_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is None or not url.get_secret_value():
            return None  # ``${HEARTBEAT_URL:-}`` unset: no dead-man pings
        if url is not None:
            parts = urlsplit(url.get_secret_value())
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError("heartbeat_url must be an http:// or https:// URL")
        return url


class TranslationSettings(_Strict):
    """Machine translation of foreign alerts' headline and quote (deliver.translate).

    Off unless ``url`` is set: the gloss (English names of what matched) needs no service.
    """

    enabled: bool = True
    provider: Literal["libretranslate"] = Field(
        default="libretranslate", description="the translation API: LibreTranslate's"
    )
    url: str = Field(
        default="",
        description="the service's base URL, e.g. http://libretranslate:5000 (POST /translate "
        "is added); empty (${TRANSLATE_URL:-} unset): no machine translation",
    )
    api_key: SecretStr | None = Field(
        default=None, description="the service's API key, if it asks for one; a secret"
    )
    deadline: Duration = Field(
        default=timedelta(seconds=3),
        description="longest an alert waits for its translation; past it the alert goes out "
        "saying 'translation unavailable'",
    )
    cache_ttl: Duration = Field(
        default=timedelta(days=30), description="how long a translation is kept in Redis"
    )
    cooldown: Duration = Field(
        default=timedelta(seconds=30),
        description="after a failure the service is not asked for this long (a 429's "
        "Retry-After, up to 5 min, when longer); cached translations are still used",
    )

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.url)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url:
            return url
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("translation.url must be an http:// or https:// URL")
        if parts.username or parts.password or parts.query:
            raise ValueError(
                "translation.url must carry no credentials or query (it is logged); "
                "put the key in translation.api_key"
            )
        return url

    @field_validator("deadline")
    @classmethod
    def _short_deadline(cls, deadline: timedelta) -> timedelta:
        if not timedelta(0) < deadline <= timedelta(seconds=30):
            raise ValueError("translation.deadline must be more than 0 and at most 30s")
        return deadline


class ShutdownSettings(_Strict):
    """How the daemon stops on SIGTERM/SIGINT."""

    grace: Duration = Field(
        default=timedelta(seconds=20),
        description="SIGTERM ends the process within this long, whatever is hung; keep it "
        "below the orchestrator's kill timeout (Kubernetes: terminationGracePeriodSeconds, "
        "30 s by default; compose: stop_grace_period)",
    )

    @field_validator("grace")
    @classmethod
    def _positive(cls, grace: timedelta) -> timedelta:
        if grace.total_seconds() < 1:
            raise ValueError("shutdown.grace must be at least 1s")
        return grace


class StorySourceSettings(_Strict):
    """Provenance of one feed for corroboration: who publishes it."""

    kind: Literal["wire", "state_media", "trade_press", "official", "blog", "news"] = "news"
    country: str = ""
    owner: str = Field(
        default="", description="owner group: sister outlets count as one independent source"
    )


class StoriesSettings(_Strict):
    """Clustering matched items into stories, so one event alerts once per rule."""

    enabled: bool = Field(
        default=True,
        description="cluster matched items into stories: one alert per story and rule, "
        "follow-ups only when a new language, source kind or corroboration arrives; rules "
        "using min_sources, official or escalate need it; false alerts once per headline",
    )
    window: Duration = Field(
        default=timedelta(hours=72), description="an item joins a story active this recently"
    )
    retention: Duration = Field(
        default=timedelta(days=7), description="how long a story stays readable after its last item"
    )
    corroboration: int = Field(
        default=3, ge=0, description="follow up once when this many independent sources report"
    )
    sources: dict[str, StorySourceSettings] = Field(
        default_factory=dict, description="feed name -> kind, country, owner group"
    )


class HealthSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, lt=65536, description="0 switches the endpoint off")


ConsoleRole = Literal["viewer", "analyst"]
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class ConsoleUserSettings(_Strict):
    """One account of the console's own login: an Argon2 hash, never a password."""

    password_hash: SecretStr = Field(
        description="an Argon2 hash made by `monitor console hash-password` ($argon2id$...)"
    )
    role: ConsoleRole = Field(default="viewer", description="viewer reads; analyst also acts")

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("$argon2"):
            # The value is not echoed: a pasted password would land in the error.
            raise ValueError(
                "password_hash is not an Argon2 hash; make one with "
                "`monitor console hash-password` and paste its output"
            )
        return value


class ConsoleProxySettings(_Strict):
    """A reverse proxy that authenticates users and names them in a header; the header is
    believed only on connections from ``trusted`` addresses."""

    header: str = Field(
        default="X-Forwarded-User", min_length=1, description="the proxy's user-name header"
    )
    trusted: tuple[str, ...] = Field(
        min_length=1, description="the proxy's addresses, as CIDRs (10.0.0.5/32, fd00::/64)"
    )
    roles: dict[str, ConsoleRole] = Field(
        default_factory=dict, description="user name -> role; others get default_role"
    )
    default_role: ConsoleRole = "viewer"

    @field_validator("trusted")
    @classmethod
    def _cidrs(cls, trusted: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for cidr in trusted:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"{cidr!r} is not a network ({exc}); write e.g. 10.0.0.5/32 or 10.0.0.0/24"
                ) from None
        return trusted


class WebConsoleSettings(_Strict):
    """The analysts' web console (``monitor.console``): off unless enabled, and never
    without access control."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8081, gt=0, lt=65536)
    proxy: ConsoleProxySettings | None = Field(
        default=None, description="trust an authenticating reverse proxy's user header"
    )
    users: dict[str, ConsoleUserSettings] = Field(
        default_factory=dict, description="the console's own login: user name -> hash, role"
    )
    session_ttl: Duration = Field(
        default=timedelta(hours=12), description="a login lasts this long"
    )
    secure_cookie: bool = Field(
        default=True,
        description="mark the session cookie Secure (sent over HTTPS only); false only on a "
        "loopback host reached over plain HTTP",
    )
    login_attempts: int = Field(
        default=5, ge=1, description="failed logins per user, and per address, per window"
    )
    login_window: Duration = Field(
        default=timedelta(minutes=15), description="the window failed logins are counted in"
    )

    @model_validator(mode="after")
    def _access_controlled(self) -> WebConsoleSettings:
        if self.enabled and self.proxy is None and not self.users:
            raise ValueError(
                "console.enabled is true but no access control is configured: set "
                "console.proxy (a trusted reverse proxy's user header) or console.users "
                "(the console's own login)"
            )
        if not self.secure_cookie and self.host not in _LOOPBACK_HOSTS:
            raise ValueError(
                "console.secure_cookie: false is allowed only with a loopback console.host "
                "(127.0.0.1, ::1, localhost); serve the console over HTTPS instead"
            )
        return self


class Settings(_Strict):
    redis: RedisSettings = RedisSettings()
    feeds: tuple[FeedSettings, ...] = ()
    rules: RulesSettings = RulesSettings()
    channels: ChannelsSettings = ChannelsSettings(console=ConsoleChannelSettings())
    routes: tuple[RouteSettings, ...] = ()
    log: LogSettings = LogSettings()
    http: HttpSettings = HttpSettings()
    ingest: IngestSettings = IngestSettings()
    dedup: DedupSettings = DedupSettings()
    history: HistorySettings = HistorySettings()
    delivery: DeliverySettings = DeliverySettings()
    health: HealthSettings = HealthSettings()
    console: WebConsoleSettings = WebConsoleSettings()
    stories: StoriesSettings = StoriesSettings()
    ops: OpsSettings = OpsSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    translation: TranslationSettings | None = None
    base_dir: Path = Field(default=Path(), exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        names = [feed.name for feed in self.feeds]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"feed names must be unique; repeated: {', '.join(duplicates)}")
        configured = set(self.channels.configured_names())
        for route in self.routes:
            unknown = [name for name in route.channels if name not in configured]
            if unknown:
                raise ValueError(
                    f"route names channel(s) {', '.join(unknown)} that are not configured "
                    f"under 'channels' (configured: {', '.join(sorted(configured)) or 'none'})"
                )
        unknown_ops = [name for name in self.ops.channels if name not in configured]
        if unknown_ops:
            raise ValueError(
                f"ops.channels names channel(s) {', '.join(unknown_ops)} that are not "
                f"configured under 'channels' (configured: {', '.join(sorted(configured))})"
            )
        for number, channels in enumerate(self.effective_routes(), start=1):
            if not channels:
                raise ValueError(
                    f"route {number} has no active channel, so its alerts could not be sent; "
                    "set the channel's secrets or add 'console' to the route"
                )
        return self

    def sources(self) -> tuple[Source, ...]:
        return tuple(
            Source(
                name=feed.name,
                url=resolve_feed_url(feed.url, self.base_dir),
                interval=feed.interval,
                tags=feed.tags,
                timeout=feed.timeout,
                max_bytes=feed.max_bytes,
                headers=tuple(sorted(feed.headers.items())),
                kind=feed.kind,
                page=PageSelectors(**feed.page.model_dump()) if feed.page else None,
                auth=(feed.auth.username, feed.auth.password.get_secret_value())
                if feed.auth
                else None,
                allow_private=feed.allow_private,
                max_items=feed.max_items,
            )
            for feed in self.feeds
        )

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret, so logging can mask them wherever they turn up."""
        found = []
        if self.channels.slack is not None:
            found.append(self.channels.slack.webhook_url.get_secret_value())
            found.append(self.channels.slack.bot_token.get_secret_value())
            found.append(self.channels.slack.signing_secret.get_secret_value())
        if self.channels.email is not None and self.channels.email.password is not None:
            found.append(self.channels.email.password.get_secret_value())
        if self.channels.webhook is not None:
            found.append(self.channels.webhook.url.get_secret_value())
            if self.channels.webhook.secret is not None:
                found.append(self.channels.webhook.secret.get_secret_value())
        if self.channels.apprise is not None:
            found += self.channels.apprise.secrets()
        password = urlsplit(self.redis.url).password
        if password:
            found.append(password)
        sentinel = self.redis.sentinel
        if sentinel is not None:
            found += [
                s.get_secret_value() for s in (sentinel.password, sentinel.sentinel_password) if s
            ]
        found += [feed.auth.password.get_secret_value() for feed in self.feeds if feed.auth]
        if self.ops.heartbeat_url is not None:  # a healthchecks.io URL is itself the secret
            found.append(self.ops.heartbeat_url.get_secret_value())
        if self.translation is not None and self.translation.api_key is not None:
            found.append(self.translation.api_key.get_secret_value())
        found += [user.password_hash.get_secret_value() for user in self.console.users.values()]
        return tuple(secret for secret in found if secret)

    def rule_paths(self) -> tuple[Path, ...]:
        return tuple(self.resolve_path(path) for path in self.rules.paths)

    def resolve_path(self, path: Path) -> Path:
        """Relative paths in the config are relative to the config file, not to the cwd."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def effective_routes(self) -> tuple[tuple[str, ...], ...]:
        """The channels each route sends to, keeping only active ones; no routes means every
        active channel."""
        active = set(self.channels.active_names())
        if not self.routes:
            return (self.channels.active_names(),)
        return tuple(tuple(c for c in route.channels if c in active) for route in self.routes)


def resolve_feed_url(url: str, base_dir: Path) -> str:
    """``file:relative/path.xml`` is relative to the config file; other URLs pass unchanged."""
    parts = urlsplit(url)
    if parts.scheme != "file" or url.startswith("file:/"):
        return url
    return (base_dir / parts.path).resolve().as_uri()


def interpolate_env(value: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; ``$$`` is a literal ``$``.

    A missing variable without a default is an error rather than an empty string, because an
    empty webhook or password would fail much later and far less clearly.
    """

    def substitute(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        name, default = found.group(1), found.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _ENV_REF.sub(substitute, value)


def _interpolate_tree(doc: YamlDocument, env: Mapping[str, str]) -> Any:
    def walk(node: Any, path: YamlPath) -> Any:
        if isinstance(node, dict):
            return {key: walk(value, (*path, key)) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value, (*path, index)) for index, value in enumerate(node)]
        if isinstance(node, str) and "$" in node:
            try:
                return interpolate_env(node, env)
            except KeyError as missing:
                raise ConfigError(
                    doc.locate(path),
                    f"environment variable {missing.args[0]} is not set",
                    hint=f"export {missing.args[0]}=... or write ${{{missing.args[0]}:-default}}",
                ) from None
        return node

    return walk(doc.data, ())


def find_config_path(explicit: str | None, env: Mapping[str, str] | None = None) -> Path:
    """``-c`` wins, then ``$MONITOR_CONFIG``, then ``./monitor.yaml``."""
    environ = os.environ if env is None else env
    return Path(explicit or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, interpolate and validate the config; raise ``ConfigError`` at the first problem."""
    try:
        doc = load_yaml_file(path)
    except YamlSourceError as exc:
        hint = exc.hint
        if "cannot read" in exc.message:
            hint = "pass -c PATH, set MONITOR_CONFIG, or copy monitor.example.yaml to monitor.yaml"
        raise ConfigError(exc.location, exc.message, hint=hint) from None
    data = _interpolate_tree(doc, os.environ if env is None else env)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(doc.locate(()), "the config file must be a mapping of settings")
    try:
        return Settings.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise _first_config_error(doc, exc) from None


def _first_config_error(doc: YamlDocument, exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        parent_model = _model_at(loc[:-1])
        known = list(parent_model.model_fields) if parent_model else []
        known = [_alias(parent_model, name) for name in known if name != "base_dir"]
        guess = get_close_matches(key, known, n=1)
        hint = f"did you mean {guess[0]!r}?" if guess else f"known keys: {', '.join(known)}"
        return ConfigError(doc.locate(loc, key=True), f"unknown key {key!r}", hint=hint)
    message = str(error["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in loc)
    text = f"{where}: {message}" if where else message
    return ConfigError(doc.locate(loc), text)


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and part.endswith("Settings")


def _alias(model: type[BaseModel] | None, name: str) -> str:
    if model is None:
        return name
    alias = model.model_fields[name].alias
    return alias or name


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """Walk the schema along ``loc`` to find which model an unknown key was written in."""
    model: type[BaseModel] | None = Settings
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
