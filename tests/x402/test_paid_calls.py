"""Paying over x402 against the real local stack: balances move by exactly the price, the ledger is true."""

from __future__ import annotations

import json

from eth_typing import HexStr

from oracle.store import Store
from oracle.x402 import PaymentContext
from tests.x402.conftest import PRICE, X402Stack, paying_client

BODY = json.dumps({"model": "m-2026-01-01", "messages": [{"role": "user", "content": "hello"}],
                   "response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": {
                       "type": "object", "properties": {"value": {"type": "boolean"}}, "required": ["value"]}}}})


def _ctx(n: int, allowance: int = 1_000_000) -> PaymentContext:
    return PaymentContext(f"31337:0xoracle:0x{n:064x}", "0x" + "22" * 20, 1, allowance)


async def test_a_paid_call_moves_exactly_the_price_and_settles_the_ledger(x402_stack: X402Stack, store: Store) -> None:
    s = x402_stack
    payer, payee = s.stack.keys.payment_wallet.address, s.stack.keys.owner.address
    before = (s.balance(payer), s.balance(payee))
    async with paying_client(s, store) as client:
        reply = await client.post(f"{s.model.base_url}/chat/completions", BODY.encode(),
                                  {"Content-Type": "application/json"}, 30, _ctx(1), s.pin, "local")
    assert reply.status == 200, (reply.raw, reply.detail)
    assert (s.balance(payer), s.balance(payee)) == (before[0] - PRICE, before[1] + PRICE)
    assert reply.payment is not None and reply.payment.state == "settled" and reply.payment.delivered
    assert reply.payment.tx_hash in s.facilitator.books.settled and reply.payment.amount == PRICE
    receipt = s.stack.w3.eth.get_transaction_receipt(HexStr(reply.payment.tx_hash))
    assert receipt["status"] == 1
