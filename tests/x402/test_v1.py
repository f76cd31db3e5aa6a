"""x402 version 1 (402 JSON body with `accepts` and `maxAmountRequired`, `X-PAYMENT`, `X-PAYMENT-RESPONSE`,
named networks) paid on an anvil posing as base-sepolia (chain id 84532)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.stack import StackSettings
from oracle.store import Store
from oracle.x402 import PaymentContext
from tests.x402.conftest import PRICE, X402Stack, paying_client, start_x402


@pytest.fixture(scope="module")
def v1_stack() -> Iterator[X402Stack]:
    with LocalStack(StackSettings(chain_id=84532)) as stack:
        s = start_x402(stack, version=1)
        try:
            yield s
        finally:
            s.model.stop()
            s.facilitator.stop()


async def test_a_v1_payment_is_made_and_settled(v1_stack: X402Stack, store: Store) -> None:
    s = v1_stack
    assert s.network == "eip155:84532"
    payer, payee = s.stack.keys.payment_wallet.address, s.stack.keys.owner.address
    before = (s.balance(payer), s.balance(payee))
    body = json.dumps({"model": "m-2026-01-01", "messages": [{"role": "user", "content": "hi"}]}).encode()
    async with paying_client(s, store) as client:
        reply = await client.post(f"{s.model.base_url}/chat/completions", body, {"Content-Type": "application/json"},
                                  30, PaymentContext("84532:0xoracle:0x01", "0x" + "22" * 20, 1, 10**6), s.pin, "p")
    assert reply.status == 200, (reply.detail, reply.raw[:300])
    assert reply.payment is not None and reply.payment.version == 1 and reply.payment.state == "settled"
    assert (s.balance(payer), s.balance(payee)) == (before[0] - PRICE, before[1] + PRICE)
    assert "X-PAYMENT-RESPONSE" in reply.headers
