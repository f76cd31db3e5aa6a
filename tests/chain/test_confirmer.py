"""The confirmer on its own against anvil: a transaction is final at the confirmation depth and not
before; one the node dropped is rebuilt under its nonce; one priced under the base fee is re-priced at
once; a nonce with no transaction is filled; a mined one a reorg takes back is sent again and lands
once. Each pass is driven by the test (`monitor_once`), so what a pass does is seen pass by pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eth_typing import ChecksumAddress, HexAddress, HexStr

from oracle.chain.tx.batch import ReadyResponse, calldata, gas_limit
from oracle.chain.tx.confirmer import Confirmer
from oracle.chain.tx.refusals import Refusal
from oracle.devnet import LocalStack
from oracle.devnet.harness import until
from oracle.store import RequestState, StoredTx, TxState
from tests.chain.parts import Parts, fulfilled_ids, params, parts, running, signed

R = RequestState
GWEI = 10**9


async def passes_until(confirmer: Confirmer, done: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Monitor passes, as the confirmer's loop runs them, until `done`."""
    async with running(confirmer.run()):
        await until(done, timeout, what=what)


def tx_state(p: Parts, tx_hash: bytes) -> str:
    return next(t.state for t in p.store.txs.in_state(p.chain.chain_id, p.outbox.sender, list(TxState))
                if t.tx_hash == tx_hash)


async def send_one(p: Parts, confirmer: Confirmer, item: ReadyResponse) -> StoredTx:
    """One response sent by the broadcaster, whose refusals go to `confirmer`."""
    broadcaster = p.broadcaster(confirmer.sent)
    broadcaster.submit(item)
    async with running(broadcaster.run()):
        await until(lambda: len(p.sent) == 1, 30, what="the response sent")
    return p.sent[0][0]


async def test_a_transaction_is_final_at_the_confirmation_depth_and_not_before(own_stack: LocalStack,
                                                                               tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path, confirmations=2) as p:
        confirmer = p.confirmer()
        (item,) = await signed(p, [params(own_stack, 1)])
        tx, key = await send_one(p, confirmer, item), item.key
        await confirmer.monitor_once()
        assert tx_state(p, tx.tx_hash) == TxState.MINED and p.in_flight.carried(key)
        row = p.store.requests.get(key)
        assert row is not None and row.state == R.SUBMITTED
        p.anvil("evm_mine")
        await confirmer.monitor_once()
        assert tx_state(p, tx.tx_hash) == TxState.MINED  # one block deep: not final at 2
        p.anvil("evm_mine")
        await confirmer.monitor_once()
        assert tx_state(p, tx.tx_hash) == TxState.CONFIRMED and confirmer.confirmed == 1
        row = p.store.requests.get(key)
        mined_in = own_stack.w3.eth.get_transaction_receipt(tx.tx_hash)["blockNumber"]  # type: ignore[arg-type]
        assert row is not None and row.state == R.FULFILLED and row.block_number != 0
        assert row.fulfill_tx == tx.tx_hash and not p.in_flight.carried(key)
        assert p.store.txs.gas_spent(p.chain.chain_id, _today()) > 0 and mined_in > 0


async def test_a_transaction_the_node_dropped_is_rebuilt_under_its_nonce(own_stack: LocalStack,
                                                                         tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path) as p:
        confirmer = p.confirmer()
        (item,) = await signed(p, [params(own_stack, 2)])
        p.anvil("evm_setAutomine", False)
        try:
            tx, key = await send_one(p, confirmer, item), item.key
            assert await p.rpc.transaction_known(tx.tx_hash)
            p.anvil("anvil_dropTransaction", "0x" + tx.tx_hash.hex())

            def held() -> int:  # the node's count of our transactions, those in its pool included
                return own_stack.w3.eth.get_transaction_count(ChecksumAddress(HexAddress(HexStr(p.outbox.sender))),
                                                              "pending")
            assert held() == tx.nonce
            await passes_until(confirmer, lambda: held() > tx.nonce, "the nonce held again")
            assert confirmer.rebuilt >= 1
            p.anvil("evm_mine")

            def final() -> list[StoredTx]:
                return [t for t in p.store.txs.at_nonce(p.chain.chain_id, p.outbox.sender, tx.nonce)
                        if t.state == TxState.CONFIRMED]
            await passes_until(confirmer, lambda: bool(final()), "the rebuild final")
            (landed,) = final()
            assert landed.request_keys == [key]
            assert fulfilled_ids(own_stack, landed.tx_hash) == [item.response.request_id]
            row = p.store.requests.get(key)
            assert row is not None and row.state == R.FULFILLED and row.fulfill_tx == landed.tx_hash
        finally:
            p.anvil("evm_setAutomine", True)


