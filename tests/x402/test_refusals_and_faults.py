"""What the paying client refuses (nothing signed, a reason stored) and what it does when the payment path
fails (at most one settlement per attempt, counted on-chain; the ledger true after reconciliation; no
budget leaked)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from oracle.config import X402Pin
from oracle.devnet.harness import until
from oracle.devnet.loopback import LoopbackServer
from oracle.store import ForbiddenTransition, Payment, PaymentState, Store
from oracle.x402 import Paid, PaymentContext
from oracle.x402.reconciler import PAID_WITHOUT_DELIVERY, Reconciler
from tests.x402.conftest import PRICE, X402Stack, paying_client

BODY = json.dumps({"model": "m-2026-01-01", "messages": [{"role": "user", "content": "hello"}],
                   "response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": {
                       "type": "object", "properties": {"value": {"type": "boolean"}}, "required": ["value"]}}}})
HEADERS = {"Content-Type": "application/json"}
_n = iter(range(10**6))


def _ctx(allowance: int = 1_000_000, requester: str = "0x" + "22" * 20) -> PaymentContext:
    return PaymentContext(f"31337:0xoracle:0x{next(_n) + 1000:064x}", requester, 1, allowance)


def _settlements(s: X402Stack) -> int:
    """Transfers from the payment wallet on-chain, whoever sent them."""
    usd = s.stack.contract("TestUSD")
    return len(usd.events.Transfer().get_logs(from_block=0, argument_filters={
        "from": s.stack.keys.payment_wallet.address}))


@pytest.fixture(autouse=True)
def _reset(x402_stack: X402Stack) -> Iterator[None]:
    yield
    x402_stack.paywall.knobs.settle_then_500 = x402_stack.paywall.knobs.drop_after_settle = False
    x402_stack.facilitator.knobs.down = x402_stack.facilitator.knobs.fail_settle = False
    x402_stack.facilitator.knobs.pending = False
    x402_stack.paywall.knobs.hold_paid = 0.0
    x402_stack.paywall.payment_identifier = True
    x402_stack.paywall.set_price(PRICE)


async def _pay(s: X402Stack, store: Store, ctx: PaymentContext | None = None, pin: X402Pin | None = None,
               url: str | None = None, **settings: Any) -> Any:
    async with paying_client(s, store, **settings) as client:
        return await client.post(url or f"{s.model.base_url}/chat/completions", BODY.encode(), HEADERS, 30,
                                 ctx or _ctx(), pin or s.pin, "local")


# ---------------------------------------------------------------- refusals: nothing signed, a reason stored


def _refused(reply: Any, words: str) -> None:
    assert reply.status == 402 and words in reply.detail, reply.detail
    assert reply.payment is not None and reply.payment.state == "rejected" and words in reply.payment.error
    assert reply.payment.nonce == "" and reply.payment.header == ""  # nothing was signed


@pytest.mark.parametrize(("settings", "words"), [
    ({"max_payment": PRICE - 1}, "per-payment cap"),
    ({"max_validity_seconds": 60}, "validity window"),
])
async def test_policy_refusals(x402_stack: X402Stack, store: Store, settings: dict[str, Any], words: str) -> None:
    before = _settlements(x402_stack)
    _refused(await _pay(x402_stack, store, **settings), words)
    assert _settlements(x402_stack) == before


async def test_a_price_above_the_request_allowance_is_refused(x402_stack: X402Stack, store: Store) -> None:
    _refused(await _pay(x402_stack, store, _ctx(allowance=PRICE - 1)), "allowance")


@pytest.mark.parametrize(("field", "words"), [("pay_to", "payTo"), ("asset", "asset"), ("network", "network")])
async def test_anything_but_the_pinned_destination_is_refused(x402_stack: X402Stack, store: Store, field: str,
                                                              words: str) -> None:
    other = {"pay_to": "0x" + "99" * 20, "asset": "0x" + "98" * 20, "network": "eip155:8453"}[field]
    pin = x402_stack.pin.model_copy(update={field: other})
    networks = [{"network": n, "rpc_url": x402_stack.stack.rpc_url} for n in {x402_stack.network, pin.network}]
    _refused(await _pay(x402_stack, store, pin=pin, networks=networks), words)


async def test_an_unconfigured_network_is_refused(x402_stack: X402Stack, store: Store) -> None:
    _refused(await _pay(x402_stack, store, networks=[{"network": "eip155:1", "rpc_url": "http://127.0.0.1:9"}]),
             "not configured")


@pytest.mark.parametrize(("budget", "words"), [
    ({"total": PRICE * 2, "per_provider": 10**9, "per_requester": 10**9}, "total budget"),
    ({"total": 10**9, "per_provider": PRICE * 2, "per_requester": 10**9}, "per_provider budget"),
    ({"total": 10**9, "per_provider": 10**9, "per_requester": PRICE * 2}, "per_requester budget"),
])
async def test_budgets_are_rolling_and_refuse_beyond(x402_stack: X402Stack, store: Store, budget: dict[str, int],
                                                     words: str) -> None:
    for _ in range(2):
        assert (await _pay(x402_stack, store, budget=budget)).status == 200
    reply = await _pay(x402_stack, store, budget=budget)
    _refused(reply, words)
    assert reply.outcome == Paid.BUDGET


async def test_too_many_unresolved_payments_are_refused(x402_stack: X402Stack, store: Store) -> None:
    x402_stack.facilitator.knobs.pending = True  # settled, but reported as not final: unresolved
    first = await _pay(x402_stack, store, max_unresolved=1)
    assert first.payment.state == "unknown"
    _refused(await _pay(x402_stack, store, max_unresolved=1), "unresolved")


class _Hostile(LoopbackServer):
    """A 'provider' whose 402 answers are broken or not x402 at all."""

    def __init__(self, header: str | None, body: bytes) -> None:
        super().__init__()
        self.header, self.body = header, body

    def app(self) -> web.Application:
        app = web.Application()

        async def answer(request: web.Request) -> web.Response:
            headers = {"PAYMENT-REQUIRED": self.header} if self.header is not None else {}
            return web.Response(status=402, body=self.body, headers=headers, content_type="application/json")

        app.router.add_post("/v1/chat/completions", answer)
        return app


@pytest.mark.parametrize(("header", "body", "words"), [
    ("not base64 !!", b"{}", "malformed 402"),
    (base64.b64encode(b'{"x402Version": 2, "accepts": "nope"}').decode(), b"{}", "malformed 402"),
    (base64.b64encode(b"[" * 5000).decode(), b"{}", "malformed 402"),
    (None, b'{"x402Version": 1, "accepts": [{"scheme": "exact"}]}', "malformed 402"),
    (None, b'{"error": {"message": "You exceeded your current quota"}}', "without x402"),
])
async def test_hostile_402_answers_are_refused(x402_stack: X402Stack, store: Store, header: str | None, body: bytes,
                                               words: str) -> None:
    server = _Hostile(header, body).start()
    try:
        reply = await _pay(x402_stack, store, url=f"http://127.0.0.1:{server.port}/v1/chat/completions")
    finally:
        server.stop()
    _refused(reply, words)


# ---------------------------------------------------------------- faults


async def _reconcile(s: X402Stack, store: Store, clock: float | None = None) -> Any:
    async with aiohttp.ClientSession() as session:
        reconciler = Reconciler(store.payments, s.settings(), session, stale_after=0,
                                clock=(lambda: clock) if clock is not None else time.time)
        return await reconciler.run_once()


async def test_facilitator_down_pays_nothing_and_holds_no_budget(x402_stack: X402Stack, store: Store) -> None:
    x402_stack.facilitator.knobs.down = True
    before = _settlements(x402_stack)
    budget = {"total": PRICE, "per_provider": PRICE, "per_requester": PRICE}
    reply = await _pay(x402_stack, store, budget=budget)
    # The signature was refused, but it stays usable until validBefore: counted until it expires unused.
    assert reply.status == 402 and reply.payment.state == "unknown" and "verification failed" in reply.payment.error
    assert _settlements(x402_stack) == before
    x402_stack.facilitator.knobs.down = False
    assert (await _pay(x402_stack, store, budget=budget)).outcome == Paid.BUDGET
    assert (await _reconcile(x402_stack, store, clock=time.time() + 600)).expired == 1
    assert (await _pay(x402_stack, store, budget=budget)).status == 200  # its budget was given back


async def test_a_failed_settlement_holds_its_budget_until_the_token_says_it_expired(x402_stack: X402Stack,
                                                                                    store: Store) -> None:
    x402_stack.facilitator.knobs.fail_settle = True
    before = _settlements(x402_stack)
    budget = {"total": PRICE, "per_provider": PRICE, "per_requester": PRICE}
    reply = await _pay(x402_stack, store, budget=budget)
    assert reply.status == 402 and reply.payment.state == "unknown" and "unexpected_settle_error" in reply.payment.error
    assert _settlements(x402_stack) == before
    x402_stack.facilitator.knobs.fail_settle = False
    assert (await _pay(x402_stack, store, budget=budget)).outcome == Paid.BUDGET  # counted as spent while unresolved
    assert (await _reconcile(x402_stack, store)).pending == 1  # unused, still valid
    report = await _reconcile(x402_stack, store, clock=time.time() + 600)  # past its validBefore
    assert report.expired == 1 and store.payments.payment(reply.payment.id).state == "expired"  # type: ignore[union-attr]
    again = await _pay(x402_stack, store, budget=budget)  # the budget it held is free again
    assert again.status == 200 and again.payment.state == "settled"


async def test_settlement_pending_is_resolved_by_the_reconciler(x402_stack: X402Stack, store: Store) -> None:
    x402_stack.facilitator.knobs.pending = True
    before = _settlements(x402_stack)
    reply = await _pay(x402_stack, store)
    assert reply.status == 200 and reply.payment.state == "unknown"
    report = await _reconcile(x402_stack, store)
    row = store.payments.payment(reply.payment.id)
    assert report.settled == 1 and row is not None and row.state == "settled" and row.delivered
    assert row.tx_hash and _settlements(x402_stack) == before + 1


async def test_settled_then_500_is_flagged_paid_without_delivery(x402_stack: X402Stack, store: Store) -> None:
    x402_stack.paywall.knobs.settle_then_500 = True
    before = _settlements(x402_stack)
    reply = await _pay(x402_stack, store)
    assert reply.status == 500 and reply.payment.state == "settled" and not reply.payment.delivered
    assert _settlements(x402_stack) == before + 1


async def test_a_dropped_connection_after_paying_without_payment_identifiers_is_flagged(x402_stack: X402Stack,
                                                                                        store: Store) -> None:
    x402_stack.paywall.knobs.drop_after_settle = True
    x402_stack.paywall.payment_identifier = False  # a provider that does not keep answers per payment
    before = _settlements(x402_stack)
    reply = await _pay(x402_stack, store)
    # The second send carried the same signature: its nonce was spent, so the paywall asked again; the
    # client did not sign anew, and left the payment for the token's records to decide.
    assert reply.status == 402 and reply.payment.state == "unknown"
    assert _settlements(x402_stack) == before + 1  # one settlement for the attempt
    report = await _reconcile(x402_stack, store)
    row = store.payments.payment(reply.payment.id)
    assert row is not None and row.state == "settled" and row.error == PAID_WITHOUT_DELIVERY
    assert report.flagged == [row.id]


@pytest.mark.parametrize("left_in", [PaymentState.SIGNED, PaymentState.SENT],
                         ids=["stopped before sending", "sent, no answer"])
async def test_an_expired_unresolved_payment_frees_its_budget(x402_stack: X402Stack, store: Store,
                                                              left_in: PaymentState) -> None:
    row = store.payments.reserve(Payment(0, "k", 1, "local", "0x" + "22" * 20, x402_stack.network,
                                        x402_stack.stack.addresses["TestUSD"], x402_stack.stack.keys.owner.address,
                                        PRICE, x402_stack.stack.keys.payment_wallet.address, 2, "", 0, "", "reserved",
                                        "", "", False), time.time(), 3600,
                                {"total": PRICE, "per_provider": PRICE, "per_requester": PRICE}, 8)
    assert not isinstance(row, str)
    store.payments.transition(row.id, [PaymentState.RESERVED], PaymentState.SIGNED, nonce="0x" + "ab" * 32,
                              valid_before=int(time.time()) + 60, header="x")
    if left_in == PaymentState.SENT:  # handed to a provider that never answered and never settled it
        store.payments.transition(row.id, [PaymentState.SIGNED], PaymentState.SENT)
    store.commit_now()
    budget = {"total": PRICE, "per_provider": PRICE, "per_requester": PRICE}
    assert (await _pay(x402_stack, store, budget=budget)).outcome == Paid.BUDGET  # held by the unresolved payment
    assert (await _reconcile(x402_stack, store)).pending == 1  # not used on-chain, still valid: wait
    report = await _reconcile(x402_stack, store, clock=time.time() + 300)  # past validBefore and the margin
    assert report.expired == 1 and store.payments.payment(row.id).state == "expired"  # type: ignore[union-attr]
    assert (await _pay(x402_stack, store, budget=budget)).status == 200


# ---------------------------------------------------------------- a process stopped mid-payment


async def test_stopped_between_signing_and_sending_the_stored_header_is_sent(x402_stack: X402Stack,
                                                                             store: Store) -> None:
    """`prepare` is everything up to the signed row's commit: a process killed right after it leaves a
    signed payment; the next one sends that header, and only that, once."""
    s, ctx = x402_stack, _ctx()
    async with paying_client(s, store) as first:
        status, headers, raw = await first._post(f"{s.model.base_url}/chat/completions", BODY.encode(), HEADERS, 30)
        signed = await first.prepare(status, headers, raw, ctx, s.pin, "local")
    assert isinstance(signed, Payment) and signed.state == "signed"
    before = _settlements(s)
    reply = await _pay(s, store, ctx)  # a new client, as after a restart
    assert reply.status == 200 and reply.payment.id == signed.id
    assert reply.payment.state == "settled" and reply.payment.header == signed.header
    assert _settlements(s) == before + 1


async def test_stopped_between_sending_and_the_answer_pays_at_most_once(x402_stack: X402Stack,
                                                                          store: Store) -> None:
    import asyncio

    s, ctx = x402_stack, _ctx()
    s.model.knobs.latency = 0.5
    before, calls = _settlements(s), s.model.books.total
    try:
        async with paying_client(s, store) as client:
            task = asyncio.create_task(client.post(f"{s.model.base_url}/chat/completions", BODY.encode(), HEADERS,
                                                   30, ctx, s.pin, "local"))
            await until(lambda: s.model.books.total > calls, 10, what="the paid request at the provider")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        s.model.knobs.latency = 0.0
    row = store.payments.payment_for(ctx.request_key, ctx.attempt_id)
    assert row is not None and row.state == "sent"
    async with aiohttp.ClientSession() as session:
        reconciler = Reconciler(store.payments, s.settings(), session)
        async with paying_client(s, store) as client:
            client.resolve = reconciler.resolve
            reply = await client.post(f"{s.model.base_url}/chat/completions", BODY.encode(), HEADERS, 30, ctx, s.pin,
                                      "local")
    assert reply.payment is not None and reply.payment.id == row.id
    # Either the provider never settled the cut-off call and this send paid and answered, or it had
    # settled and the spent header was refused: settled without delivery. Never two settlements.
    assert (reply.status, reply.payment.state) in ((200, "settled"), (402, "settled"))
    assert _settlements(s) == before + 1


def test_the_policy_pays_only_exact_eip3009_offers(x402_stack: X402Stack) -> None:
    from x402.schemas import PaymentRequired

    from oracle.x402.policy import choose, offers

    s = x402_stack
    base = s.paywall.requirements
    cases = {"scheme 'upto'": base.model_copy(update={"scheme": "upto"}),
             "transfer method 'permit2'": base.model_copy(update={"extra": {**base.extra,
                                                                            "assetTransferMethod": "permit2"}}),
             "maxTimeoutSeconds must be positive": base.model_copy(update={"max_timeout_seconds": 0}),
             "not a whole number": base.model_copy(update={"amount": "1.5"})}
    for words, offer in cases.items():
        chosen = choose(offers(PaymentRequired(accepts=[offer])), s.pin, s.settings(), 10**6)
        assert isinstance(chosen, str) and words in chosen, (words, chosen)
    # With a refused offer first, a good one later is taken.
    chosen = choose(offers(PaymentRequired(accepts=[cases["scheme 'upto'"], base])), s.pin, s.settings(), 10**6)
    assert not isinstance(chosen, str) and chosen.amount == PRICE


async def test_stopped_between_reserving_and_signing_a_new_attempt_pays(x402_stack: X402Stack, store: Store) -> None:
    s, ctx = x402_stack, _ctx()
    reserved = store.payments.reserve(Payment(0, ctx.request_key, ctx.attempt_id, "local", ctx.requester, s.network,
                                             s.stack.addresses["TestUSD"], s.stack.keys.owner.address, PRICE,
                                             s.stack.keys.payment_wallet.address, 2, "", 0, "", "reserved", "", "",
                                             False), time.time(), 3600, {"total": 10**9, "per_provider": 10**9,
                                                                         "per_requester": 10**9}, 8)
    assert not isinstance(reserved, str)
    reply = await _pay(s, store, ctx)
    assert reply.outcome == Paid.RESENT and reply.payment.id == reserved.id
    assert reply.payment.nonce == ""  # nothing signed for it
    report = await _reconcile(s, store)
    assert report.expired >= 1 and store.payments.payment(reserved.id).state == "expired"  # type: ignore[union-attr]
    fresh = await _pay(s, store, PaymentContext(ctx.request_key, ctx.requester, ctx.attempt_id + 1, ctx.max_amount))
    assert fresh.status == 200 and fresh.payment.state == "settled"


def test_a_final_payment_stays_final_and_gives_its_budget_back_once(store: Store) -> None:
    limits = {"total": 1_000, "per_provider": 1_000, "per_requester": 1_000}
    row = store.payments.reserve(Payment(0, "k", 1, "p", "r", "eip155:1", "0xa", "0xb", 1_000, "0xc", 2, "", 0, "",
                                        "reserved", "", "", False), time.time(), 3600, limits, 8)
    assert not isinstance(row, str)
    P = PaymentState
    assert store.payments.transition(row.id, [P.RESERVED], P.EXPIRED)
    with pytest.raises(ForbiddenTransition, match="expired -> unknown"):  # expired is final
        store.payments.transition(row.id, [P.EXPIRED], P.UNKNOWN, error="a late answer")
    assert not store.payments.transition(row.id, [P.SENT], P.UNKNOWN, error="a late answer")  # it is not sent
    assert store.payments.transition(row.id, [P.RESERVED, P.EXPIRED], P.EXPIRED)  # again: no second give-back
    store.commit_now()
    assert store.payments.payment(row.id).state == "expired"  # type: ignore[union-attr]
    for attempt in (2, 3):  # the budget came back exactly once: one more full payment fits, not two
        again = store.payments.reserve(Payment(0, "k", attempt, "p", "r", "eip155:1", "0xa", "0xb", 1_000, "0xc", 2, "",
                                              0, "", "reserved", "", "", False), time.time(), 3600, limits, 8)
        assert isinstance(again, str) == (attempt == 3), again


@pytest.mark.parametrize(("requirements", "words"), [
    ({"amount": "²"}, "not a whole number"),
    ({"amount": "9" * 90}, "not a whole number"),
    ({"extra": {}}, "cannot sign"),
    ({"extra": {"name": 7, "version": "2"}}, "cannot sign"),
])
async def test_hostile_requirements_are_refused_without_a_signature(x402_stack: X402Stack, store: Store,
                                                                    requirements: dict[str, Any],
                                                                    words: str) -> None:
    from x402.http.utils import encode_payment_required_header
    from x402.schemas import PaymentRequired

    offer = x402_stack.paywall.requirements.model_copy(update=requirements)
    header = encode_payment_required_header(PaymentRequired(accepts=[offer]))
    server = _Hostile(header, b"{}").start()
    try:
        reply = await _pay(x402_stack, store, url=f"http://127.0.0.1:{server.port}/v1/chat/completions")
    finally:
        server.stop()
    assert words in reply.detail and reply.payment.header == "" and reply.payment.nonce == ""
    assert reply.payment.state in ("rejected", "expired")  # counts against no budget


async def test_a_402_header_that_is_not_an_object_is_refused(x402_stack: X402Stack, store: Store) -> None:
    server = _Hostile(base64.b64encode(b'"just a string"').decode(), b"{}").start()
    try:
        reply = await _pay(x402_stack, store, url=f"http://127.0.0.1:{server.port}/v1/chat/completions")
    finally:
        server.stop()
    _refused(reply, "malformed 402")
