"""Agents pay the gateway per call over x402: a chat and a signed analysis paid from an agent's wallet,
balances moved by exactly what was settled (counted from the token's Transfer events), the analysis
taken once by a consumer contract, and every payment the gateway must refuse refused before the model
is asked (the model server's books show no call)."""

from __future__ import annotations

import time

import pytest
from eth_utils import keccak
from prometheus_client.parser import text_string_to_metric_families
from web3.exceptions import ContractCustomError

from oracle.abi.errors import decode_revert
from oracle.chain.signer import signer_of
from oracle.devnet.harness import wait_until
from oracle.protocol import OffchainResult, ReasonCode, ResultSpec, ResultType, Status, query_hash, typed_data_digest
from oracle.results import encode_result
from tests.gateway.conftest import (
    DAILY_CAP,
    RATE_PER_MINUTE,
    Gateway,
    Reply,
    chat,
    http,
    sign_payment,
    with_authorization,
)
from tests.risk_sentinel import deploy_pair

SCORE = ResultSpec(ResultType.UINT, min=0, max=100)


def model_calls(gw: Gateway) -> int:
    return gw.model.books.total


def test_models_are_listed_at_the_gateways_prices(gateway: Gateway) -> None:
    got = http(gateway.url + "/v1/models")
    assert got.status == 200
    (entry,) = got.json()["data"]
    assert entry["id"] == "dev-model-2026-01-01" and entry["deployment"] == "local"
    # the catalog's 150,000 / 600,000 micro-USD per million tokens, plus the 20% margin
    assert entry["pricing"]["input_per_million"] == 180_000 and entry["pricing"]["output_per_million"] == 720_000
    assert got.json()["payment"]["asset"] == gateway.stack.addresses["TestUSD"]


def test_an_agent_pays_for_a_chat_and_is_charged_exactly_once(gateway: Gateway) -> None:
    agent = gateway.stack.keys.agents
    start = gateway.stack.w3.eth.block_number
    before = gateway.balance(agent.address)
    unpaid = http(gateway.url + "/v1/chat/completions", chat("Say hello [[tag:chat-paid]]"))
    assert unpaid.status == 402
    offer = unpaid.required.accepts[0]
    assert (offer.scheme, offer.network, offer.asset, offer.pay_to) == (
        "exact", f"eip155:{gateway.stack.chain_id}", gateway.stack.addresses["TestUSD"],
        gateway.stack.keys.owner.address)
    assert int(offer.amount) >= 1_200  # the configured price 1,000 plus the 20% margin, at least
    assert model_calls(gateway) == 0 or gateway.model.books.tags["chat-paid"] == 0  # nothing ran unpaid

    header = sign_payment(unpaid.required, agent)
    paid = http(gateway.url + "/v1/chat/completions", chat("Say hello [[tag:chat-paid]]"),
                {"PAYMENT-SIGNATURE": header})
    assert paid.status == 200, paid.body
    doc = paid.json()
    assert doc["object"] == "chat.completion" and doc["model"] == "dev-model-2026-01-01"
    assert doc["choices"][0]["message"]["role"] == "assistant" and doc["choices"][0]["message"]["content"]
    assert doc["usage"]["cost"] == int(offer.amount) / 1_000_000 and doc["oracle"]["deployment"] == "local"
    assert doc["usage"]["total_tokens"] == doc["usage"]["prompt_tokens"] + doc["usage"]["completion_tokens"] > 0
    assert gateway.model.books.tags["chat-paid"] == 1

    # settled after the answer, by the facilitator: once, for exactly the amount
    wait_until(lambda: gateway.transfers(agent.address, start) == [int(offer.amount)], 30,
               what="the chat's payment to settle")
    assert gateway.balance(agent.address) == before - int(offer.amount)

    # the same header again, without a payment identifier: refused, and the model is not asked
    again = http(gateway.url + "/v1/chat/completions", chat("Say hello [[tag:chat-paid]]"),
                 {"PAYMENT-SIGNATURE": header})
    assert again.status == 402 and "already used" in again.json()["error"]
    assert gateway.model.books.tags["chat-paid"] == 1


