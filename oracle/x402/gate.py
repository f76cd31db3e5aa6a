"""`PaymentGate`: the server side of x402 for the gateway's paid routes, on the SDK's resource-server core.

    gate = PaymentGate(settings, session, store.sales)
    await gate.start()
    headers, body = await gate.payment_required(url, amount, "payment required")   # -> HTTP 402
    admitted = await gate.admit(header, amount, route, fingerprint)   # Admission | Replay | Refusal
    ... answer the call ...
    await gate.deliver(admitted, status, body, headers)   # kept, then settled in the background
    await gate.release(admitted, "why")                    # the call failed: nothing is settled

A payment is checked on our terms before the facilitator sees it (x402 v2, scheme exact, this network,
asset and payTo, at least the call's price, time left to settle), then verified by the facilitator,
and its nonce is claimed in the store (committed) before the model runs, so one payment buys one
call. While verified and not yet settled its amount is reserved against the payer's on-chain balance:
concurrent calls cannot promise more than the wallet holds. It is settled after a successful answer,
off the caller's path; a payer whose settlement failed is refused for `settle_failure_cooldown`.

The payment-identifier extension is declared in every 402. A payment carrying an id binds the id to
its payload and the call's body: the same id, payload and body get the stored answer again (no second
settlement; a resend during the first call waits for it), any other reuse HTTP 409. Answers are kept
until the authorization's validBefore plus ten minutes. A payment without an id that was already used
is refused (402).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from x402 import x402ResourceServer
from x402.http.utils import decode_payment_signature_header, encode_payment_required_header
from x402.mechanisms.evm.exact.register import register_exact_evm_server
from x402.schemas import AssetAmount, PaymentPayload, PaymentRequirements, ResourceConfig, ResourceInfo

from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.config import GatewaySettings
from oracle.store import Sale, SalePayment, Sales
from oracle.x402.facilitator import FacilitatorHttp
from oracle.x402.identifier import PAYMENT_IDENTIFIER, declaration, identifier_of

log = logging.getLogger(__name__)
_BALANCE_OF = keccak(text="balanceOf(address)")[:4]
SETTLE_MARGIN = 15  # seconds a payment must stay valid after the longest answer, to be settled
DAY = 86_400


@dataclass(frozen=True)
class Refusal:
    """Why a paid call is not served: 402 (pay again, differently), 409 (identifier reuse), 429 (limits)."""

    status: int
    message: str
    retry_after: int | None = None


@dataclass(frozen=True)
class Replay:
    """The answer already given for this payment identifier, payload and body."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Admission:
    payload: PaymentPayload
    requirements: PaymentRequirements
    header: str
    payer: str
    nonce: str  # 0x + 64 hex, lower case
    amount: int
    valid_before: int
    identifier: str | None


