"""Whether an oracle's fee schedule pays for the daemon's own smallest response, checked at start-up.

A fresh deployment's schedule is all zeros: anyone could ask for 1 wei, and every answer would be a
loss. The smallest response is a failure (no result) to a request with no callback gas and one
answer token; its gas is the transaction manager's bound (`gas.response_gas_bound`) at the price a
transaction would be signed with now.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from eth_abi import decode, encode
from eth_utils import keccak

from oracle.chain.gas import response_gas_bound
from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.config import ChainSettings
from oracle.protocol import Commitment, PolicyClass

T = TypeVar("T")
_FEE_SCHEDULE = keccak(text="feeSchedule(uint8)")[:4]
_ANY = b"\xff" * 32  # the dearest calldata: no zero bytes
_ANY_ADDRESS = "0x" + "ff" * 20


@dataclass(frozen=True)
class Shortfall:
    policy_class: PolicyClass
    least_fee: int  # wei: the base fee plus one answer token
    response_cost: int  # wei: the smallest response's gas at the price now

    def __str__(self) -> str:
        return (f"{self.policy_class.name.lower()}: at least {self.least_fee} wei charged, "
                f"{self.response_cost} wei to answer")


def smallest_response_gas(chain: ChainSettings) -> int:
    commitment = Commitment(_ANY_ADDRESS, _ANY_ADDRESS, 0, 2**64 - 1, 0, 2**96 - 1, _ANY)  # no result
    return response_gas_bound(_ANY, commitment, chain.gas.fulfill_gas_overhead)


async def patiently(call: Callable[[], Awaitable[T]], tries: int = 30) -> T:
    """`call()`, again after a node's failure (backing off to a second between tries): a node that fails
    now and then must not stop the daemon's start. A revert is an answer, not a failure: it is raised."""
    delay = 0.05
    for attempt in range(tries):
        try:
            return await call()
        except RpcError as exc:
            if exc.revert_data is not None or exc.code == 3 or attempt == tries - 1:
                raise
        except RpcUnavailable:
            if attempt == tries - 1:
                raise
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)
    raise AssertionError("unreachable")


def schedule_shortfalls(schedules: Mapping[PolicyClass, tuple[int, int, int]], chain: ChainSettings,
                        max_fee_per_gas: int) -> list[Shortfall]:
    """The classes whose least fee, of their (baseFee, perCallbackGas, perOutputToken), does not pay for
    the smallest response at `max_fee_per_gas` (`oracle deploy` checks a schedule with it before sending)."""
    cost = smallest_response_gas(chain) * max_fee_per_gas
    shortfalls = []
    for cls, (base_fee, _per_callback_gas, per_output_token) in schedules.items():
        least = base_fee + per_output_token
        if least < cost:
            shortfalls.append(Shortfall(cls, least, cost))
    return shortfalls


async def fee_shortfalls(rpc: ChainClient, chain: ChainSettings, max_fee_per_gas: int) -> list[Shortfall]:
    """The policy classes whose least fee does not pay for the smallest response at `max_fee_per_gas`."""
    schedules = {}
    for cls in PolicyClass:
        data = _FEE_SCHEDULE + encode(["uint8"], [int(cls)])
        raw = await patiently(functools.partial(rpc.eth_call, chain.oracle, data))
        schedules[cls] = decode(["uint96", "uint64", "uint96"], raw)
    return schedule_shortfalls(schedules, chain, max_fee_per_gas)
