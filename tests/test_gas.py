"""Fulfillment gas, measured as gasUsed of real transactions on anvil, stays within its targets; the
gas bound the daemon sends with covers what the node needs, calldata floor (EIP-7623) included."""

from __future__ import annotations

import pytest

from oracle.chain.calldata import fulfill_batch_calldata
from oracle.chain.gas import calldata_tokens, floor_gas, fulfilment_gas, intrinsic_gas
from oracle.chain.tx import Refusal, classify_refusal
from oracle.devnet import LocalStack
from oracle.devnet.answer import requested_events, signer_for, success_response
from oracle.devnet.gas import (
    BATCH20_PER_RESPONSE_TARGET,
    NOOP_CODE,
    NOOP_CONSUMER,
    REQUEST_GAS,
    SINGLE_TARGET,
    measure_fulfill_gas,
    measure_request_gas,
)
from oracle.protocol import RequestParams, ResultSpec, ResultType

OVERHEAD = 60_000  # the config's default fulfill_gas_overhead


def test_fulfill_gas_within_targets() -> None:
    # A stack of its own: the figures depend on nothing else having touched the chain.
    with LocalStack() as stack:
        gas = measure_fulfill_gas(stack)
    assert gas["fulfill_single_gas"] <= SINGLE_TARGET, gas
    # a lone response, as the daemon sends it (fulfillBatch: skipped, not reverted, if its request went)
    assert gas["fulfill_batch1_gas"] <= SINGLE_TARGET, gas
    assert gas["fulfill_batch20_per_response_gas"] <= BATCH20_PER_RESPONSE_TARGET, gas


def test_request_gas_is_the_stated_figure() -> None:
    # Exact: every byte sent is fixed. A change to `request` or the Requested event moves it; restate the
    # figures here and in contracts/README.md.
    with LocalStack() as stack:
        assert measure_request_gas(stack, stack.keys.agents) == REQUEST_GAS


def test_calldata_costs_follow_eip_2028_and_eip_7623() -> None:
    data = b"\0" * 10 + b"\x01" * 10  # 10 zero bytes (1 token each), 10 others (4 each)
    assert calldata_tokens(data) == 50
    assert intrinsic_gas(data) == 21_000 + 4 * 50
    assert floor_gas(data) == 21_000 + 10 * 50
    # a long answer with little execution pays the floor
    long = b"\xff" * 8_000
    assert fulfilment_gas([0], long, OVERHEAD) == floor_gas(long) > intrinsic_gas(long) + OVERHEAD


def test_gas_bound_covers_the_largest_answers_the_limits_allow() -> None:
    with LocalStack() as stack:
        stack.w3.provider.make_request("anvil_setCode", [NOOP_CONSUMER, NOOP_CODE])  # type: ignore[arg-type]
        oracle = stack.contract("AIOracle")
        max_bytes = oracle.functions.limits().call()[2]
        now = stack.w3.eth.get_block("latest")["timestamp"]
        signer = signer_for(stack)
        items = []
        for callback_gas in (0, 2_000_000, 0):
            params = RequestParams(NOOP_CONSUMER, callback_gas, now + 3_600, 16, 0, 0, "gpt-4o-2024-08-06",
                                   b"tell it all", ResultSpec(ResultType.TEXT, max_bytes=max_bytes))
            fee = oracle.functions.quote(params.model_spec, params.max_tokens, params.callback_gas_limit).call()
            (event,) = requested_events(stack.transact(oracle.functions.request(params.to_abi()), stack.keys.bots,
                                                       value=fee), stack.addresses["AIOracle"])
            response = success_response(event, "\u00ff" * (max_bytes // 2))  # two non-zero bytes a character
            items.append((response, event.commitment, signer.sign_response(response)))
        for batch in ([items[0]], [items[1]], items):
            data = fulfill_batch_calldata(batch)  # as the daemon sends it, a lone response included
            needed = stack.w3.eth.estimate_gas({"from": stack.keys.signer.address, "to": oracle.address,
                                                "data": data})
            bound = fulfilment_gas([c.callback_gas_limit for _, c, _ in batch], data, OVERHEAD)
            assert bound >= max(needed, floor_gas(data)), (len(batch), bound, needed)


@pytest.mark.parametrize(("message", "refusal"), [
    ("already known", Refusal.NONE),
    ("nonce too low: next nonce 7, tx nonce 5", Refusal.NONCE_USED),
    ("max fee per gas less than block base fee: address 0xab.., maxFeePerGas: 1, baseFee: 60000000000",
     Refusal.PRICE),
    ("replacement transaction underpriced", Refusal.REPLACEMENT),
    ("insufficient funds for gas * price + value", Refusal.FUNDS),
    ("intrinsic gas too low", Refusal.PERMANENT),
    ("something the node never said before", Refusal.PERMANENT),
    ("proxy: injected internal error", Refusal.UNREACHABLE),
])
def test_node_refusals_are_read_for_what_they_mean(message: str, refusal: Refusal) -> None:
    assert classify_refusal(message) == refusal
