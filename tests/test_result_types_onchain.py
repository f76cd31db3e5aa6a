"""Every result type end to end on anvil: request through a consumer contract, encode the value in
Python, sign the response in Python, fulfill, and read back what the contract decoded with abi.decode."""

from __future__ import annotations

from typing import Any

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.answer import failure_response, fulfill, requested_events, success_response
from oracle.events import RequestedEvent
from oracle.protocol import ReasonCode, RequestParams, ResultSpec, ResultType, Status

ABI_TUPLE = "(string,uint256,bool)"


def _ask(stack: LocalStack, result: ResultSpec) -> RequestedEvent:
    now = stack.w3.eth.get_block("latest")["timestamp"]
    params = RequestParams(
        callback=stack.addresses["TypedResultsConsumer"], callback_gas_limit=1_000_000, deadline=now + 600,
        max_tokens=256, temperature=0, seed=1, model_spec="gpt-4o-2024-08-06", prompt=b"Answer the question.",
        result=result,
    )
    fee = stack.contract("AIOracle").functions.quote(params.model_spec, params.max_tokens,
                                                     params.callback_gas_limit).call()
    receipt = stack.transact(stack.contract("TypedResultsConsumer").functions.ask(params.to_abi()),
                             stack.keys.bots, value=fee)
    (event,) = requested_events(receipt, stack.addresses["AIOracle"])
    return event


def _decoded(stack: LocalStack, request_id: bytes) -> dict[str, Any]:
    names = ["delivered", "status", "reasonCode", "text", "flag", "unsignedValue", "signedValue", "modelUsed",
             "receiptHash"]
    values = stack.contract("TypedResultsConsumer").functions.decoded(request_id).call()
    return dict(zip(names, values, strict=True))


CASES: list[tuple[ResultSpec, Any, Any, Any]] = [
    (ResultSpec(ResultType.TEXT, max_bytes=200), "Proposal 7 raises the fee to 0.3% ✓", "text", None),
    (ResultSpec(ResultType.BOOL), True, "flag", None),
    (ResultSpec(ResultType.UINT, min=0, max=100), 73, "unsignedValue", None),
    (ResultSpec(ResultType.INT, min=-(10**30), max=10**30), -(10**29) + 7, "signedValue", None),
    (ResultSpec(ResultType.CHOICE, labels=("for", "against", "abstain")), 2, "unsignedValue", None),
    (ResultSpec(ResultType.JSON, max_bytes=200), {"risk": "high", "score": [1, 2]}, "text",
     '{"risk":"high","score":[1,2]}'),
    (ResultSpec(ResultType.ABI, max_bytes=400, abi_type=ABI_TUPLE), ("summary", 2**200, True),
     ("text", "unsignedValue", "flag"), None),
]


@pytest.mark.parametrize(("spec", "value", "field", "expected"), CASES, ids=[c[0].kind.name for c in CASES])
def test_consumer_decodes_exactly_what_python_encoded(stack: LocalStack, spec: ResultSpec, value: Any,
                                                      field: Any, expected: Any) -> None:
    event = _ask(stack, spec)
    assert event.params.result == spec
    response = success_response(event, value)
    receipt = fulfill(stack, event, response, sender=stack.keys.agents)  # relayed by someone else
    assert receipt["status"] == 1
    decoded = _decoded(stack, event.request_id)
    assert decoded["delivered"] and decoded["status"] == Status.SUCCESS
    if isinstance(field, tuple):
        assert tuple(decoded[f] for f in field) == value
    else:
        assert decoded[field] == (expected if expected is not None else value)
    assert decoded["modelUsed"] == response.model_used
    assert decoded["receiptHash"] == response.receipt_hash


def test_failure_reaches_the_consumer_with_its_reason(stack: LocalStack) -> None:
    event = _ask(stack, ResultSpec(ResultType.UINT, min=0, max=100))
    fulfill(stack, event, failure_response(event, ReasonCode.MALFORMED))
    decoded = _decoded(stack, event.request_id)
    assert (decoded["delivered"], decoded["status"], decoded["reasonCode"]) == (True, Status.FAILURE,
                                                                               ReasonCode.MALFORMED)
    assert decoded["unsignedValue"] == 0


def test_fee_goes_to_the_signers_payee_not_the_relayer(stack: LocalStack) -> None:
    oracle = stack.contract("AIOracle")
    payee, relayer = stack.keys.owner.address, stack.keys.agents.address
    before = oracle.functions.balanceOf(payee).call()
    event = _ask(stack, ResultSpec(ResultType.BOOL))
    fulfill(stack, event, success_response(event, False), sender=stack.keys.agents)
    assert oracle.functions.balanceOf(payee).call() - before == event.fee
    assert oracle.functions.balanceOf(relayer).call() == 0
