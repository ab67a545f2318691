"""The console's side of the desk's feedback, pure: the five buttons an Inbox row carries
(the Slack app's, ``deliver.feedback``), the line saying who marked a row what, the Rules
page's rows (the numbers of ``rules stats``), and the silence form's story / source targets.

Plain values in, frozen rows out, ``now`` given; the templates escape every string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from monitor.deliver.feedback import (
    BUTTON_LABELS,
    DONE_LABELS,
    WINDOWS,
    Action,
    RuleStats,
    Vote,
    format_precision,
    stats_by_rule,
)
from monitor.model import ago

STORY_KEY_KINDS = ("story:", "title:", "item:")
"""How ``policy.story_key`` names a story: a console story id is written ``story:<id>``."""


@dataclass(frozen=True, slots=True)
class Button:
    """One feedback button of an Inbox row: the form's ``action`` value and its label."""

    action: str
    label: str
    silences: bool


BUTTONS = tuple(Button(a.value, BUTTON_LABELS[a], not a.is_vote) for a in Action)
"""The same five buttons, in the same order, as a Slack alert carries."""


def pressed_action(value: str) -> Action | None:
    """The action a posted form names, or None for anything else."""
    try:
        return Action(value)
    except ValueError:
        return None


def vote_note(vote: Vote | None, now: datetime) -> str:
    """Who marked an alert what, and when (``ana marked it not relevant, 5m ago``); empty
    for an alert nobody judged."""
    if vote is None:
        return ""
    done = DONE_LABELS[Action.RELEVANT if vote.relevant else Action.NOT_RELEVANT]
    return f"{vote.who or 'someone'} {done}, {ago(vote.at, now)}"


@dataclass(frozen=True, slots=True)
class WindowCells:
    """One rule over one window, as the Rules page prints it."""

    label: str
    sent: int
    relevant: int
    not_relevant: int
    precision: str


@dataclass(frozen=True, slots=True)
class RuleRow:
    """One rule of the Rules page: its numbers over 7 and 30 days, and the items marked not
    relevant as a ``no_match`` list to copy (empty when there is none)."""

    rule: str
    windows: tuple[WindowCells, ...]
    candidates: str


def rule_rows(stats: Iterable[RuleStats], candidates: Mapping[str, str]) -> list[RuleRow]:
    """The rules' rows, by rule id: the numbers grouped as ``rules stats`` groups them, with
    each rule's candidates YAML (``feedback.candidates_yaml``) when it has any."""
    labels = [f"{window.days}d" for window in WINDOWS]
    rows = []
    for rule, windows in stats_by_rule(stats).items():
        cells = tuple(
            WindowCells(
                label=label,
                sent=each.sent,
                relevant=each.relevant,
                not_relevant=each.not_relevant,
                precision=format_precision(each.precision),
            )
            for label in labels
            if (each := windows.get(label)) is not None
        )
        rows.append(RuleRow(rule, cells, candidates.get(rule, "")))
    return rows


def story_criterion(value: str) -> str:
    """A story as a silence names it (``policy.story_key``): a story id from the console
    (``/stories/<id>``) becomes ``story:<id>``; a key already spelled so is kept."""
    value = value.strip()
    if value.startswith(STORY_KEY_KINDS):
        return value
    return f"story:{value}"
