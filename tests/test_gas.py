"""Fulfillment gas, measured as gasUsed of real transactions on anvil, stays within its targets."""

from __future__ import annotations

from oracle.devnet import LocalStack
from oracle.devnet.gas import BATCH20_PER_RESPONSE_TARGET, SINGLE_TARGET, measure_fulfill_gas


def test_fulfill_gas_within_targets() -> None:
    # A stack of its own: the figures depend on nothing else having touched the chain.
    with LocalStack() as stack:
        gas = measure_fulfill_gas(stack)
    assert gas["fulfill_single_gas"] <= SINGLE_TARGET, gas
    assert gas["fulfill_batch20_per_response_gas"] <= BATCH20_PER_RESPONSE_TARGET, gas
