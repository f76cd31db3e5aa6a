"""Paying the gateway as agents do: with the official x402 SDK's client; with a payment identifier, so a
resend is safe; from a wallet that cannot buy more calls than it holds, even when they arrive at once;
after a settlement failed (the payer is refused for a while); and with what the gateway does not take
(a v1 header, an oversized body), refused before any payment is taken. What moved is counted from the
token's Transfer events and what was asked from the model server's books, never from the daemon's store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import requests
from eth_account import Account
from x402 import x402ClientSync
from x402.http.clients.requests import x402_requests
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner

from oracle.api.http import MAX_BODY
from oracle.devnet.harness import wait_until
from tests.gateway.conftest import Gateway, Reply, chat, http, sign_payment

CHAT = "/v1/chat/completions"
HOLD = "[[sleep:400]]"  # the model server holds such a call, so calls sent together are in flight together


def price_of(gateway: Gateway, body: dict[str, Any]) -> int:
    """What the gateway's 402 asks for `body`."""
    return int(http(gateway.url + CHAT, body).required.accepts[0].amount)


def at_once(sends: list[Callable[[], Reply]]) -> list[Reply]:
    """Each send on its own thread, all let go together."""
    start = threading.Barrier(len(sends))

    def send(one: Callable[[], Reply]) -> Reply:
        start.wait()
        return one()

    with ThreadPoolExecutor(len(sends)) as pool:
        return list(pool.map(send, sends))


def test_the_official_x402_client_pays_for_a_chat(gateway: Gateway) -> None:
    payer = gateway.payer(10, 50_000)
    start = gateway.stack.w3.eth.block_number
    body = chat("Say hello [[tag:sdk-client]]")
    price = price_of(gateway, body)
    client = x402ClientSync()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(payer.private_key)))
    # TestUSD is no asset the SDK knows: an agent allows it by name, with a cap per payment
    client.set_spend_controls({"allowed_assets": [{
        "network": f"eip155:{gateway.stack.chain_id}", "asset": gateway.stack.addresses["TestUSD"],
        "max_amount_per_payment": "10000"}]})
    with x402_requests(client) as session:
        got: requests.Response = session.post(gateway.url + CHAT, json=body, timeout=60)
    assert got.status_code == 200, got.text
    assert got.json()["choices"][0]["message"]["content"] and got.json()["oracle"]["paid"] == price
    assert gateway.model.books.tags["sdk-client"] == 1
    wait_until(lambda: gateway.transfers(payer.address, start) == [price], 30, what="the SDK's payment to settle")
    assert gateway.balance(payer.address) == 50_000 - price


def test_a_resend_with_the_same_payment_identifier_gets_the_same_answer_and_pays_once(gateway: Gateway) -> None:
    payer = gateway.payer(11, 50_000)
    start = gateway.stack.w3.eth.block_number
    body = chat("Once only [[tag:id-resend]]")
    first, header = gateway.paid_call(CHAT, body, payer, identifier="resend-0123456789abcdef")
    assert first.status == 200, first.body
    again = http(gateway.url + CHAT, body, {"PAYMENT-SIGNATURE": header})
    assert again.status == 200 and again.body == first.body
    paid = first.json()["oracle"]["paid"]
    wait_until(lambda: gateway.transfers(payer.address, start) == [paid], 30, what="the payment to settle")
    # sent again once it settled: still the stored answer, and nothing more moves
    late = http(gateway.url + CHAT, body, {"PAYMENT-SIGNATURE": header})
    assert late.status == 200 and late.body == first.body
    assert gateway.model.books.tags["id-resend"] == 1
    assert gateway.transfers(payer.address, start) == [paid]
    assert gateway.balance(payer.address) == 50_000 - paid


def test_a_payment_identifier_reused_for_another_body_or_payment_is_refused(gateway: Gateway) -> None:
    payer = gateway.payer(12, 50_000)
    start = gateway.stack.w3.eth.block_number
    identifier = "reuse-0123456789abcdef"
    body = chat("The first call [[tag:id-first]]")
    first, header = gateway.paid_call(CHAT, body, payer, identifier=identifier)
    assert first.status == 200, first.body

    other_body = http(gateway.url + CHAT, chat("Another call [[tag:id-other-body]]"), {"PAYMENT-SIGNATURE": header})
    assert other_body.status == 409 and f"payment identifier {identifier}" in other_body.json()["error"]
    fresh = sign_payment(http(gateway.url + CHAT, body).required, payer, identifier=identifier)
    other_payment = http(gateway.url + CHAT, body, {"PAYMENT-SIGNATURE": fresh})
    assert other_payment.status == 409 and "another payment" in other_payment.json()["error"]

    assert gateway.model.books.tags["id-other-body"] == 0 and gateway.model.books.tags["id-first"] == 1
    paid = first.json()["oracle"]["paid"]
    wait_until(lambda: gateway.transfers(payer.address, start) == [paid], 30, what="the first call to settle")


