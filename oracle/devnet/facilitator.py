"""A local x402 facilitator on aiohttp: `/verify`, `/settle` and `/supported`, settling on the local chain.

Payments are checked by the SDK's facilitator (`x402FacilitatorSync` with the exact EVM scheme, v2 and
v1), whose web3 calls block, so a check runs in a worker thread; it is a local computation and a few
reads. Settling is done on the event loop by `SettlementSender`: the `transferWithAuthorization` call is
signed with the facilitator's key under a nonce of its own, sent, and its receipt awaited alongside
every other settlement's, so hundreds settle at once. `/settle` answers success only once the transfer
is mined with status 1 and its Transfer event is the one authorized, with the SDK's error reasons
otherwise, as the SDK's own settle does.

Knobs for tests: `down` (every call answered 503), `fail_settle` (settlement refused, nothing sent),
`pending` (settled on-chain, but reported as `settlement_pending`). `books` counts what was asked and
settled.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak
from pydantic import BaseModel
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.constants import (
    ERR_FACTORY_NOT_ALLOWED,
    ERR_SETTLEMENT_PENDING,
    ERR_TRANSACTION_FAILED,
    ERR_TRANSFER_EVENT_MISMATCH,
    TRANSFER_WITH_AUTHORIZATION_BYTES_ABI,
    TRANSFER_WITH_AUTHORIZATION_VRS_ABI,
)
from x402.mechanisms.evm.data_suffix import append_data_suffix, resolve_data_suffix
from x402.mechanisms.evm.erc6492 import has_deployment_info, parse_erc6492_signature
from x402.mechanisms.evm.exact.eip3009_utils import (
    ParsedEIP3009Authorization,
    parse_eip3009_authorization,
    parse_eip3009_transfer_error,
    verify_eip3009_transfer_event,
)
from x402.mechanisms.evm.exact.register import register_exact_evm_facilitator
from x402.mechanisms.evm.types import ExactEIP3009Payload
from x402.mechanisms.evm.utils import hex_to_bytes, normalize_address
from x402.schemas import PaymentPayload, PaymentRequirements, SettleResponse, VerifyResponse
from x402.schemas.helpers import parse_payment_payload, parse_payment_requirements

from oracle.chain.rpc import ChainClient, RpcError
from oracle.config import ConfigError, key_from_env
from oracle.devnet.loopback import LoopbackServer
from oracle.devnet.settlement import SendRefused, SettlementSender, SettlementTimeout
from oracle.protocol import signer_of
from oracle.x402.signer import domain_separator, transfer_digest

SETTLE_GAS = 200_000  # transferWithAuthorization from an EOA uses well under half of it
SETTLE_GAS_CONTRACT_WALLET = 500_000  # a contract wallet's signature check (the SDK signer's fixed limit)
CONFIRMATION_TIMEOUT = 20.0
CHECK_THREADS = 32  # each check mostly waits on a few node reads
VERIFIED_FOR = 60.0  # seconds a payment verified here is settled on a simulated transfer, not a full check again


class _CheckingSigner(FacilitatorWeb3Signer):
    """The SDK's web3 signer, used here for its reads only (checks; nothing is sent through it). web3's
    validation layer asks the node for its chain id before every call, doubling a check's round trips
    and quadrupling its time; the scheme takes the chain id from the payment's network instead."""

    def __init__(self, private_key: str, rpc_url: str) -> None:
        super().__init__(private_key, rpc_url)
        self._w3.middleware_onion.remove("validation")


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
        self._rpc_url = rpc_url
        self._key = key
        self._pending: dict[str, tuple[str, str]] = {}  # nonce -> (transaction, network) reported pending
        self._unconfirmed: dict[str, list[str]] = {}  # signature -> transactions sent, not mined in time
        # (payment, requirements) verified here lately -> when: settled on a simulated transfer alone
        self._verified: dict[str, float] = {}
        self._address = Account.from_key(key).address
        self._client: ChainClient | None = None
        self._core = x402FacilitatorSync()  # checks payments (blocking reads, in a worker thread)
        register_exact_evm_facilitator(self._core, _CheckingSigner("0x" + key.hex(), rpc_url), networks=networks)
        self._checks = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="facilitator-check")
        self._session: aiohttp.ClientSession | None = None
        self._sender: SettlementSender | None = None

    async def opened(self) -> None:
        self._session = aiohttp.ClientSession()
        self._client = ChainClient(self._session, self._rpc_url, name="facilitator")
        self._sender = SettlementSender(self._client, self._key, timeout=CONFIRMATION_TIMEOUT)
        await self._sender.start()

    async def closing(self) -> None:
        if self._sender is not None:
            await self._sender.close()
        if self._session is not None:
            await self._session.close()
        self._checks.shutdown(wait=False, cancel_futures=True)

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
        result = await self._check(payload, requirements)
        if result.is_valid:
            self._remember_verified(payload, requirements)
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
            result = await self._settle_on_chain(payload, requirements)
            if result.success:
                self.books.settled.append(result.transaction)
                if self.knobs.pending:  # it did settle; the answer only says it is not final
                    self._pending[nonce] = (result.transaction, result.network)
                    result = SettleResponse(success=False, error_reason="settlement_pending",
                                            transaction=result.transaction, network=result.network,
                                            payer=result.payer)
        return _json(result)

    async def _check(self, payload: Any, requirements: Any) -> VerifyResponse:
        """A payment's check: the quick one when it says valid, else the SDK's (signature, terms, balance, a
        simulated transfer), whose refusal reasons are the protocol's."""
        payer = await self._quick_check(payload, requirements)
        if payer is not None:
            return VerifyResponse(is_valid=True, payer=payer)
        return await asyncio.get_running_loop().run_in_executor(self._checks, self._core.verify, payload, requirements)

    async def _quick_check(self, payload: Any, requirements: Any) -> str | None:
        """The payer, when a v2 exact payment from an ordinary account is plainly good: it pays what is
        required to whom, inside its validity window, signed by its payer in the token's domain as the
        requirements name it, and the token itself would take it now (one simulated transfer: nonce
        unused, balance, signature). None for anything else, which the SDK's check then judges: the
        quick check only ever says yes, in a fraction of the SDK's time (its web3 calls dominate)."""
        if not (isinstance(payload, PaymentPayload) and isinstance(requirements, PaymentRequirements)
                and requirements.scheme == "exact" and payload.accepted == requirements and self._client is not None):
            return None
        try:
            auth = payload.payload["authorization"]
            signature = hex_to_bytes(str(payload.payload["signature"]))
            now = int(time.time())
            extra = requirements.extra or {}
            if (normalize_address(auth["to"]) != normalize_address(requirements.pay_to)
                    or int(auth["value"]) != int(requirements.amount) or int(auth["validAfter"]) > now
                    or int(auth["validBefore"]) < now + 6 or len(signature) != 65):
                return None
            separator = domain_separator(str(extra["name"]), str(extra["version"]),
                                         int(requirements.network.split(":")[1]), requirements.asset)
            v = signature[64] if signature[64] >= 27 else signature[64] + 27
            payer = signer_of(transfer_digest(auth, separator), signature[:64] + bytes([v]))
            if payer.lower() != str(auth["from"]).lower():
                return None
            data, _ = _transfer_call(parse_eip3009_authorization(ExactEIP3009Payload.from_dict(
                payload.payload).authorization), signature)
            await self._client.eth_call(normalize_address(requirements.asset), data, sender=self._address)
        except Exception:  # anything unusual or refused: the SDK's check says what
            return None
        return payer

    async def _settle_on_chain(self, payload: Any, requirements: Any) -> SettleResponse:
        """The SDK's exact-EVM settlement (check, call `transferWithAuthorization`, check the receipt and
        its Transfer event), with the transaction sent and awaited on the event loop."""
        network = str(requirements.network)
        # Asked again after `settlement_pending`: the transactions already sent are awaited, as the SDK
        # reconciles against its broadcast one, rather than checked (their authorization may be used).
        sent = self._unconfirmed.pop(str(payload.payload.get("signature") or ""), [])
        verified_at = self._verified.pop(_fingerprint(payload, requirements), 0.0)
        recently_verified = verified_at > time.monotonic() - VERIFIED_FOR
        if not sent and not recently_verified:
            checked = await self._check(payload, requirements)
            if not checked.is_valid:
                return SettleResponse(success=False, error_reason=checked.invalid_reason, network=network,
                                      payer=checked.payer, transaction="")
        evm_payload = ExactEIP3009Payload.from_dict(payload.payload)
        payer = evm_payload.authorization.from_address
        try:
            signature = parse_erc6492_signature(hex_to_bytes(evm_payload.signature or ""))
            authorization = parse_eip3009_authorization(evm_payload.authorization)
        except Exception as exc:  # the SDK's own settle answers a malformed payload the same way
            return SettleResponse(success=False, error_reason=ERR_TRANSACTION_FAILED, error_message=str(exc),
                                  network=network, payer=payer, transaction="")
        if has_deployment_info(signature):  # no wallet factory is allowed, as in the SDK's default
            return SettleResponse(success=False, error_reason=ERR_FACTORY_NOT_ALLOWED, network=network, payer=payer,
                                  transaction="")
        data, gas = _transfer_call(authorization, signature.inner_signature)
        if isinstance(payload, PaymentPayload) and isinstance(requirements, PaymentRequirements):
            suffix = resolve_data_suffix(None, payload, requirements)
            if suffix:
                data = hex_to_bytes(append_data_suffix("0x" + data.hex(), suffix))
        token = normalize_address(requirements.asset)
        assert self._sender is not None and self._client is not None
        if not sent and recently_verified:
            # Verified here moments ago: the token itself says whether the transfer still goes through
            # (signature, nonce unused, balance, validity), at the cost of one call instead of a full check.
            try:
                await self._client.eth_call(token, data, sender=self._address)
            except RpcError as exc:
                return SettleResponse(success=False, error_reason=parse_eip3009_transfer_error(exc),
                                      error_message=str(exc)[:300], network=network, payer=payer, transaction="")
        try:
            receipt = await self._sender.transact(token, data, gas, sent)
        except SendRefused as exc:
            return SettleResponse(success=False, error_reason=parse_eip3009_transfer_error(exc), error_message=str(exc),
                                  network=network, payer=payer, transaction="")
        except SettlementTimeout as exc:
            if evm_payload.signature:
                self._unconfirmed[evm_payload.signature] = exc.hashes
            return SettleResponse(success=False, error_reason=ERR_SETTLEMENT_PENDING, error_message=str(exc),
                                  transaction=exc.hashes[-1], network=network, payer=payer)
        tx_hash = str(receipt["transactionHash"])
        if int(receipt["status"], 16) != 1:
            return SettleResponse(success=False, error_reason=ERR_TRANSACTION_FAILED, transaction=tx_hash,
                                  network=network, payer=payer)
        if not verify_eip3009_transfer_event(receipt.get("logs") or [], token, from_address=authorization.from_address,
                                             to=authorization.to, value=authorization.value):
            return SettleResponse(success=False, error_reason=ERR_TRANSFER_EVENT_MISMATCH, transaction=tx_hash,
                                  network=network, payer=payer)
        return SettleResponse(success=True, transaction=tx_hash, network=network, payer=payer)

    def _remember_verified(self, payload: Any, requirements: Any) -> None:
        now = time.monotonic()
        if len(self._verified) > 100_000:  # settlements that never came: dropped once stale
            self._verified = {k: t for k, t in self._verified.items() if t > now - VERIFIED_FOR}
        self._verified[_fingerprint(payload, requirements)] = now

    async def _supported(self, request: web.Request) -> web.Response:
        self.books.calls["supported"] += 1
        supported = self._core.get_supported()
        return _json(supported)


