"""A local x402 facilitator on aiohttp: `/verify`, `/settle` and `/supported`, settling on the local chain.

Built on the SDK's facilitator (`x402FacilitatorSync` with the exact EVM scheme) and its web3 signer,
with the facilitator's own dev key. The SDK's calls block (web3 over HTTP), so each runs in a worker
thread, keeping the event loop free. Knobs for tests: `down` (every call answered 503),
`fail_settle` (settlement refused, nothing sent), `pending` (settled on-chain, but reported as
`settlement_pending`). `books` counts what was asked and settled.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact.register import register_exact_evm_facilitator
from x402.schemas import SettleResponse
from x402.schemas.helpers import parse_payment_payload, parse_payment_requirements

from oracle.devnet.loopback import LoopbackServer


@dataclass
class FacilitatorKnobs:
    down: bool = False
    fail_settle: bool = False
    pending: bool = False


@dataclass
class FacilitatorBooks:
    calls: Counter[str] = field(default_factory=Counter)  # verify / settle / supported
    settled: list[str] = field(default_factory=list)  # transaction hashes


class Facilitator(LoopbackServer):
    def __init__(self, rpc_url: str, key: bytes, networks: list[str], knobs: FacilitatorKnobs | None = None) -> None:
        super().__init__()
        self.knobs = knobs or FacilitatorKnobs()
        self.books = FacilitatorBooks()
        self.networks = networks
        self._pending: dict[str, tuple[str, str]] = {}  # nonce -> (transaction, network) reported pending
        self._core = x402FacilitatorSync()
        register_exact_evm_facilitator(self._core, FacilitatorWeb3Signer("0x" + key.hex(), rpc_url,
                                                                          confirmation_timeout_seconds=20),
                                       networks=networks)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/verify", self._verify)
        app.router.add_post("/settle", self._settle)
        app.router.add_get("/supported", self._supported)
        return app

    async def _parse(self, request: web.Request) -> tuple[Any, Any]:
        body = await request.json()
        payload = parse_payment_payload(body["paymentPayload"])
        return payload, parse_payment_requirements(payload.x402_version, body["paymentRequirements"])

    async def _verify(self, request: web.Request) -> web.Response:
        self.books.calls["verify"] += 1
        if self.knobs.down:
            return web.json_response({"error": "facilitator unavailable"}, status=503)
        payload, requirements = await self._parse(request)
        result = await asyncio.to_thread(self._core.verify, payload, requirements)
        return _json(result)

    async def _settle(self, request: web.Request) -> web.Response:
        self.books.calls["settle"] += 1
        if self.knobs.down:
            return web.json_response({"error": "facilitator unavailable"}, status=503)
        payload, requirements = await self._parse(request)
        nonce = str(payload.payload.get("authorization", {}).get("nonce", ""))
        if self.knobs.pending and nonce in self._pending:  # asked again: still "pending", never settled twice
            tx, network = self._pending[nonce]
            result = SettleResponse(success=False, error_reason="settlement_pending", transaction=tx, network=network)
            return _json(result)
        if self.knobs.fail_settle:
            result = SettleResponse(success=False, error_reason="unexpected_settle_error",
                                    error_message="settlement refused by the facilitator", transaction="",
                                    network=requirements.network)
        else:
            result = await asyncio.to_thread(self._core.settle, payload, requirements)
            if result.success:
                self.books.settled.append(result.transaction)
                if self.knobs.pending:  # it did settle; the answer only says it is not final
                    self._pending[nonce] = (result.transaction, result.network)
                    result = SettleResponse(success=False, error_reason="settlement_pending",
                                            transaction=result.transaction, network=result.network,
                                            payer=result.payer)
        return _json(result)

    async def _supported(self, request: web.Request) -> web.Response:
        self.books.calls["supported"] += 1
        supported = self._core.get_supported()
        return _json(supported)


def _json(model: BaseModel) -> web.Response:
    """An SDK model as the facilitator protocol's JSON (camelCase, no nulls)."""
    return web.json_response(model.model_dump(mode="json", by_alias=True, exclude_none=True))