def test_a_signed_analysis_is_accepted_once_by_a_consumer_that_registered_the_question(gateway: Gateway) -> None:
    stack = gateway.stack
    pair = deploy_pair(stack, label="gateway")
    sentinel = stack.contract("RiskSentinel", pair.sentinel)
    context = "ETH -30% in 1h [[score:91]]"
    stack.transact(sentinel.functions.registerQuery(context.encode()), stack.keys.bots)
    body = {"chain_id": stack.chain_id, "model": sentinel.functions.modelSpec().call(), "prompt": context,
            "result": SCORE.to_json(), "consumer": pair.sentinel, "max_tokens": 64}

    got, _ = gateway.paid_call("/v1/analyze", body, stack.keys.agents)
    assert got.status == 200, got.body
    doc = got.json()
    assert doc["value"] == 91 and doc["signer"] == stack.keys.signer.address
    result = OffchainResult(bytes.fromhex(doc["result_id"][2:]), doc["consumer"], bytes.fromhex(doc["query_hash"][2:]),
                            Status(doc["status"]), ReasonCode(doc["reason_code"]), bytes.fromhex(doc["result"][2:]),
                            bytes.fromhex(doc["model_used"][2:]), bytes.fromhex(doc["receipt_hash"][2:]),
                            doc["valid_until"])
    signature = bytes.fromhex(doc["signature"][2:])
    # in Python: the oracle's signer signed exactly this, for this question and this consumer
    assert result.query_hash == query_hash(body["model"], context.encode(), SCORE)
    assert result.result == encode_result(SCORE, 91)
    digest = typed_data_digest(stack.chain_id, stack.addresses["AIOracle"], result.struct_hash())
    assert signer_of(digest, signature) == stack.keys.signer.address
    # the receipt it names is served by its hash
    receipt = http(gateway.url + f"/v1/receipts/{doc['receipt_hash']}")
    assert receipt.status == 200 and keccak(receipt.body) == result.receipt_hash

    # on-chain: accepted once, by anyone who hands it over; the replay refused
    stack.transact(sentinel.functions.acceptSignedResult(result.to_abi(), signature), stack.keys.agents)
    assert sentinel.functions.lastScore().call() == 91
    with pytest.raises(ContractCustomError) as err:
        sentinel.functions.acceptSignedResult(result.to_abi(), signature).call({"from": stack.keys.agents.address})
    assert str(decode_revert(bytes.fromhex(str(err.value.data)[2:]))) == (
        f"ResultAlreadyUsed(resultId=0x{result.result_id.hex()})")


def test_a_score_bought_by_a_stranger_for_an_unregistered_question_is_refused(gateway: Gateway) -> None:
    stack = gateway.stack
    pair = deploy_pair(stack, label="stranger")
    sentinel = stack.contract("RiskSentinel", pair.sentinel)
    stranger = gateway.payer(6, 50_000)
    body = {"chain_id": stack.chain_id, "model": "fastest", "prompt": "all is calm [[score:0]]",
            "result": SCORE.to_json(), "consumer": pair.sentinel}
    got, _ = gateway.paid_call("/v1/analyze", body, stranger)
    assert got.status == 200, got.body
    doc = got.json()
    result = OffchainResult(bytes.fromhex(doc["result_id"][2:]), doc["consumer"], bytes.fromhex(doc["query_hash"][2:]),
                            Status.SUCCESS, ReasonCode.NONE, bytes.fromhex(doc["result"][2:]),
                            bytes.fromhex(doc["model_used"][2:]), bytes.fromhex(doc["receipt_hash"][2:]),
                            doc["valid_until"])
    with pytest.raises(ContractCustomError) as err:
        sentinel.functions.acceptSignedResult(result.to_abi(), bytes.fromhex(doc["signature"][2:])).call(
            {"from": stranger.address})
    assert str(decode_revert(bytes.fromhex(str(err.value.data)[2:]))) == (
        f"UnexpectedQuery(queryHash=0x{result.query_hash.hex()})")


