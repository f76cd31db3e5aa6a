"""Reorganisations (anvil_reorg / anvil_rollback), where anvil drops the transactions of the blocks it
removes: what the chain says wins. Each case ends with every request on the final chain fulfilled
exactly once, no nonce gap, and no transaction spent on a request that no longer exists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3.types import Wei

from oracle.chain.errors import COMMITMENT_MISMATCH
from oracle.devnet import LocalStack
from oracle.devnet.answer import ask, fulfill, success_response
from oracle.devnet.harness import wait_until
from oracle.devnet.model_server import Knobs, ModelServer
from oracle.events import FULFILLED_TOPIC, SKIPPED_TOPIC
from oracle.protocol import ResultSpec, ResultType, Status
from oracle.store import RequestState, request_key
from tests.daemon.helpers import (
    Running,
    anvil_rpc,
    ask_params,
    audit_chain,
    cursor_of,
    decoded,
    gas_on_record,
    gas_paid_on_chain,
    row_of,
    start_daemon,
    state_of,
    wait_delivered,
)

R = RequestState
SPEC = ResultSpec(ResultType.UINT, min=0, max=99)


def _fulfilment(stack: LocalStack, request_id: bytes) -> Any:
    (entry,) = stack.w3.eth.get_logs({"address": stack.contract("AIOracle").address, "fromBlock": 0,
                                      "topics": ["0x" + FULFILLED_TOPIC.hex(), "0x" + request_id.hex()]})
    return entry


def _fulfilment_block(stack: LocalStack, request_id: bytes) -> int:
    return int(_fulfilment(stack, request_id)["blockNumber"])


def _mine(stack: LocalStack, blocks: int) -> None:
    anvil_rpc(stack, "anvil_mine", [blocks])


def _final_chain_settles(run: Running, ids: list[bytes], mine: int = 0) -> None:
    """Every request answered once on the final chain; nothing reverted or sent for a gone request; the
    signer's nonces contiguous."""
    stack = run.stack

    def settled() -> bool:
        if mine:
            _mine(stack, mine)
        audit = audit_chain(stack)
        return all(audit.fulfilled[i] == 1 for i in ids) and audit.latest_nonce == audit.pending_nonce

    wait_until(settled, 60, interval=0.3, what="every request fulfilled on the final chain")
    # nothing more comes: a request asked after them is answered, and still each was answered once
    marker = ask(stack, ask_params(run, SPEC, prompt="a marker after the reorg")).request_id
    wait_until(lambda: settled() and audit_chain(stack).fulfilled[marker] == 1, 60, interval=0.3,
               what="the marker request fulfilled")
    audit = audit_chain(stack)
    assert all(audit.fulfilled[i] == 1 for i in ids), audit.fulfilled
    assert not audit.reverted and audit.skipped_unknown == 0, (audit, run.daemon.log()[-3000:])
    # gas counted once per mined transaction, and taken back for what a reorg undid
    wait_until(lambda: gas_on_record(run) == gas_paid_on_chain(stack), 15, what="the gas ledger to agree")


def _daemon_with_depth(tmp_path: Path, confirmations: int, **overrides: Any) -> Iterator[Running]:
    with LocalStack() as stack:
        model = ModelServer().start()
        run = start_daemon(stack, model, tmp_path, confirmations=confirmations, **overrides)
        try:
            run.daemon.wait_ready()
            yield run
        finally:
            assert run.daemon.stop() == 0, run.daemon.log()[-2000:]
            model.stop()


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Running]:
    """A daemon that waits for 2 confirmations."""
    yield from _daemon_with_depth(tmp_path, 2)


@pytest.fixture
def shallow(tmp_path: Path) -> Iterator[Running]:
    """A daemon that acts at once (confirmation depth 0)."""
    yield from _daemon_with_depth(tmp_path, 0)


def test_request_reorganised_away_is_not_fulfilled(deep: Running) -> None:
    stack = deep.stack
    event = ask(stack, ask_params(deep, SPEC, prompt="soon gone"))
    wait_until(lambda: state_of(deep, event.request_id) == R.SEEN, 10, what="the daemon to see the request")
    anvil_rpc(stack, "anvil_rollback", [1])
    _mine(stack, 6)
    wait_until(lambda: state_of(deep, event.request_id) == R.ROLLED_BACK, 15, what="the rollback")
    # a later request, answered, is the marker: by then the gone one would have been answered too
    later = ask(stack, ask_params(deep, SPEC, prompt="after the reorg"))
    _mine(stack, 3)
    assert wait_delivered(deep, later.request_id)["status"] == Status.SUCCESS
    # (the later request took the gone one's nonce, so its id too: the model's books are read by prompt)
    assert not any("soon gone" in json.dumps(body) for body in deep.model.books.requests)
    _final_chain_settles(deep, [later.request_id], mine=1)


