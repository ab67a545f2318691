"""Jinja2 templates for Slack and email, shipped here and overridable from the config folder.

Feed text is untrusted, so it only ever reaches a template as a variable, never as template
source, and every environment escapes variables for its medium: HTML autoescaping for the
email's HTML part, Slack's three markup characters for Slack text.  Pieces the renderer
already built safely (a linked headline, a highlighted quote) arrive as ``Markup`` and pass
through unchanged.  A user's template replaces the shipped one of the same name.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from monitor.errors import MonitorError

NAMES = (
    "slack_alert.j2",
    "email_alert.txt.j2",
    "email_alert.html.j2",
    "email_digest.txt.j2",
    "email_digest.html.j2",
)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class TemplateError(MonitorError, ValueError):
    """A template cannot be loaded or rendered; the message names the file and line.

    Also a ValueError, since a broken template is bad configuration like any other.
    """


def _slack_escape(value: Any) -> Any:
    if isinstance(value, Markup) or value is None:
        return "" if value is None else value
    text = _CONTROL.sub(" ", str(value))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(value: Any) -> Any:
    return "" if value is None else _CONTROL.sub(" ", str(value))


class Templates:
    """The templates of one deployment: ``override`` (a folder) first, then the shipped ones."""

    def __init__(self, override: Path | None = None) -> None:
        self.override = override
        loaders: list[jinja2.BaseLoader] = []
        if override is not None and override.is_dir():
            loaders.append(jinja2.FileSystemLoader(str(override)))
        loaders.append(jinja2.PackageLoader("monitor.deliver", "templates"))
        loader = jinja2.ChoiceLoader(loaders)
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "keep_trailing_newline": True,
        }
        self._html = jinja2.Environment(autoescape=True, **common)
        # Plain text has no markup to escape; Slack text is escaped by ``finalize`` instead.
        self._text = jinja2.Environment(autoescape=False, finalize=_plain, **common)  # noqa: S701
        self._slack = jinja2.Environment(autoescape=False, finalize=_slack_escape, **common)  # noqa: S701

    def check(self) -> None:
        """Compile every template now, so a broken override stops the daemon at start."""
        for name in NAMES:
            self._template(name)

    def render(self, name: str, **context: Any) -> str:
        """Render one template; TemplateError names the file and line of a problem."""
        template = self._template(name)
        try:
            return template.render(**context)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {template.filename or name}: {exc}") from None

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self._environment(name).get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name}: {exc}") from None

    def _environment(self, name: str) -> jinja2.Environment:
        if name.endswith(".html.j2"):
            return self._html
        if name.startswith("slack"):
            return self._slack
        return self._text


@functools.cache
def shipped() -> Templates:
    """The shipped templates alone (no override): what renders when nothing is configured."""
    return Templates()


def safe(text: str) -> Markup:
    """Mark text the renderer already escaped for its medium, so templates keep it as is."""
    return Markup(text)  # noqa: S704 - callers pass only text they escaped themselves
