"""The broadcaster on its own against anvil: responses go out in batches under consecutive nonces, each
transaction on record (and its responses marked submitted) before it leaves; what would run at a loss,
what is past its deadline and what the chain no longer waits for is not sent; over the day's gas
budget nothing is sent and the responses wait."""

from __future__ import annotations

from pathlib import Path

from oracle.chain.tx.refusals import Refusal
from oracle.devnet import LocalStack
from oracle.devnet.harness import until
from oracle.store import RequestState, TxState
from tests.chain.parts import fulfilled_ids, params, parts, relay, running, signed

R = RequestState
GWEI = 10**9


async def test_responses_go_out_in_batches_on_record_before_they_leave(own_stack: LocalStack,
                                                                       tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path, batch_max=2) as p:
        ready = await signed(p, [params(own_stack, n) for n in range(5)])
        first_nonce = await p.rpc.nonce(p.outbox.sender, "pending")
        seen_on_record: list[bool] = []

        async def on_sent(tx: object, refusal: Refusal) -> None:
            # by the time the node has it, the transaction is on record, committed
            seen_on_record.append(any(t.tx_hash == p.sent[-1][0].tx_hash
                                      for t in p.store.txs.in_state(p.chain.chain_id, p.outbox.sender,
                                                                    [TxState.PENDING])))

        broadcaster = p.broadcaster(on_sent)
        for item in ready:
            broadcaster.submit(item)
            assert broadcaster.holds(item.key)
        async with running(broadcaster.run()):
            await until(lambda: len(p.sent) == 3, 30, what="three transactions")

        # (sent up to four at a time: which batch took which nonce depends on which simulation came back first)
        assert sorted(tx.nonce for tx, _ in p.sent) == [first_nonce, first_nonce + 1, first_nonce + 2]
        assert sorted(tx.request_keys for tx, _ in p.sent) == sorted([[i.key for i in ready[n:n + 2]]
                                                                      for n in (0, 2, 4)])
        assert all(refusal == Refusal.NONE for _, refusal in p.sent) and seen_on_record == [True] * 3
        for tx, _ in p.sent:
            receipt = own_stack.w3.eth.get_transaction_receipt(tx.tx_hash)  # type: ignore[arg-type]
            carried = [i for i in ready if i.key in tx.request_keys]
            assert fulfilled_ids(own_stack, tx.tx_hash) == [i.response.request_id for i in carried]
            assert receipt["gasUsed"] <= own_stack.w3.eth.get_transaction(tx.tx_hash)["gas"]  # type: ignore[arg-type]
            for item in carried:
                row = p.store.requests.get(item.key)
                assert row is not None and row.state == R.SUBMITTED and row.fulfill_tx == tx.tx_hash
                assert p.in_flight.carried(item.key)
        assert broadcaster.sent == 3


async def test_what_would_run_at_a_loss_is_stored_unprofitable_and_not_sent(own_stack: LocalStack,
                                                                              tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path, max_fee_per_gas=1_000 * GWEI) as p:
        cheap = await signed(p, [params(own_stack, 10)])
        dear = await signed(p, [params(own_stack, 11)], extra_fee=10**17)
        p.anvil("anvil_setNextBlockBaseFeePerGas", hex(100 * GWEI))
        p.anvil("evm_mine")
        try:
            broadcaster = p.broadcaster()
            for item in cheap + dear:
                broadcaster.submit(item)
            async with running(broadcaster.run()):
                await until(lambda: len(p.sent) == 1, 30, what="the paying response sent")
            (tx, _), = p.sent
            assert tx.request_keys == [dear[0].key]
            assert fulfilled_ids(own_stack, tx.tx_hash) == [dear[0].response.request_id]
            assert p.state(cheap[0]) == R.UNPROFITABLE
            assert "does not cover" in p.detail(cheap[0]) and "wei/gas" in p.detail(cheap[0])
            assert not broadcaster.holds(cheap[0].key)
        finally:
            p.anvil("anvil_setNextBlockBaseFeePerGas", hex(GWEI))
            p.anvil("evm_mine")


async def test_past_its_deadline_or_settled_by_another_a_response_is_not_sent(own_stack: LocalStack,
                                                                              tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path) as p:
        late, taken, marker = await signed(p, [params(own_stack, 20, deadline_in=60), params(own_stack, 21),
                                               params(own_stack, 22)])
        # someone else fulfils `taken` first: the chain no longer waits for it
        relay(own_stack, taken)
        # the broadcaster's clock (the chain's now) is past `late`'s deadline but not the others'
        nonce = await p.rpc.nonce(p.outbox.sender, "pending")
        broadcaster = p.broadcaster(clock=lambda: late.deadline + 1)
        for item in (late, taken, marker):
            broadcaster.submit(item)
        async with running(broadcaster.run()):
            await until(lambda: len(p.sent) == 1, 30, what="the marker sent")
        (tx, _), = p.sent
        # the simulation said one of two would be skipped: the nonce signed for both went to the marker alone
        assert tx.request_keys == [marker.key] and tx.nonce == nonce
        assert p.store.txs.at_nonce(p.chain.chain_id, p.outbox.sender, nonce) == [tx]
        assert p.state(late) == R.EXPIRED and p.detail(late) == "deadline passed before it could be sent"
        # `taken` is held back (the watcher will see its settlement), still signed, and not sent
        assert p.state(taken) == R.SIGNED and broadcaster.holds(taken.key)
        assert fulfilled_ids(own_stack, tx.tx_hash) == [marker.response.request_id]


async def test_over_the_daily_gas_budget_nothing_is_sent_and_the_responses_wait(own_stack: LocalStack,
                                                                                tmp_path: Path) -> None:
    async with parts(own_stack, tmp_path, daily_budget=10**12) as p:
        (item,) = await signed(p, [params(own_stack, 30)])
        nonce = await p.rpc.nonce(p.outbox.sender, "pending")
        broadcaster = p.broadcaster()
        broadcaster.submit(item)
        async with running(broadcaster.run()):
            await until(lambda: "daily gas budget" in p.guards.paused_reason, 30, what="the budget pause")
            await until(lambda: broadcaster.holds(item.key), 30, what="the response queued again")
        assert "could cost" in p.guards.paused_reason and not p.guards.accepting_new_work
        assert p.sent == [] and p.store.txs.at_nonce(p.chain.chain_id, p.outbox.sender, nonce) == []
        assert p.state(item) == R.SIGNED
        assert await p.rpc.nonce(p.outbox.sender, "pending") == nonce
