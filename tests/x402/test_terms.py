"""Signing only on our terms: the 402's EIP-712 domain must be the token's own, one request's payments never
sum above its allowance, and an answer lost after paying is fetched again under the same payment
identifier instead of being paid twice. Against the real local stack."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from x402.http.utils import decode_payment_signature_header, encode_payment_signature_header
from x402.schemas import PaymentPayload

from oracle.config import X402Pin
from oracle.devnet.fault_proxy import FaultProxy
from oracle.devnet.harness import wait_until
from oracle.devnet.loopback import LoopbackServer
from oracle.store import Store
from oracle.x402 import PaymentContext
from oracle.x402.signer import domain_separator
from tests.x402.conftest import PRICE, X402Stack, paying_client

BODY = json.dumps({"model": "m-2026-01-01", "messages": [{"role": "user", "content": "hello"}]}).encode()
HEADERS = {"Content-Type": "application/json"}
_n = iter(range(10**6))


def _ctx(allowance: int = 1_000_000, attempt: int = 1, key: str | None = None) -> PaymentContext:
    return PaymentContext(key or f"31337:0xoracle:0x{next(_n) + 50_000:064x}", "0x" + "22" * 20, attempt, allowance)


def _authorizations_used(s: X402Stack) -> dict[str, int]:
    """AuthorizationUsed logs of the payment wallet, per nonce: what the token says was paid."""
    used = s.stack.contract("TestUSD").events.AuthorizationUsed().get_logs(
        from_block=0, argument_filters={"authorizer": s.stack.keys.payment_wallet.address})
    out: dict[str, int] = {}
    for entry in used:
        nonce = "0x" + entry["args"]["nonce"].hex()
        out[nonce] = out.get(nonce, 0) + 1
    return out


async def _pay(s: X402Stack, store: Store, ctx: PaymentContext | None = None, pin: X402Pin | None = None,
               timeout: float = 30, **settings: Any) -> Any:
    async with paying_client(s, store, **settings) as client:
        return await client.post(f"{s.model.base_url}/chat/completions", BODY, HEADERS, timeout, ctx or _ctx(),
                                 pin or s.pin, "local")


@pytest.fixture(autouse=True)
def _reset(x402_stack: X402Stack) -> Iterator[None]:
    yield
    p = x402_stack.paywall
    p.knobs.drop_after_settle = p.knobs.settle_then_500 = False
    p.knobs.hold_paid = 0.0
    p.payment_identifier = True
    p.requirements = p.requirements.model_copy(update={"extra": {"name": "Test USD", "version": "2"}})
    x402_stack.model.knobs.latency = 0.0


def _token_separator(s: X402Stack) -> str:
    return "0x" + domain_separator("Test USD", "2", s.stack.chain_id, s.stack.addresses["TestUSD"]).hex()


# ---------------------------------------------------------------- the EIP-712 domain


@pytest.mark.parametrize("extra", [{"name": "USD Coin", "version": "2"}, {"name": "Test USD", "version": "1"}])
async def test_a_402_naming_another_eip712_domain_is_refused_unsigned(x402_stack: X402Stack, store: Store,
                                                                      extra: dict[str, str]) -> None:
    s = x402_stack
    s.paywall.requirements = s.paywall.requirements.model_copy(update={"extra": extra})
    before = _authorizations_used(s)
    reply = await _pay(s, store)
    assert reply.status == 402 and "not the token's own" in reply.detail, reply.detail
    row = reply.payment
    assert row.state == "rejected" and row.header == "" and row.nonce == "" and "provider must name" in row.error
    assert _authorizations_used(s) == before


async def test_the_tokens_domain_is_read_once_per_network_and_asset(x402_stack: X402Stack, store: Store) -> None:
    s = x402_stack
    proxy = FaultProxy(s.stack.rpc_url, s.stack.ws_url).start()
    try:
        networks = [{"network": s.network, "rpc_url": proxy.rpc_url}]
        async with paying_client(s, store, networks=networks) as client:
            for _ in range(3):
                reply = await client.post(f"{s.model.base_url}/chat/completions", BODY, HEADERS, 30, _ctx(), s.pin,
                                          "local")
                assert reply.status == 200 and reply.payment is not None and reply.payment.state == "settled"
    finally:
        proxy.stop()
    # TestUSD has no DOMAIN_SEPARATOR() (that call reverts) but EIP-5267 eip712Domain(): two calls, once.
    assert proxy.counts.calls["eth_call"] == 2


async def test_without_a_node_the_domain_must_be_pinned(x402_stack: X402Stack, store: Store) -> None:
    s = x402_stack
    offline = [{"network": s.network, "rpc_url": "http://127.0.0.1:9"}]
    refused = await _pay(s, store, networks=offline)
    assert "cannot read the EIP-712 domain" in refused.detail and "pin domain_separator" in refused.detail
    assert refused.payment.state == "rejected" and refused.payment.header == ""
    wrong = s.pin.model_copy(update={"domain_separator": "0x" + "ab" * 32})
    assert "pinned domain_separator" in (await _pay(s, store, pin=wrong, networks=offline)).detail
    pinned = s.pin.model_copy(update={"domain_separator": _token_separator(s)})
    reply = await _pay(s, store, pin=pinned, networks=offline)
    assert reply.status == 200 and reply.payment.state == "settled" and reply.payment.delivered


async def test_a_token_without_a_published_domain_is_refused_unless_pinned(x402_stack: X402Stack,
                                                                           store: Store) -> None:
    s = x402_stack
    # An asset address with no contract: it answers neither DOMAIN_SEPARATOR() nor eip712Domain().
    bare = "0x" + "98" * 20
    s.paywall.requirements = s.paywall.requirements.model_copy(update={"asset": bare})
    try:
        pin = X402Pin(network=s.network, asset=bare, pay_to=s.pin.pay_to)
        reply = await _pay(s, store, pin=pin)
    finally:
        s.paywall.requirements = s.paywall.requirements.model_copy(update={"asset": s.stack.addresses["TestUSD"]})
    assert "publishes no EIP-712 domain" in reply.detail and reply.payment.header == ""


# ---------------------------------------------------------------- the request's allowance


async def test_payments_of_unknown_fate_count_at_full_amount_against_the_allowance(x402_stack: X402Stack,
                                                                                   store: Store) -> None:
    """A provider that keeps the payment headers and never answers: every retry and fallback of the
    request is a new attempt, and none may sign beyond the allowance (3,000 for a price of 2,500)."""
    s = x402_stack
    s.paywall.knobs.hold_paid = 3.0
    key, allowance = _ctx().request_key, 3_000
    refusals = []
    async with paying_client(s, store) as client:
        for attempt in range(1, 9):
            try:
                reply = await client.post(f"{s.model.base_url}/chat/completions", BODY, HEADERS, 0.3,
                                          _ctx(allowance, attempt, key), s.pin, "local")
                refusals.append(reply.detail)
            except (aiohttp.ClientError, TimeoutError):
                refusals.append("")
    kept = {decode_payment_signature_header(h).payload["authorization"]["nonce"] for h in s.paywall.kept}
    assert len(kept) * PRICE <= allowance  # what the provider holds and may still settle
    assert len(kept) == 1
    signed = [p for p in store.payments.payments() if p.request_key == key and p.header]
    assert sum(p.amount for p in signed) <= allowance
    assert all("request allowance" in r for r in refusals[1:]), refusals


# ---------------------------------------------------------------- payment identifiers


async def test_a_dropped_answer_is_fetched_again_with_one_settlement(x402_stack: X402Stack, store: Store) -> None:
    s = x402_stack
    s.paywall.knobs.drop_after_settle = True
    replayed, before = s.paywall.replayed, _authorizations_used(s)
    transfers = _transfers(s)
    reply = await _pay(s, store)
    row = reply.payment
    assert reply.status == 200 and row.state == "settled" and row.delivered and row.error == ""
    assert row.identifier.startswith("pay_") and s.paywall.replayed == replayed + 1
    used = _authorizations_used(s)
    assert used[row.nonce] == 1 and len(used) == len(before) + 1 and _transfers(s) == transfers + 1
    assert json.loads(reply.raw)["choices"]  # the answer paid for


def _transfers(s: X402Stack) -> int:
    return len(s.stack.contract("TestUSD").events.Transfer().get_logs(
        from_block=0, argument_filters={"from": s.stack.keys.payment_wallet.address}))


async def test_a_restart_while_the_provider_settles_gets_the_stored_answer(x402_stack: X402Stack,
                                                                           store: Store) -> None:
    s, ctx = x402_stack, _ctx()
    s.model.knobs.latency = 0.5
    settled, served = len(s.paywall.settled), s.model.books.total
    async with paying_client(s, store) as client:
        task = asyncio.create_task(client.post(f"{s.model.base_url}/chat/completions", BODY, HEADERS, 30, ctx,
                                               s.pin, "local"))
        # the marker: the paid call has passed the paywall and the model is working on it
        await asyncio.to_thread(wait_until, lambda: s.model.books.total > served, 10, 0.01,
                                "the paid call to reach the provider")
        task.cancel()  # the process stops with the paid call at the provider
        with pytest.raises(asyncio.CancelledError):
            await task
    reply = await _pay(s, store, ctx)  # a new client, as after a restart: the same header again
    assert reply.status == 200 and reply.payment.state == "settled" and reply.payment.delivered
    assert len(s.paywall.settled) == settled + 1 and _authorizations_used(s)[reply.payment.nonce] == 1


async def test_the_same_identifier_with_another_payload_is_a_conflict(x402_stack: X402Stack, store: Store) -> None:
    s = x402_stack
    reply = await _pay(s, store)
    assert reply.status == 200 and reply.payment.identifier
    settled = len(s.paywall.settled)
    payload = decode_payment_signature_header(reply.payment.header)
    assert isinstance(payload, PaymentPayload)
    other = payload.model_copy(update={"payload": {**payload.payload, "signature": "0x" + "11" * 65}})
    async with aiohttp.ClientSession() as session:
        url = f"{s.model.base_url}/chat/completions"
        async with session.post(url, data=BODY, headers={**HEADERS, "PAYMENT-SIGNATURE": reply.payment.header}) as r:
            assert r.status == 200 and "PAYMENT-RESPONSE" in r.headers  # the stored answer, as sent
        async with session.post(url, data=BODY, headers={
                **HEADERS, "PAYMENT-SIGNATURE": encode_payment_signature_header(other)}) as r:
            assert r.status == 409
    assert len(s.paywall.settled) == settled and s.paywall.conflicts >= 1


async def test_no_identifier_is_sent_to_a_provider_that_does_not_declare_it(x402_stack: X402Stack,
                                                                             store: Store) -> None:
    x402_stack.paywall.payment_identifier = False
    reply = await _pay(x402_stack, store)
    assert reply.status == 200 and reply.payment.identifier == ""
    assert decode_payment_signature_header(reply.payment.header).extensions is None  # type: ignore[union-attr]


async def test_a_paid_call_is_not_redirected_to_another_origin(x402_stack: X402Stack, store: Store) -> None:
    """A provider that asks for payment, then redirects the paid call: the signed payment is not carried
    to the other origin (nor is anything else), and the call ends with the redirect as its answer."""
    from tests.router.test_redirects import Recorder

    s = x402_stack
    async with aiohttp.ClientSession() as session, session.post(f"{s.model.base_url}/chat/completions",
                                                                data=BODY, headers=HEADERS) as r:
        asked = r.headers["PAYMENT-REQUIRED"]
    recorder = Recorder().start()

    class PayThenRedirect(LoopbackServer):
        def app(self) -> web.Application:
            app = web.Application()

            async def answer(request: web.Request) -> web.Response:
                if "PAYMENT-SIGNATURE" not in request.headers:
                    return web.json_response({}, status=402, headers={"PAYMENT-REQUIRED": asked})
                return web.Response(status=307, headers={"Location": f"http://127.0.0.1:{recorder.port}/paid"})

            app.router.add_post("/v1/chat/completions", answer)
            return app

    provider = PayThenRedirect().start()
    try:
        async with paying_client(s, store) as client:
            reply = await client.post(f"http://127.0.0.1:{provider.port}/v1/chat/completions", BODY, HEADERS, 10,
                                      _ctx(), s.pin, "local")
    finally:
        provider.stop()
        recorder.stop()
    assert recorder.seen == []
    assert reply.status == 307 and reply.payment is not None and reply.payment.header
    assert reply.payment.state == "unknown" and "HTTP 307" in reply.payment.error  # the token's records decide


async def test_the_router_never_signs_beyond_a_requests_allowance_when_answers_never_come(x402_stack: X402Stack,
                                                                                          store: Store) -> None:
    """Through the real router: two paid deployments on a provider that keeps every payment header and
    never answers; retries and fallbacks each make a new attempt, and what is signed stays within the
    allowance."""
    from oracle.config import ModelDeployment, RouterSettings
    from oracle.protocol import Status
    from oracle.router import Catalog, ModelRouter
    from tests.router.conftest import route_request

    s = x402_stack
    s.paywall.knobs.hold_paid = 3.0
    kept = len(s.paywall.kept)
    pin = {"network": s.network, "asset": s.pin.asset, "pay_to": s.pin.pay_to}
    deployments = [ModelDeployment.model_validate({
        "id": f"held-{i}", "provider": f"held-{i}", "api": "openai", "base_url": s.model.base_url,
        "model": f"held-{i}-2026-01-01", "payer": "x402", "x402": pin, "call_price": PRICE,
        "context_window": 32_000, "max_output": 2_000, "capabilities": ["json_schema", "seed"], "timeout": 0.3})
        for i in range(2)]
    request = route_request("held answers", spec="held-0-2026-01-01,held-1-2026-01-01", allowance=3_000)
    settings = RouterSettings(attempt_budget=4, retries=1, backoff=0.01, backoff_max=0.2)
    async with aiohttp.ClientSession() as session, paying_client(s, store) as paying:
        router = ModelRouter(Catalog(deployments), session, store.routing, settings, paying=paying)
        answer = await router.answer(request, time.time() + 30)
    assert answer.status == Status.FAILURE
    signed = [p for p in store.payments.payments() if p.request_key == request.key and p.header]
    assert sum(p.amount for p in signed) <= 3_000, [(p.attempt_id, p.state, p.amount) for p in signed]
    assert len(s.paywall.kept) - kept <= 2  # one authorization, sent at most twice (the same header)
    held = {decode_payment_signature_header(h).payload["authorization"]["nonce"] for h in s.paywall.kept[kept:]}
    assert len(held) * PRICE <= 3_000