def test_two_sends_of_one_payment_at_once_get_one_answer_and_one_settlement(gateway: Gateway) -> None:
    payer = gateway.payer(13, 50_000)
    start = gateway.stack.w3.eth.block_number
    body = chat(f"Sent twice [[tag:id-at-once]] {HOLD}")
    price = price_of(gateway, body)
    header = sign_payment(http(gateway.url + CHAT, body).required, payer, identifier="at-once-0123456789abcdef")
    replies = at_once([lambda: http(gateway.url + CHAT, body, {"PAYMENT-SIGNATURE": header})] * 2)
    assert [r.status for r in replies] == [200, 200], [r.body for r in replies]
    assert replies[0].body == replies[1].body
    assert gateway.model.books.tags["id-at-once"] == 1
    wait_until(lambda: gateway.transfers(payer.address, start) == [price], 30, what="the payment to settle")


def test_calls_at_once_beyond_the_wallets_balance_are_refused(gateway: Gateway) -> None:
    calls = 5  # five calls at the least price is this fixture's daily cap: a sixth would be refused for it
    body = chat(f"One of many [[tag:overdraw]] {HOLD}")
    price = price_of(gateway, body)
    payer = gateway.payer(14, price * 5 // 2)  # two calls and a half
    start = gateway.stack.w3.eth.block_number
    required = http(gateway.url + CHAT, body).required
    headers = [sign_payment(required, payer) for _ in range(calls)]  # each its own payment
    replies = at_once([partial(http, gateway.url + CHAT, body, {"PAYMENT-SIGNATURE": h}) for h in headers])

    answered = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status != 200]
    assert len(answered) == 2, [(r.status, r.body[:200]) for r in replies]  # what the wallet covers, no less
    for r in refused:
        assert r.status == 402 and "insufficient" in r.json()["error"].lower(), r.body
    assert gateway.model.books.tags["overdraw"] == 2
    charged = sum(r.json()["oracle"]["paid"] for r in answered)
    wait_until(lambda: sum(gateway.transfers(payer.address, start)) == charged, 30, what="the answered calls to settle")
    assert gateway.transfers(payer.address, start) == [price, price]
    assert gateway.balance(payer.address) == price * 5 // 2 - charged


def test_a_payer_whose_settlement_failed_is_refused_for_the_cooldown(gateway: Gateway) -> None:
    payer = gateway.payer(15, 50_000)
    start = gateway.stack.w3.eth.block_number
    knobs = gateway.facilitator.knobs
    knobs.fail_settle = True
    try:
        got, _ = gateway.paid_call(CHAT, chat("Answered, never paid [[tag:settle-fails]]"), payer)
        assert got.status == 200, got.body  # answered first; its settlement fails after
        wait_until(lambda: f"from {payer.address} did not settle" in gateway.daemon.log(), 30,
                   what="the settlement to fail")
    finally:
        knobs.fail_settle = False

    refused, _ = gateway.paid_call(CHAT, chat("Next call [[tag:after-failed-settlement]]"), payer)
    assert refused.status == 402, refused.body
    error = refused.json()["error"]
    assert f"a settlement of an earlier payment from {payer.address} failed" in error and "refused for" in error
    assert 0 < int(refused.headers["Retry-After"]) <= 600  # the fixture's cooldown
    assert gateway.model.books.tags["after-failed-settlement"] == 0
    assert gateway.transfers(payer.address, start) == []
    assert gateway.balance(payer.address) == 50_000


def test_a_v1_payment_header_is_refused_with_v2_only(gateway: Gateway) -> None:
    payer = gateway.payer(16, 50_000)
    body = chat("Paid the old way [[tag:v1-header]]")
    header = sign_payment(http(gateway.url + CHAT, body).required, payer)
    got = http(gateway.url + CHAT, body, {"X-PAYMENT": header})
    assert got.status == 402 and "x402 v2" in got.json()["error"] and "X-PAYMENT (v1)" in got.json()["error"]
    assert got.required.x402_version == 2  # the terms to pay again, the v2 way
    assert gateway.model.books.tags["v1-header"] == 0


