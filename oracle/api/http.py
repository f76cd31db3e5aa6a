"""What both listeners share: JSON replies, errors as `{"error": "..."}` with the status that fits, and
the bearer token of the operator's mutating routes."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from oracle.api.control import ActionRefused
from oracle.views import BadQuery, NotFound
from oracle.views.records import as_dict

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 64 * 1024
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def reply(record: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(as_dict(record)), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(text=json.dumps({"error": message}), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store", **headers})


def json_errors(listener: str) -> Middleware:
    """The refusals a caller can fix, as JSON saying what to do; a bug is logged and answered 500
    without its details."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadQuery as exc:
            return error(400, str(exc))
        except NotFound as exc:
            return error(404, str(exc))
        except ActionRefused as exc:
            return error(409, str(exc))
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods - {"HEAD"}))
            return error(405, f"{request.path} takes {allowed}, not {request.method}", Allow=allowed)
        except web.HTTPNotFound:
            return error(404, f"no route {request.path} on the {listener} listener: see /openapi.json")
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"the body is over {MAX_BODY:,} bytes: the routes take a small JSON object")
        except web.HTTPException as exc:
            if exc.status >= 400:
                return error(exc.status, exc.reason)
            raise
        except Exception:
            log.exception("API: %s %s failed", request.method, request.path)
            return error(500, "internal error: see the daemon's log")

    return errors


def loopback_only() -> Middleware:
    """On a loopback listener, answer only requests addressed to loopback: a web page the operator opens
    cannot reach the API through a name it made resolve to 127.0.0.1 (DNS rebinding)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = (request.host or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.strip("[]") not in LOOPBACK_NAMES:
            return error(403, f"Host {host[:100]!r} is not served here: this loopback listener answers requests to "
                              f"127.0.0.1, localhost or [::1] only (put a proxy in front to reach it by another name)")
        return await handler(request)

    return check


def query(request: web.Request, *allowed: str) -> dict[str, str]:
    """The query's parameters; BadQuery naming the accepted ones for any other (a typo is not ignored)."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0]!r}: {request.path} takes "
                       + (", ".join(allowed) if allowed else "none"))
    return {k: request.query[k] for k in request.query}


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
                return error(401, f"send the operator token (the value of {token_env} in the daemon's environment) "
                                  f"as `Authorization: Bearer <token>`",
                             **{"WWW-Authenticate": 'Bearer realm="oracle-operator"'})
            return await handler(request)

        return guarded

    return guard


async def json_body(request: web.Request, *allowed: str) -> dict[str, Any]:
    """An optional JSON object body ({} when empty) with only the `allowed` fields."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadQuery("the body is not JSON: send a JSON object, or nothing") from None
    if not isinstance(body, dict):
        raise BadQuery("the body must be a JSON object" + (f" with {', '.join(allowed)}" if allowed else "")
                       + ", or nothing")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadQuery(f"unknown field {unknown[0]!r}: {request.path} takes "
                       + (", ".join(allowed) if allowed else "no field (send nothing)"))
    return body
