"""A local x402 facilitator on aiohttp: `/verify`, `/settle` and `/supported`, settling on the local chain.

Built on the SDK's facilitator (`x402FacilitatorSync` with the exact EVM scheme) and its web3 signer,
with the facilitator's own dev key, taking nonces from the node so a reorg cannot wedge it. The SDK's
calls block (web3 over HTTP), so each runs in a worker thread, keeping the event loop free. Knobs for
tests: `down` (every call answered 503), `fail_settle` (settlement refused, nothing sent), `pending`
(settled on-chain, but reported as `settlement_pending`). `books` counts what was asked and settled.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from eth_typing import HexStr
from pydantic import BaseModel
from web3.exceptions import TimeExhausted, TransactionNotFound
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact.register import register_exact_evm_facilitator
from x402.mechanisms.evm.types import TransactionReceipt
from x402.schemas import SettleResponse
from x402.schemas.helpers import parse_payment_payload, parse_payment_requirements

from oracle.config import ConfigError, key_from_env
from oracle.devnet.loopback import LoopbackServer


class _ChainNonceSigner(FacilitatorWeb3Signer):
    """The SDK's signer, made to survive reorgs as a facilitator on a real chain must.

    The SDK counts nonces itself, so a settlement a reorg drops would leave a gap nothing fills and
    every later settlement would wait on it for good: here each nonce comes from the node, and
    building, signing and sending one transaction happens under one lock (milliseconds; the wait for
    the receipt is outside it). A settlement the node forgets while it is awaited (its block reorganised
    away) is sent again, under the nonce the node gives now (often the same one): the authorization it
    carries is still unused. Every copy sent is awaited, as a later reorg may bring an earlier one back.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._submit = threading.Lock()
        self._calls: dict[str, tuple[Any, ...]] = {}  # tx hash -> the write_contract call that sent it

    def _reserve_nonce(self) -> int:
        return int(self._w3.eth.get_transaction_count(self._account.address, "pending"))

    def write_contract(self, address: str, abi: list[dict[str, Any]], function_name: str, *args: Any,
                       data_suffix: str | None = None) -> str:
        with self._submit:
            tx_hash = str(super().write_contract(address, abi, function_name, *args, data_suffix=data_suffix))
        self._calls[tx_hash] = (address, abi, function_name, args, data_suffix)
        return tx_hash

    def send_transaction(self, to: str, data: bytes) -> str:
        with self._submit:
            return str(super().send_transaction(to, data))

    def wait_for_transaction_receipt(self, tx_hash: str) -> TransactionReceipt:
        sent = [HexStr(tx_hash if tx_hash.startswith("0x") else "0x" + tx_hash)]
        deadline = time.monotonic() + self._confirmation_timeout_seconds
        forgotten = 0
        while time.monotonic() < deadline:
            for awaited in sent:  # a copy sent earlier may come back with a later reorg
                try:
                    receipt = self._w3.eth.get_transaction_receipt(awaited)
                except TransactionNotFound:
                    continue
                return TransactionReceipt(status=int(receipt["status"]), block_number=int(receipt["blockNumber"]),
                                          tx_hash=awaited, logs=list(receipt.get("logs") or []))
            forgotten = forgotten + 1 if not any(self._held(h) for h in sent) else 0
            call = self._calls.get(sent[0])
            if forgotten >= 2 and call is not None:  # none mined or held, seen twice a quarter second apart
                address, abi, function_name, args, data_suffix = call
                sent.append(HexStr(self.write_contract(address, abi, function_name, *args, data_suffix=data_suffix)))
                forgotten = 0
            time.sleep(0.25)
        raise TimeExhausted(f"settlement {sent[-1]} not mined within {self._confirmation_timeout_seconds} s")

    def _held(self, tx_hash: HexStr) -> bool:
        try:
            self._w3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return False
        return True


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
        register_exact_evm_facilitator(self._core, _ChainNonceSigner("0x" + key.hex(), rpc_url,
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the chain payments settle on")
    parser.add_argument("--key-env", required=True,
                        help="environment variable holding the facilitator's private key (it pays the settling gas)")
    parser.add_argument("--network", action="append", required=True,
                        help="CAIP-2 network it settles on, e.g. eip155:31337 (repeat for several)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")


def serve_forever(args: argparse.Namespace) -> int:
    """Serve /verify, /settle and /supported until SIGINT or SIGTERM; prints `listening on URL` once up."""
    try:
        key = key_from_env(args.key_env, "the facilitator's private key")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    bad = [n for n in args.network if not re.fullmatch(r"eip155:[0-9]+", n)]
    if bad:
        print(f"--network must be CAIP-2 like eip155:31337, got {', '.join(bad)}", file=sys.stderr)
        return 2

    facilitator = Facilitator(args.rpc_url, key, list(args.network))
    return facilitator.serve_until_signalled(
        args.port, lambda: f"listening on {facilitator.url} (x402 facilitator for {', '.join(args.network)})")
