"""Agents' routes on the public listener, paid per call over x402 (`oracle.x402.gate`):

    GET  /v1/models                 what can be bought, at the gateway's prices (free)
    POST /v1/chat/completions       OpenAI-compatible chat, routed like on-chain requests; `usage.cost`
    POST /v1/analyze                a typed answer signed as an `OffchainResult` a consumer contract accepts
    GET  /v1/account/{address}      the payer's calls, spend and last call, for a fresh signed message

A call is priced before anything runs: the larger of the configured price and its worst case at the
eligible deployments' prices (max tokens, per-call prices), plus the margin. The router may spend at
most that worst case on it, so the operator never runs at a loss. A call that fails is not settled.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address, keccak, to_checksum_address

from oracle.api.gateway_bodies import ChatBody, analyze_body, chat_body
from oracle.api.http import error
from oracle.chain.signer import ResponseSigner
from oracle.config import GatewaySettings
from oracle.protocol import (
    ACCOUNT_MESSAGE_HEADER,
    ACCOUNT_MESSAGE_TITLE,
    ACCOUNT_SIGNATURE_HEADER,
    OffchainResult,
    ReasonCode,
    RequestParams,
    ResultSpec,
    ResultType,
    Status,
    account_message,
    model_used,
    query_hash,
)
from oracle.results import decode_result, json_schema
from oracle.router import ModelRouter
from oracle.router.prompts import chat_prompt, chat_sent_bytes, sent_bytes
from oracle.router.receipts import canonical_json, receipt_hash
from oracle.router.types import Answer, ChatTurns, RouteRequest
from oracle.store import Sales
from oracle.views import BadQuery
from oracle.x402.gate import Admission, PaymentGate, Replay
from oracle.x402.payers import DAY, Refusal

MAX_MESSAGE_AGE = 600
CHAT, ANALYZE = "chat", "analyze"  # the paid routes, as sales and metrics name them
ROUTES = (CHAT, ANALYZE)
SETTLED_FIRST = frozenset({ANALYZE})  # routes whose answer waits for its payment's settlement
_NONCE = re.compile(r"[A-Za-z0-9]{16,64}")


class _Failed(Exception):
    """The call was paid for but not answered: 502 with the reason, and nothing settled. `cost`: what the
    model calls it made cost the operator, micro-USD (counted against the payer's daily cap)."""

    def __init__(self, reason: ReasonCode, detail: str, cost: int) -> None:
        super().__init__(detail)
        self.reason = reason
        self.cost = cost


@dataclass(frozen=True)
class _Priced:
    worst: int  # what the models may cost, micro-USD: the router's allowance for the call
    amount: int  # what the call is sold for


class Gateway:
    def __init__(self, settings: GatewaySettings, router: ModelRouter, gate: PaymentGate, sales: Sales,
                 signers: Mapping[int, ResponseSigner], clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.router = router
        self.gate = gate
        self.sales = sales
        self.signers = signers  # chain id -> the fulfillment signer of that chain's oracle
        self.clock = clock
        # (address, nonce) of signed messages used, expiring: a message reads once. Bounded by the expiry
        # window and by signatures checked before a nonce is kept.
        self._account_nonces: dict[tuple[str, str], float] = {}
        self._account_expiries: list[tuple[float, tuple[str, str]]] = []  # a heap, to drop the expired

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/analyze", self.analyze)
        app.router.add_get("/v1/account/{address}", self.account)

    # ---------------------------------------------------------------------------------- routes

    async def models(self, _: web.Request) -> web.Response:
        s = self.settings
        data = []
        for e in self.router.catalog.entries:
            data.append({
                "id": e.model, "object": "model", "owned_by": e.provider, "deployment": e.id,
                "context_window": e.context_window, "max_output": e.max_output,
                "capabilities": list(e.deployment.capabilities),
                "pricing": {"input_per_million": s.with_margin(e.input_price),
                            "output_per_million": s.with_margin(e.output_price),
                            "per_call": s.with_margin(e.call_price),
                            "least_per_call": s.charge(0)}})
        return web.json_response({"object": "list", "data": data,
                                  "payment": {"network": s.network, "asset": s.asset, "pay_to": s.pay_to,
                                              "unit": "base units of the asset (micro-USD for USDC)"}},
                                 headers={"Cache-Control": "no-store"})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = chat_body(raw, self.settings.max_tokens)
        turns = ChatTurns(body.messages, body.schema)
        kind = turns.kind
        priced = self._price(body.model, chat_sent_bytes(turns.messages, turns.schema), body.max_tokens, kind)

        async def serve(a: Admission) -> dict[str, Any]:
            params = RequestParams(a.payer, 0, int(a.valid_before), body.max_tokens, body.temperature, body.seed,
                                   body.model, chat_prompt(turns.messages),
                                   ResultSpec(kind, max_bytes=body.max_tokens * 16))
            answer = await self._answer(a, params, priced.worst, turns)
            return _completion(a, body, answer)

        return await self._paid(request, raw, priced.amount, CHAT, "an OpenAI-compatible chat completion", serve)

    async def analyze(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = analyze_body(raw, self.settings.max_tokens, self.settings.analysis_validity)
        signer = self.signers.get(body.chain_id)
        if signer is None:
            raise BadQuery(f"chain_id {body.chain_id} is not served here: it serves "
                           + ", ".join(str(c) for c in sorted(self.signers)))
        sent = sent_bytes(body.prompt, body.result, json_schema(body.result))
        priced = self._price(body.model, sent, body.max_tokens, body.result.kind)

        async def serve(a: Admission) -> dict[str, Any]:
            valid_until = int(self.clock()) + body.valid_for
            params = RequestParams(body.consumer, 0, valid_until, body.max_tokens, body.temperature, body.seed,
                                   body.model, body.prompt.encode(), body.result)
            answer = await self._answer(a, params, priced.worst, None)
            return self._signed(a, signer, params, answer, valid_until)

        return await self._paid(request, raw, priced.amount, ANALYZE, "a signed typed answer", serve)

    async def account(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        if not is_address(address):
            raise BadQuery(f"not an address: {address[:60]!r}")
        address = to_checksum_address(address)
        refused = self._check_signed_message(request, address)
        if refused is not None:
            return error(401, refused, **{"WWW-Authenticate": 'EIP191 realm="oracle-gateway"'})
        found = self.sales.account(address)
        now = self.clock()
        return web.json_response({
            "address": address, "calls": found.calls, "spent": found.spent, "settled": found.settled,
            "last_seen": found.last_seen,
            "spent_today": self.sales.spent_since(address, now - now % DAY, in_flight=True),
            "daily_cap": self.settings.daily_cap, "rate_per_minute": self.settings.rate_per_minute,
            "reserved": self.gate.payers.reserved.get(address, 0)}, headers={"Cache-Control": "no-store"})

    # ---------------------------------------------------------------------------------- the paid call

    def _price(self, model: str, sent: int, max_tokens: int, kind: ResultType) -> _Priced:
        worst = self.router.worst_case(model, sent, max_tokens, kind)
        if isinstance(worst, str):
            raise BadQuery(f"model {model[:80]!r} cannot be served: {worst}")
        return _Priced(max(self.settings.price, worst[0]), self.settings.charge(worst[0]))

    async def _paid(self, request: web.Request, raw: bytes, amount: int, route: str, description: str,
                    serve: Callable[[Admission], Awaitable[dict[str, Any]]]) -> web.StreamResponse:
        header = request.headers.get("PAYMENT-SIGNATURE")
        if not header:
            why = ("this gateway takes x402 v2 payments in the PAYMENT-SIGNATURE header, not X-PAYMENT (v1)"
                   if request.headers.get("X-PAYMENT") else f"payment required: this call costs {amount}")
            return await self._required(request, amount, why, description)
        body_hash = hashlib.sha256(f"{request.method} {request.path}\n".encode() + raw).hexdigest()
        admitted = await self.gate.admit(header, amount, route, body_hash)
        if isinstance(admitted, Replay):
            return web.Response(status=admitted.status, body=admitted.body, headers=admitted.headers)
        if isinstance(admitted, Refusal):
            extra = {"Retry-After": str(admitted.retry_after)} if admitted.retry_after else {}
            if admitted.status == 402:
                return await self._required(request, amount, admitted.message, description, extra)
            return error(admitted.status, admitted.message, **extra)
        try:
            doc = await serve(admitted)
        except _Failed as exc:
            await self.gate.release(admitted, str(exc), exc.cost)
            return web.json_response({"error": f"no model answered, and nothing is charged: {exc}"[:1_000],
                                      "reason": exc.reason.name}, status=502, headers={"Cache-Control": "no-store"})
        except BaseException:
            await self.gate.release(admitted, "the call failed inside the gateway", 0)
            raise
        out = json.dumps(doc, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        # A signed analysis is worth money on-chain: handed over once its payment settled. A chat is
        # answered at once and settled after.
        if route in SETTLED_FIRST:
            if not await self.gate.deliver(admitted, 200, out, headers, wait=True):
                return error(402, "the payment did not settle (moved or cancelled before it could be), so the "
                                  "answer is not given: pay with an authorization that stays good until it is settled")
            return web.Response(status=200, body=out, headers=headers)
        await self.gate.deliver(admitted, 200, out, headers, wait=False)
        response = web.Response(status=200, body=out, headers=headers)
        try:
            await response.prepare(request)
            await response.write_eof()
        finally:
            self.gate.settle_later(admitted)
        return response

    async def _required(self, request: web.Request, amount: int, why: str, description: str,
                        extra: Mapping[str, str] | None = None) -> web.Response:
        headers, doc = await self.gate.payment_required(str(request.url), amount, why, description)
        return web.json_response(doc, status=402, headers={**headers, **(extra or {}), "Cache-Control": "no-store"})

    async def _answer(self, a: Admission, params: RequestParams, allowance: int, turns: ChatTurns | None) -> Answer:
        prompt = params.prompt.decode() if turns is None else ""
        route = RouteRequest(a.route_key, self.gate.result_id(a), a.payer, params, prompt, params.hash(),
                             allowance, chat=turns)
        answer = await self.router.answer(route, self.clock() + self.settings.answer_timeout)
        if answer.status != Status.SUCCESS:
            cost = sum(int(x.get("cost", 0)) for x in answer.receipt.get("attempts", []))
            raise _Failed(answer.reason, answer.detail or answer.reason.name, cost)
        return answer

    def _signed(self, a: Admission, signer: ResponseSigner, params: RequestParams, answer: Answer,
                valid_until: int) -> dict[str, Any]:
        """The answer as an `OffchainResult` for its consumer, signed, with its receipt kept under its hash."""
        spec = params.result
        result_id = self.gate.result_id(a)
        question = query_hash(params.model_spec, params.prompt, spec)
        used = model_used(answer.model_ids)
        receipt = canonical_json({
            "version": 1,
            "analysis": {"result_id": result_id, "chain_id": signer.chain_id, "oracle": signer.oracle,
                         "consumer": params.callback, "query_hash": question, "model_spec": params.model_spec,
                         "prompt": params.prompt, "result": spec.to_json(), "max_tokens": params.max_tokens,
                         "temperature": params.temperature, "seed": params.seed, "valid_until": valid_until},
            "payment": {"payer": a.payer, "nonce": a.nonce, "amount": a.amount, "network": self.settings.network,
                        "asset": self.settings.asset},
            "router": answer.receipt,
            "final": {"status": "success", "models": sorted(answer.model_ids), "result": answer.result,
                      "result_sha256": hashlib.sha256(answer.result).hexdigest()},
        })
        receipt_id = receipt_hash(receipt)
        self.sales.keep_receipt(f"gateway:{a.nonce}", receipt, receipt_id)
        offchain = OffchainResult(result_id, params.callback, question, Status.SUCCESS, ReasonCode.NONE,
                                  answer.result, used, receipt_id, valid_until)
        signature = signer.sign_offchain(offchain)
        return {"result_id": _hex(result_id), "chain_id": signer.chain_id, "oracle": signer.oracle,
                "consumer": params.callback, "query_hash": _hex(question), "status": int(Status.SUCCESS),
                "reason_code": int(ReasonCode.NONE), "value": _plain(decode_result(spec, answer.result)),
                "result": _hex(answer.result), "model_used": _hex(used), "models": list(answer.model_ids),
                "receipt_hash": _hex(receipt_id), "valid_until": valid_until, "signer": signer.address,
                "signature": _hex(signature), "paid": a.amount, "payer": a.payer, "payment_nonce": a.nonce}

    # ---------------------------------------------------------------------------------- accounts

    def _check_signed_message(self, request: web.Request, address: str) -> str | None:
        """None when the request carries a fresh message signed by `address`; else what to send."""
        how = (f"send {ACCOUNT_MESSAGE_HEADER} (base64 of the message oracle.protocol.account_message(address, "
               f"payee, nonce, expires) builds: '{ACCOUNT_MESSAGE_TITLE}', the address, the gateway's payee "
               f"{self.settings.pay_to}, a fresh nonce of 16-64 letters or "
               f"digits, an expiry within {MAX_MESSAGE_AGE} s) and {ACCOUNT_SIGNATURE_HEADER} (its EIP-191 "
               f"signature by that address)")
        encoded = request.headers.get(ACCOUNT_MESSAGE_HEADER)
        signature = request.headers.get(ACCOUNT_SIGNATURE_HEADER)
        if not encoded or not signature:
            return f"this account is read only by its owner: {how}"
        try:
            message = base64.b64decode(encoded, validate=True).decode()
            lines = dict(line.split(": ", 1) for line in message.split("\n")[1:])
            nonce, expires = lines["Nonce"], int(lines["Expires"])
        except (ValueError, KeyError, UnicodeDecodeError):
            return f"the signed message is malformed: {how}"
        if not _NONCE.fullmatch(nonce) or message != account_message(lines.get("Address", ""),
                                                                     lines.get("Gateway", ""), nonce, expires):
            return f"the signed message is malformed: {how}"
        if lines["Gateway"].lower() != self.settings.pay_to.lower():
            return (f"the message is for the gateway paid to {lines['Gateway'][:42]}, not this one "
                    f"({self.settings.pay_to})")
        if lines["Address"].lower() != address.lower():
            return f"the message is signed for {lines['Address'][:42]}, not {address}"
        now = self.clock()
        if expires <= now:
            return "the signed message has expired: sign a new one"
        if expires > now + MAX_MESSAGE_AGE:
            return f"the signed message expires more than {MAX_MESSAGE_AGE} s from now: sign one that expires sooner"
        try:
            signed_by = Account.recover_message(encode_defunct(text=message), signature=signature)
        except Exception:
            return "the signature does not verify: sign the message with the account's key (EIP-191 personal_sign)"
        if signed_by.lower() != address.lower():
            return f"the message was not signed by {address}"
        while self._account_expiries and self._account_expiries[0][0] <= now:
            self._account_nonces.pop(heapq.heappop(self._account_expiries)[1], None)
        key = (address, nonce)
        if key in self._account_nonces:
            return "this signed message was used already: sign a new one with a fresh nonce"
        self._account_nonces[key] = expires
        heapq.heappush(self._account_expiries, (expires, key))
        return None


def _completion(a: Admission, body: ChatBody, answer: Answer) -> dict[str, Any]:
    attempts = answer.receipt.get("attempts", [])
    last: dict[str, Any] = next((x for x in reversed(attempts) if x.get("outcome") == "ok"), {})
    usage = last.get("usage", {}) or {}
    prompt_tokens, completion_tokens = int(usage.get("input", 0)), int(usage.get("output", 0))
    return {
        "id": "chatcmpl-" + keccak(text=a.nonce).hex()[:32], "object": "chat.completion",
        "created": int(time.time()), "model": answer.model_ids[0] if answer.model_ids else "",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.result.decode()},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens, "cost": a.amount / 1_000_000},
        "oracle": {"deployment": str(last.get("deployment", "")), "paid": a.amount, "payer": a.payer,
                   "payment_nonce": a.nonce},
    }


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _plain(value: Any) -> Any:
    """A decoded result as JSON: bytes as 0x-hex, tuples as lists."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

