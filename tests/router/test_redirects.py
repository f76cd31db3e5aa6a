"""Provider calls follow no redirects: a key or a payment never reaches another origin, and a redirect is the
provider misbehaving (an error outcome, falling back, not retried where it points)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from oracle.config import ModelDeployment
from oracle.devnet.loopback import LoopbackServer
from oracle.router.adapters import FORMATS
from oracle.router.adapters.base import UNAVAILABLE, Call, send

KEY_ENV = "REDIRECT_TEST_KEY"
SECRET = "sk-redirect-test-secret"


class Recorder(LoopbackServer):  # shared with tests/x402
    """The other origin: records every request's headers, answers like a provider would."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, str]] = []

    def app(self) -> web.Application:
        app = web.Application()

        async def record(request: web.Request) -> web.Response:
            self.seen.append(dict(request.headers))
            return web.json_response({"choices": []})

        app.router.add_route("*", "/{tail:.*}", record)
        return app


class Redirector(LoopbackServer):
    """A provider that answers every call with 307 to the same path on another origin."""

    def __init__(self, target: str, status: int = 307) -> None:
        super().__init__()
        self.target, self.status = target, status

    def app(self) -> web.Application:
        app = web.Application()

        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=self.status, headers={"Location": f"{self.target}{request.path_qs}"})

        app.router.add_route("*", "/{tail:.*}", redirect)
        return app


@pytest.fixture
def servers() -> Iterator[tuple[Redirector, Recorder]]:
    recorder = Recorder().start()
    redirector = Redirector(f"http://127.0.0.1:{recorder.port}").start()
    os.environ[KEY_ENV] = SECRET
    try:
        yield redirector, recorder
    finally:
        os.environ.pop(KEY_ENV, None)
        redirector.stop()
        recorder.stop()


@pytest.mark.parametrize("api", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed_and_the_key_stays_home(servers: tuple[Redirector, Recorder], api: str,
                                                                 status: int) -> None:
    redirector, recorder = servers
    redirector.status = status
    base = f"http://127.0.0.1:{redirector.port}" + ("/v1" if api == "openai" else "")
    d = ModelDeployment.model_validate({
        "id": "moved", "provider": "moved", "api": api, "base_url": base, "model": "m-2026-01-01",
        "payer": "api_key", "api_key_env": KEY_ENV, "context_window": 4_096, "max_output": 256})
    call = Call("system", "user", {"type": "object"}, 64, 0, 1, {})
    async with aiohttp.ClientSession() as session:
        reply = await send(session, FORMATS[api], d, call, 5.0)
    assert recorder.seen == []  # nothing, let alone a key, reached the other origin
    assert reply.outcome == "error" and reply.kind == UNAVAILABLE and reply.http_status == status
    assert "redirect" in reply.error and "not followed" in reply.error
    assert SECRET not in reply.error

