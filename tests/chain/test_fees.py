"""The fee estimator on its own against anvil: its price is one a block takes, it follows the next base
fee, it never goes above the cap, and its bump replaces a transaction the node holds."""

from __future__ import annotations

from pathlib import Path

from oracle.chain.tx.refusals import Refusal
from oracle.devnet import LocalStack
from tests.chain.parts import parts

GWEI = 10**9


def next_base_fee(stack: LocalStack) -> int:
    return int(stack.w3.eth.fee_history(1, "latest")["baseFeePerGas"][-1])


async def test_the_price_leaves_the_next_base_fee_room_to_double_under_the_cap(own_stack: LocalStack,
                                                                              tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path, max_fee_per_gas=50 * GWEI, priority_fee=2 * GWEI) as p:
        try:
            p.anvil("anvil_setNextBlockBaseFeePerGas", hex(5 * GWEI))
            p.anvil("evm_mine")
            base = next_base_fee(own_stack)
            assert 0 < base <= 5 * GWEI
            assert await p.fees.read(fresh=True) == (2 * base + 2 * GWEI, 2 * GWEI)
            assert p.fees.base_fee == base and p.fees.current() == (2 * base + 2 * GWEI, 2 * GWEI)

            # The base fee jumps: twice it would pass the cap, so the cap is the price.
            p.anvil("anvil_setNextBlockBaseFeePerGas", hex(40 * GWEI))
            p.anvil("evm_mine")
            assert 2 * next_base_fee(own_stack) > 50 * GWEI
            assert await p.fees.read(fresh=True) == (50 * GWEI, 2 * GWEI)

            # A transaction signed at that price is mined in the next block.
            max_fee, priority = p.fees.current()
            tx = p.outbox.sign_transfer(await p.rpc.nonce(p.outbox.sender, "pending"), max_fee, priority)
            assert await p.outbox.broadcast(tx) == Refusal.NONE
            receipt = own_stack.w3.eth.wait_for_transaction_receipt(tx.tx_hash, timeout=30)  # type: ignore[arg-type]
            assert receipt["status"] == 1
        finally:
            p.anvil("anvil_setNextBlockBaseFeePerGas", hex(GWEI))
            p.anvil("evm_mine")


async def test_the_priority_fee_never_passes_the_cap(own_stack: LocalStack, tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path, max_fee_per_gas=GWEI, priority_fee=3 * GWEI) as p:
        max_fee, priority = await p.fees.read(fresh=True)
        assert max_fee == priority == GWEI


async def test_a_bump_replaces_what_the_node_holds_and_says_when_it_passes_the_cap(own_stack: LocalStack,
                                                                                  tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path, max_fee_per_gas=100 * GWEI, fee_bump_percent=15) as p:
        p.anvil("evm_setAutomine", False)
        try:
            nonce = await p.rpc.nonce(p.outbox.sender, "pending")
            max_fee, priority = await p.fees.read(fresh=True)
            held = p.outbox.sign_transfer(nonce, max_fee, priority)
            assert await p.outbox.broadcast(held) == Refusal.NONE
            assert await p.rpc.transaction_known(held.tx_hash)

            # The same fees under the same nonce are refused as a replacement; the bump is taken.
            same = p.outbox.sign(nonce, p.outbox.sender, b"\x01", 21_100, max_fee, priority, [])
            assert await p.outbox.broadcast(same) == Refusal.REPLACEMENT
            bumped_fee, bumped_priority = p.fees.outbid([held], max_fee, priority)
            assert bumped_fee == max_fee * 115 // 100 + 1 and bumped_priority == priority * 115 // 100 + 1
            replacement = p.outbox.sign_transfer(nonce, bumped_fee, bumped_priority)
            assert await p.outbox.broadcast(replacement) == Refusal.NONE

            p.anvil("evm_mine")
            assert own_stack.w3.eth.get_transaction_receipt(replacement.tx_hash)["status"] == 1  # type: ignore[arg-type]
            assert not await p.rpc.transaction_known(held.tx_hash)

            # A transaction at the cap cannot be outbid under it: the caller is told by a price above the cap.
            at_cap = p.outbox.sign_transfer(nonce + 1, 100 * GWEI, priority)
            assert p.fees.outbid([at_cap], *p.fees.current())[0] > p.fees.cap
        finally:
            p.anvil("evm_setAutomine", True)
