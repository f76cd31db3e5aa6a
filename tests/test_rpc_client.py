"""The JSON-RPC client asks a read again after a dropped connection or a node's internal error, and
never asks again what sends, what the node refused for a reason, or what timed out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable

Answer = Callable[[str, int], Any]  # (method, how many times it was asked before) -> reply, or None to drop


@asynccontextmanager
async def node() -> AsyncIterator[tuple[str, dict[str, int], list[Answer]]]:
    """A JSON-RPC server whose answer each test sets; it counts the calls per method."""
    counts: dict[str, int] = {}
    answer: list[Answer] = [lambda method, n: {"result": "0x1"}]
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        method = body["method"]
        seen = counts.get(method, 0)
        counts[method] = seen + 1
        reply = answer[0](method, seen)
        if reply is None:  # drop the connection without an answer
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if reply == "slow":  # no answer until the test is over: the client's timeout ends the call
            await release.wait()
            reply = {"result": "0x1"}
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], **reply})

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/", counts, answer
    finally:
        release.set()
        await runner.cleanup()


def internal_error(times: int) -> Answer:
    return lambda method, n: ({"error": {"code": -32603, "message": "internal"}} if n < times
                              else {"result": "0x2a"})


async def test_a_read_is_asked_again_after_internal_errors_and_drops() -> None:
    async with node() as (url, counts, answer), aiohttp.ClientSession() as session:
        rpc = ChainClient(session, url, timeout=1.0, retries=2)
        answer[0] = internal_error(2)
        assert await rpc.block_number() == 42
        assert counts["eth_blockNumber"] == 3 and rpc.retried == 2
        answer[0] = lambda method, n: None if n < 1 else {"result": "0x7"}
        assert await rpc.nonce("0x" + "11" * 20) == 7
        assert counts["eth_getTransactionCount"] == 2


async def test_a_read_fails_once_its_retries_are_spent() -> None:
    async with node() as (url, counts, answer), aiohttp.ClientSession() as session:
        rpc = ChainClient(session, url, timeout=1.0, retries=2)
        answer[0] = internal_error(3)
        with pytest.raises(RpcError, match="internal"):
            await rpc.block_number()
        assert counts["eth_blockNumber"] == 3


async def test_what_sends_is_never_asked_again() -> None:
    async with node() as (url, counts, answer), aiohttp.ClientSession() as session:
        rpc = ChainClient(session, url, timeout=1.0, retries=2)
        answer[0] = internal_error(1)
        with pytest.raises(RpcError):
            await rpc.send_raw(b"\x02")
        answer[0] = lambda method, n: None
        with pytest.raises(RpcUnavailable):
            await rpc.send_raw(b"\x02")
        assert counts["eth_sendRawTransaction"] == 2  # one each, never a second


async def test_a_refusal_or_a_timeout_is_not_asked_again() -> None:
    async with node() as (url, counts, answer), aiohttp.ClientSession() as session:
        rpc = ChainClient(session, url, timeout=0.5, retries=2)
        answer[0] = lambda method, n: {"error": {"code": -32005, "message": "query exceeds max block range"}}
        with pytest.raises(RpcError, match="max block range"):
            await rpc.get_logs("0x" + "11" * 20, [], 0, 100)
        assert counts["eth_getLogs"] == 1
        answer[0] = lambda method, n: "slow"
        with pytest.raises(RpcUnavailable, match="TimeoutError"):
            await rpc.block_number()
        assert counts["eth_blockNumber"] == 1


async def test_a_reply_that_is_not_json_rpc_is_not_asked_again() -> None:
    async with node() as (url, counts, answer), aiohttp.ClientSession() as session:
        rpc = ChainClient(session, url, timeout=1.0, retries=2)
        answer[0] = lambda method, n: {"unexpected": True}
        with pytest.raises(RpcUnavailable, match="reply without result"):
            await rpc.block_number()
        assert counts["eth_blockNumber"] == 1
