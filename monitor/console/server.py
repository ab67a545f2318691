"""The console's HTTP side: an aiohttp application over the stores, rendered with Jinja2.

Every request passes one middleware that decides who is asking (a trusted proxy's user
header, or a session cookie from the login form), refuses the unsigned, checks the role and
the CSRF token of every POST, and adds the security headers.  Handlers only read the stores
or call their named operations; what a page shows is decided in ``views``.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
import structlog
from aiohttp import web

from monitor.console import feedback_views, playground, views
from monitor.console.access import (
    Action,
    Principal,
    allowed,
    csrf_ok,
    csrf_token,
    networks,
    proxy_role,
    proxy_user,
    safe_next,
)
from monitor.console.passwords import verify_password
from monitor.console.sessions import SessionBook
from monitor.console.throttle import LoginThrottle, address_key, user_key
from monitor.deliver.feedback import AlertRef, alert_text, candidates_yaml, desk_press
from monitor.deliver.feedback_store import FeedbackStore, apply_press
from monitor.deliver.history import (
    InboxFilter,
    ItemHistory,
    SentLog,
    TimeRange,
    is_entry_id,
    search_query,
    time_range,
)
from monitor.deliver.queue import AlertQueue
from monitor.deliver.silences import SilenceStore
from monitor.errors import MonitorError, StoreError
from monitor.ingest.state import Store
from monitor.model import Item, Source, short_span
from monitor.rules import RuleSet
from monitor.rules.backtest import Backtest, compare_rule_sets
from monitor.settings import WebConsoleSettings
from monitor.stories.store import StoryStore
from monitor.stories.trends import replay_trends

log = structlog.get_logger("monitor.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOGIN_COOKIE = "monitor_console_login"
"""A pre-login cookie: the login form's CSRF token is bound to it."""
MAX_BODY = 64 * 1024
PLAYGROUND_MAX_BODY = playground.MAX_DRAFT_BYTES + MAX_BODY
"""The playground's form carries a draft rule file: its own, larger body limit."""
STORY_WINDOWS = {"24h": timedelta(hours=24), "3d": timedelta(days=3), "7d": timedelta(days=7)}
DEFAULT_WINDOW = "7d"
#: Messages a redirect may ask a page to show, by code: never text from the query itself.
NOTICES = {
    "retried": "The dead letter was re-queued; a running daemon sends it within seconds.",
    "retry-gone": "That dead letter is gone: someone retried it already, or it was trimmed.",
    "silenced": "The silence is in force.",
    "ended": "The silence was ended.",
    "end-gone": "That silence had already ended.",
    "acked": "The alert is acknowledged.",
    "assigned": "The alert's assignee is set.",
    "alert-gone": "That alert is no longer in the log (it was trimmed).",
    "judged": "Your feedback is recorded; the Rules page counts it.",
    "muted": "The silence is in force; the Silences page lists it.",
    "split": "The item has a story of its own now; later reports will not merge it back.",
    "split-gone": "That item is no longer in this story.",
    "merged": "The stories are one now; the other story's address shows this one.",
    "merge-gone": "Not merged: give the id of another story that still exists.",
}
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")
"""Who is asking (None: nobody signed in), set by the middleware on every request."""
SESSION: web.RequestKey[str | None] = web.RequestKey("session_token")
"""The request's live session token: its CSRF tokens are derived from it."""
#: Requests that need no signed-in user.
PUBLIC = frozenset({"/login", "/static/console.css"})
#: The Inbox's and the search's query-string fields (filters).
INBOX_FORM = ("rule", "tag", "severity", "channel", "lang", "source", "since", "until")
SEARCH_FORM = ("q", "source", "lang", "since", "until")
#: The playground's form fields (besides the picked examples ``match`` and ``no_match``).
PLAYGROUND_FORM = ("title", "summary", "item", "rule", "against", "draft", "scope")
#: POSTs that change nothing, so viewers may send them (still with the CSRF token).
READ_ONLY_POSTS = frozenset({"/logout", "/playground"})