@pytest.mark.parametrize(("name", "changes", "why"), [
    ("underpaid", {"amount": "1"}, "this call costs"),
    ("foreign-asset", {"asset": "0x" + "11" * 20}, "this gateway is paid in"),
    ("foreign-network", {"network": "eip155:8453"}, "this gateway is paid on"),
    ("too-short", {"max_timeout_seconds": 5}, "too soon to answer and settle"),
    ("too-long", {"max_timeout_seconds": 86_400}, "longer than this gateway's 120 s"),
])
def test_a_payment_off_our_terms_is_refused_before_the_model_is_asked(gateway: Gateway, name: str,
                                                                       changes: dict[str, object],
                                                                       why: str) -> None:
    agent = gateway.stack.keys.agents
    body = chat(f"[[tag:refused-{name}]]")
    unpaid = http(gateway.url + "/v1/chat/completions", body)
    header = sign_payment(unpaid.required, agent, changes=changes)
    got = http(gateway.url + "/v1/chat/completions", body, {"PAYMENT-SIGNATURE": header})
    assert got.status == 402 and why in got.json()["error"], got.body
    assert "PAYMENT-REQUIRED" in {k.upper() for k in got.headers}  # the terms, to pay again
    assert gateway.model.books.tags[f"refused-{name}"] == 0


def test_an_expired_or_forged_payment_is_refused(gateway: Gateway) -> None:
    agent = gateway.stack.keys.agents
    body = chat("[[tag:forged]]")
    unpaid = http(gateway.url + "/v1/chat/completions", body)
    header = sign_payment(unpaid.required, agent)
    expired = with_authorization(header, validBefore=str(int(time.time()) - 10))
    assert http(gateway.url + "/v1/chat/completions", body, {"PAYMENT-SIGNATURE": expired}).json()["error"] == (
        "the payment's authorization has expired: sign a new one")
    forged = with_authorization(header, validBefore=str(int(time.time()) + 100))  # the signature no longer fits
    got = http(gateway.url + "/v1/chat/completions", body, {"PAYMENT-SIGNATURE": forged})
    assert got.status == 402 and "facilitator refused" in got.json()["error"]
    for junk in ("not-base64!", "eyJ4NDAyVmVyc2lvbiI6IDF9"):
        refused = http(gateway.url + "/v1/chat/completions", body, {"PAYMENT-SIGNATURE": junk})
        assert refused.status == 402, refused.body
    assert gateway.model.books.tags["forged"] == 0


def test_a_model_failure_costs_the_agent_nothing(gateway: Gateway) -> None:
    payer = gateway.payer(7, 50_000)
    start = gateway.stack.w3.eth.block_number
    got, _ = gateway.paid_call("/v1/chat/completions", chat("[[500]] [[tag:failing]]"), payer)
    assert got.status == 502 and got.json()["reason"] == "PROVIDERS_UNAVAILABLE"
    assert gateway.model.books.tags["failing"] >= 1  # the model was asked, and failed
    # a later paid call of the same payer settles; the failed one never does
    ok, _ = gateway.paid_call("/v1/chat/completions", chat("[[tag:after-failure]]"), payer)
    assert ok.status == 200
    wait_until(lambda: len(gateway.transfers(payer.address, start)) == 1, 30, what="the later call to settle")
    assert gateway.transfers(payer.address, start) == [ok.json()["oracle"]["paid"]]