def test_a_body_over_64_kib_is_refused_before_its_payment_is_taken(gateway: Gateway) -> None:
    payer = gateway.payer(17, 50_000)
    start = gateway.stack.w3.eth.block_number
    small = chat("Small [[tag:oversized]]")
    header = sign_payment(http(gateway.url + CHAT, small).required, payer)
    big = chat("Big [[tag:oversized]] " + "x" * MAX_BODY)
    for headers in ({}, {"PAYMENT-SIGNATURE": header}):
        got = http(gateway.url + CHAT, big, headers)
        assert got.status == 413 and f"over {MAX_BODY:,} bytes" in got.json()["error"], got.body
    assert gateway.model.books.tags["oversized"] == 0
    # the payment was not taken: it still buys the call it was signed for, once
    ok = http(gateway.url + CHAT, small, {"PAYMENT-SIGNATURE": header})
    assert ok.status == 200, ok.body
    assert gateway.model.books.tags["oversized"] == 1
    paid = ok.json()["oracle"]["paid"]
    wait_until(lambda: gateway.transfers(payer.address, start) == [paid], 30, what="the payment to settle")


def test_a_failed_calls_payment_is_good_again_for_that_call_only(gateway: Gateway) -> None:
    payer = gateway.payer(18, 50_000)
    start = gateway.stack.w3.eth.block_number
    body = chat("Asked twice [[tag:released]]")
    header = sign_payment(http(gateway.url + CHAT, body).required, payer)
    gateway.model.knobs.force = "400"  # the model fails this call: nothing is charged
    try:
        failed = http(gateway.url + CHAT, body, {"PAYMENT-SIGNATURE": header})
    finally:
        gateway.model.knobs.force = None
    assert failed.status == 502, failed.body
    other = http(gateway.url + CHAT, chat("Another question [[tag:released-other]]"), {"PAYMENT-SIGNATURE": header})
    assert other.status == 402 and "may be sent again for that call only" in other.json()["error"]
    again = http(gateway.url + CHAT, body, {"PAYMENT-SIGNATURE": header})  # the same call: taken, answered
    assert again.status == 200, again.body
    assert gateway.model.books.tags["released-other"] == 0
    wait_until(lambda: gateway.transfers(payer.address, start) == [again.json()["oracle"]["paid"]], 30,
               what="the one settlement")


def test_what_a_failed_call_cost_the_operator_counts_against_the_payers_daily_cap(gateway: Gateway) -> None:
    payer = gateway.payer(19, 50_000)
    json_answer = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
        "type": "object", "properties": {"value": {"type": "integer"}}, "required": ["value"]}}}
    got, _ = gateway.paid_call(CHAT, chat("[[malformed]] [[tag:costly-failure]]", response_format=json_answer), payer)
    assert got.status == 502 and got.json()["reason"] == "MALFORMED", got.body
    assert gateway.model.books.tags["costly-failure"] >= 2  # asked, and asked once more: the tokens were used
    account = gateway.account(payer)
    assert account["spent"] == 0 and account["spent_today"] > 0  # not charged; counted against the cap


def test_a_signed_analysis_is_handed_over_only_once_its_payment_settled(gateway: Gateway) -> None:
    payer = gateway.payer(27, 50_000)
    body = {"chain_id": gateway.stack.chain_id, "model": "fastest", "prompt": "calm [[tag:analysis-unsettled]]",
            "result": {"type": "uint", "min": 0, "max": 100}, "consumer": gateway.stack.keys.owner.address}
    knobs = gateway.facilitator.knobs
    knobs.fail_settle = True
    try:
        got, header = gateway.paid_call("/v1/analyze", body, payer, identifier="analysis-unsettled-0001")
    finally:
        knobs.fail_settle = False
    assert got.status == 402 and "did not settle" in got.json()["error"], got.body
    assert "signature" not in got.json()
    again = http(gateway.url + "/v1/analyze", body, {"PAYMENT-SIGNATURE": header})  # its stored answer: not given
    assert again.status == 402 and "signature" not in again.json()


def test_a_failed_calls_payment_sent_again_twice_at_once_buys_one_call(gateway: Gateway) -> None:
    payer = gateway.payer(28, 50_000)
    start = gateway.stack.w3.eth.block_number
    body = chat(f"Asked again twice {HOLD} [[tag:released-twice]]")
    header = sign_payment(http(gateway.url + CHAT, body).required, payer)
    gateway.model.knobs.force = "400"
    try:
        assert http(gateway.url + CHAT, body, {"PAYMENT-SIGNATURE": header}).status == 502
    finally:
        gateway.model.knobs.force = None
    replies = at_once([partial(http, gateway.url + CHAT, body, {"PAYMENT-SIGNATURE": header}) for _ in range(2)])
    assert sorted(r.status for r in replies) == [200, 402], [r.body for r in replies]
    wait_until(lambda: len(gateway.transfers(payer.address, start)) == 1, 30, what="the one settlement")
