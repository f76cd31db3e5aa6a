"""A JSON-RPC and WebSocket proxy on loopback that injects faults between the daemon and anvil.

Knobs (change them while it runs): added delay, a share of calls answered with a JSON-RPC error or a
dropped connection, `eth_getLogs` refused or stalled above a block range (as public nodes do),
WebSocket connections cut at an interval, and raw transactions accepted but never passed on (as a node
does with one it cannot mine: every copy of the same bytes meets the same fate). It counts what it did
so tests can check the faults happened.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from eth_utils import keccak

from oracle.devnet.loopback import LoopbackServer


@dataclass
class FaultKnobs:
    delay: float = 0.0  # seconds added to every HTTP call
    error_rate: float = 0.0  # share of HTTP calls answered with a JSON-RPC error
    drop_rate: float = 0.0  # share of HTTP calls whose connection is closed without an answer
    max_log_range: int | None = None  # eth_getLogs spanning more blocks is refused
    slow_log_range: int | None = None  # eth_getLogs spanning more blocks answers after `slow_log_delay`
    slow_log_delay: float = 0.0
    ws_cut_every: float | None = None  # seconds between cuts of each WebSocket connection
    swallow_raw_txs: int = 0  # the next N distinct raw transactions get their hash back and go nowhere
    refuse_raw_txs: int = 0  # the next N raw transactions are refused for a reason no new price fixes
    spare_methods: tuple[str, ...] = ("eth_chainId",)  # never faulted
    down: bool = False  # an outage: every HTTP call dropped, WebSockets cut and refused, nothing spared
    seed: int = 11


@dataclass
class FaultCounts:
    calls: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    drops: int = 0
    refused_ranges: int = 0
    slowed_ranges: int = 0
    ws_cuts: int = 0
    swallowed: Counter[str] = field(default_factory=Counter)  # copies of each swallowed tx, by hash
    refused_txs: int = 0


class FaultProxy(LoopbackServer):
    def __init__(self, upstream_http: str, upstream_ws: str, knobs: FaultKnobs | None = None) -> None:
        super().__init__()
        self.upstream_http = upstream_http
        self.upstream_ws = upstream_ws
        self.knobs = knobs or FaultKnobs()
        self.counts = FaultCounts()
        self._random = random.Random(self.knobs.seed)
        self._session: aiohttp.ClientSession | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def opened(self) -> None:
        self._session = aiohttp.ClientSession()

    async def closing(self) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._http)
        app.router.add_get("/ws", self._ws)
        return app

    # ------------------------------------------------------------ HTTP

    def _roll(self) -> float:
        return self._random.random()

    async def _http(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            doc = json.loads(body)
            method = doc.get("method", "") if isinstance(doc, dict) else "batch"
        except ValueError:
            method = "invalid"
            doc = None
        self.counts.calls[method] += 1
        k = self.knobs
        if k.down:
            self.counts.drops += 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=502)
        if k.delay:
            await asyncio.sleep(k.delay)
        if method not in k.spare_methods and isinstance(doc, dict):
            roll = self._roll()
            if roll < k.drop_rate:
                self.counts.drops += 1
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=502)
            if roll < k.drop_rate + k.error_rate:
                self.counts.errors += 1
                return web.json_response({"jsonrpc": "2.0", "id": doc.get("id"),
                                          "error": {"code": -32603, "message": "proxy: injected internal error"}})
            if method == "eth_getLogs" and k.max_log_range is not None and _log_range(doc) > k.max_log_range:
                self.counts.refused_ranges += 1
                return web.json_response({"jsonrpc": "2.0", "id": doc.get("id"), "error": {
                    "code": -32005, "message": f"query exceeds max block range {k.max_log_range}"}})
            if method == "eth_getLogs" and k.slow_log_range is not None and _log_range(doc) > k.slow_log_range:
                self.counts.slowed_ranges += 1
                await asyncio.sleep(k.slow_log_delay)
            if method == "eth_sendRawTransaction" and k.refuse_raw_txs > 0:
                k.refuse_raw_txs -= 1
                self.counts.refused_txs += 1
                return web.json_response({"jsonrpc": "2.0", "id": doc.get("id"), "error": {
                    "code": -32003, "message": "proxy: transaction rejected by policy"}})
            if method == "eth_sendRawTransaction":
                swallowed = self._swallow(doc)
                if swallowed is not None:
                    return web.json_response({"jsonrpc": "2.0", "id": doc.get("id"), "result": swallowed})
        assert self._session is not None
        async with self._session.post(self.upstream_http, data=body,
                                      headers={"Content-Type": "application/json"}) as upstream:
            payload = await upstream.read()
            return web.Response(status=upstream.status, body=payload, content_type="application/json")

    def _swallow(self, doc: dict[str, Any]) -> str | None:
        """The hash to answer with, if this raw transaction is to go nowhere."""
        try:
            tx_hash = "0x" + keccak(bytes.fromhex(doc["params"][0][2:])).hex()
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        if tx_hash not in self.counts.swallowed:
            if self.knobs.swallow_raw_txs <= 0:
                return None
            self.knobs.swallow_raw_txs -= 1
        self.counts.swallowed[tx_hash] += 1
        return tx_hash

    # ------------------------------------------------------------ WebSocket

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.knobs.down:
            return web.Response(status=503, text="proxy: down")
        client = web.WebSocketResponse()
        await client.prepare(request)
        assert self._session is not None
        async with self._session.ws_connect(self.upstream_ws) as upstream:
            async def downstream() -> None:
                async for message in upstream:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await client.send_str(message.data)

            async def cut() -> None:
                started = asyncio.get_running_loop().time()
                while not self.knobs.down:  # an outage cuts every connection
                    every = self.knobs.ws_cut_every
                    if every is not None and asyncio.get_running_loop().time() - started >= every:
                        self.counts.ws_cuts += 1
                        return
                    await asyncio.sleep(0.02)

            pump = asyncio.create_task(downstream())
            cutter = asyncio.create_task(cut())
            reader = asyncio.create_task(_forward(client, upstream))
            await asyncio.wait({pump, cutter, reader}, return_when=asyncio.FIRST_COMPLETED)
            for task in (pump, cutter, reader):
                task.cancel()
        await client.close()
        return client


async def _forward(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    async for message in client:
        if message.type == aiohttp.WSMsgType.TEXT:
            await upstream.send_str(message.data)


def _log_range(doc: dict[str, Any]) -> int:
    try:
        flt = doc["params"][0]
        return int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1
    except (KeyError, IndexError, TypeError, ValueError):
        return 0
