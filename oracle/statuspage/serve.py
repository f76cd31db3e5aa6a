"""The page as the operator listener serves it at `GET /`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from oracle.config import Config
from oracle.statuspage.data import gather
from oracle.statuspage.page import render
from oracle.store import Store


async def status_page_html(store: Store, config: Config, breakers: Mapping[str, str] | None = None) -> str:
    """The whole page, read now. `breakers` maps deployment ids to the daemon's live breaker states."""
    return render(await gather(store, config, breakers=breakers))


def status_page_handler(store: Store, config: Config,
                        breakers: Callable[[], Mapping[str, str]] | None = None,
                        ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler for `GET /`; `breakers` is called at each request for the live states."""

    async def handle(request: web.Request) -> web.StreamResponse:
        text = await status_page_html(store, config, breakers() if breakers is not None else None)
        return web.Response(text=text, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    return handle
