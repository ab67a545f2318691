"""Rule and config reload: when to reload, what a new config changes, and the checked load.

The decisions (``checked_rules``, ``restart_sections``, ``source_changes``) are pure; the
change detectors stat files, and ``load_checked_rules`` reads them, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import RuleSetError
from monitor.model import Source
from monitor.rules import RuleSet, find_rule_files, load_rules, stories_problems
from monitor.rules.load import find_entity_files
from monitor.settings import Settings

RESTART_SECTIONS = ("redis", "channels", "routes", "health", "http", "log")
"""Config sections a running daemon cannot apply: they need new connections or a new
logger, so a reload reports them as needing a restart rather than half-applying them."""

RulesSignature = tuple[tuple[str, int, int], ...]
FileSignature = tuple[int, int] | None


def rules_signature(paths: tuple[Path, ...]) -> RulesSignature:
    """Cheap change detector for rule and entity files: names, sizes and modification times."""
    signature = []
    for path in [*find_rule_files(paths), *find_entity_files(paths)]:
        with contextlib.suppress(OSError):
            stat = path.stat()
            signature.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


def file_signature(path: Path | None) -> FileSignature:
    """Cheap change detector for the config file: size and modification time (None: no file)."""
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns)


def checked_rules(rules: RuleSet, settings: Settings) -> RuleSet:
    """The rule set, refused (``RuleSetError``) when a rule needs stories and the config has
    them off: at start the daemon stops with the rule's file and line, on a reload it keeps
    the running rules."""
    problems = [] if settings.stories.enabled else stories_problems(rules)
    if problems:
        raise RuleSetError(problems)
    return rules


async def load_checked_rules(settings: Settings) -> RuleSet:
    """The settings' rule files loaded and checked (``RuleSetError`` if refused).

    Loading runs in a thread: compiling 10,000 rules takes seconds, and polls, deliveries
    and health checks must not wait for it.
    """
    rules = await asyncio.to_thread(load_rules, settings.rule_paths())
    return checked_rules(rules, settings)


def restart_sections(running: Settings, fresh: Settings) -> list[str]:
    """Pure: the sections of ``fresh`` that differ from the running config and need a
    restart to take effect (``RESTART_SECTIONS``)."""
    return [name for name in RESTART_SECTIONS if getattr(fresh, name) != getattr(running, name)]


@dataclass(frozen=True, slots=True)
class SourceChanges:
    """How the feeds of a new config differ from the running ones, by feed name."""

    removed: tuple[str, ...]
    added: tuple[Source, ...]
    changed: tuple[Source, ...]


def source_changes(running: tuple[Source, ...], fresh: tuple[Source, ...]) -> SourceChanges:
    """Pure: the feeds to unschedule, to schedule, and to schedule again (any setting of a
    feed changed); unchanged feeds keep their schedule."""
    old = {source.name: source for source in running}
    new = {source.name: source for source in fresh}
    return SourceChanges(
        removed=tuple(name for name in old if name not in new),
        added=tuple(source for name, source in new.items() if name not in old),
        changed=tuple(
            source for name, source in new.items() if name in old and old[name] != source
        ),
    )