def test_request_re_included_in_a_new_block_is_fulfilled_once(deep: Running) -> None:
    stack = deep.stack
    event = ask(stack, ask_params(deep, SPEC, prompt="moved to another block"))
    block = stack.w3.eth.block_number
    old_hash = stack.w3.eth.get_block(block)["hash"]
    wait_until(lambda: state_of(deep, event.request_id) == R.SEEN, 10, what="the daemon to see the request")
    tx = stack.w3.eth.get_block(block)["transactions"][0]
    raw = anvil_rpc(stack, "eth_getRawTransactionByHash", ["0x" + bytes(tx).hex()])  # type: ignore[arg-type]
    anvil_rpc(stack, "anvil_reorg", [1, [[raw, 0]]])
    assert stack.w3.eth.get_block(block)["hash"] != old_hash
    _mine(stack, 3)
    assert wait_delivered(deep, event.request_id)["status"] == Status.SUCCESS
    _final_chain_settles(deep, [event.request_id], mine=1)
    key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
    assert deep.model.books.answered[key] == 1


@pytest.mark.parametrize("how", ["rollback", "reorg"])
@pytest.mark.parametrize("settled_first", [False, True], ids=["caught-by-txmanager", "caught-by-watcher"])
def test_fulfilment_reorganised_away_at_depth_0_is_sent_again(shallow: Running, settled_first: bool,
                                                               how: str) -> None:
    stack = shallow.stack
    event = ask(stack, ask_params(shallow, SPEC, prompt=f"answered, then undone ({settled_first}, {how})"))
    wait_delivered(shallow, event.request_id)
    block = _fulfilment_block(stack, event.request_id)
    if settled_first:
        # the transaction final and the watcher's cursor past its block: only the watcher's check of
        # the cursor's block hash can notice now
        wait_until(lambda: state_of(shallow, event.request_id) == R.FULFILLED and cursor_of(shallow) >= block,
                   10, what="settlement")
    if how == "rollback":
        anvil_rpc(stack, "anvil_rollback", [stack.w3.eth.block_number - block + 1])
    else:
        anvil_rpc(stack, "anvil_reorg", [stack.w3.eth.block_number - block + 1, []])
    assert audit_chain(stack).fulfilled[event.request_id] == 0
    assert not decoded(shallow, event.request_id)["delivered"]
    wait_delivered(shallow, event.request_id)
    _final_chain_settles(shallow, [event.request_id])
    key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
    assert shallow.model.books.answered[key] == 1  # the stored answer was re-sent, not re-asked
    wait_until(lambda: state_of(shallow, event.request_id) == R.FULFILLED, 10, what="the row to say fulfilled")


def test_many_fulfilments_reorganised_away_at_depth_0_all_end_answered_once(shallow: Running) -> None:
    stack = shallow.stack
    ids: list[bytes] = []
    for round_ in range(3):
        batch = [ask(stack, ask_params(shallow, SPEC, prompt=f"round {round_} request {i}")).request_id
                 for i in range(5)]
        for request_id in batch:
            wait_delivered(shallow, request_id)
        ids += batch
        anvil_rpc(stack, "anvil_rollback", [2])  # takes fulfilments (and perhaps a request) with it
    alive = [i for i in ids if stack.contract("AIOracle").functions.commitments(i).call() != b"\0" * 32
             or audit_chain(stack).fulfilled[i]]
    _final_chain_settles(shallow, alive)


def test_fulfilment_not_yet_final_is_sent_again_when_its_block_goes(deep: Running) -> None:
    stack = deep.stack
    event = ask(stack, ask_params(deep, SPEC, prompt="mined, not final"))
    _mine(stack, 3)
    wait_delivered(deep, event.request_id)
    block = _fulfilment_block(stack, event.request_id)
    assert stack.w3.eth.block_number - block < 2  # mined, short of the confirmation depth
    anvil_rpc(stack, "anvil_rollback", [stack.w3.eth.block_number - block + 1])
    _final_chain_settles(deep, [event.request_id], mine=1)
    wait_until(lambda: state_of(deep, event.request_id) == R.FULFILLED, 10, what="the row to say fulfilled")


def test_final_fulfilment_undone_by_a_reorg_deeper_than_the_depth_is_sent_again(deep: Running) -> None:
    stack = deep.stack
    event = ask(stack, ask_params(deep, SPEC, prompt="final, then undone"))
    _mine(stack, 3)
    wait_delivered(deep, event.request_id)
    block = _fulfilment_block(stack, event.request_id)
    _mine(stack, 3)
    wait_until(lambda: state_of(deep, event.request_id) == R.FULFILLED, 10, what="the fulfilment to be final")
    anvil_rpc(stack, "anvil_reorg", [stack.w3.eth.block_number - block + 1, []])  # deeper than 2 confirmations
    _final_chain_settles(deep, [event.request_id], mine=1)
    wait_until(lambda: state_of(deep, event.request_id) == R.FULFILLED, 10, what="the row to say fulfilled")
    key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
    assert deep.model.books.answered[key] == 1


