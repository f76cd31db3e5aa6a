"""The feed over HTTP (aiohttp): `/` the page, `/feed.json` the feed, `/digest.json` the latest digest."""

from __future__ import annotations

from aiohttp import web

from bots.dao_summarizer.book import Book
from bots.dao_summarizer.feed import feed, page


def app(book: Book, names: dict[str, str]) -> web.Application:
    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=page(book, names), content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    async def feed_json(_request: web.Request) -> web.Response:
        return web.json_response(feed(book))

    async def digest_json(_request: web.Request) -> web.Response:
        latest = book.latest_digest()
        if latest is None:
            return web.json_response({"error": "no digest yet: one is made each day at the configured time"},
                                     status=404)
        return web.json_response(latest)

    application = web.Application()
    application.router.add_get("/", index)
    application.router.add_get("/feed.json", feed_json)
    application.router.add_get("/digest.json", digest_json)
    return application