def test_bad_bodies_get_what_to_send(gateway: Gateway) -> None:
    url = gateway.url + "/v1/chat/completions"
    cases: list[tuple[object, str]] = [
        (b"{", "not JSON"), ({"model": "cheapest"}, "messages"),
        (chat("x", max_tokens=10**9), "max_tokens"), (chat("x", stream=True), "stream"),
        (chat("x", temperature=3), "temperature"), ({**chat("x"), "tools": []}, "unknown field 'tools'"),
        (chat("x", model="no-such-model-2020-01-01"), "cannot be served"),
    ]
    for body, says in cases:
        got: Reply = http(url, body)
        assert got.status == 400 and says in got.json()["error"], (body, got.body)
    analyze = http(gateway.url + "/v1/analyze", {"chain_id": 1, "model": "fastest", "prompt": "x",
                                                 "result": SCORE.to_json(), "consumer": "0x" + "22" * 20})
    assert analyze.status == 400 and "chain_id 1 is not served" in analyze.json()["error"]
    assert http(gateway.url + "/v1/analyze", {"chain_id": gateway.stack.chain_id, "model": "fastest", "prompt": "x",
                                              "result": {"type": "uint"}, "consumer": "0x" + "22" * 20}
                ).json()["error"] == "result: a uint result needs min, max"


def test_spend_beyond_the_daily_cap_is_refused(gateway: Gateway) -> None:
    payer = gateway.payer(8, 10 * DAILY_CAP)
    spent = 0
    while True:
        got, _ = gateway.paid_call("/v1/chat/completions", chat("[[tag:cap]]"), payer)
        if got.status != 200:
            break
        spent += got.json()["oracle"]["paid"]
    assert got.status == 429 and "daily cap" in got.json()["error"] and int(got.headers["Retry-After"]) > 0
    price = int(http(gateway.url + "/v1/chat/completions", chat("[[tag:cap]]")).required.accepts[0].amount)
    assert spent <= DAILY_CAP < spent + price
    assert gateway.model.books.tags["cap"] == spent // price  # the refused call never reached the model


def test_calls_beyond_the_rate_limit_are_refused_failed_ones_included(gateway: Gateway) -> None:
    payer = gateway.payer(9, 10 * DAILY_CAP)
    start = gateway.stack.w3.eth.block_number
    for _ in range(RATE_PER_MINUTE):  # each fails at the model ([[400]] stops at once): nothing is charged
        got, _ = gateway.paid_call("/v1/chat/completions", chat("[[400]] [[tag:rate]]"), payer)
        assert got.status == 502, got.body
    got, _ = gateway.paid_call("/v1/chat/completions", chat("[[tag:rate]]"), payer)
    assert got.status == 429 and "paid calls in the last minute" in got.json()["error"]
    assert 0 < int(got.headers["Retry-After"]) <= 60
    assert gateway.model.books.tags["rate"] == RATE_PER_MINUTE
    assert gateway.transfers(payer.address, start) == []


def test_the_operator_sees_what_was_sold_and_it_matches_the_chain(gateway: Gateway) -> None:
    """Last in this file: every sale above, counted by the metrics, equals what reached the operator."""
    operator = gateway.daemon.api_url("operator")

    def sold() -> dict[tuple[str, str], float]:
        text = http(operator + "/metrics").body.decode()
        family = next(f for f in text_string_to_metric_families(text) if f.name == "oracle_gateway_sales_amount")
        return {(s.labels["route"], s.labels["state"]): s.value for s in family.samples}

    wait_until(lambda: sum(v for (_, state), v in sold().items() if state == "answered") == 0, 30,
               what="every answered sale to settle")
    token = gateway.stack.contract("TestUSD")
    received = sum(int(e["args"]["value"]) for e in token.events.Transfer().get_logs(
        from_block=0, argument_filters={"to": gateway.stack.keys.owner.address}))
    amounts = sold()
    assert amounts[("chat", "settled")] > 0 and amounts[("analyze", "settled")] > 0
    assert amounts[("chat", "settled")] + amounts[("analyze", "settled")] == received
    assert amounts[("chat", "failed")] == amounts[("analyze", "failed")] == 0
