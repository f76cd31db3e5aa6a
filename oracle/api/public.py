"""The public listener (off by default): what anyone may read. It shares no route with the operator's.

    GET /v1/receipts/{hash}   the canonical receipt JSON whose keccak is the receipt hash on-chain
    GET /openapi.json
and, with a `[gateway]`, the agents' paid routes (`oracle.api.gateway`).
"""

from __future__ import annotations

import re

from aiohttp import web

from oracle.api.gateway import Gateway
from oracle.api.http import MAX_BODY, json_errors, query, reply
from oracle.api.openapi import public_document
from oracle.store import Store
from oracle.views import BadQuery, NotFound

_HASH = re.compile(r"(0x)?[0-9a-fA-F]{64}")


def public_app(store: Store, gateway: Gateway | None = None) -> web.Application:
    """`store` is a reader of the daemon's store."""
    app = web.Application(middlewares=[json_errors("public")], client_max_size=MAX_BODY)
    document = public_document(gateway=gateway is not None)

    async def receipt(request: web.Request) -> web.Response:
        query(request)
        text = request.match_info["hash"]
        if not _HASH.fullmatch(text):
            raise BadQuery(f"not a receipt hash: {text[:80]!r}: give 64 hex digits (0x optional)")
        body = store.queries.receipt_by_hash(bytes.fromhex(text.lower().removeprefix("0x")))
        if body is None:
            raise NotFound(f"no receipt 0x{text.lower().removeprefix('0x')} here")
        # The stored bytes as they are: their keccak is the hash the chain holds.
        return web.Response(body=body.encode(), content_type="application/json",
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})

    async def openapi(_: web.Request) -> web.Response:
        return reply(document)

    app.router.add_get("/v1/receipts/{hash}", receipt)
    app.router.add_get("/openapi.json", openapi)
    if gateway is not None:
        gateway.add_routes(app)
    return app
