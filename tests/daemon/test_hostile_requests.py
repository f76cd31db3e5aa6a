"""Hostile requests from the chain each end with a stored reason and an on-chain failure status; the
daemon keeps running. A decoy contract emitting the oracle's event signature is ignored."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak
from web3 import Web3

from oracle.abi import input_types, signature
from oracle.devnet.answer import ask, requested_events
from oracle.devnet.harness import wait_until
from oracle.events import FULFILLED_TOPIC, FulfilledEvent, RequestedEvent, decode_fulfilled
from oracle.protocol import PolicyClass, ReasonCode, RequestParams, ResultSpec, ResultType, Status
from oracle.store import RequestState, Store, request_key
from tests.daemon.helpers import Running, ask_params, audit_chain, decoded, wait_delivered


def _stored(run: Running, request_id: bytes) -> Any:
    store = Store.open(run.config["store"]["path"])
    try:
        return store.requests.get(request_key(run.stack.chain_id, run.stack.addresses["AIOracle"], request_id))
    finally:
        store.close()


def _receipt(run: Running, key: str) -> tuple[str, bytes]:
    store = Store.open(run.config["store"]["path"])
    try:
        found = store.requests.receipt(key)
    finally:
        store.close()
    assert found is not None
    return found


def _zero_fees(run: Running) -> Callable[[], object]:
    oracle = run.stack.contract("AIOracle")
    before = oracle.functions.feeSchedule(int(PolicyClass.FASTEST)).call()
    run.stack.transact(oracle.functions.setFeeSchedule(int(PolicyClass.FASTEST), (0, 0, 0)), run.stack.keys.owner)
    return lambda: run.stack.transact(oracle.functions.setFeeSchedule(int(PolicyClass.FASTEST), tuple(before)),
                                      run.stack.keys.owner)


UINT = ResultSpec(ResultType.UINT, min=0, max=100)


@pytest.mark.parametrize(
    ("what", "change", "reason", "detail"),
    [
        ("invalid UTF-8 prompt", {"prompt": b"rate \xff\xfe this"}, ReasonCode.INVALID_PROMPT, "not valid UTF-8"),
        ("invalid UTF-8 labels", {}, ReasonCode.INVALID_PROMPT, "choice label 1 is not valid UTF-8"),
        ("oversize prompt", {"prompt": b"x" * 16_000}, ReasonCode.PROMPT_TOO_LARGE, "context window"),
        ("unknown model", {"model_spec": "no-such-model-2020-01-01"}, ReasonCode.UNKNOWN_MODEL,
         "no deployment serves"),
        ("ensemble beyond the catalog", {"model_spec": "ensemble:3"}, ReasonCode.PROVIDERS_UNAVAILABLE,
         "ensemble:3 needs 3 providers; 1 eligible"),
        ("unknown spec option", {"model_spec": "cheapest;colour=red"}, ReasonCode.UNSUPPORTED, "unknown model spec"),
        ("capability not offered", {"model_spec": "cheapest;needs=tools"}, ReasonCode.UNSUPPORTED, "capabilities"),
        # requests no answer can satisfy: refused before any model is asked
        ("ABI type far above maxBytes", {"result": ResultSpec(ResultType.ABI, max_bytes=4_096,
                                                             abi_type="(uint256[20000])")},
         ReasonCode.UNSUPPORTED, "takes at least 640000 bytes encoded, above the requested maxBytes of 4096"),
        ("ABI type one byte above maxBytes", {"result": ResultSpec(ResultType.ABI, max_bytes=63,
                                                                  abi_type="(uint256,uint256)")},
         ReasonCode.UNSUPPORTED, "raise maxBytes to at least 64"),
        ("ABI type nested deeper than answers are read", {"result": ResultSpec(
            ResultType.ABI, max_bytes=4_096, abi_type="(" * 64 + "uint8" + ")" * 64)},
         ReasonCode.UNSUPPORTED, "nest at most 63 levels"),
        ("ABI arrays nested deeper than answers are read", {"result": ResultSpec(
            ResultType.ABI, max_bytes=4_096, abi_type="(uint8" + "[]" * 64 + ")")},
         ReasonCode.UNSUPPORTED, "nest at most 63 levels"),
        ("JSON without room for an object", {"result": ResultSpec(ResultType.JSON, max_bytes=1)},
         ReasonCode.UNSUPPORTED, "cannot hold an object"),
        # 5,000 bytes on-chain, 30,000 as sent once JSON-escaped: above the 4,096-token window
        ("prompt that grows when escaped", {"prompt": b"\x01" * 5_000}, ReasonCode.PROMPT_TOO_LARGE,
         "context window"),
    ],
)
def test_hostile_request_is_answered_with_a_failure_and_a_reason(
    running: Running, what: str, change: dict[str, Any], reason: ReasonCode, detail: str
) -> None:
    params = ask_params(running, UINT, **change)
    event = _ask_raw_labels(running, params) if "labels" in what else ask(running.stack, params)
    decoded = wait_delivered(running, event.request_id)
    assert (decoded["status"], decoded["reasonCode"]) == (Status.FAILURE, reason), what
    stored = _stored(running, event.request_id)
    assert stored.reason == reason and detail in stored.reason_detail, stored.reason_detail
    key = request_key(running.stack.chain_id, running.stack.addresses["AIOracle"], event.request_id)
    assert running.model.books.calls[key] == 0  # refused before any model was asked
    # The detail is in the receipt whose hash is on-chain, and in the log once, at INFO, with the request.
    body, digest = _receipt(running, key)
    assert digest == decoded["receiptHash"] and detail in json.loads(body)["final"]["detail"]
    lines = [line for line in running.daemon.log().splitlines() if key in line and reason.name in line]
    assert len(lines) == 1 and " INFO " in lines[0] and detail in lines[0], lines


def test_request_whose_fee_cannot_pay_for_its_answer_is_left_unanswered(running: Running) -> None:
    stack = running.stack
    restore = _zero_fees(running)  # a fresh deployment's schedule: anyone may ask for 1 wei
    try:
        # the most callback gas the oracle allows: answering would cost the operator all of it
        event = ask(stack, ask_params(running, UINT, model_spec="fastest", prompt="answer me at your cost",
                                   callback_gas_limit=2_000_000), extra_fee=1)
    finally:
        restore()
    wait_until(lambda: getattr(_stored(running, event.request_id), "state", None) == RequestState.UNPROFITABLE, 20,
               what="the request to be stored as unprofitable")
    stored = _stored(running, event.request_id)
    assert stored.reason == ReasonCode.FEE_TOO_LOW and "fee 1 wei does not cover" in stored.reason_detail
    # a later request answered is the marker: nothing was sent for the first, and no model asked
    later = ask(stack, ask_params(running, UINT, prompt="an ordinary question after it"))
    wait_delivered(running, later.request_id)
    assert audit_chain(stack).fulfilled[event.request_id] == 0
    assert not decoded(running, event.request_id)["delivered"]
    key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
    assert running.model.books.calls[key] == 0


def _ask_raw_labels(run: Running, params: RequestParams) -> RequestedEvent:
    """Ask with choice labels that are not UTF-8 (the contract only bounds their length): strings and
    bytes share one ABI encoding, so the call is encoded with bytes where the ABI says string."""
    stack = run.stack
    fee = stack.contract("AIOracle").functions.quote(params.model_spec, params.max_tokens,
                                                     params.callback_gas_limit).call()
    raw = list(params.to_abi())
    raw[6] = params.model_spec.encode()
    raw[8] = (int(ResultType.CHOICE), 0, 0, 0, [b"ok", b"\xff\xfe"], b"")
    types = [input_types("TypedResultsConsumer", "ask")[0].replace("string", "bytes")]
    data = keccak(text=signature("TypedResultsConsumer", "ask"))[:4] + encode(types, [tuple(raw)])
    tx = stack.w3.eth.send_transaction({"from": stack.keys.bots.address, "to": stack.addresses["TypedResultsConsumer"],
                                        "data": data, "value": fee})
    receipt = stack.w3.eth.wait_for_transaction_receipt(tx)
    (event,) = requested_events(receipt, stack.addresses["AIOracle"])
    return event


@pytest.mark.parametrize("abi_type", ["(" * 63 + "uint8" + ")" * 63, "(uint8" + "[]" * 62 + ")"],
                         ids=["tuples", "arrays"])
def test_the_deepest_abi_type_answers_can_hold_is_answered(running: Running, abi_type: str) -> None:
    spec = ResultSpec(ResultType.ABI, max_bytes=4_096, abi_type=abi_type)
    event = ask(running.stack, ask_params(running, spec, prompt=f"deep {abi_type[:8]}"))
    fulfilled = _wait_fulfilled(running, event.request_id)
    assert (fulfilled.status, fulfilled.reason_code) == (Status.SUCCESS, ReasonCode.NONE), _stored(
        running, event.request_id).reason_detail
    key = request_key(running.stack.chain_id, running.stack.addresses["AIOracle"], event.request_id)
    assert running.model.books.answered[key] == 1


def _wait_fulfilled(run: Running, request_id: bytes) -> FulfilledEvent:
    """The Fulfilled event of a request (whether or not the consumer could decode its result)."""
    found: list[FulfilledEvent] = []

    def fulfilled() -> bool:
        logs = run.stack.w3.eth.get_logs({"address": run.stack.contract("AIOracle").address, "fromBlock": 0,
                                          "topics": ["0x" + FULFILLED_TOPIC.hex(), "0x" + request_id.hex()]})
        found.extend(decode_fulfilled(entry) for entry in logs)
        return bool(found)

    wait_until(fulfilled, 30, what="fulfillment")
    return found[0]


@pytest.mark.parametrize(
    ("spec", "reason", "detail"),
    [
        ("cheapest;max_price=1", ReasonCode.PRICE_CAP_TOO_LOW,
         "every eligible deployment may cost more than the model spec's max_price"),
        # the local stack's one deployment keeps data ("retained")
        ("cheapest;data=zero_retention", ReasonCode.DATA_POLICY_UNAVAILABLE,
         "no deployment keeps to the data policy the model spec asks for"),
    ],
    ids=["price cap", "data policy"],
)
def test_a_spec_no_deployment_fits_ends_on_chain_with_its_own_reason_and_the_detail_in_the_receipt(
    running: Running, spec: str, reason: ReasonCode, detail: str
) -> None:
    event = ask(running.stack, ask_params(running, UINT, model_spec=spec, prompt=f"refused: {spec}"))
    fulfilled = _wait_fulfilled(running, event.request_id)
    assert (fulfilled.status, fulfilled.reason_code) == (Status.FAILURE, reason)
    key = request_key(running.stack.chain_id, running.stack.addresses["AIOracle"], event.request_id)
    store = Store.open(running.config["store"]["path"])
    try:
        body, _ = store.requests.receipt(key) or ("", b"")
    finally:
        store.close()
    assert keccak(text=body) == fulfilled.receipt_hash  # the receipt whose hash is on-chain...
    final = json.loads(body)["final"]
    assert final["reason"] == reason.name.lower() and final["detail"] == detail  # ...says why
    assert running.model.books.calls[key] == 0


def test_daemon_still_answers_after_hostile_requests(running: Running) -> None:
    event = ask(running.stack, ask_params(running, UINT, prompt="an ordinary question"))
    assert wait_delivered(running, event.request_id)["status"] == Status.SUCCESS
    assert running.daemon.alive()


def test_decoy_contract_with_the_same_event_is_ignored(running: Running) -> None:
    stack = running.stack
    decoy_address = stack.deploy("AIOracle", stack.keys.owner.address, stack.settings.limits, label="Decoy")
    decoy = stack.contract("AIOracle", decoy_address)
    params = ask_params(running, UINT, callback=stack.addresses["TypedResultsConsumer"], prompt="decoy question")
    receipt = stack.transact(decoy.functions.request(params.to_abi()), stack.keys.agents, value=10**18)
    request_id = bytes(receipt["logs"][0]["topics"][1])
    # a real request made after it is answered, so the daemon has certainly read past the decoy's block
    event = ask(stack, ask_params(running, UINT, prompt="real question after the decoy"))
    wait_delivered(running, event.request_id)
    assert decoy.functions.commitments(request_id).call() != b"\0" * 32  # never fulfilled
    decoy_key = request_key(stack.chain_id, Web3.to_checksum_address(decoy_address), request_id)
    assert running.model.books.calls[decoy_key] == 0
    assert _stored(running, request_id) is None
    assert not decoded(running, request_id)["delivered"]