def _fingerprint(payload: Any, requirements: Any) -> str:
    return hashlib.sha256(json.dumps([payload.model_dump(mode="json", by_alias=True),
                                      requirements.model_dump(mode="json", by_alias=True)],
                                     sort_keys=True).encode()).hexdigest()


def _selector(abi: list[dict[str, Any]]) -> tuple[bytes, list[str]]:
    types = [str(arg["type"]) for arg in abi[0]["inputs"]]
    return keccak(text=f"{abi[0]['name']}({','.join(types)})")[:4], types


_WITH_VRS = _selector(TRANSFER_WITH_AUTHORIZATION_VRS_ABI)
_WITH_BYTES = _selector(TRANSFER_WITH_AUTHORIZATION_BYTES_ABI)


def _transfer_call(auth: ParsedEIP3009Authorization, signature: bytes) -> tuple[bytes, int]:
    """`transferWithAuthorization` calldata and its gas limit: the (v, r, s) overload for an EOA's
    65-byte signature, the bytes overload otherwise, as the SDK chooses."""
    head = [auth.from_address, auth.to, auth.value, auth.valid_after, auth.valid_before, auth.nonce]
    if len(signature) == 65:
        v = signature[64] + 27 if signature[64] in (0, 1) else signature[64]
        selector, types = _WITH_VRS
        return selector + encode(types, [*head, v, signature[:32], signature[32:64]]), SETTLE_GAS
    selector, types = _WITH_BYTES
    return selector + encode(types, [*head, signature]), SETTLE_GAS_CONTRACT_WALLET


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
