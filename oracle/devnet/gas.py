"""Gas of requesting and fulfilling, measured as the `gasUsed` of real transactions on the local stack.

Fulfilling, in the conditions its targets are stated for: the payee's balance is already non-zero, the
consumer's callback is a no-op, and the result is 32 bytes (a uint256 with no zero bytes). Requesting,
straight from an account: a 100-byte prompt with a uint result (the requester's first request, which
sets its nonce, then a later one) and a 1,000-byte prompt with a 1,000-byte text result. Every byte a
request sends is fixed (the deadline is chosen with no zero byte), so its gas is exact.
"""

from __future__ import annotations

from dataclasses import replace

from eth_utils import keccak, to_checksum_address

from oracle.devnet.answer import fulfill, fulfill_batch, requested_events, success_response
from oracle.devnet.keys import DevKey
from oracle.devnet.stack import LocalStack
from oracle.events import RequestedEvent
from oracle.protocol import RequestParams, ResultSpec, ResultType

# Code that stops at once: a callback target that accepts every call and does nothing.
NOOP_CODE = "0x00"
NOOP_CONSUMER = to_checksum_address("0x000000000000000000000000000000000000a11c")
SINGLE_TARGET = 55_000
BATCH20_PER_RESPONSE_TARGET = 22_000
_VALUE = int.from_bytes(keccak(b"a 32-byte result with no zero bytes"))


def _request(stack: LocalStack, count: int) -> list[RequestedEvent]:
    oracle = stack.contract("AIOracle")
    now = stack.w3.eth.get_block("latest")["timestamp"]
    params = RequestParams(
        callback=NOOP_CONSUMER, callback_gas_limit=50_000, deadline=now + 3_600, max_tokens=16, temperature=0,
        seed=0, model_spec="gpt-4o-2024-08-06", prompt=b"risk score?",
        result=ResultSpec(ResultType.UINT, min=0, max=2**256 - 1),
    )
    fee = oracle.functions.quote(params.model_spec, params.max_tokens, params.callback_gas_limit).call()
    events: list[RequestedEvent] = []
    for _ in range(count):
        receipt = stack.transact(oracle.functions.request(params.to_abi()), stack.keys.bots, value=fee)
        events.extend(requested_events(receipt, stack.addresses["AIOracle"]))
    return events


# What `request` costs, as contracts/README.md states it (exact: see the module's docstring).
REQUEST_GAS = {"request_uint_first_gas": 103_526, "request_uint_later_gas": 86_426, "request_text_gas": 108_960}


def measure_request_gas(stack: LocalStack, requester: DevKey) -> dict[str, int]:
    """`request` from `requester`, which must not have requested before on this oracle."""
    stack.w3.provider.make_request("anvil_setCode", [NOOP_CONSUMER, NOOP_CODE])  # type: ignore[arg-type]
    oracle = stack.contract("AIOracle")
    deadline = stack.w3.eth.get_block("latest")["timestamp"] + 3_600
    while 0 in deadline.to_bytes(4, "big"):
        deadline += 1
    uint = RequestParams(NOOP_CONSUMER, 50_000, deadline, 16, 0, 1, "gpt-4o-2024-08-06", b"r" * 100,
                         ResultSpec(ResultType.UINT, min=1, max=100))
    text = replace(uint, prompt=b"t" * 1_000, result=ResultSpec(ResultType.TEXT, max_bytes=1_000))
    gas: list[int] = []
    for params in (uint, uint, text):
        fee = oracle.functions.quote(params.model_spec, params.max_tokens, params.callback_gas_limit).call()
        gas.append(int(stack.transact(oracle.functions.request(params.to_abi()), requester, value=fee)["gasUsed"]))
    return dict(zip(REQUEST_GAS, gas, strict=True))


def measure_fulfill_gas(stack: LocalStack) -> dict[str, int]:
    stack.w3.provider.make_request("anvil_setCode", [NOOP_CONSUMER, NOOP_CODE])  # type: ignore[arg-type]
    warmup, single, alone, *batch = _request(stack, 23)
    for event in (warmup, single):
        receipt = fulfill(stack, event, success_response(event, _VALUE))
        if receipt["status"] != 1:
            raise RuntimeError("fulfill reverted while measuring gas")
    single_gas = int(receipt["gasUsed"])  # the second: the payee's balance was non-zero by then
    receipt = fulfill_batch(stack, [(alone, success_response(alone, _VALUE))])  # how the daemon sends one
    if receipt["status"] != 1:
        raise RuntimeError("fulfillBatch of one reverted while measuring gas")
    alone_gas = int(receipt["gasUsed"])
    receipt = fulfill_batch(stack, [(e, success_response(e, _VALUE)) for e in batch])
    if receipt["status"] != 1:
        raise RuntimeError("fulfillBatch reverted while measuring gas")
    return {"fulfill_single_gas": single_gas, "fulfill_batch1_gas": alone_gas,
            "fulfill_batch20_per_response_gas": int(receipt["gasUsed"]) // 20}