async def test_a_transaction_priced_under_the_base_fee_is_repriced_at_once(own_stack: LocalStack,
                                                                           tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path) as p:
        confirmer = p.confirmer()
        (item,) = await signed(p, [params(own_stack, 3)])
        base = int(own_stack.w3.eth.fee_history(1, "latest")["baseFeePerGas"][-1])
        nonce = await p.outbox.next_nonce()
        gas = gas_limit([item], p.chain.gas.fulfill_gas_overhead)
        cheap = p.outbox.sign(nonce, p.chain.oracle, calldata([item]), gas, base // 2, base // 4, [item.key])
        refusal = await p.outbox.issue(cheap)
        assert refusal == Refusal.PRICE
        await confirmer.sent(cheap, refusal)
        (again,) = [t for t in p.store.txs.at_nonce(p.chain.chain_id, p.outbox.sender, nonce) if t != cheap
                    and t.tx_hash != cheap.tx_hash]
        assert again.max_fee >= base and again.request_keys == [item.key]
        assert tx_state(p, cheap.tx_hash) == TxState.REPLACED
        await passes_until(confirmer, lambda: tx_state(p, again.tx_hash) == TxState.CONFIRMED,
                           "the re-priced one final")
        assert fulfilled_ids(own_stack, again.tx_hash) == [item.response.request_id]


async def test_a_nonce_with_no_transaction_is_filled_so_later_ones_are_mined(own_stack: LocalStack,
                                                                             tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path) as p:
        confirmer = p.confirmer()
        gap = await p.outbox.next_nonce()  # handed out, and then nothing was signed for it (a crash)
        (item,) = await signed(p, [params(own_stack, 4)])
        tx, key = await send_one(p, confirmer, item), item.key
        assert tx.nonce == gap + 1 and not await _mined(p, tx)  # it waits behind the gap
        await passes_until(confirmer, lambda: tx_state(p, tx.tx_hash) == TxState.CONFIRMED, "the later one final")
        (filler,) = p.store.txs.at_nonce(p.chain.chain_id, p.outbox.sender, gap)
        sent = own_stack.w3.eth.get_transaction(filler.tx_hash)  # type: ignore[arg-type]
        assert sent["to"] == p.outbox.sender and sent["value"] == 0 and sent["input"] == b""
        assert await p.rpc.nonce(p.outbox.sender, "latest") == gap + 2
        row = p.store.requests.get(key)
        assert row is not None and row.state == R.FULFILLED


async def test_a_mined_transaction_a_reorg_takes_back_is_sent_again_and_lands_once(own_stack: LocalStack,
                                                                                    tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path, confirmations=2) as p:
        confirmer = p.confirmer()
        (item,) = await signed(p, [params(own_stack, 5)])
        snapshot = p.anvil("evm_snapshot")["result"]  # after the request, before its fulfilment
        tx = await send_one(p, confirmer, item)
        await confirmer.monitor_once()
        assert tx_state(p, tx.tx_hash) == TxState.MINED
        assert p.anvil("evm_revert", snapshot)["result"] is True  # the block holding it is gone
        assert await p.rpc.receipt(tx.tx_hash) is None

        def landed(state: TxState) -> bool:
            return any(t.state == state for t in p.store.txs.at_nonce(p.chain.chain_id, p.outbox.sender, tx.nonce))
        async with running(confirmer.run()):
            await until(lambda: tx_state(p, tx.tx_hash) != TxState.MINED, 30, what="the reorg seen")
            await until(lambda: landed(TxState.MINED), 30, what="the response mined again")
            p.anvil("evm_mine")
            p.anvil("evm_mine")
            await until(lambda: landed(TxState.CONFIRMED), 30, what="the response final again")
        oracle = own_stack.contract("AIOracle")
        events = oracle.events.Fulfilled.get_logs(from_block=0)
        assert [e["args"]["requestId"] for e in events].count(item.response.request_id) == 1
        row = p.store.requests.get(item.key)
        assert row is not None and row.state == R.FULFILLED


async def _mined(p: Parts, tx: StoredTx) -> bool:
    return await p.rpc.receipt(tx.tx_hash) is not None


def _today() -> str:
    from oracle.chain.tx.guards import today
    return today()