def test_request_and_its_fulfilment_re_included_keep_the_row_whole(shallow: Running) -> None:
    stack = shallow.stack
    event = ask(stack, ask_params(shallow, SPEC, prompt="both moved to new blocks"))
    request_block = stack.w3.eth.block_number
    wait_delivered(shallow, event.request_id)
    fulfil_block = _fulfilment_block(stack, event.request_id)
    wait_until(lambda: state_of(shallow, event.request_id) == R.FULFILLED and cursor_of(shallow) >= fulfil_block,
               10, what="settlement")
    hashes = [bytes(stack.w3.eth.get_block(b)["transactions"][0]) for b in (request_block, fulfil_block)]  # type: ignore[arg-type]
    raws = [anvil_rpc(stack, "eth_getRawTransactionByHash", ["0x" + h.hex()]) for h in hashes]
    depth = stack.w3.eth.block_number - request_block + 1
    anvil_rpc(stack, "anvil_reorg", [depth, [[raws[0], 0], [raws[1], fulfil_block - request_block]]])
    _mine(stack, 1)
    _final_chain_settles(shallow, [event.request_id])
    fulfilled = _fulfilment(stack, event.request_id)

    def whole() -> bool:
        row = row_of(shallow, event.request_id)
        return (row is not None and row.state == R.FULFILLED
                and row.fulfill_tx == bytes(fulfilled["transactionHash"]) and row.result is not None
                and row.receipt_hash is not None and row.signature is not None)

    wait_until(whole, 15, what="the row to describe the fulfilment on-chain")
    row = row_of(shallow, event.request_id)
    assert row is not None and row.status == Status.SUCCESS
    assert decoded(shallow, event.request_id)["receiptHash"] == row.receipt_hash


@pytest.fixture
def bounded(tmp_path: Path) -> Iterator[Running]:
    """A daemon at depth 0 that follows a reorg back at most 2 blocks."""
    yield from _daemon_with_depth(tmp_path, 0, max_reorg_depth=2)


def test_reorg_deeper_than_max_reorg_depth_stops_the_chains_intake(bounded: Running) -> None:
    run = bounded
    stack = run.stack
    event = ask(stack, ask_params(run, SPEC, prompt="answered before the deep reorg"))
    wait_delivered(run, event.request_id)
    _mine(stack, 4)
    head = stack.w3.eth.block_number
    wait_until(lambda: cursor_of(run) >= head and state_of(run, event.request_id) == R.FULFILLED, 10,
               what="the watcher to reach the head")
    anvil_rpc(stack, "anvil_reorg", [8, []])  # the request and its fulfilment go, 5 and more blocks deep
    wait_until(lambda: "reorg deeper than max_reorg_depth 2" in run.daemon.log(), 15,
               what="the daemon to stop the chain's intake")
    assert "ERROR" in next(line for line in run.daemon.log().splitlines() if "max_reorg_depth 2" in line)
    wait_until(lambda: "beyond max_reorg_depth 2" in run.daemon.log(), 15,
               what="the transaction manager to leave its transaction as it is")
    # nothing beyond the bound was touched: the request is still on record as fulfilled
    assert state_of(run, event.request_id) == R.FULFILLED
    assert cursor_of(run) == head
    assert run.daemon.stop() == 0
    run.restart()  # a restart meets the same reorg and stops again, still touching nothing
    wait_until(lambda: run.daemon.log().count("reorg deeper than max_reorg_depth 2") >= 2, 15,
               what="the restarted daemon to stop the intake again")
    assert state_of(run, event.request_id) == R.FULFILLED


def test_relayed_fulfilment_reorganised_away_above_the_cursor_is_answered_again(tmp_path: Path) -> None:
    with LocalStack() as stack:
        model = ModelServer(Knobs(latency=3.0)).start()  # a slow model: the relay comes first
        # sweeps a minute apart: after the first, what happens next reaches the daemon by subscription only
        run = start_daemon(stack, model, tmp_path, sweep_interval=60.0)
        try:
            run.daemon.wait_ready()
            wait_until(lambda: cursor_of(run) >= stack.w3.eth.block_number, 10, what="the first sweep")
            event = ask(stack, ask_params(run, SPEC, prompt="relayed by someone else, then undone"))
            # anyone may relay a signed response: another account does, while the daemon asks its model
            fulfill(stack, event, success_response(event, 7), sender=stack.keys.agents)
            relay_block = stack.w3.eth.block_number
            wait_until(lambda: state_of(run, event.request_id) == R.FULFILLED, 10,
                       what="the relayed settlement to be taken in")
            assert cursor_of(run) < relay_block  # above the cursor: only the subscription saw it
            assert run.daemon.stop() == 0
            anvil_rpc(stack, "anvil_rollback", [1])  # the relay is gone; the request is open again
            _mine(stack, 1)
            run.restart()
            _final_chain_settles(run, [event.request_id])
            entry = _fulfilment(stack, event.request_id)
            receipt = stack.w3.eth.get_transaction_receipt(entry["transactionHash"])
            assert receipt["from"] == stack.keys.signer.address  # answered again, by the daemon
        finally:
            assert run.daemon.stop() == 0
            model.stop()


