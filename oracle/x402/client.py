"""`PayingClient`: an aiohttp POST that pays an HTTP 402 over x402, at most once per attempt.

    reply = await client.post(url, body, headers, timeout, PaymentContext(key, requester, attempt, allowance),
                              pin, provider)

On a 402 the requirements are read (v2 `PAYMENT-REQUIRED` header, or v1 JSON body), the policy picks
an offer or refuses, the ledger reserves it against the budgets, the SDK signs the EIP-3009
authorization, and the header is stored (committed) before the paid request is sent. Every refusal
is stored as a `rejected` row with its reason and nothing signed. A transport error after sending
re-sends the stored header, never a new signature; a payment whose fate stays unknown is left to the
reconciler. The settlement answer (`PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE`) is recorded: settled
with its transaction; any other answer (failed, `settlement_pending`) leaves it unknown until the
token's records say whether money moved. Only a paid request refused before settlement (its first
send answered 402 without a settlement) is rejected outright.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from x402.http.constants import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    X_PAYMENT_HEADER,
    X_PAYMENT_RESPONSE_HEADER,
)
from x402.http.utils import (
    decode_payment_required_header,
    decode_payment_response_header,
    encode_payment_signature_header,
)
from x402.mechanisms.evm.exact.client import ExactEvmScheme
from x402.mechanisms.evm.exact.v1.client import ExactEvmSchemeV1
from x402.schemas import PaymentPayload, PaymentRequired, SettleResponse
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequiredV1, PaymentRequirementsV1

from oracle.config import X402Pin, X402Settings
from oracle.results import load_untrusted_json
from oracle.store import Payment, Payments, PaymentState
from oracle.x402.identifier import declared, new_identifier, with_identifier
from oracle.x402.network import NetworkError, PaymentNetworks
from oracle.x402.policy import Offer, choose, offered_domain, offers
from oracle.x402.signer import DomainMismatch, domain_separator
from oracle.x402.wallet import PaymentWallet

P = PaymentState
# a payment whose signature is on record: an attempt that has one re-sends it, never signs anew
RESUMABLE = (P.SIGNED, P.SENT, P.UNKNOWN, P.SETTLED)
# a payment whose signature was handed over: what the provider says (or no answer) moves it
HANDED_OVER = (P.SENT, P.UNKNOWN, P.SETTLED)


@dataclass(frozen=True)
class PaymentContext:
    request_key: str
    requester: str  # the on-chain requester, for its budget
    attempt_id: int
    # The request's allowance, in the asset's base units: a hard cap on the sum of the request's payments
    # that may have moved money (each at its full amount, this one included).
    max_amount: int
    # The most this one payment may be (what the router reserved for the call); None: the allowance.
    call_max: int | None = None


class Paid(enum.StrEnum):
    """What became of a call's payment, as the router needs to know it (it never reads the ledger)."""

    NONE = "none"  # no 402: the call was free
    PAID = "paid"  # paid, or its stored signature sent again: the reply is the provider's answer
    REFUSED = "refused"  # a 402 this client will not pay (policy, a malformed 402, a dead signature)
    BUDGET = "budget"  # a 402 a budget or the cap on unresolved payments stops
    # a payment sent before (e.g. before a restart) was refused now: its nonce may be spent with the
    # answer lost; a new attempt pays anew, this one is left to the reconciler
    RESENT = "resent"


@dataclass
class PaidReply:
    status: int
    headers: Mapping[str, str]
    raw: bytes
    outcome: Paid = Paid.NONE
    payment: Payment | None = None  # the ledger's row for it (this package's own checks read it)
    detail: str = ""  # why a 402 was not paid

    @property
    def payment_id(self) -> int | None:
        return self.payment.id if self.payment is not None else None

    @property
    def cost(self) -> int | None:
        """What the call paid or may have paid (a settled or unresolved payment), in the asset's base units."""
        if self.payment is None or self.payment.state not in (P.SETTLED, P.UNKNOWN):
            return None
        return self.payment.amount


class PaymentRefused(Exception):
    """A 402 that will not be paid: policy, budget or a malformed answer."""