class PaymentGate:
    def __init__(self, settings: GatewaySettings, session: aiohttp.ClientSession, sales: Sales,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.sales = sales
        self.clock = clock
        self.facilitator = FacilitatorHttp(str(settings.facilitator_url), session)
        self.server = x402ResourceServer(self.facilitator)
        register_exact_evm_server(self.server, settings.network)
        self._node = ChainClient(session, str(settings.rpc_url), 10.0)
        self._requirements: dict[int, PaymentRequirements] = {}
        self.reserved: collections.Counter[str] = collections.Counter()  # payer -> verified, unsettled amount
        self._admitting: collections.Counter[str] = collections.Counter()  # payer -> being checked, not yet claimed
        self._settled: collections.Counter[str] = collections.Counter()  # payer -> settlements finished (a clock)
        self._cooldown: dict[str, float] = {}  # payer -> refused until (a settlement of theirs failed)
        self._recent: dict[str, collections.deque[float]] = {}  # payer -> times of calls in the last minute
        self._in_flight: dict[str, asyncio.Future[None]] = {}  # payment identifier -> done when answered
        self._settling: set[asyncio.Task[None]] = set()
        self._settle_slots = asyncio.Semaphore(64)

    async def start(self) -> None:
        """Ask the facilitator what it supports (once), and take up what a stop left: verified calls
        that never answered are released, answered ones settled."""
        try:
            await asyncio.to_thread(self.server.initialize)
        except Exception as exc:
            raise GateUnavailable(f"the facilitator at {self.settings.facilitator_url} did not answer /supported "
                                  f"({type(exc).__name__}: {str(exc)[:200]}): start it, or fix "
                                  f"gateway.facilitator_url") from None
        for sale in self.sales.unanswered():
            self.sales.released(sale.nonce, "the daemon stopped before answering")
        for sale in self.sales.unsettled():
            admitted = self._readmit(sale)
            if admitted is not None:
                self.reserved[admitted.payer] += admitted.amount
                self._settle_later(admitted)
        self.sales.forget_answers(self.clock())
        await self.sales.commit()

    async def stop(self, grace: float = 10.0) -> None:
        """Let settlements under way finish (bounded); those cut short are settled at the next start."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=grace)
        for task in set(self._settling):
            task.cancel()

    def requirements(self, amount: int) -> PaymentRequirements:
        found = self._requirements.get(amount)
        if found is None:
            s = self.settings
            price = AssetAmount(amount=str(amount), asset=s.asset, extra={"name": s.asset_name,
                                                                             "version": s.asset_version})
            (found,) = self.server.build_payment_requirements(ResourceConfig(
                scheme="exact", pay_to=s.pay_to, price=price, network=s.network,
                max_timeout_seconds=s.validity_seconds))
            if len(self._requirements) > 4_096:
                self._requirements.clear()
            self._requirements[amount] = found
        return found

    async def payment_required(self, url: str, amount: int, error: str,
                               description: str) -> tuple[dict[str, str], dict[str, Any]]:
        """The 402's headers and JSON body: x402 v2 requirements with the payment-identifier extension."""
        required = await self.server.create_payment_required_response(
            [self.requirements(amount)], ResourceInfo(url=url, description=description, mime_type="application/json"),
            error=error, extensions={PAYMENT_IDENTIFIER: declaration()})
        return {"PAYMENT-REQUIRED": encode_payment_required_header(required)}, {"error": error}

    async def admit(self, header: str, amount: int, route: str, body_hash: str) -> Admission | Replay | Refusal:
        """A paid call's payment, checked, verified and claimed; or the stored answer; or the refusal."""
        try:
            payload = decode_payment_signature_header(header)
        except Exception as exc:  # whatever a hostile header makes the SDK's models do
            return Refusal(402, f"the PAYMENT-SIGNATURE header is not an x402 payment ({type(exc).__name__}): "
                                f"pay the requirements of this route's 402")
        if not isinstance(payload, PaymentPayload):
            return Refusal(402, "this gateway takes x402 v2 payments (the PAYMENT-SIGNATURE header), not v1")
        auth = _authorization(payload)
        if isinstance(auth, str):
            return Refusal(402, auth)
        payer, nonce, value, valid_before = auth
        fingerprint = hashlib.sha256(json.dumps(payload.model_dump(mode="json", by_alias=True), sort_keys=True)
                                     .encode() + b"\n" + body_hash.encode()).hexdigest()
        identifier = identifier_of(payload.extensions)
        if identifier is not None:
            while (running := self._in_flight.get(identifier)) is not None:
                await asyncio.shield(running)  # the first send's answer, once it has one
            kept = self.sales.by_identifier(identifier)
            if kept is not None:
                if kept.fingerprint != fingerprint:
                    return Refusal(409, f"payment identifier {identifier} was used for another payment or another "
                                        f"request body: use a new identifier for a new call")
                if kept.body is None or kept.state == SalePayment.VERIFIED:
                    return Refusal(409, f"payment identifier {identifier} has no answer to give back")
                return Replay(kept.status or 200, kept.body, kept.headers)
        if self.sales.by_nonce(nonce) is not None:
            return Refusal(402, "this payment was already used for a call: sign a new one (or send the same "
                                "payment identifier with the same body to get that call's answer again)")
        terms = self._terms(payload, payer, value, valid_before, amount)
        if terms is not None:
            return Refusal(402, terms)
        limit = self._limits(payer, amount)
        if limit is not None:
            return limit
        requirements = self.requirements(value)
        self._admitting[payer] += value  # the daily cap sees it until the sale is on record
        admitting = True
        reserving = False
        admitted = False
        stamp = self.clock()
        self._recent.setdefault(payer, collections.deque()).append(stamp)  # counted now: concurrent calls see it
        done: asyncio.Future[None] | None = None
        if identifier is not None:
            done = self._in_flight[identifier] = asyncio.get_running_loop().create_future()
        try:
            refused = await self._balance_covers(payer, value)
            if refused is not None:
                return refused
            self.reserved[payer] += value  # checked and reserved in one step: later calls of this payer see it
            reserving = True
            try:
                verified = await self.server.verify_payment(payload, requirements)
            except Exception as exc:  # the facilitator is down or refused: no service, nothing settled
                log.warning("gateway: the facilitator could not verify a payment: %s", str(exc)[:300])
                return Refusal(402, f"the payment could not be verified now ({type(exc).__name__}): try again")
            if not verified.is_valid:
                return Refusal(402, f"the facilitator refused the payment: {verified.verify.invalid_reason}")
            taken = self.sales.claim(nonce, payer, value, route, identifier, fingerprint if identifier else None,
                                     valid_before, header, self.clock())
            self._admitting[payer] -= value
            admitting = False
            if taken is not None:
                return Refusal(402, "this payment was already used for a call: sign a new one")
            await self.sales.commit()  # on record before the model is asked: one payment, one call
            admitted = True
            return Admission(payload, requirements, header, payer, nonce, value, valid_before, identifier)
        finally:
            if not admitted:
                if reserving:
                    self._unreserve(payer, value)
                self._done(identifier, done)
                with contextlib.suppress(ValueError):
                    self._recent[payer].remove(stamp)
            if admitting:
                self._admitting[payer] -= value
            if self._admitting[payer] <= 0:
                del self._admitting[payer]

    async def deliver(self, a: Admission, status: int, body: bytes, headers: dict[str, str]) -> None:
        """The call was answered: keep the answer (for its identifier), then settle off the caller's path."""
        self.sales.answered(a.nonce, status, body, headers)
        try:
            await self.sales.commit()
        finally:
            self._done(a.identifier, self._in_flight.get(a.identifier or ""))
        self._settle_later(a)

    async def release(self, a: Admission, why: str) -> None:
        """The call failed: nothing is settled, the payment is the payer's to use again."""
        self.sales.released(a.nonce, why)
        try:
            await self.sales.commit()
        finally:
            self._unreserve(a.payer, a.amount)
            self._done(a.identifier, self._in_flight.get(a.identifier or ""))

    @staticmethod
    def result_id(a: Admission) -> bytes:
        """An analysis's id: from the payment (payer, nonce), so one payment buys one answer."""
        return keccak(encode(["string", "address", "bytes32"], ["oracle-gateway", a.payer, bytes.fromhex(a.nonce[2:])]))

    # ------------------------------------------------------------------------------------ checks

    def _terms(self, payload: PaymentPayload, payer: str, value: int, valid_before: int, amount: int) -> str | None:
        """Our terms, before the facilitator sees the payment: None when they are met, else what to fix."""
        s = self.settings
        accepted = payload.accepted
        if accepted.scheme != "exact":
            return f"scheme {accepted.scheme!r} is not taken here: pay with scheme exact"
        if accepted.network != s.network:
            return f"the payment is on network {accepted.network}; this gateway is paid on {s.network}"
        if accepted.asset.lower() != s.asset.lower():
            return f"the payment is in asset {accepted.asset}; this gateway is paid in {s.asset}"
        if accepted.pay_to.lower() != s.pay_to.lower() or not isinstance(payload.payload, dict):
            return f"the payment is to {accepted.pay_to}; this gateway is paid to {s.pay_to}"
        to = payload.payload["authorization"].get("to", "")
        if not isinstance(to, str) or to.lower() != s.pay_to.lower():
            return f"the authorization pays {str(to)[:42]}; this gateway is paid to {s.pay_to}"
        if str(value) != accepted.amount:
            return "the authorization's value differs from the amount accepted"
        if value < amount:
            return f"the payment is {value}; this call costs {amount} (base units of {s.asset})"
        left = valid_before - self.clock()
        if left <= 0:
            return "the payment's authorization has expired: sign a new one"
        if left < s.answer_timeout + SETTLE_MARGIN:
            return (f"the payment's authorization expires in {left:.0f} s, too soon to answer and settle: "
                    f"sign one valid for at least {s.answer_timeout + SETTLE_MARGIN:.0f} s")
        return None

    def _limits(self, payer: str, amount: int) -> Refusal | None:
        now = self.clock()
        until = self._cooldown.get(payer, 0.0)
        if until > now:
            return Refusal(402, f"a settlement of an earlier payment from {payer} failed: this payer is refused "
                                f"for {until - now:.0f} s more", int(until - now) + 1)
        recent = self._recent.setdefault(payer, collections.deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= self.settings.rate_per_minute:
            wait = int(recent[0] + 60 - now) + 1
            return Refusal(429, f"{payer} made {len(recent)} paid calls in the last minute, the most allowed: "
                                f"try again in {wait} s", wait)
        day_start = now - now % DAY
        spent = self.sales.spent_since(payer, day_start, in_flight=True) + self._admitting[payer]
        if spent + amount > self.settings.daily_cap:
            wait = int(day_start + DAY - now) + 1
            return Refusal(429, f"{payer} has spent {spent} of its daily cap of {self.settings.daily_cap} today "
                                f"(UTC); this call costs {amount}: try again after midnight UTC", wait)
        return None

    async def _balance_covers(self, payer: str, value: int) -> Refusal | None:
        """Does the payer's balance cover every payment of theirs already reserved, and `value` more?

        Compared with the reservations as they stand once the balance is read, and the caller reserves
        `value` with no await in between: calls that reached this point together are counted in the order
        they pass it, and none is refused for one that is refused too. A settlement of the payer's that
        finished during the read may have freed its reservation after the node read the balance from
        before it: then the balance is read again, so spent money is never counted twice as there."""
        for _ in range(3):
            settled = self._settled[payer]
            try:
                raw = await self._node.call("eth_call", [{"to": self.settings.asset, "data": "0x" + (
                    _BALANCE_OF + encode(["address"], [payer])).hex()}, "latest"])
                balance = int(raw, 16)
            except (RpcError, RpcUnavailable, ValueError, TypeError) as exc:
                return Refusal(402, f"the payer's balance could not be read now ({type(exc).__name__}): try again")
            if self._settled[payer] == settled:
                break
        else:
            return Refusal(402, "the payer's balance keeps moving while it is read: try again")
        need = self.reserved[payer] + value
        if balance < need:
            return Refusal(402, f"insufficient balance: {payer} holds {balance}, and its calls being answered "
                                f"with this one need {need}")
        return None

    # ------------------------------------------------------------------------------------ settling

    def _settle_later(self, a: Admission) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(a))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, a: Admission) -> None:
        """Settle until it is settled, refused, or its authorization runs out; then free its reservation."""
        why = ""
        try:
            async with self._settle_slots:
                delay = 1.0
                while True:
                    try:
                        settled = await self.server.settle_payment(a.payload, a.requirements)
                    except Exception as exc:  # the facilitator did not answer: try again while it can settle
                        settled = None
                        why = f"{type(exc).__name__}: {str(exc)[:200]}"
                    if settled is not None and settled.success:
                        self.sales.settled(a.nonce, settled.transaction)
                        self._settled[a.payer] += 1
                        return
                    if settled is not None and settled.error_reason != "settlement_pending":
                        why = f"{settled.error_reason}: {settled.error_message or ''}".strip(": ")
                        break
                    if self.clock() + delay >= a.valid_before:
                        why = why or "still pending when its authorization expired"
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 15.0)
            self.sales.failed(a.nonce, why)
            self._cooldown[a.payer] = self.clock() + self.settings.settle_failure_cooldown
            log.warning("gateway: payment %s from %s did not settle (%s): the payer is refused for %.0f s",
                        a.nonce, a.payer, why, self.settings.settle_failure_cooldown,
                        extra={"fields": {"payer": a.payer, "nonce": a.nonce, "reason": why}})
        finally:
            self._unreserve(a.payer, a.amount)
            with contextlib.suppress(Exception):
                await self.sales.commit()

    def _readmit(self, sale: Sale) -> Admission | None:
        try:
            payload = decode_payment_signature_header(sale.header)
        except Exception:
            return None
        if not isinstance(payload, PaymentPayload):
            return None
        return Admission(payload, self.requirements(sale.amount), sale.header, sale.payer, sale.nonce, sale.amount,
                         sale.valid_before, sale.identifier)

    def _unreserve(self, payer: str, amount: int) -> None:
        self.reserved[payer] -= amount
        if self.reserved[payer] <= 0:
            del self.reserved[payer]

    def _done(self, identifier: str | None, future: asyncio.Future[None] | None) -> None:
        if identifier is not None and future is not None and self._in_flight.get(identifier) is future:
            del self._in_flight[identifier]
            if not future.done():
                future.set_result(None)


class GateUnavailable(Exception):
    """The gateway cannot take payments (its facilitator does not answer at start)."""


def _authorization(payload: PaymentPayload) -> tuple[str, str, int, int] | str:
    """(payer, nonce, value, validBefore) of an EIP-3009 payment, or what is wrong with it."""
    body = payload.payload if isinstance(payload.payload, dict) else {}
    auth = body.get("authorization")
    if not isinstance(auth, dict):
        return "the payment carries no EIP-3009 authorization (scheme exact pays by transferWithAuthorization)"
    try:
        payer = to_checksum_address(str(auth["from"]))
        nonce = str(auth["nonce"]).lower()
        value = int(str(auth["value"]))
        valid_before = int(str(auth["validBefore"]))
        if len(nonce) != 66 or not nonce.startswith("0x"):
            raise ValueError("nonce")
        bytes.fromhex(nonce[2:])
    except (KeyError, ValueError, TypeError):
        return "the payment's authorization is malformed (from, value, validBefore, nonce)"
    return payer, nonce, value, valid_before
