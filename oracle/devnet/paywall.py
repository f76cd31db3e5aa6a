"""An x402 paywall for the local model server: aiohttp middleware around the SDK's resource-server core.

A call without payment gets HTTP 402 with the requirements (v2: `PAYMENT-REQUIRED` header; v1: the
JSON body); a paid call is verified through the facilitator, served, then settled, and the answer
carries `PAYMENT-RESPONSE` (v1: `X-PAYMENT-RESPONSE`). Failures follow the protocol: an invalid or
unverifiable payment gets a 402 with the reason, a failed settlement a 402 with the settlement
answer.

It declares x402's payment-identifier extension (v2) and keeps it as its specification says: the
answer to a paid request that carried an id is stored as sent (status, body, `PAYMENT-RESPONSE`) once
its payment settled, bound to the exact payment payload. The same id with the same payload gets that
answer back, looked up before verification (a resent payment no longer verifies once settled) and
without a second settlement; while the first is still being processed, the resend waits for it. The
same id with another payload gets HTTP 409.

Knobs for tests: `settle_then_500` (settles, then answers 500), `drop_after_settle` (settles, then cuts
the connection before answering), `hold_paid` (keeps a paid request's payment header and answers
nothing for that many seconds, settling nothing).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from x402 import x402ResourceServer
from x402.http.constants import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    X_PAYMENT_HEADER,
    X_PAYMENT_RESPONSE_HEADER,
)
from x402.http.utils import (
    decode_payment_signature_header,
    encode_payment_required_header,
    encode_payment_response_header,
)
from x402.mechanisms.evm.exact.register import register_exact_evm_server
from x402.schemas import (
    PaymentPayload,
    PaymentRequirements,
    ResourceInfo,
    SettleResponse,
)
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequiredV1, PaymentRequirementsV1

from oracle.devnet.tags import tag_of
from oracle.x402.facilitator import FacilitatorHttp
from oracle.x402.identifier import PAYMENT_IDENTIFIER, declaration, identifier_of

PATHS = ("/v1/chat/completions", "/v1/messages")


@dataclass
class PaywallKnobs:
    settle_then_500: bool = False
    drop_after_settle: bool = False
    hold_paid: float = 0.0


@dataclass
class _Stored:
    """An answer kept under a payment identifier, bound to the payload that paid for it."""

    payload: str  # canonical JSON of the payment payload
    status: int
    body: bytes
    headers: dict[str, str]


class Paywall:
    def __init__(self, facilitator_url: str, network: str, asset: str, pay_to: str, price: int,
                 token_name: str = "Test USD", token_version: str = "2", version: int = 2,
                 v1_network: str = "base-sepolia", max_timeout_seconds: int = 120,
                 knobs: PaywallKnobs | None = None, payment_identifier: bool = True) -> None:
        self.facilitator = FacilitatorHttp(facilitator_url)
        self.network = network
        self.version = version
        self.knobs = knobs or PaywallKnobs()
        self.requirements = PaymentRequirements(
            scheme="exact", network=network, asset=asset, amount=str(price), pay_to=pay_to,
            max_timeout_seconds=max_timeout_seconds, extra={"name": token_name, "version": token_version})
        self.requirements_v1 = PaymentRequirementsV1(
            scheme="exact", network=v1_network, max_amount_required=str(price), resource="", description="model call",
            mime_type="application/json", pay_to=pay_to, max_timeout_seconds=max_timeout_seconds, asset=asset,
            extra={"name": token_name, "version": token_version})
        self.server = x402ResourceServer(self.facilitator)
        register_exact_evm_server(self.server, network)
        self.settled: list[str] = []  # transactions the paywall saw settled
        self.payment_identifier = payment_identifier  # declare (and keep) the payment-identifier extension
        self.replayed = 0  # stored answers given back for a resent payment
        self.conflicts = 0  # an id resent with another payload (409)
        self.kept: list[str] = []  # payment headers held by `hold_paid`
        self.tags_by_nonce: dict[str, str] = {}  # EIP-3009 nonce -> the `[[tag:...]]` of the call it paid for
        self.nonce_reuses = 0  # a nonce offered again for a call with another tag
        self.delivered: Counter[str] = Counter()  # per tag, answers handed back for a settled payment
        self._answers: dict[str, _Stored] = {}
        self._in_flight: dict[str, tuple[str, asyncio.Future[None]]] = {}

    def set_price(self, price: int) -> None:
        self.requirements = self.requirements.model_copy(update={"amount": str(price)})
        self.requirements_v1 = self.requirements_v1.model_copy(update={"max_amount_required": str(price)})

    async def start(self) -> None:
        self.server.initialize()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (request.path in PATHS or request.path.endswith(":generateContent")):
            return await handler(request)
        header = request.headers.get(PAYMENT_SIGNATURE_HEADER) or request.headers.get(X_PAYMENT_HEADER)
        if not header:
            return await self._required(str(request.url), "payment required")
        try:
            payload = decode_payment_signature_header(header)
        except (ValueError, TypeError) as exc:
            return await self._required(str(request.url), f"invalid_payload: {exc}")
        tag = self._note_tag(payload, await request.read())
        identifier = self._identifier(payload)
        if identifier is None:
            return await self._paid(request, handler, header, payload, None, tag)
        fingerprint = json.dumps(payload.model_dump(mode="json", by_alias=True), sort_keys=True)
        while True:  # looked up before verifying: a settled payment would no longer verify
            stored = self._answers.get(identifier)
            if stored is not None:
                if stored.payload != fingerprint:
                    self.conflicts += 1
                    return web.json_response({"error": "payment identifier already used with another payment"},
                                             status=409)
                self.replayed += 1
                if tag is not None:
                    self.delivered[tag] += 1
                return web.Response(status=stored.status, body=stored.body, headers=stored.headers)
            running = self._in_flight.get(identifier)
            if running is None:
                break
            if running[0] != fingerprint:
                self.conflicts += 1
                return web.json_response({"error": "payment identifier in use by another payment"}, status=409)
            await asyncio.shield(running[1])  # the first send's answer, once it has one
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight[identifier] = (fingerprint, done)
        try:
            return await self._paid(request, handler, header, payload, (identifier, fingerprint), tag)
        finally:
            del self._in_flight[identifier]
            done.set_result(None)

    def _note_tag(self, payload: PaymentPayload | PaymentPayloadV1, body: bytes) -> str | None:
        """The call's tag, with the payment nonce that pays for it noted (and a nonce offered for two calls)."""
        tag = tag_of(body.decode(errors="replace"))
        authorization = payload.payload.get("authorization") if isinstance(payload.payload, dict) else None
        nonce = authorization.get("nonce") if isinstance(authorization, dict) else None
        if tag is not None and isinstance(nonce, str) and self.tags_by_nonce.setdefault(nonce.lower(), tag) != tag:
            self.nonce_reuses += 1
        return tag

    def _identifier(self, payload: PaymentPayload | PaymentPayloadV1) -> str | None:
        if not self.payment_identifier or not isinstance(payload, PaymentPayload):
            return None
        return identifier_of(payload.extensions)

    async def _paid(self, request: web.Request, handler: Handler, header: str,
                    payload: PaymentPayload | PaymentPayloadV1, keep: tuple[str, str] | None,
                    tag: str | None) -> web.StreamResponse:
        if self.knobs.hold_paid:
            self.kept.append(header)
            await asyncio.sleep(self.knobs.hold_paid)
            return web.json_response({"error": "timed out"}, status=504)
        requirements: PaymentRequirements | PaymentRequirementsV1 = (
            self.requirements if isinstance(payload, PaymentPayload) else self.requirements_v1)
        try:
            verified = await self.server.verify_payment(payload, requirements)
        except Exception as exc:  # the facilitator is down or refused: no service, nothing settled
            return await self._required(str(request.url), f"verification failed: {exc}"[:300])
        if not verified.is_valid:
            return await self._required(str(request.url), str(verified.verify.invalid_reason))
        response: web.StreamResponse = await handler(request)
        if response.status >= 400:
            return response  # nothing served, nothing settled
        try:
            settled = await self.server.settle_payment(payload, requirements)
        except Exception as exc:
            settled = SettleResponse(success=False, error_reason="settle_failed", error_message=str(exc)[:200],
                                     transaction="", network=requirements.network)
        name = PAYMENT_RESPONSE_HEADER if isinstance(payload, PaymentPayload) else X_PAYMENT_RESPONSE_HEADER
        if settled.success or settled.error_reason == "settlement_pending":
            if settled.transaction:
                self.settled.append(settled.transaction)
            if self.knobs.settle_then_500:
                response = web.json_response({"error": {"message": "internal error after payment"}}, status=500)
            response.headers[name] = encode_payment_response_header(settled)
            if keep is not None and isinstance(response, web.Response) and isinstance(response.body, bytes):
                headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
                self._answers[keep[0]] = _Stored(keep[1], response.status, response.body, headers)
            if self.knobs.drop_after_settle and request.transport is not None:
                request.transport.close()
                raise ConnectionResetError("dropped after settling")
            if tag is not None and response.status < 400:
                self.delivered[tag] += 1
            return response
        # Not settled: nothing is stored, so a resend of this still unused payment is processed anew.
        response = await self._required(str(request.url), f"settlement failed: {settled.error_reason}")
        response.headers[name] = encode_payment_response_header(settled)
        return response

    async def _required(self, url: str, error: str) -> web.Response:
        if self.version == 1:
            body = PaymentRequiredV1(error=error, accepts=[self.requirements_v1.model_copy(update={"resource": url})])
            return web.json_response(body.model_dump(mode="json", by_alias=True, exclude_none=True), status=402)
        extensions = ({PAYMENT_IDENTIFIER: declaration()} if self.payment_identifier
                      else None)
        required = await self.server.create_payment_required_response(
            [self.requirements], ResourceInfo(url=url, description="model call", mime_type="application/json"),
            error=error, extensions=extensions)
        response = web.json_response({}, status=402)
        response.headers[PAYMENT_REQUIRED_HEADER] = encode_payment_required_header(required)
        return response

