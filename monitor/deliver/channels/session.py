"""An HTTP session a channel either borrows from the daemon or opens (and closes) itself."""

from __future__ import annotations

import aiohttp


class SessionHolder:
    """The daemon passes its shared session; a channel used alone (tests, one-off commands)
    opens its own on first use.  ``close`` closes only a session this holder opened."""

    def __init__(self, borrowed: aiohttp.ClientSession | None) -> None:
        self._borrowed = borrowed
        self._own: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._borrowed is not None:
            return self._borrowed
        if self._own is None or self._own.closed:
            self._own = aiohttp.ClientSession()
        return self._own

    async def close(self) -> None:
        if self._own is not None:
            await self._own.close()
            self._own = None
