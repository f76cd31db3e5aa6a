"""`PaymentGate`: the server side of x402 for the gateway's paid routes, on the SDK's resource-server core.

    gate = PaymentGate(settings, session, store.sales)
    await gate.start()
    headers, body = await gate.payment_required(url, amount, "payment required")   # -> HTTP 402
    admitted = await gate.admit(header, amount, route, body_hash)   # Admission | Replay | Refusal
    ... answer the call ...
    settled = await gate.deliver(admitted, status, body, headers, wait=False)   # kept
    ... send the answer, then: gate.settle_later(admitted)
    await gate.release(admitted, "why", cost)    # the call failed: nothing is settled

A payment is checked on our terms before the facilitator sees it (x402 v2, scheme exact, this network,
asset and payTo, at least the call's price, a validity window that leaves time to answer and settle and
is no longer than ours), then verified by the facilitator; only then does the payer's address count
(limits, reservations), so a forged payment cannot move another payer's figures. Its nonce is claimed
in the store (committed) before the model runs, so one payment buys one call. While verified and not
settled its amount is held against the payer's on-chain balance: concurrent calls cannot promise more
than the wallet holds. It is settled after a successful answer: off the caller's path (`wait=False`,
chat) or before the answer is handed over (`wait=True`, signed analyses, which are worth money
on-chain). A payer whose payment the facilitator refused to settle is refused for
`settle_failure_cooldown` (from the store after a restart too).

A call that fails is not settled; its sale is kept as released, with what the models it asked cost the
operator (counted against the payer's daily cap), and its payment may be sent again for that same call
(same payload and body) only. The payment-identifier extension is declared in every 402: a payment
carrying an id binds the id to its payload and the call's body: the same id, payload and body get the
stored answer again (no second settlement; a resend during the first call waits for it), the id with
another payload or body HTTP 409. Answers are kept until the authorization's validBefore plus ten
minutes. A payment already used without an id is refused (402).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
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
from oracle.x402.payers import DAY, Payers, Refusal

log = logging.getLogger(__name__)
_AUTHORIZATION_STATE = keccak(text="authorizationState(address,bytes32)")[:4]
_DECIMALS = keccak(text="decimals()")[:4]
SETTLE_MARGIN = 15  # seconds a payment must stay valid after the longest answer, to be settled
CLOCK_SKEW = 60  # seconds a payer's clock may be ahead of ours
# Settlements asked of the facilitator at once: each mostly waits for its block, so many overlap.
SETTLE_SLOTS = 64
G = SalePayment
# A stored answer is given again only for a sale that answered and has not failed to settle.
_REPLAYABLE = (G.ANSWERED, G.SETTLED)


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
    route_key: str  # what the router records this call's model calls under


class PaymentGate:
    def __init__(self, settings: GatewaySettings, session: aiohttp.ClientSession, sales: Sales,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.sales = sales
        self.clock = clock
        self.facilitator = FacilitatorHttp(str(settings.facilitator_url), session)
        self.server = x402ResourceServer(self.facilitator)
        register_exact_evm_server(self.server, settings.network)
        self.payers = Payers(settings.rate_per_minute, settings.daily_cap, settings.settle_failure_cooldown, clock)
        self._node = ChainClient(session, str(settings.rpc_url), 10.0)
        self._requirements: dict[int, PaymentRequirements] = {}
        self._in_flight: dict[str, asyncio.Future[None]] = {}  # payment identifier -> done when answered
        self._settling: set[asyncio.Task[bool]] = set()
        self._settle_slots = asyncio.Semaphore(SETTLE_SLOTS)

    async def start(self) -> None:
        """Ask the facilitator what it supports (once) and the asset its decimals, and take up what a stop
        left: verified calls that never answered are released, answered ones settled, payers whose
        settlement failed lately refused for the rest of their cooldown."""
        s = self.settings
        try:
            await self.facilitator.load_supported()
            self.server.initialize()
        except Exception as exc:
            raise GateUnavailable(f"the facilitator at {s.facilitator_url} did not answer /supported "
                                  f"({type(exc).__name__}: {str(exc)[:200]}): start it, or fix "
                                  f"gateway.facilitator_url") from None
        try:
            decimals = int.from_bytes(await self._node.eth_call(s.asset, _DECIMALS), "big")
        except (RpcError, RpcUnavailable) as exc:
            raise GateUnavailable(f"gateway.rpc_url {s.rpc_url} could not say the asset's decimals ({exc}): fix "
                                  f"gateway.rpc_url or gateway.asset") from None
        if decimals != 6:
            raise GateUnavailable(f"gateway.asset {s.asset} has {decimals} decimals: prices are in micro-USD, so "
                                  f"the gateway takes a 6-decimal USD token (USDC)")
        for sale in self.sales.unanswered():
            self.sales.released(sale.nonce, "the daemon stopped before answering", 0)
        for sale in self.sales.unsettled():
            admitted = self._readmit(sale)
            if admitted is not None:
                self.payers.reserve(admitted.payer, admitted.amount)
                self.settle_later(admitted)
        for payer, failed_at in self.sales.failed_since(self.clock() - s.settle_failure_cooldown).items():
            self.payers.refuse(payer, failed_at + s.settle_failure_cooldown)
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
        parsed = _parse(header)
        if isinstance(parsed, Refusal):
            return parsed
        payload, (payer, nonce, value, valid_before) = parsed
        # The payment as sent (a resend is the same header, byte for byte) and the call's body.
        fingerprint = hashlib.sha256(header.strip().encode() + b"\n" + body_hash.encode()).hexdigest()
        identifier = identifier_of(payload.extensions)
        if identifier is not None:
            while (running := self._in_flight.get(identifier)) is not None:
                await asyncio.shield(running)  # the first send's answer, once it has one
            kept = self.sales.by_identifier(identifier)
            if kept is not None and kept.fingerprint != fingerprint:
                return Refusal(409, f"payment identifier {identifier} was used for another payment or another "
                                    f"request body: use a new identifier for a new call")
            if kept is not None and kept.state == G.FAILED:
                return Refusal(402, "that call's payment did not settle, so its answer is not given: pay anew")
            if kept is not None and kept.state in _REPLAYABLE and kept.body is not None:
                return Replay(kept.status or 200, kept.body, kept.headers)
        sale = self.sales.by_nonce(nonce)
        if sale is not None and not (sale.state == G.RELEASED and sale.fingerprint == fingerprint):
            if sale.state == G.RELEASED:
                return Refusal(402, "this payment was made for another call, which failed and was not charged: it "
                                    "may be sent again for that call only; sign a new one for this call")
            return Refusal(402, "this payment was already used for a call: sign a new one (or send the same "
                                "payment identifier with the same body to get that call's answer again)")
        terms = self._terms(payload, value, valid_before, amount)
        if terms is not None:
            return Refusal(402, terms)
        if len(self._settling) >= self.settings.max_unsettled:
            return Refusal(503, f"{len(self._settling)} answered calls are still being settled, the most this "
                                f"gateway lets stand: try again in a second", 1)
        requirements = self.requirements(value)
        done: asyncio.Future[None] | None = None
        if identifier is not None:
            done = self._in_flight[identifier] = asyncio.get_running_loop().create_future()
        admitted = claimed = False
        stamp: float | None = None
        reserved = False
        # Read while the facilitator verifies (a read moves no figure): one round trip off the call's path.
        balance = asyncio.ensure_future(self._read_balance(payer))
        try:
            try:
                verified = await self.server.verify_payment(payload, requirements)
            except Exception as exc:  # the facilitator is down or refused: no service, nothing settled
                log.warning("gateway: the facilitator could not verify a payment: %s", str(exc)[:300])
                return Refusal(402, f"the payment could not be verified now ({type(exc).__name__}): try again")
            if not verified.is_valid:
                return Refusal(402, f"the facilitator refused the payment: {verified.verify.invalid_reason}")
            # From here the payer is known to have signed: its figures may move.
            now = self.clock()
            limit = self.payers.check(payer, value, self.sales.spent_since(payer, now - now % DAY, in_flight=True))
            if limit is not None:
                return limit
            stamp = self.payers.admit(payer, value)
            refused = await self._balance_covers(payer, value, balance)
            if refused is not None:
                return refused
            self.payers.reserve(payer, value)  # checked and reserved in one step: later calls see it
            reserved = True
            # Taken meanwhile by a concurrent send of the same payment? Checked and claimed with no await between.
            if sale is not None:
                if not self.sales.reclaim(nonce, value, valid_before, now):
                    return Refusal(402, "this payment was already used for a call: sign a new one")
            elif self.sales.by_nonce(nonce) is not None:
                return Refusal(402, "this payment was already used for a call: sign a new one")
            else:
                self.sales.claim(nonce, payer, value, route, identifier, fingerprint, valid_before, header, now)
            claimed = True
            self.payers.on_record(payer, value)
            await self.sales.commit()  # on record before the model is asked: one payment, one call
            admitted = True
            on_record = self.sales.by_nonce(nonce)
            assert on_record is not None
            return Admission(payload, requirements, header, payer, nonce, value, valid_before, identifier,
                             on_record.route_key)
        finally:
            balance.cancel()  # done by now, unless the call was refused before it was needed
            if not admitted:
                if claimed:  # cancelled while committing: the sale goes back, so the payment can be sent again
                    self.sales.released(nonce, "the call was cancelled before it was asked", 0)
                if reserved:
                    self.payers.unreserve(payer, value)
                if stamp is not None:
                    self.payers.forget(payer, stamp)
                    if not claimed:
                        self.payers.on_record(payer, value)
                self._done(identifier, done)

    async def deliver(self, a: Admission, status: int, body: bytes, headers: dict[str, str], wait: bool) -> bool:
        """The call was answered: keep the answer (for its identifier). With `wait`, settle and return once
        settled (True) or not (False), holding resends of its identifier until then; else return at once
        (True), and the caller starts the settlement (`settle_later`) once the answer is on its way, so the
        settlement's work does not hold the answer up (a stop in between: the next start settles it)."""
        self.sales.answered(a.nonce, status, body, headers)
        try:
            await self.sales.commit()
        finally:
            if not wait:
                self._done(a.identifier, self._in_flight.get(a.identifier or ""))
        if not wait:
            return True
        try:
            return await asyncio.shield(self.settle_later(a))
        finally:
            self._done(a.identifier, self._in_flight.get(a.identifier or ""))

    async def release(self, a: Admission, why: str, cost: int) -> None:
        """The call failed: nothing is settled; `cost` (what the models asked cost the operator) counts
        against the payer's daily cap, and the payment may be sent again for this same call."""
        self.sales.released(a.nonce, why, cost)
        try:
            await self.sales.commit()
        finally:
            self.payers.unreserve(a.payer, a.amount)
            self._done(a.identifier, self._in_flight.get(a.identifier or ""))

    @staticmethod
    def result_id(a: Admission) -> bytes:
        """An analysis's id: from the payment (payer, nonce), so one payment buys one answer."""
        return keccak(encode(["string", "address", "bytes32"], ["oracle-gateway", a.payer, bytes.fromhex(a.nonce[2:])]))

    # ------------------------------------------------------------------------------------ checks

    def _terms(self, payload: PaymentPayload, value: int, valid_before: int, amount: int) -> str | None:
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
        if left > s.validity_seconds + CLOCK_SKEW:
            return (f"the payment's authorization is valid for {left:.0f} s, longer than this gateway's "
                    f"{s.validity_seconds} s (maxTimeoutSeconds): sign one valid for at most that")
        return None

    async def _read_balance(self, payer: str) -> tuple[int, int] | Refusal:
        """(what the payer's settlements had moved when the read began, its balance), or why it could not
        be read."""
        moved = self.payers.settlements[payer]
        try:
            return moved, await self._node.token_balance(self.settings.asset, payer)
        except (RpcError, RpcUnavailable, ValueError) as exc:
            return Refusal(402, f"the payer's balance could not be read now ({type(exc).__name__}): try again")

    async def _balance_covers(self, payer: str, value: int,
                              first: Awaitable[tuple[int, int] | Refusal]) -> Refusal | None:
        """Does the payer's balance (`first`, a read under way) cover every payment of theirs already
        reserved, and `value` more?

        Compared with the reservations as they stand once the balance is read, and the caller reserves
        `value` with no await in between: calls that reached this point together are counted in the order
        they pass it, and none is refused for one that is refused too. A settlement of the payer's that
        finished during the read freed its reservation, while the node may have read the balance from
        before it: what such settlements moved is taken off the balance read, so money just spent is never
        counted as still there (at worst a call is refused that the balance would have covered)."""
        read = await first
        if isinstance(read, Refusal):
            return read
        moved_before, balance = read
        available = balance - (self.payers.settlements[payer] - moved_before)
        need = self.payers.reserved[payer] + value
        if available < need:
            return Refusal(402, f"insufficient balance: {payer} holds {balance}, and its calls being answered "
                                f"with this one need {need}")
        return None

    # ------------------------------------------------------------------------------------ settling

    def settle_later(self, a: Admission) -> asyncio.Task[bool]:
        task = asyncio.get_running_loop().create_task(self._settle(a))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    async def _settle(self, a: Admission) -> bool:
        """Settle until it is settled, refused, or its authorization runs out; then free its reservation.
        Before a sale is called failed, the token is asked whether the authorization was used after all
        (a facilitator that settled and whose answer was lost); only a refusal by the facilitator, not its
        silence, puts the payer in the cooldown."""
        why, refused = "", False
        settled_ok = False
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
                        settled_ok = True
                        return True
                    if settled is not None and settled.error_reason != "settlement_pending":
                        why = f"{settled.error_reason}: {settled.error_message or ''}".strip(": ")
                        refused = True
                        break
                    if self.clock() + delay >= a.valid_before:
                        why = why or "still pending when its authorization expired"
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 15.0)
            if await self._authorization_used(a):
                self.sales.settled(a.nonce, "")  # it moved: the transaction is the token's to show
                settled_ok = True
                return True
            self.sales.failed(a.nonce, why, self.clock())
            if refused:
                self.payers.refuse(a.payer)
            log.warning("gateway: payment %s from %s did not settle (%s)%s", a.nonce, a.payer, why,
                        f": the payer is refused for {self.settings.settle_failure_cooldown:.0f} s" if refused else "",
                        extra={"fields": {"payer": a.payer, "nonce": a.nonce, "reason": why}})
            return False
        finally:
            if settled_ok:
                self.payers.settled(a.payer, a.amount)
            else:
                self.payers.unreserve(a.payer, a.amount)
            with contextlib.suppress(Exception):
                await self.sales.commit()

    async def _authorization_used(self, a: Admission) -> bool:
        data = _AUTHORIZATION_STATE + encode(["address", "bytes32"], [a.payer, bytes.fromhex(a.nonce[2:])])
        try:
            return int.from_bytes(await self._node.eth_call(self.settings.asset, data), "big") != 0
        except (RpcError, RpcUnavailable):
            return False

    def _readmit(self, sale: Sale) -> Admission | None:
        parsed = _parse(sale.header)
        if isinstance(parsed, Refusal):
            return None
        return Admission(parsed[0], self.requirements(sale.amount), sale.header, sale.payer, sale.nonce,
                         sale.amount, sale.valid_before, sale.identifier, sale.route_key)

    def _done(self, identifier: str | None, future: asyncio.Future[None] | None) -> None:
        if identifier is not None and future is not None and self._in_flight.get(identifier) is future:
            del self._in_flight[identifier]
            if not future.done():
                future.set_result(None)


class GateUnavailable(Exception):
    """The gateway cannot take payments (its facilitator does not answer at start)."""


def _parse(header: str) -> tuple[PaymentPayload, tuple[str, str, int, int]] | Refusal:
    """The payment a PAYMENT-SIGNATURE header holds, with its authorization's figures, or the refusal."""
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
    return payload, auth


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
        if not 0 <= value < 2**256 or not 0 <= valid_before < 2**63:
            raise ValueError("range")
        if len(nonce) != 66 or not nonce.startswith("0x"):
            raise ValueError("nonce")
        bytes.fromhex(nonce[2:])
    except (KeyError, ValueError, TypeError):
        return "the payment's authorization is malformed (from, value, validBefore, nonce)"
    return payer, nonce, value, valid_before