class PayingClient:
    def __init__(self, session: aiohttp.ClientSession, wallet: PaymentWallet, settings: X402Settings,
                 payments: Payments,
                 clock: Callable[[], float] = time.time,
                 resolve: Callable[[Payment], Awaitable[str]] | None = None,
                 networks: PaymentNetworks | None = None) -> None:
        self.session = session
        # The payment networks' nodes: the token's own EIP-712 domain (cached), the head before signing.
        self.networks = networks if networks is not None else PaymentNetworks(session, settings)
        # Looks a payment up on-chain at once when a re-sent one is refused (the reconciler's), so a
        # lost answer does not leave its payment unresolved until the next pass.
        self.resolve = resolve
        self.wallet = wallet
        self.settings = settings
        self.payments = payments
        self.clock = clock

    def payment_id(self, request_key: str, attempt_id: int) -> int | None:
        """The ledger row of an attempt's payment, if it has one (for the attempt's record)."""
        found = self.payments.payment_for(request_key, attempt_id)
        return found.id if found is not None else None

    def last_paid_attempt(self, request_key: str) -> int:
        """The highest attempt id of the request with a payment on record (0: none): new attempts go above."""
        return self.payments.request_payments(request_key)[1]

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float, ctx: PaymentContext,
                   pin: X402Pin, provider: str) -> PaidReply:
        """POST; pay a 402 if the policy and budgets allow. Transport errors before any payment raise
        (aiohttp.ClientError / TimeoutError) like a plain POST."""
        existing = self.payments.payment_for(ctx.request_key, ctx.attempt_id)
        if existing is not None and existing.header and existing.state in RESUMABLE:
            return await self._send_paid(url, body, headers, timeout, existing)  # resumed: the same signature
        if existing is not None and existing.header:  # expired: this attempt's signature is dead
            return PaidReply(402, {}, b"", Paid.RESENT, existing)
        if existing is not None and existing.state == P.RESERVED:
            # Reserved, never signed (the daemon stopped in between): a new attempt pays anew; the
            # reconciler releases this one.
            return PaidReply(402, {}, b"", Paid.RESENT, existing)
        if existing is not None:
            return PaidReply(402, {}, b"", Paid.REFUSED, existing, existing.error or f"payment {existing.state}")
        status, response_headers, raw = await self._post(url, body, headers, timeout)
        if status != 402:
            return PaidReply(status, response_headers, raw)
        prepared = await self.prepare(status, response_headers, raw, ctx, pin, provider)
        if isinstance(prepared, PaidReply):
            return prepared
        return await self._send_paid(url, body, headers, timeout, prepared)

    async def prepare(self, status: int, headers: Mapping[str, str], raw: bytes, ctx: PaymentContext, pin: X402Pin,
                      provider: str) -> Payment | PaidReply:
        """From a 402 to a signed payment on record (committed), or the refusal: the client's whole cost
        of paying (parse, policy, ledger reservation, signature), which `bench/x402.py` measures."""
        try:
            required = _requirements(headers, raw)
            limit = ctx.max_amount if ctx.call_max is None else min(ctx.max_amount, ctx.call_max)
            chosen = choose(offers(required), pin, self.settings, limit)
        except PaymentRefused as exc:
            return self._refuse(ctx, provider, pin, str(exc), status, headers, raw)
        except Exception as exc:  # whatever else a hostile 402 can make the SDK's models do
            return self._refuse(ctx, provider, pin, f"malformed 402: {type(exc).__name__}", status, headers, raw)
        if isinstance(chosen, str):
            return self._refuse(ctx, provider, pin, chosen, status, headers, raw)
        separator = await self._domain(chosen, pin)
        if isinstance(separator, str):
            return self._refuse(ctx, provider, pin, separator, status, headers, raw)
        draft = replace(_row(ctx, provider, chosen, self.wallet.address),
                        from_block=self.networks.known_head(chosen.network))
        reserved = self.payments.reserve(
            draft, self.clock(), self.settings.budget.window,
            {"total": self.settings.budget.total, "per_provider": self.settings.budget.per_provider,
             "per_requester": self.settings.budget.per_requester}, self.settings.max_unresolved,
            request_cap=ctx.max_amount)
        if isinstance(reserved, str):
            return self._refuse(ctx, provider, pin, reserved, status, headers, raw, budget=True)
        if reserved.state != P.RESERVED or reserved.header:  # this attempt already has a payment: never a second
            return PaidReply(status, headers, raw, Paid.RESENT, reserved)
        try:
            header, nonce, valid_before, identifier = self._sign(chosen, required, separator)
        except Exception as exc:  # whatever the SDK objects to in a hostile 402: nothing was signed
            why = str(exc) if isinstance(exc, DomainMismatch) else type(exc).__name__
            self.payments.transition(reserved.id, [P.RESERVED], P.EXPIRED, error=f"not signed: {why}"[:300])
            await self.payments.commit()
            return PaidReply(status, headers, raw, Paid.REFUSED, self.payments.payment(reserved.id),
                             f"cannot sign for this 402: {why}"[:300])
        self.payments.transition(reserved.id, [P.RESERVED], P.SIGNED, nonce=nonce, valid_before=valid_before,
                                 header=header, identifier=identifier)
        await self.payments.commit()  # the signature is on record before anyone can see it
        return replace(reserved, state=P.SIGNED, nonce=nonce, valid_before=valid_before, header=header,
                       identifier=identifier)

    async def _domain(self, offer: Offer, pin: X402Pin) -> bytes | str:
        """The token's own EIP-712 domain separator if the 402's domain builds exactly it; else why not.
        Signing for another domain (another token's name, a wrong version) would give the provider a
        signature the token rejects at best, and one valid elsewhere at worst."""
        domain = offered_domain(offer)
        if isinstance(domain, str):
            return f"cannot sign for this 402: {domain}"
        where = f"{offer.asset} on {offer.network}"
        if pin.domain_separator is not None:
            expected, source = bytes.fromhex(pin.domain_separator[2:]), "the deployment's pinned domain_separator"
        else:
            try:
                found = await self.networks.domain_separator(offer.network, offer.asset)
            except NetworkError as exc:
                return (f"cannot read the EIP-712 domain of {where} ({exc}); nothing signed: check "
                        "x402.networks' rpc_url, or pin domain_separator in this deployment's x402 table")[:300]
            if found is None:
                return (f"the token {where} publishes no EIP-712 domain (neither DOMAIN_SEPARATOR() nor "
                        "eip712Domain()); nothing signed: pin domain_separator in this deployment's x402 table")
            expected, source = found, "the token's own"
        name, version, chain_id, contract = domain
        if domain_separator(name, version, chain_id, contract) != expected:
            return (f"the 402's EIP-712 domain (name {name[:40]!r}, version {version[:20]!r}, chain {chain_id}) is "
                    f"not {source} for {where}; nothing signed: the provider must name the token's domain, or "
                    "fix domain_separator if the pin is wrong")[:300]
        return expected

    # ------------------------------------------------------------ steps

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str],
                    timeout: float) -> tuple[int, Mapping[str, str], bytes]:
        # No redirects: a paid call's headers (the payment itself, any key) never go to another origin.
        async with self.session.post(url, data=body, headers=headers, allow_redirects=False,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            return resp.status, resp.headers.copy(), await resp.read()

    def _sign(self, offer: Offer, required: PaymentRequired | PaymentRequiredV1,
              separator: bytes) -> tuple[str, str, int, str]:
        """(header value, nonce, validBefore, payment identifier or "") of a fresh EIP-3009 authorization
        for `offer`, signed only in the domain whose separator is `separator`. A provider that declares
        the payment-identifier extension gets an id with it: re-sending the same header later (a lost
        answer, a restart) then fetches the stored answer instead of paying again."""
        signer = self.wallet.signer.bound_to(separator)
        payload: PaymentPayload | PaymentPayloadV1
        identifier = ""
        if isinstance(offer.requirements, PaymentRequirementsV1):
            inner = ExactEvmSchemeV1(signer).create_payment_payload(offer.requirements.model_copy(deep=True))
            payload = PaymentPayloadV1(scheme=offer.scheme, network=offer.requirements.network, payload=inner)
        else:
            inner = ExactEvmScheme(signer).create_payment_payload(offer.requirements.model_copy(deep=True))
            resource = required.resource if isinstance(required, PaymentRequired) else None
            extensions = None
            if isinstance(required, PaymentRequired) and declared(required.extensions):
                assert required.extensions is not None
                identifier = new_identifier()
                extensions = with_identifier(required.extensions, identifier)
            payload = PaymentPayload(payload=inner, accepted=offer.requirements, resource=resource,
                                     extensions=extensions)
        authorization = inner["authorization"]
        return (encode_payment_signature_header(payload), str(authorization["nonce"]),
                int(authorization["validBefore"]), identifier)

    async def _send_paid(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float,
                         payment: Payment) -> PaidReply:
        name = PAYMENT_SIGNATURE_HEADER if payment.version == 2 else X_PAYMENT_HEADER
        first_send = payment.state == P.SIGNED
        if first_send:
            self.payments.transition(payment.id, [P.SIGNED], P.SENT)
            await self.payments.commit()
        last: Exception | None = None
        for attempt in range(2):  # a dropped connection: once more with the same header
            try:
                status, response_headers, raw = await self._post(url, body, {**headers, name: payment.header},
                                                                  timeout)
                first_send = first_send and attempt == 0
                break
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = exc
        else:
            self.payments.transition(payment.id, HANDED_OVER, P.UNKNOWN, error=f"{type(last).__name__}: {last}"[:300])
            await self.payments.commit()
            assert last is not None
            raise last
        # Not committed here: the caller stores the answer in the same transaction (no await in between),
        # so a crash cannot keep the settlement and lose the answer it paid for.
        self._record(payment, status, response_headers, raw, first_send)
        spent = status == 402 and not first_send
        if spent and self.resolve is not None:
            row = self.payments.payment(payment.id)
            if row is not None and row.state == P.UNKNOWN:
                await self.resolve(row)
                await self.payments.commit()
        return PaidReply(status, response_headers, raw, Paid.RESENT if spent else Paid.PAID,
                         self.payments.payment(payment.id))

    def _record(self, payment: Payment, status: int, headers: Mapping[str, str], raw: bytes,
                first_send: bool) -> None:
        """What the provider says became of the payment. Anything but a settlement leaves it unknown:
        a 402 to a header sent before may mean the first send settled it, and a refused signature stays
        usable until it expires; only the token can tell."""
        settle = _settlement(headers)
        delivered = 200 <= status < 300
        if settle is not None and settle.success:
            self.payments.transition(payment.id, HANDED_OVER, P.SETTLED, tx_hash=settle.transaction or "",
                                     delivered=int(delivered), error="" if delivered else f"HTTP {status}")
        elif settle is not None:
            # A failed or pending settlement may still have moved money (a first try that landed, a
            # transaction still in the pool): only the token's records can say; the reconciler reads them.
            self.payments.transition(payment.id, HANDED_OVER, P.UNKNOWN, tx_hash=settle.transaction or "",
                                     error=f"settlement: {settle.error_reason} {settle.error_message or ''}"[:300],
                                     delivered=int(delivered))
        elif status == 402:
            # Refused without a settlement; the signature stays valid until validBefore, so it counts
            # against the budgets until the reconciler sees it expire unused.
            reason = _error_of_402(headers, raw)
            self.payments.transition(payment.id, HANDED_OVER, P.UNKNOWN, error=f"paid request refused: {reason}"[:300])
        else:  # no word on settlement: the token's records will tell
            self.payments.transition(payment.id, HANDED_OVER, P.UNKNOWN,
                                     error=f"HTTP {status} without a settlement answer", delivered=int(delivered))

    def _refuse(self, ctx: PaymentContext, provider: str, pin: X402Pin, reason: str, status: int,
                headers: Mapping[str, str], raw: bytes, budget: bool = False) -> PaidReply:
        payment = self.payments.record_refused(ctx.request_key, ctx.attempt_id, provider, ctx.requester, pin.network,
                                               pin.asset, pin.pay_to, self.wallet.address, reason)
        return PaidReply(status, headers, raw, Paid.BUDGET if budget else Paid.REFUSED, payment, reason)


def _row(ctx: PaymentContext, provider: str, offer: Offer, payer: str) -> Payment:
    return Payment(0, ctx.request_key, ctx.attempt_id, provider, ctx.requester, offer.network, offer.asset,
                   offer.pay_to, offer.amount, payer, offer.version, "", 0, "", P.RESERVED, "", "", False)


def _requirements(headers: Mapping[str, str], raw: bytes) -> PaymentRequired | PaymentRequiredV1:
    """A 402's requirements: v2 from the PAYMENT-REQUIRED header, v1 from the JSON body."""
    header = _header(headers, PAYMENT_REQUIRED_HEADER)
    try:
        if header:
            return decode_payment_required_header(header)
        doc: Any = load_untrusted_json(raw) if raw else None
        if isinstance(doc, dict) and doc.get("x402Version") == 1:
            return PaymentRequiredV1.model_validate(doc)
    except Exception as exc:  # untrusted: base64, JSON and the SDK's models may each object in their way
        raise PaymentRefused(f"malformed 402: {type(exc).__name__}: {str(exc)[:200]}") from None
    raise PaymentRefused("a 402 without x402 payment requirements (out of credits?)")


def _settlement(headers: Mapping[str, str]) -> SettleResponse | None:
    value = _header(headers, PAYMENT_RESPONSE_HEADER) or _header(headers, X_PAYMENT_RESPONSE_HEADER)
    if not value:
        return None
    try:
        return decode_payment_response_header(value)
    except (ValueError, TypeError):
        return None


def _error_of_402(headers: Mapping[str, str], raw: bytes) -> str:
    try:
        required = _requirements(headers, raw)
    except PaymentRefused as exc:
        return str(exc)
    return str(getattr(required, "error", "") or "no reason given")


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return str(value)
    return ""