def _skipped(stack: LocalStack) -> list[Any]:
    return list(stack.w3.eth.get_logs({"address": stack.contract("AIOracle").address, "fromBlock": 0,
                                       "topics": ["0x" + SKIPPED_TOPIC.hex()]}))


def test_request_id_given_to_another_request_while_the_first_is_answered_gets_the_new_one_answered(
        tmp_path: Path) -> None:
    with LocalStack() as stack:
        model = ModelServer(Knobs(latency=2.0)).start()  # the answer to the first comes after the swap
        run = start_daemon(stack, model, tmp_path)
        try:
            run.daemon.wait_ready()
            first = ask(stack, ask_params(run, SPEC, prompt="the first content under this id"))
            wait_until(lambda: bool(model.books.total), 10, what="the model to be asked about the first")
            anvil_rpc(stack, "anvil_rollback", [1])  # the first request is gone ...
            second = ask(stack, ask_params(run, SPEC, prompt="other content, the same id"))  # ... its id re-used
            assert second.request_id == first.request_id and second.commitment != first.commitment
            # the answer to the first is not sent (it would be skipped); the second is answered
            assert wait_delivered(run, second.request_id)["status"] == Status.SUCCESS
            _final_chain_settles(run, [second.request_id])
            assert _skipped(stack) == []
            wait_until(lambda: state_of(run, second.request_id) == R.FULFILLED, 10,
                       what="the row to say fulfilled")
        finally:
            assert run.daemon.stop() == 0
            model.stop()


def test_fulfilment_re_included_after_its_request_id_went_to_another_request_leaves_that_one_open(
        shallow: Running) -> None:
    """A reorg puts another request under the id, and the daemon's fulfilment of the first after it: the
    oracle skips the fulfilment (CommitmentMismatch), and the other request is still answered."""
    stack = shallow.stack
    first = ask(stack, ask_params(shallow, SPEC, prompt="answered, then its id taken"))
    asked_in = stack.w3.eth.block_number
    wait_delivered(shallow, first.request_id)
    answered_in = _fulfilment_block(stack, first.request_id)
    wait_until(lambda: state_of(shallow, first.request_id) == R.FULFILLED and cursor_of(shallow) >= answered_in,
               10, what="settlement")
    ask_tx = stack.w3.eth.get_block(asked_in)["transactions"][0]
    fulfil_tx = stack.w3.eth.get_block(answered_in)["transactions"][0]
    sent = stack.w3.eth.get_transaction(ask_tx)  # type: ignore[arg-type]
    # the same account, the same nonce, other content: the consumer's next request id is the first's again
    other = ask_params(shallow, SPEC, prompt="other content, the same id")
    fee = stack.contract("AIOracle").functions.quote(other.model_spec, other.max_tokens,
                                                     other.callback_gas_limit).call()
    tx = stack.contract("TypedResultsConsumer").functions.ask(other.to_abi()).build_transaction({
        "from": stack.keys.bots.address, "nonce": sent["nonce"], "value": fee, "gas": 1_000_000,
        "maxFeePerGas": Wei(10 * 10**9), "maxPriorityFeePerGas": Wei(10**9), "chainId": stack.chain_id})
    raw_other = stack.w3.eth.account.sign_transaction(tx, stack.keys.bots.private_key).raw_transaction
    raw_fulfil = anvil_rpc(stack, "eth_getRawTransactionByHash", ["0x" + bytes(fulfil_tx).hex()])  # type: ignore[arg-type]
    depth = stack.w3.eth.block_number - asked_in + 1
    anvil_rpc(stack, "anvil_reorg", [depth, [["0x" + bytes(raw_other).hex(), 0], [raw_fulfil, 1]]])
    assert [bytes(e["data"])[:4] for e in _skipped(stack)] == [COMMITMENT_MISMATCH]
    # the other request under the id is answered, once
    assert wait_delivered(shallow, first.request_id)["status"] == Status.SUCCESS
    _final_chain_settles(shallow, [first.request_id])
    wait_until(lambda: state_of(shallow, first.request_id) == R.FULFILLED, 10, what="the row to say fulfilled")
