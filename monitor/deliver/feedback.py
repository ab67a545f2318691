"""Feedback on alerts, pure: the buttons, Slack's request signature, what a press means, and
the per-rule precision it adds up to (time given; no I/O).

An alert posted by the Slack app carries five buttons.  Each press comes back to the daemon
as a signed request (``signature_ok``), is read into a ``Press`` (``parse_press``), recorded,
and applied: a vote (relevant / not relevant) counts towards the rule's precision
(``rule_stats``); a mute or a snooze becomes a silence (``silence_for``).  Items voted not
relevant are the rule's ``no_match`` candidates (``candidates_yaml``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from monitor.deliver.policy import story_key
from monitor.model import Match

# --- the buttons --------------------------------------------------------------------------


class Action(enum.StrEnum):
    """What a button does; its value is the Block Kit ``action_id`` (``monitor_`` + name)."""

    RELEVANT = "relevant"
    NOT_RELEVANT = "not_relevant"
    MUTE_STORY = "mute_story"
    MUTE_SOURCE = "mute_source"
    SNOOZE_RULE = "snooze_rule"

    @property
    def action_id(self) -> str:
        return f"{ACTION_PREFIX}{self.value}"

    @property
    def is_vote(self) -> bool:
        return self in (Action.RELEVANT, Action.NOT_RELEVANT)


ACTION_PREFIX = "monitor_"
BUTTON_LABELS = {
    Action.RELEVANT: "Relevant",
    Action.NOT_RELEVANT: "Not relevant",
    Action.MUTE_STORY: "Mute story",
    Action.MUTE_SOURCE: "Mute this source for this rule",
    Action.SNOOZE_RULE: "Snooze rule 24 h",
}
DONE_LABELS = {
    Action.RELEVANT: "marked it relevant",
    Action.NOT_RELEVANT: "marked it not relevant",
    Action.MUTE_STORY: "muted the story",
    Action.MUTE_SOURCE: "muted this source for this rule",
    Action.SNOOZE_RULE: "snoozed the rule for 24 h",
}
MUTE_STORY_FOR = timedelta(days=7)
"""A muted story stays quiet this long: longer than a story keeps growing (``stories.window``)."""
MUTE_SOURCE_FOR = timedelta(days=30)
"""A source muted for a rule stays quiet this long; the console or ``silence end`` ends it."""
SNOOZE_FOR = timedelta(hours=24)
BUTTON_VALUE_CHARS = 2000
"""Slack refuses a button whose value is longer."""


@dataclass(frozen=True, slots=True)
class AlertRef:
    """What a button's value carries: which alert it is about, enough to act without a
    lookup (the story as ``policy.story_key`` names it, the item's source)."""

    rule: str
    item: str
    story: str
    source: str

    @property
    def alert(self) -> str:
        """The alert's identity, as ``Match.key`` spells it."""
        return f"{self.rule}|{self.item}"

    def value(self) -> str:
        text = json.dumps(
            {"r": self.rule, "i": self.item, "s": self.story, "o": self.source},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        if len(text) > BUTTON_VALUE_CHARS:
            raise ValueError("alert reference too long for a Slack button")
        return text

    @classmethod
    def of(cls, match: Match) -> AlertRef:
        return cls(match.rule_id, match.item.id, story_key(match), match.item.source)

    @classmethod
    def parse(cls, value: str) -> AlertRef | None:
        """The reference in a button's value, or None when it is not one of ours."""
        try:
            data = json.loads(value)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        fields = [data.get(key) for key in ("r", "i", "s", "o")]
        if not all(isinstance(v, str) for v in fields) or not fields[0] or not fields[1]:
            return None
        rule, item, story, source = (str(v) for v in fields)
        return cls(rule, item, story, source)


def action_blocks(match: Match, block_id: str) -> dict[str, Any]:
    """The Block Kit ``actions`` block of one alert: the five buttons, each carrying the
    alert's reference.  The two mutes and the snooze ask for a confirmation first."""
    value = AlertRef.of(match).value()
    elements: list[dict[str, Any]] = []
    for action in Action:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action.action_id,
            "text": {"type": "plain_text", "text": BUTTON_LABELS[action]},
            "value": value,
        }
        if action is Action.RELEVANT:
            button["style"] = "primary"
        if not action.is_vote:
            button["confirm"] = {
                "title": {"type": "plain_text", "text": BUTTON_LABELS[action][:100]},
                "text": {"type": "plain_text", "text": _confirm_text(action)},
                "confirm": {"type": "plain_text", "text": "Yes"},
                "deny": {"type": "plain_text", "text": "Cancel"},
            }
        elements.append(button)
    return {"type": "actions", "block_id": block_id, "elements": elements}


def _confirm_text(action: Action) -> str:
    if action is Action.MUTE_STORY:
        return f"No more alerts about this story, from any rule, for {_days(MUTE_STORY_FOR)}."
    if action is Action.MUTE_SOURCE:
        return f"No more alerts from this source for this rule for {_days(MUTE_SOURCE_FOR)}."
    return "No alerts from this rule for the next 24 hours."


def _days(span: timedelta) -> str:
    return f"{span.days} days"


# --- Slack's request signature ------------------------------------------------------------

SIGNATURE_VERSION = "v0"
MAX_AGE = timedelta(minutes=5)
"""Slack's advice: a request signed longer ago than this is refused, so a captured request
cannot be replayed later (one replayed sooner is refused by the replay guard)."""


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` and the hex HMAC-SHA256 of ``v0:<timestamp>:<body>`` under the signing secret,
    as Slack signs every request it sends to an app."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


class Refusal(enum.StrEnum):
    """Why a signed request is refused (said to the caller and logged; never the secret)."""

    NO_SIGNATURE = "missing signature headers"
    BAD_TIMESTAMP = "timestamp is not a number"
    STALE = "timestamp too old or in the future"
    BAD_SIGNATURE = "signature does not match"


def check_signature(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: datetime
) -> Refusal | None:
    """None when the request was signed with ``secret`` within ``MAX_AGE`` of ``now``
    (either way: a clock ahead is as suspect as one behind); else why not.  The HMAC is
    compared in constant time."""
    if not timestamp or not signature:
        return Refusal.NO_SIGNATURE
    if not re.fullmatch(r"[0-9]{1,12}", timestamp.strip()):
        return Refusal.BAD_TIMESTAMP
    signed = datetime.fromtimestamp(int(timestamp.strip()), UTC)
    if abs(now - signed) > MAX_AGE:
        return Refusal.STALE
    expected = slack_signature(secret, timestamp.strip(), body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace")):
        return Refusal.BAD_SIGNATURE
    return None


def signature_ok(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: datetime
) -> bool:
    return check_signature(secret, timestamp, signature, body, now) is None


# --- a press of a button ------------------------------------------------------------------

_SLACK_ID = re.compile(r"[UWB][A-Z0-9]{2,30}")


@dataclass(frozen=True, slots=True)
class Press:
    """One press of one of our buttons, as Slack reported it."""

    action: Action
    ref: AlertRef
    user_id: str
    user_name: str
    channel_id: str
    message_ts: str
    block_id: str
    response_url: str
    blocks: tuple[Mapping[str, Any], ...]
    text: str
    via: str = "Slack"
    """Where the press was made: ``Slack``, or ``console`` (``desk_press``)."""

    @property
    def who(self) -> str:
        """The user as records keep them: ``name (U123)``."""
        return f"{self.user_name} ({self.user_id})" if self.user_name else self.user_id

    @property
    def mention(self) -> str:
        """The user as a message names them: a mention when the id is Slack-shaped."""
        if _SLACK_ID.fullmatch(self.user_id):
            return f"<@{self.user_id}>"
        return _plain(self.user_name or "someone")


def desk_press(action: Action, ref: AlertRef, user: str) -> Press:
    """A press of one of the buttons in the console's Inbox by its signed-in ``user``: the
    same press a Slack button makes, with no Slack message to update."""
    return Press(
        action=action,
        ref=ref,
        user_id=user,
        user_name="",
        channel_id="",
        message_ts="",
        block_id="",
        response_url="",
        blocks=(),
        text="",
        via="console",
    )


def alert_text(match: Match, sent: datetime) -> dict[str, str]:
    """What a vote keeps of the item (its ``no_match`` candidate) and when it was sent."""
    return {
        "title": match.item.title,
        "summary": match.item.summary,
        "link": match.item.link,
        "lang": match.item.lang or "",
        "source": match.item.source,
        "sent": sent.isoformat(),
    }


def _plain(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")[:80]


def parse_press(payload: Mapping[str, Any]) -> Press | None:
    """The press a ``block_actions`` payload reports, or None when it is no press of ours
    (another interaction type, another app's button, a value we did not write)."""
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        return None
    first = actions[0]
    action_id = str(first.get("action_id") or "")
    try:
        action = Action(action_id.removeprefix(ACTION_PREFIX))
    except ValueError:
        return None
    if not action_id.startswith(ACTION_PREFIX):
        return None
    ref = AlertRef.parse(str(first.get("value") or ""))
    if ref is None:
        return None
    user = _mapping(payload.get("user"))
    container = _mapping(payload.get("container"))
    channel = _mapping(payload.get("channel"))
    message = _mapping(payload.get("message"))
    blocks = message.get("blocks")
    return Press(
        action=action,
        ref=ref,
        user_id=str(user.get("id") or ""),
        user_name=str(user.get("username") or user.get("name") or ""),
        channel_id=str(container.get("channel_id") or channel.get("id") or ""),
        message_ts=str(container.get("message_ts") or message.get("ts") or ""),
        block_id=str(first.get("block_id") or ""),
        response_url=str(payload.get("response_url") or ""),
        blocks=tuple(b for b in blocks if isinstance(b, dict)) if isinstance(blocks, list) else (),
        text=str(message.get("text") or ""),
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True)
class SilenceOrder:
    """The silence a mute or a snooze asks for (``SilenceStore.add``'s arguments)."""

    duration: timedelta
    reason: str
    rule: str | None = None
    story: str | None = None
    source: str | None = None


def silence_for(press: Press) -> SilenceOrder | None:
    """The silence a press asks for: a story (any rule), a rule's source, or a rule for
    24 h; None for a vote."""
    ref = press.ref
    said = f"{press.via}: {press.who}"
    if press.action is Action.MUTE_STORY:
        return SilenceOrder(MUTE_STORY_FOR, f"{said} muted the story", story=ref.story)
    if press.action is Action.MUTE_SOURCE:
        return SilenceOrder(
            MUTE_SOURCE_FOR,
            f"{said} muted source {ref.source} for rule {ref.rule}",
            rule=ref.rule,
            source=ref.source,
        )
    if press.action is Action.SNOOZE_RULE:
        return SilenceOrder(SNOOZE_FOR, f"{said} snoozed the rule", rule=ref.rule)
    return None


FEEDBACK_BLOCK_SUFFIX = ".feedback"
FEEDBACK_LINES = 10
"""A context block holds at most 10 elements: the newest presses are kept."""


def updated_blocks(
    blocks: Sequence[Mapping[str, Any]], press: Press, now: datetime
) -> list[dict[str, Any]]:
    """The message's blocks with one line added under the pressed alert's buttons: who did
    what, when (a context block of its own, newest last, the oldest dropped past 10).  The
    buttons stay, so others can still vote or act."""
    line = {
        "type": "mrkdwn",
        "text": f"{press.mention} {DONE_LABELS[press.action]} · {now:%Y-%m-%d %H:%M} UTC",
    }
    target = press.block_id + FEEDBACK_BLOCK_SUFFIX
    out: list[dict[str, Any]] = []
    placed = False
    for block in blocks:
        if block.get("block_id") == target:
            continue
        out.append(dict(block))
        if block.get("block_id") == press.block_id and block.get("type") == "actions":
            old = next((b for b in blocks if b.get("block_id") == target), None)
            elements = list(old.get("elements") or []) if old is not None else []
            elements = [*elements, line][-FEEDBACK_LINES:]
            out.append({"type": "context", "block_id": target, "elements": elements})
            placed = True
    if not placed:  # the buttons are gone from the message: say it at its end
        out.append({"type": "context", "block_id": target, "elements": [line]})
    return out[:50]


# --- votes and precision ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Vote:
    """The latest verdict on one alert: relevant or not, by whom, when; with the item's text
    (the ``no_match`` candidate when it was not relevant) and when the alert was sent."""

    alert: str
    rule: str
    relevant: bool
    who: str
    at: datetime
    sent: datetime
    title: str = ""
    summary: str = ""
    link: str = ""
    source: str = ""
    lang: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "rule": self.rule,
            "relevant": self.relevant,
            "who": self.who,
            "at": self.at.isoformat(),
            "sent": self.sent.isoformat(),
            "title": self.title,
            "summary": self.summary,
            "link": self.link,
            "source": self.source,
            "lang": self.lang,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vote:
        return cls(
            alert=str(data["alert"]),
            rule=str(data["rule"]),
            relevant=data.get("relevant") is True,
            who=str(data.get("who") or ""),
            at=datetime.fromisoformat(str(data["at"])),
            sent=datetime.fromisoformat(str(data.get("sent") or data["at"])),
            title=str(data.get("title") or ""),
            summary=str(data.get("summary") or ""),
            link=str(data.get("link") or ""),
            source=str(data.get("source") or ""),
            lang=str(data.get("lang") or ""),
        )


WINDOWS = (timedelta(days=7), timedelta(days=30))
"""The windows precision is told over (``rules stats``, metrics)."""


@dataclass(frozen=True, slots=True)
class RuleStats:
    """One rule over one window: alerts sent, votes, precision (None before any vote)."""

    rule: str
    window: timedelta
    sent: int
    relevant: int
    not_relevant: int

    @property
    def judged(self) -> int:
        return self.relevant + self.not_relevant

    @property
    def precision(self) -> float | None:
        """Relevant among the judged alerts; unjudged alerts are not guessed either way."""
        return self.relevant / self.judged if self.judged else None

    @property
    def window_label(self) -> str:
        return f"{self.window.days}d"


def rule_stats(
    rule: str,
    sent: Iterable[datetime],
    votes: Iterable[Vote],
    now: datetime,
    window: timedelta,
) -> RuleStats:
    """A rule's numbers over the ``window`` before ``now``: alerts sent in it, and the votes
    on alerts sent in it (a vote counts for the window its alert was sent in, so a rule's
    precision describes what it sent then, whenever the desk judged it)."""
    since = now - window
    in_window = [v for v in votes if since <= v.sent <= now]
    return RuleStats(
        rule=rule,
        window=window,
        sent=sum(1 for at in sent if since <= at <= now),
        relevant=sum(1 for v in in_window if v.relevant),
        not_relevant=sum(1 for v in in_window if not v.relevant),
    )


def latest_votes(votes: Iterable[Vote]) -> list[Vote]:
    """One vote per alert, the latest (a desk that changes its mind is taken at its word)."""
    chosen: dict[str, Vote] = {}
    for vote in votes:
        held = chosen.get(vote.alert)
        if held is None or vote.at >= held.at:
            chosen[vote.alert] = vote
    return sorted(chosen.values(), key=lambda v: (v.at, v.alert))


def stats_by_rule(stats: Iterable[RuleStats]) -> dict[str, dict[str, RuleStats]]:
    """The numbers rule by rule (sorted), each by its window's label (``7d``, ``30d``): the
    one table ``rules stats`` prints and the console's Rules page shows."""
    by_rule: dict[str, dict[str, RuleStats]] = {}
    for each in stats:
        by_rule.setdefault(each.rule, {})[each.window_label] = each
    return dict(sorted(by_rule.items()))


def format_precision(value: float | None) -> str:
    return "-" if value is None else f"{round(value * 100)}%"


def candidates_yaml(rule: str, votes: Iterable[Vote]) -> str:
    """The items voted not relevant for ``rule``, newest first, as a ``no_match`` list to
    paste under the rule's ``examples`` (then ``monitor rules test`` shows the rule still
    matches them until it is tightened)."""
    chosen = sorted(
        (v for v in latest_votes(votes) if v.rule == rule and not v.relevant),
        key=lambda v: v.at,
        reverse=True,
    )
    seen: set[tuple[str, str]] = set()
    examples: list[dict[str, str] | str] = []
    for vote in chosen:
        title, summary = vote.title.strip(), vote.summary.strip()
        if not title or (title, summary) in seen:
            continue
        seen.add((title, summary))
        examples.append({"title": title, "summary": summary} if summary else title)
    head = (
        f"# {rule}: {len(examples)} item(s) marked not relevant, newest first.\n"
        "# Paste under the rule's examples (indent to fit), then run `monitor rules test`.\n"
    )
    if not examples:
        return head + "no_match: []\n"
    body = yaml.safe_dump({"no_match": examples}, allow_unicode=True, sort_keys=False, width=100)
    return head + body
