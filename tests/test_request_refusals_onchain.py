"""Bad requests revert on-chain with a custom error that names the problem, readable from Python."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.types import TxParams, Wei

from oracle.abi.errors import decode_revert
from oracle.devnet import LocalStack
from oracle.protocol import RequestParams, ResultSpec, ResultType


def _params(stack: LocalStack) -> RequestParams:
    now = stack.w3.eth.get_block("latest")["timestamp"]
    return RequestParams(
        callback=stack.addresses["TypedResultsConsumer"], callback_gas_limit=100_000, deadline=now + 600,
        max_tokens=64, temperature=0, seed=0, model_spec="best", prompt=b"question",
        result=ResultSpec(ResultType.UINT, min=0, max=10),
    )


def _from_bots(stack: LocalStack, value: int) -> TxParams:
    return {"from": Web3.to_checksum_address(stack.keys.bots.address), "value": Wei(value)}


def _refusal(stack: LocalStack, params: RequestParams, value: int | None = None) -> str:
    oracle = stack.contract("AIOracle")
    if value is None:
        value = 10**18
    with pytest.raises(ContractCustomError) as err:
        oracle.functions.request(params.to_abi()).call(_from_bots(stack, value))
    return str(decode_revert(bytes.fromhex(str(err.value.data)[2:])))


def test_fee_below_quote(stack: LocalStack) -> None:
    p = _params(stack)
    quote = stack.contract("AIOracle").functions.quote(p.model_spec, p.max_tokens, p.callback_gas_limit).call()
    assert _refusal(stack, p, quote - 1) == f"FeeBelowQuote(sent={quote - 1}, quote={quote})"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"prompt": b"x" * 16_385}, "PromptTooLarge(length=16385, max=16384)"),
        ({"callback_gas_limit": 2_000_001}, "CallbackGasTooHigh(given=2000001, max=2000000)"),
        ({"model_spec": "gpt 4o"}, "InvalidModelSpec(offset=3)"),
        ({"result": ResultSpec(ResultType.UINT, min=11, max=10)}, "InvalidResultBounds(kind=2)"),
        ({"result": ResultSpec(ResultType.INT, min=1, max=-1)}, "InvalidResultBounds(kind=3)"),
        ({"result": ResultSpec(ResultType.ABI, max_bytes=64, abi_type="(uint8")}, "InvalidAbiType()"),
        ({"result": ResultSpec(ResultType.CHOICE, labels=("only",))}, "InvalidChoiceLabels(count=1, max=32)"),
        ({"result": ResultSpec(ResultType.CHOICE, labels=("yes", "no", "yes"))},
         "DuplicateChoiceLabel(first=0, again=2)"),
        ({"model_spec": "cheapest;max_price=1;max_price=2"}, "DuplicateModelSpecOption(offset=21)"),
    ],
)
def test_bad_request_names_the_problem(stack: LocalStack, change: dict[str, Any], expected: str) -> None:
    assert _refusal(stack, replace(_params(stack), **change)) == expected


def test_unknown_result_type(stack: LocalStack) -> None:
    p = _params(stack)
    raw = list(p.to_abi())
    raw[8] = (9, 0, 0, 0, [], "")  # a kind no ResultType has
    with pytest.raises(ContractCustomError) as err:
        stack.contract("AIOracle").functions.request(tuple(raw)).call(_from_bots(stack, 10**18))
    assert str(decode_revert(bytes.fromhex(str(err.value.data)[2:]))) == "UnknownResultType(kind=9)"
