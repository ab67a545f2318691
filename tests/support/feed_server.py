"""A real local HTTP server that serves feeds the way publishers do, for ingestion tests.

Each path serves a body with headers; ETag and Last-Modified are honoured (304 on a match),
and every request is counted, so tests can check conditional GET and polling frequency.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Resource:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    conditional: bool = True
    trickle: float = 0.0
    """Seconds between single bytes of the body: a server that never quite finishes."""

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body, usedforsecurity=False).hexdigest()[:16] + '"'


class FeedServer:
    """``with FeedServer() as server: server.put("/a.xml", body); server.url("/a.xml")``."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.requests: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        """``time.monotonic()`` of every request, by path: when each feed was fetched."""
        self.request_headers: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, path: str, body: bytes | str, **options: object) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        with self._lock:
            self.resources[path] = Resource(data, **options)  # type: ignore[arg-type]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Silence the default stderr access log."""

            def do_GET(self) -> None:
                with server._lock:
                    server.requests[self.path] += 1
                    server.times.setdefault(self.path, []).append(time.monotonic())
                    server.request_headers.append((self.path, dict(self.headers.items())))
                    resource = server.resources.get(self.path)
                if resource is None:
                    self._reply(404, b"not found", {"Content-Type": "text/plain"})
                    return
                if resource.delay:
                    time.sleep(resource.delay)
                headers = {"Content-Type": resource.content_type, **resource.headers}
                if resource.conditional and resource.status == 200:
                    headers["ETag"] = resource.etag
                    modified = resource.headers.get("Last-Modified")
                    if self.headers.get("If-None-Match") == resource.etag or (
                        modified and self.headers.get("If-Modified-Since") == modified
                    ):
                        self._reply(304, b"", headers)
                        return
                # A client with a deadline may hang up mid-body; that is its right.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._reply(resource.status, resource.body, headers, resource.trickle)

            def _reply(
                self, status: int, body: bytes, headers: dict[str, str], trickle: float = 0.0
            ) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status == 304:
                    return
                if trickle:
                    for index in range(len(body)):
                        self.wfile.write(body[index : index + 1])
                        self.wfile.flush()
                        time.sleep(trickle)
                else:
                    self.wfile.write(body)

        return Handler


def rss(
    items: list[dict[str, str]],
    *,
    title: str = "Test feed",
    lang: str = "en",
    now: datetime | None = None,
) -> str:
    """A small RSS 2.0 document; each item dict may hold title, link, guid, description, date.

    Items without a date are dated five minutes before ``now``, the clock of the code under
    test, which is the real one unless the test fixes it: a fixed date would fall out of a
    new feed's backfill window a day after it was written, and a daemon run by a test would
    then record those items without alerting."""
    recent = format_datetime((now or datetime.now(UTC)) - timedelta(minutes=5), usegmt=True)
    entries = []
    for item in items:
        parts = [f"<title>{item['title']}</title>"]
        if "link" in item:
            parts.append(f"<link>{item['link']}</link>")
        if "guid" in item:
            parts.append(f'<guid isPermaLink="false">{item["guid"]}</guid>')
        if "description" in item:
            parts.append(f"<description><![CDATA[{item['description']}]]></description>")
        parts.append(f"<pubDate>{item.get('date', recent)}</pubDate>")
        entries.append("<item>" + "".join(parts) + "</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://example.org/</link><language>{lang}</language>"
        + "".join(entries)
        + "</channel></rss>\n"
    )
