"""What both listeners share: JSON replies, errors as `{"error": "..."}` with the status that fits, and
the bearer token of the operator's mutating routes."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from oracle.api.control import ActionRefused
from oracle.views import BadQuery, NotFound
from oracle.views.records import as_dict

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reply(record: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(as_dict(record)), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(text=json.dumps({"error": message}), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store", **headers})


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The refusals a caller can fix, as JSON; a bug is logged and answered 500 without its details."""
    try:
        return await handler(request)
    except BadQuery as exc:
        return error(400, str(exc))
    except NotFound as exc:
        return error(404, str(exc))
    except ActionRefused as exc:
        return error(409, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(exc.status, exc.reason)
        raise
    except Exception:
        log.exception("API: %s %s failed", request.method, request.path)
        return error(500, "internal error: see the daemon's log")


def bearer(token: str | None, token_env: str) -> Callable[[Handler], Handler]:
    """Guard a mutating route: 401 without the token (nothing changes), 503 when none is configured."""

    def guard(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not token:
                return error(503, f"mutating routes are off: set the environment variable {token_env} to a "
                                  f"token (e.g. `openssl rand -hex 32`) and restart the daemon")
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                return error(401, "send the operator token as `Authorization: Bearer <token>`",
                             **{"WWW-Authenticate": 'Bearer realm="oracle-operator"'})
            return await handler(request)

        return guarded

    return guard


async def json_body(request: web.Request) -> dict[str, Any]:
    """An optional JSON object body ({} when empty)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadQuery("the body is not JSON: send a JSON object, or nothing") from None
    if not isinstance(body, dict):
        raise BadQuery("the body must be a JSON object")
    return body