@dataclass(frozen=True, slots=True)
class ConsoleStores:
    """What the console reads and acts on: the daemon's stores, on its Redis client."""

    stories: StoryStore
    ingest: Store
    queue: AlertQueue
    silences: SilenceStore


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.console", "templates"),
        autoescape=True,  # every page: feed titles, errors and reasons are untrusted text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class ConsoleServer:
    """The console: ``await start()`` listens on ``console.host:console.port`` (or on a
    socket given, for tests), ``await stop()`` closes it.

    ``config`` and ``sources`` are read on every request, so a reloaded config's users,
    roles and feeds apply at once; the address and the proxy's networks are read at start.
    """

    def __init__(
        self,
        config: Callable[[], WebConsoleSettings],
        *,
        stores: ConsoleStores,
        sources: Callable[[], Sequence[Source]],
        clock: Callable[[], datetime],
        rules: Callable[[], RuleSet | None] | None = None,
    ) -> None:
        settings = config()
        if settings.proxy is None and not settings.users:
            raise MonitorError(
                "console.enabled is true but no access control is configured",
                hint="set console.proxy or console.users (see docs/operating.md)",
            )
        self.config = config
        self.stores = stores
        self.sources = sources
        self.clock = clock
        self.rules: Callable[[], RuleSet | None] = rules or (lambda: None)
        """The rule set running now (read per request, so a reload applies at once)."""
        self.sent = SentLog(stores.queue.client, stores.queue.keys)
        self.history = ItemHistory(stores.ingest.client, stores.ingest.keys)
        self.feedback = FeedbackStore(stores.queue.client, stores.queue.keys)
        """The desk's votes and rule numbers, shared with the Slack app's buttons."""
        self.sessions = SessionBook(settings.session_ttl)
        self.throttle = LoginThrottle(settings.login_attempts, settings.login_window)
        self._trusted = networks(settings.proxy.trusted) if settings.proxy else ()
        self._login_key = secrets.token_bytes(32)
        self._templates = _templates()
        self._backtests = asyncio.Semaphore(1)
        """One playground backtest at a time: each may spend its CPU budget."""
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        routes = app.router
        routes.add_get("/", self.home)
        routes.add_get("/login", self.login_page)
        routes.add_post("/login", self.login)
        routes.add_post("/logout", self.logout)
        routes.add_get("/stories", self.stories_page)
        routes.add_get("/stories/{story_id}", self.story_page)
        routes.add_post("/stories/{story_id}/split", self.split_story_item)
        routes.add_post("/stories/{story_id}/merge", self.merge_story)
        routes.add_get("/feeds", self.feeds_page)
        routes.add_get("/dead", self.dead_page)
        routes.add_post("/dead/{letter_id}/retry", self.retry_dead)
        routes.add_get("/silences", self.silences_page)
        routes.add_post("/silences", self.add_silence)
        routes.add_post("/silences/{silence_id}/end", self.end_silence)
        routes.add_get("/inbox", self.inbox_page)
        routes.add_post("/inbox/{entry_id}/ack", self.ack_alert)
        routes.add_post("/inbox/{entry_id}/assign", self.assign_alert)
        routes.add_post("/inbox/{entry_id}/feedback", self.feedback_alert)
        routes.add_get("/rules", self.rules_page)
        routes.add_get("/search", self.search_page)
        routes.add_get("/explain", self.explain_page)
        routes.add_get("/playground", self.playground_page)
        routes.add_post("/playground", self.run_playground)
        routes.add_static("/static", _static_dir(), show_index=False, follow_symlinks=False)
        return app

    async def start(self, sock: socket.socket | None = None) -> bool:
        """Listen; a port in use is logged, not fatal (the daemon's alerts matter more)."""
        settings = self.config()
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(runner, sock)
        else:
            site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            log.error("console not started", port=settings.port, error=str(exc))
            await runner.cleanup()
            return False
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else settings.port
        log.info(
            "console listening",
            host=settings.host,
            port=self.port,
            proxy=settings.proxy is not None,
            users=len(settings.users),
        )
        return True

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- who is asking ----------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Decide the principal, refuse what it may not do, and add the security headers."""
        static = request.path.startswith("/static/")
        try:
            response = await self._admit(request, handler)
        except web.HTTPException as exc:  # raised, as aiohttp wants redirects and refusals
            _harden(exc, static)
            raise
        except StoreError as exc:
            log.error("console: redis unavailable", path=request.path, error=str(exc))
            response = self._render(
                request,
                "message.html.j2",
                status=503,
                title="Redis unavailable",
                message="The console cannot read Redis right now; try again shortly.",
            )
        _harden(response, static)
        return response

    async def _admit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/playground":
            request = request.clone(client_max_size=PLAYGROUND_MAX_BODY)
        principal, new_token = self._principal(request)
        request[PRINCIPAL] = principal
        if request.path in PUBLIC or request.path.startswith("/static/"):
            return await handler(request)
        if principal is None:
            return self._unsigned(request)
        try:
            if request.method == "POST":
                await self._check_post(request, principal)
            response = await handler(request)
        except web.HTTPException as exc:
            if new_token is not None:
                self._set_session_cookie(exc, new_token)
            raise
        if new_token is not None:
            self._set_session_cookie(response, new_token)
        return response

    def _principal(self, request: web.Request) -> tuple[Principal | None, str | None]:
        """Who is asking, and a new session token to set (a proxy user's first request).

        A trusted proxy's header wins; it is ignored (and logged) from any other peer.  A
        login session counts only while its user is still in ``console.users``.
        """
        settings = self.config()
        now = self.clock()
        token = request.cookies.get(self._cookie_name())
        session = self.sessions.lookup(token, now)
        request[SESSION] = token if session is not None else None
        proxy = settings.proxy
        if proxy is not None and proxy.header in request.headers:
            user = proxy_user(_peer(request), request.headers.get(proxy.header), self._trusted)
            if user:
                role = proxy_role(user, proxy.roles, proxy.default_role)
                if session is not None and session.via == "proxy" and session.user == user:
                    return Principal(user, role, "proxy"), None
                fresh = self.sessions.open(user, "proxy", now)
                request[SESSION] = fresh
                return Principal(user, role, "proxy"), fresh
            log.warning(
                "console: proxy user header ignored from an untrusted address",
                peer=_peer(request),
                header=proxy.header,
            )
        if session is not None and session.via == "login" and session.user in settings.users:
            return Principal(session.user, settings.users[session.user].role, "login"), None
        return None, None

    def _unsigned(self, request: web.Request) -> web.StreamResponse:
        if self.config().users:
            target = quote(request.path_qs, safe="/?=&")
            if request.method == "GET":
                raise web.HTTPSeeOther(f"/login?next={target}")
            raise web.HTTPSeeOther("/login")
        return self._render(
            request,
            "message.html.j2",
            status=401,
            title="Sign in through the proxy",
            message="This console is reached through the desk's sign-in proxy.",
        )

    async def _check_post(self, request: web.Request, principal: Principal) -> None:
        """Every state-changing request: an analyst, with this session's CSRF token."""
        form = await request.post()
        token = request.get(SESSION) or ""
        presented = form.get("csrf")
        if not csrf_ok(
            token.encode(), principal.user, presented if isinstance(presented, str) else None
        ):
            log.warning(
                "console: request refused, CSRF token missing or wrong",
                user=principal.user,
                path=request.path,
                peer=_peer(request),
            )
            raise self._refusal(request, 403, "Form expired", "Reload the page and try again.")
        if request.path not in READ_ONLY_POSTS and not allowed(principal, Action.ACT):
            log.warning(
                "console: action refused to a viewer", user=principal.user, path=request.path
            )
            raise self._refusal(
                request, 403, "Not allowed", "Your role is viewer: only analysts change things."
            )

    def _refusal(
        self, request: web.Request, status: int, title: str, message: str
    ) -> web.HTTPException:
        body = self._page(request, "message.html.j2", title=title, message=message)
        return _http_error(status, body)

    # -- login ------------------------------------------------------------------------------

    def _cookie_name(self) -> str:
        # The __Host- prefix makes the browser refuse the cookie unless it is Secure, for
        # this host only, and for every path: it cannot be planted from a sibling domain.
        return "__Host-monitor_console" if self.config().secure_cookie else "monitor_console"

    def _set_session_cookie(self, response: web.StreamResponse, token: str) -> None:
        settings = self.config()
        response.set_cookie(
            self._cookie_name(),
            token,
            max_age=int(settings.session_ttl.total_seconds()),
            path="/",
            httponly=True,
            secure=settings.secure_cookie,
            samesite="Strict",
        )

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        return self._login_form(request, status=200, error="")

    def _login_form(self, request: web.Request, *, status: int, error: str) -> web.StreamResponse:
        if not self.config().users:
            return self._unsigned(request)
        pre = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self._render(
            request,
            "login.html.j2",
            status=status,
            error=error,
            next=safe_next(request.query.get("next")),
            login_csrf=csrf_token(self._login_key, pre),
        )
        response.set_cookie(
            LOGIN_COOKIE,
            pre,
            path="/login",
            httponly=True,
            secure=self.config().secure_cookie,
            samesite="Strict",
        )
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Check a sign-in: the pre-login CSRF token, the rate limits, then the password
        (in a thread: Argon2 costs CPU on purpose).  Failures are logged without it."""
        settings = self.config()
        form = await request.post()
        user = str(form.get("user") or "").strip()
        password = str(form.get("password") or "")
        peer = _peer(request) or "-"
        pre = request.cookies.get(LOGIN_COOKIE) or ""
        presented = form.get("csrf")
        if not pre or not csrf_ok(
            self._login_key, pre, presented if isinstance(presented, str) else None
        ):
            log.warning("console: login refused, CSRF token missing or wrong", peer=peer)
            return self._login_form(request, status=403, error="The form expired; try again.")
        now = self.clock()
        keys = (user_key(user), address_key(peer))
        wait = self.throttle.wait(keys, now)
        if wait > timedelta(0):
            log.warning(
                "console: login rate limited",
                user=user,
                peer=peer,
                retry_after_s=int(wait.total_seconds()),
            )
            response = self._login_form(
                request,
                status=429,
                error=f"Too many failed sign-ins; try again in {short_span(wait)}.",
            )
            response.headers["Retry-After"] = str(max(1, int(wait.total_seconds())))
            return response
        account = settings.users.get(user)
        stored = account.password_hash.get_secret_value() if account else None
        if not await asyncio.to_thread(verify_password, stored, password):
            self.throttle.failed(keys, now)
            log.warning(
                "console: login failed",
                user=user,
                peer=peer,
                reason="unknown user" if account is None else "wrong password",
            )
            return self._login_form(request, status=401, error="Wrong user name or password.")
        self.throttle.succeeded(user)
        self.sessions.close(request.cookies.get(self._cookie_name()))
        token = self.sessions.open(user, "login", now)
        log.info("console: signed in", user=user, peer=peer)
        response = web.HTTPSeeOther(safe_next(str(form.get("next") or "/")))
        self._set_session_cookie(response, token)
        response.del_cookie(LOGIN_COOKIE, path="/login")
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        principal = _signed_in(request)
        self.sessions.close(request.get(SESSION))
        log.info("console: signed out", user=principal.user)
        response = web.HTTPSeeOther("/login" if principal.via == "login" else "/")
        response.del_cookie(self._cookie_name(), path="/")
        raise response

    # -- pages ------------------------------------------------------------------------------

    async def home(self, _request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/stories")

    async def stories_page(self, request: web.Request) -> web.StreamResponse:
        window = request.query.get("since", DEFAULT_WINDOW)
        if window not in STORY_WINDOWS:
            window = DEFAULT_WINDOW
        now = self.clock()
        since = now - STORY_WINDOWS[window]
        store = self.stores.stories
        page = views.pager(request.query.get("page"), await store.count_recent(since))
        stories = await store.recent(since, page.size, offset=page.offset)
        return self._render(
            request,
            "stories.html.j2",
            title="Stories",
            section="stories",
            rows=[views.story_row(story, now) for story in stories],
            pager=page,
            window=window,
            windows=list(STORY_WINDOWS),
        )

    async def story_page(self, request: web.Request) -> web.StreamResponse:
        story_id = request.match_info["story_id"]
        story = await self.stores.stories.story(story_id)
        if story is None:
            return self._render(
                request,
                "message.html.j2",
                status=404,
                title="No such story",
                message="No story has that id (stories expire after stories.retention).",
            )
        rules = await self.stores.stories.rule_states(story.id)
        return self._render(
            request,
            "story.html.j2",
            title="Story",
            section="stories",
            story=views.story_view(story, rules, self.clock()),
        )

    async def split_story_item(self, request: web.Request) -> web.StreamResponse:
        """An analyst's correction: the item does not report this story's event.  It gets a
        story of its own, kept apart from this one by later items (``split_item``)."""
        principal = _signed_in(request)
        story_id = request.match_info["story_id"]
        form = await request.post()
        item_id = str(form.get("item", "")).strip()
        moved = (
            await self.stores.stories.split_item(story_id, item_id, self.clock(), by=principal.user)
            if item_id
            else None
        )
        log.info(
            "console: story item split out" if moved else "console: story item not found",
            user=principal.user,
            story=story_id,
            item=item_id,
            into=moved,
        )
        if moved is None:
            raise web.HTTPSeeOther(f"/stories/{quote(story_id)}?notice=split-gone")
        raise web.HTTPSeeOther(f"/stories/{quote(moved)}?notice=split")

    async def merge_story(self, request: web.Request) -> web.StreamResponse:
        """An analyst's correction: this story reports another story's event; it is merged
        into that one (``merge_stories``) and its page then shows the merged story."""
        principal = _signed_in(request)
        story_id = request.match_info["story_id"]
        form = await request.post()
        into = views.story_id_of(str(form.get("into", "")))
        merged = bool(into) and await self.stores.stories.merge_stories(
            story_id, into, by=principal.user
        )
        log.info(
            "console: stories merged" if merged else "console: stories not merged",
            user=principal.user,
            story=story_id,
            into=into,
        )
        if not merged:
            raise web.HTTPSeeOther(f"/stories/{quote(story_id)}?notice=merge-gone")
        raise web.HTTPSeeOther(f"/stories/{quote(into)}?notice=merged")

    async def feeds_page(self, request: web.Request) -> web.StreamResponse:
        sources = list(self.sources())
        states = await self.stores.ingest.feed_states([source.name for source in sources])
        rows = views.feed_rows(sources, states, self.clock())
        counts = {
            health: sum(1 for r in rows if r.health == health)
            for health in ("failing", "stale", "never polled", "ok")
        }
        return self._render(
            request, "feeds.html.j2", title="Feeds", section="feeds", rows=rows, counts=counts
        )

    async def dead_page(self, request: web.Request) -> web.StreamResponse:
        queue = self.stores.queue
        page = views.pager(request.query.get("page"), await queue.dead_count())
        newest = list(reversed(await queue.dead_letters(count=page.offset + page.size)))
        rows = [views.dead_row(letter) for letter in newest[page.offset :]]
        return self._render(
            request, "dead.html.j2", title="Dead letters", section="dead", rows=rows, pager=page
        )

    async def retry_dead(self, request: web.Request) -> web.StreamResponse:
        principal = _signed_in(request)
        letter_id = request.match_info["letter_id"]
        queue = self.stores.queue
        letters = {letter.id: letter for letter in await queue.dead_letters(count=queue.keep_dead)}
        letter = letters.get(letter_id)
        done = letter is not None and await queue.requeue_dead(letter)
        log.info(
            "console: dead letter retried" if done else "console: dead letter not found",
            user=principal.user,
            letter=letter_id,
        )
        raise web.HTTPSeeOther(f"/dead?notice={'retried' if done else 'retry-gone'}")

    async def silences_page(self, request: web.Request) -> web.StreamResponse:
        return await self._silences(request, status=200, error="", form={})

    async def _silences(
        self, request: web.Request, *, status: int, error: str, form: Mapping[str, str]
    ) -> web.StreamResponse:
        now = self.clock()
        silences = await self.stores.silences.active(now)
        return self._render(
            request,
            "silences.html.j2",
            status=status,
            title="Silences",
            section="silences",
            rows=[views.silence_row(s, now) for s in silences],
            error=error,
            form={
                "target": form.get("target", "rule"),
                "value": form.get("value", ""),
                "only_source": form.get("only_source", ""),
                "duration": form.get("duration", "24h"),
                "reason": form.get("reason", ""),
            },
        )

    async def add_silence(self, request: web.Request) -> web.StreamResponse:
        principal = _signed_in(request)
        posted = await request.post()
        form = {key: str(value) for key, value in posted.items() if isinstance(value, str)}
        wanted = views.silence_request(form)
        if isinstance(wanted, str):
            return await self._silences(request, status=400, error=wanted, form=form)
        silence = await self.stores.silences.add(
            rule=wanted.rule,
            tag=wanted.tag,
            story=wanted.story,
            source=wanted.source,
            duration=wanted.duration,
            reason=wanted.reason,
            now=self.clock(),
            author=principal.user,
        )
        log.info(
            "console: silence added",
            user=principal.user,
            silence=silence.id,
            target=silence.target,
            ends=silence.ends.isoformat(),
        )
        raise web.HTTPSeeOther("/silences?notice=silenced")

    async def end_silence(self, request: web.Request) -> web.StreamResponse:
        principal = _signed_in(request)
        silence_id = request.match_info["silence_id"]
        removed = await self.stores.silences.remove(silence_id)
        log.info("console: silence ended", user=principal.user, silence=silence_id, found=removed)
        raise web.HTTPSeeOther(f"/silences?notice={'ended' if removed else 'end-gone'}")

    # -- inbox, search, explain -------------------------------------------------------------

    async def inbox_page(self, request: web.Request) -> web.StreamResponse:
        """Alerts as sent, newest first, filtered in Python over a bounded window of the log
        (``views.INBOX_WINDOW`` entries a request); ``before`` pages on to older ones."""
        form = _form(request, INBOX_FORM)
        now = self.clock()
        error = ""
        try:
            wanted = InboxFilter.parse(form)
            span = time_range(form.get("since", ""), form.get("until", ""), now)
        except ValueError as exc:
            wanted, span, error = InboxFilter(), TimeRange(), str(exc)
        before = request.query.get("before", "")
        scan = await self.sent.newest(
            wanted,
            span,
            before=before if is_entry_id(before) else None,
            take=views.INBOX_PAGE,
            window=views.INBOX_WINDOW,
        )
        triage = await self.sent.triage([alert.key for alert in scan.rows])
        votes = await self.feedback.votes_on([(alert.rule, alert.key) for alert in scan.rows])
        return self._render(
            request,
            "inbox.html.j2",
            status=400 if error else 200,
            title="Inbox",
            section="inbox",
            rows=[views.inbox_row(a, triage[a.key], now) for a in scan.rows],
            judged={a.id: feedback_views.vote_note(votes.get(a.key), now) for a in scan.rows},
            buttons=feedback_views.BUTTONS,
            scan=scan,
            form=form,
            error=error,
            severities=views.SEVERITIES,
            filters=urlencode(_nonempty(form)),
            back=urlencode(_nonempty({**form, "before": before})),
            window=views.INBOX_WINDOW,
            paged=bool(before),
        )

    async def ack_alert(self, request: web.Request) -> web.StreamResponse:
        principal = _signed_in(request)
        return await self._triage(
            request, lambda key: self.sent.ack(key, principal.user, self.clock()), "acked"
        )

    async def assign_alert(self, request: web.Request) -> web.StreamResponse:
        principal = _signed_in(request)
        posted = await request.post()
        assignee = views.assignee_name(str(posted.get("assignee") or ""))
        return await self._triage(
            request,
            lambda key: self.sent.assign(key, assignee, principal.user, self.clock()),
            "assigned",
        )

    async def _triage(
        self,
        request: web.Request,
        change: Callable[[str], Awaitable[None]],
        done: str,
    ) -> web.StreamResponse:
        """Ack or assign the alert of a log entry, then back to the Inbox page it was on."""
        principal = _signed_in(request)
        alert = await self.sent.get(request.match_info["entry_id"])
        if alert is not None:
            await change(alert.key)
        log.info(
            f"console: alert {done}" if alert else "console: alert not found",
            user=principal.user,
            alert=alert.key if alert else request.match_info["entry_id"],
        )
        raise await _back_to_inbox(request, done if alert is not None else "alert-gone")

    async def feedback_alert(self, request: web.Request) -> web.StreamResponse:
        """One of the five feedback buttons on an Inbox row, pressed by the signed-in
        analyst: recorded and applied exactly as a Slack button press is (``apply_press``)."""
        principal = _signed_in(request)
        posted = await request.post()
        action = feedback_views.pressed_action(str(posted.get("action") or ""))
        if action is None:
            raise self._refusal(request, 400, "Unknown action", "Reload the page and try again.")
        alert = await self.sent.get(request.match_info["entry_id"])
        match = alert.match() if alert is not None else None
        if alert is None or match is None:
            raise await _back_to_inbox(request, "alert-gone")
        now = self.clock()
        press = desk_press(action, AlertRef.of(match), principal.user)
        silence = await apply_press(
            press,
            now,
            feedback=self.feedback,
            silences=self.stores.silences,
            known=alert_text(match, alert.sent),
        )
        log.info(
            "console: feedback recorded",
            user=principal.user,
            action=action.value,
            alert=alert.key,
            silence=silence.id if silence else None,
            target=silence.target if silence else None,
        )
        raise await _back_to_inbox(request, "muted" if silence is not None else "judged")

    async def rules_page(self, request: web.Request) -> web.StreamResponse:
        """Per rule: alerts sent, the desk's votes and precision over 7 and 30 days (the
        numbers of ``monitor rules stats``), with the items marked not relevant as
        ``no_match`` candidates to copy."""
        stats = await self.feedback.stats(self.clock())
        candidates = {}
        for rule in sorted({each.rule for each in stats}):
            votes = await self.feedback.votes(rule)
            if any(not vote.relevant for vote in votes):
                candidates[rule] = candidates_yaml(rule, votes)
        return self._render(
            request,
            "rules.html.j2",
            title="Rules",
            section="rules",
            rows=feedback_views.rule_rows(stats, candidates),
        )

    async def search_page(self, request: web.Request) -> web.StreamResponse:
        """Items of the history whose title or summary hold every term, folded as rules
        fold; newest first, over a bounded window (``views.SEARCH_WINDOW``) a request."""
        form = _form(request, SEARCH_FORM)
        now = self.clock()
        error = ""
        rows: list[views.SearchRow] = []
        scan = None
        try:
            query = search_query(form.get("q", ""), form.get("source", ""), form.get("lang", ""))
            span = time_range(form.get("since", ""), form.get("until", ""), now)
        except ValueError as exc:
            error = str(exc)
        else:
            if any(form.values()):
                before = request.query.get("before", "")
                scan = await self.history.search(
                    query,
                    span,
                    before=before if is_entry_id(before) else None,
                    take=views.SEARCH_PAGE,
                    window=views.SEARCH_WINDOW,
                )
                stories = [await self.stores.stories.story_of(f.item.id) for f in scan.rows]
                rows = [views.search_row(f, s) for f, s in zip(scan.rows, stories, strict=True)]
        return self._render(
            request,
            "search.html.j2",
            status=400 if error else 200,
            title="Search",
            section="search",
            rows=rows,
            scan=scan,
            form=form,
            error=error,
            filters=urlencode(_nonempty(form)),
            window=views.SEARCH_WINDOW,
        )

    async def explain_page(self, request: web.Request) -> web.StreamResponse:
        """Which of the loaded rules match an item of the history (``?item=``) or of a sent
        alert (``?alert=``), and why; ``?rule=`` explains one more rule, matching or not."""
        item = None
        entry_id = request.query.get("item", "")
        alert_id = request.query.get("alert", "")
        if entry_id:
            item = await self.history.get(entry_id)
        elif alert_id:
            alert = await self.sent.get(alert_id)
            match = alert.match() if alert is not None else None
            item = match.item if match is not None else None
        rules = self.rules()
        if item is None or rules is None:
            return self._render(
                request,
                "message.html.j2",
                status=404 if item is None else 503,
                title="Nothing to explain",
                message="No such item: the history keeps items for history.retention."
                if item is None
                else "The rules are not loaded in this console.",
            )
        asked = " ".join(request.query.get("rule", "").split())[:200]
        return self._render(
            request,
            "explain.html.j2",
            title="Which rules match",
            section="search",
            view=views.explain_view(rules, item, asked),
            asked=asked,
            target_item=entry_id,
            target_alert=alert_id,
        )

    # -- playground -------------------------------------------------------------------------

    async def playground_page(self, request: web.Request) -> web.StreamResponse:
        """The rule playground; ``?item=`` explains a stored item (a history id, as in
        Search's links) and ``?rule=`` one rule only.  It changes nothing: viewers use it too."""
        form = dict.fromkeys(PLAYGROUND_FORM, "")
        form["item"] = _entry_id(request.query.get("item", ""))
        form["rule"] = _one_line(request.query.get("rule", ""))
        return await self._playground(request, form, "explain" if form["item"] else "", {})

    async def run_playground(self, request: web.Request) -> web.StreamResponse:
        """Explain, backtest a draft, or write examples (``action``); a POST because a draft
        is too large for a URL, checked for CSRF like every form."""
        posted = await request.post()
        form = {name: str(posted.get(name) or "") for name in PLAYGROUND_FORM}
        form["item"] = _entry_id(form["item"])
        form["rule"] = _one_line(form["rule"])
        form["draft"] = playground.draft_text(form["draft"])
        picks = {
            kind: [str(value) for value in posted.getall(kind, []) if isinstance(value, str)]
            for kind in ("match", "no_match")
        }
        return await self._playground(request, form, str(posted.get("action") or ""), picks)

    async def _playground(
        self,
        request: web.Request,
        form: dict[str, str],
        action: str,
        picks: Mapping[str, Sequence[str]],
    ) -> web.StreamResponse:
        deployed = self.rules()
        status, error = 200, ""
        draft: RuleSet | None = None
        problems: list[str] = []
        wants_draft = action in ("backtest", "examples") or form["against"] == "draft"
        if action and wants_draft:
            outcome = await asyncio.to_thread(playground.read_draft, form["draft"])
            if isinstance(outcome, list):
                problems, status = outcome, 400
            else:
                draft = outcome
        stored = await self.history.get(form["item"]) if form["item"] else None
        verdicts: tuple[playground.Verdict, ...] | None = None
        shown: Item | None = None
        report: Backtest | None = None
        rows: list[playground.BacktestRow] = []
        scan_info: dict[str, Any] = {}
        examples = ""
        if action == "explain" and not problems:
            shown = stored
            if shown is None and (form["title"].strip() or form["summary"].strip()):
                shown = playground.pasted_item(form["title"], form["summary"], self.clock())
            explained = _explain(shown, draft if form["against"] == "draft" else deployed, form)
            status, error, verdicts = explained
        elif action in ("backtest", "examples") and draft is not None:
            if deployed is None:
                status, error = 503, "The rules are not loaded in this console."
            elif self._backtests.locked():
                status, error = 429, "Another backtest is running; try again in a few seconds."
            else:
                compared = (
                    deployed
                    if form["scope"] == "all"
                    else playground.deployed_like(deployed, draft)
                )
                async with self._backtests:
                    found, report, scan_info = await self._backtest(compared, draft)
                if form["scope"] != "all":
                    report = playground.same_ids_only(report, draft)
                rows = playground.backtest_rows(report, {f.item.id: f.id for f in found})
                if action == "examples":
                    by_entry = {f.id: f.item for f in found}
                    if stored is not None:
                        by_entry[form["item"]] = stored
                    rule = form["rule"] or (draft.rules[0].id if draft.rules else "")
                    examples = playground.examples_yaml(
                        rule,
                        [by_entry[e] for e in playground.picked_ids(picks["match"], by_entry)],
                        [by_entry[e] for e in playground.picked_ids(picks["no_match"], by_entry)],
                    )
        return self._render(
            request,
            "playground.html.j2",
            status=status,
            title="Playground",
            section="playground",
            form=form,
            action=action,
            error=error,
            problems=problems,
            deployed=deployed,
            draft=draft,
            stored=stored,
            shown=shown,
            verdicts=verdicts,
            report=report,
            counts=playground.diff_counts(report) if report is not None else {},
            rows=rows,
            scan=scan_info,
            picks={kind: set(values) for kind, values in picks.items()},
            examples=examples,
            window=playground.BACKTEST_WINDOW,
            budget=playground.BACKTEST_SECONDS,
            max_draft=playground.MAX_DRAFT_BYTES,
        )

    async def _backtest(
        self, deployed: RuleSet, draft: RuleSet
    ) -> tuple[list[Any], Backtest, dict[str, Any]]:
        """The draft against the deployed rules over the newest ``BACKTEST_WINDOW`` items of
        the history (as Search reads it), oldest first as the CLI reads them, in a thread and
        within ``BACKTEST_SECONDS`` (checked between items; RE2 bounds each item's cost)."""
        window = playground.BACKTEST_WINDOW
        scan = await self.history.search(search_query(""), TimeRange(), take=window, window=window)
        found = list(reversed(scan.rows))
        deadline = time.monotonic() + playground.BACKTEST_SECONDS
        started = time.monotonic()
        report = await asyncio.to_thread(
            compare_rule_sets,
            [f.item for f in found],
            deployed,
            draft,
            replay=replay_trends,
            stop=lambda: time.monotonic() > deadline,
        )
        info = {
            "read": len(found),
            "older": scan.resume is not None or scan.cut,
            "first": views.when(found[0].item.published) if found else "",
            "last": views.when(found[-1].item.published) if found else "",
            "seconds": round(time.monotonic() - started, 2),
        }
        return found, report, info

    # -- rendering --------------------------------------------------------------------------

    def _page(self, request: web.Request, template: str, **context: Any) -> str:
        principal = request.get(PRINCIPAL)
        token = request.get(SESSION) or ""
        context.setdefault("section", "")
        context.setdefault("title", "")
        return self._templates.get_template(template).render(
            principal=principal,
            csrf=csrf_token(token.encode(), principal.user) if principal else "",
            can_act=allowed(principal, Action.ACT),
            notice=NOTICES.get(request.query.get("notice", ""), ""),
            **context,
        )

    def _render(
        self, request: web.Request, template: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        return web.Response(
            text=self._page(request, template, **context),
            status=status,
            content_type="text/html",
            charset="utf-8",
        )


def _form(request: web.Request, names: Sequence[str]) -> dict[str, str]:
    """The named query-string fields, each one line of at most 200 characters."""
    return {name: " ".join(request.query.get(name, "").split())[:200] for name in names}


async def _back_to_inbox(request: web.Request, notice: str) -> web.HTTPException:
    """The redirect back to the Inbox page a row's form was on (only its filter keys)."""
    posted = await request.post()
    back = parse_qsl(str(posted.get("back") or ""))
    kept = [(k, v) for k, v in back if k in INBOX_FORM or k == "before"]
    return web.HTTPSeeOther(f"/inbox?{urlencode([*kept, ('notice', notice)])}")


def _explain(
    shown: Item | None, rules: RuleSet | None, form: Mapping[str, str]
) -> tuple[int, str, tuple[playground.Verdict, ...] | None]:
    """The playground's explain step: status, error and the verdicts."""
    if shown is None and not form["item"]:
        return 400, "Paste a title or a summary, or pick an item in Search.", None
    if shown is None:
        return 404, "No such item: the history keeps items for history.retention.", None
    if rules is None:
        return 503, "The rules are not loaded in this console.", None
    return 200, "", playground.explain_rules(rules, shown, form["rule"])


def _entry_id(text: str) -> str:
    """A history entry id as given, or "" when it is not one."""
    return text if is_entry_id(text) else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _nonempty(form: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in form.items() if value]


def _signed_in(request: web.Request) -> Principal:
    """The principal of a request the middleware admitted (only those reach handlers)."""
    principal = request[PRINCIPAL]
    assert principal is not None, "the middleware admits only signed-in requests here"
    return principal


def _http_error(status: int, body: str) -> web.HTTPException:
    kinds: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
    }
    return kinds.get(status, web.HTTPForbidden)(text=body, content_type="text/html")


def _peer(request: web.Request) -> str | None:
    """The TCP peer's address: the connection's, never a header's."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


def _harden(response: web.StreamResponse, static: bool) -> None:
    """Headers on every response: no scripts, no framing, no sniffing, no referrer (links
    to articles must not tell outlets the console's address), pages never cached."""
    headers = response.headers
    headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    if not static:
        headers["Cache-Control"] = "no-store"


def _static_dir() -> Path:
    return Path(__file__).resolve().parent / "static"
