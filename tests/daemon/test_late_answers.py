"""Answers that come late or cost more than they bring, on a live daemon: a signed response whose
deadline passes before it can be sent, a fulfilment mined after its deadline, a base-fee rise that
makes a sent response unprofitable, a killed model call whose deadline passed while the daemon was
down, a replaced transaction that is mined after all, and a signed answer that stands when a reorg
re-includes its request. Each ends as the chain says, answered at most once, the model asked once."""

from __future__ import annotations

from pathlib import Path

from web3.exceptions import ContractLogicError

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import wait_until, write_config
from oracle.devnet.model_server import ModelServer
from oracle.events import REQUESTED_TOPIC, RequestedEvent
from oracle.protocol import PolicyClass, ResultSpec, ResultType, Status
from oracle.store import RequestState, StoredRequest, TxState
from tests.daemon.helpers import (
    Running,
    anvil_rpc,
    ask_params,
    audit_chain,
    key_of,
    mining_held,
    row_of,
    start_ready,
    txs_on_record,
    wait_delivered,
)

R = RequestState
SPEC = ResultSpec(ResultType.UINT, min=0, max=9)


def _in_state(run: Running, request_id: bytes, state: RequestState, timeout: float = 20) -> StoredRequest:
    wait_until(lambda: getattr(row_of(run, request_id), "state", None) == state, timeout,
               what=f"the request to be {state}")
    row = row_of(run, request_id)
    assert row is not None
    return row


def _cancellable(run: Running, event: RequestedEvent) -> bool:
    """Its requester can take the fee back: the oracle's `cancel` simulates without a revert."""
    oracle = run.stack.contract("AIOracle")
    try:
        oracle.functions.cancel(event.request_id, event.commitment.to_abi()).call({"from": event.requester})
    except ContractLogicError:
        return False
    return True


def _never_answered(run: Running, event: RequestedEvent) -> None:
    """A request asked after it is answered (its fee pays for it even at the fee cap), and still nothing
    was sent for this one, nothing reverted, and its model was asked once."""
    stack = run.stack
    marker = ask(stack, ask_params(run, SPEC, prompt="a marker after it"), extra_fee=10**17)
    wait_delivered(run, marker.request_id)
    audit = audit_chain(stack)
    assert audit.fulfilled[event.request_id] == 0 and not audit.reverted
    assert run.model.books.calls[key_of(run, event.request_id)] == 1


def _past_deadline(stack: LocalStack, seconds: int = 400) -> None:
    anvil_rpc(stack, "evm_increaseTime", [seconds])
    anvil_rpc(stack, "anvil_mine", [1])


def test_a_signed_response_whose_deadline_passes_before_it_can_be_sent_expires(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, _ = env
    run = start_ready(env, daily_budget=10**12)  # no transaction fits: sending is held
    try:
        event = ask(stack, ask_params(run, SPEC, prompt="signed, then held", deadline=_now(stack) + 60))
        _in_state(run, event.request_id, R.SIGNED)
        _past_deadline(stack)
        row = _in_state(run, event.request_id, R.EXPIRED)
        assert "deadline passed before it could be sent" in row.reason_detail
        assert model.books.calls[key_of(run, event.request_id)] == 1
        assert audit_chain(stack).fulfilled[event.request_id] == 0 and _cancellable(run, event)
    finally:
        assert run.daemon.stop() == 0


def test_a_fulfilment_mined_after_its_deadline_is_stored_expired_and_not_sent_again(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, _ = env
    model.knobs.latency = 0.5  # the daemon answers after mining is switched off below
    run = start_ready(env)
    try:
        event = ask(stack, ask_params(run, SPEC, prompt="mined too late", deadline=_now(stack) + 60))
        with mining_held(stack) as resume:
            _in_state(run, event.request_id, R.SUBMITTED)
            _past_deadline(stack)  # the block that holds the fulfilment is past the deadline: skipped
            row = _in_state(run, event.request_id, R.EXPIRED)
            assert "skipped on-chain" in row.reason_detail
            resume()
            _never_answered(run, event)
    finally:
        assert run.daemon.stop() == 0


def test_a_sent_response_the_base_fee_makes_unprofitable_is_left_to_its_requester(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, _ = env
    model.knobs.latency = 0.5
    run = start_ready(env)
    oracle = stack.contract("AIOracle")
    schedule = oracle.functions.feeSchedule(int(PolicyClass.FASTEST)).call()
    try:
        # 0.01 ETH pays for its ~0.6M gas at a few gwei, not at the 100 gwei the cap allows
        stack.transact(oracle.functions.setFeeSchedule(int(PolicyClass.FASTEST), (0, 0, 0)), stack.keys.owner)
        event = ask(stack, ask_params(run, SPEC, prompt="cheap while gas is cheap", model_spec="fastest"),
                    extra_fee=10**16)
        stack.transact(oracle.functions.setFeeSchedule(int(PolicyClass.FASTEST), tuple(schedule)), stack.keys.owner)
        with mining_held(stack) as resume:
            _in_state(run, event.request_id, R.SUBMITTED)
            anvil_rpc(stack, "anvil_setNextBlockBaseFeePerGas", [hex(90 * 10**9)])
            anvil_rpc(stack, "anvil_mine", [1])  # its transaction pays less than this block's base fee: not in it
            row = _in_state(run, event.request_id, R.UNPROFITABLE)
            assert "does not cover" in row.reason_detail
            resume()
            _never_answered(run, event)
    finally:
        assert run.daemon.stop() == 0


def test_a_model_call_cut_by_a_kill_whose_deadline_passed_meanwhile_is_not_asked_again(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, _ = env
    model.knobs.latency = 30.0  # the call is still out when the daemon is killed
    run = start_ready(env)
    try:
        event = ask(stack, ask_params(run, SPEC, prompt="asked, then killed", deadline=_now(stack) + 60))
        key = key_of(run, event.request_id)
        wait_until(lambda: model.books.calls[key] == 1, 15, what="the model call")
        run.daemon.kill()
        model.knobs.latency = 0.0
        _past_deadline(stack)
        run.restart()
        row = _in_state(run, event.request_id, R.EXPIRED)
        assert "deadline passed before it was answered" in row.reason_detail
        _never_answered(run, event)
    finally:
        assert run.daemon.stop() == 0


def test_a_replaced_transaction_mined_after_all_settles_its_responses_once(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, _ = env
    model.knobs.latency = 0.5
    run = start_ready(env)
    try:
        event = ask(stack, ask_params(run, SPEC, prompt="sent twice, mined once"))
        with mining_held(stack) as resume:
            _in_state(run, event.request_id, R.SUBMITTED)
            (first,) = txs_on_record(run, [TxState.PENDING])
            anvil_rpc(stack, "anvil_dropTransaction", ["0x" + first.tx_hash.hex()])  # the node forgets it ...
            # ... and an empty block lowers the base fee, so the one rebuilt for it differs (and the first stays valid)
            base = int(stack.w3.eth.get_block("latest")["baseFeePerGas"])
            anvil_rpc(stack, "anvil_setNextBlockBaseFeePerGas", [hex(max(1, base // 2))])
            anvil_rpc(stack, "anvil_mine", [1])
            wait_until(lambda: bool(txs_on_record(run, [TxState.REPLACED])), 20, what="a rebuilt transaction")
            (second,) = txs_on_record(run, [TxState.PENDING])
            anvil_rpc(stack, "anvil_dropTransaction", ["0x" + second.tx_hash.hex()])
            # ... and someone sends the first again
            anvil_rpc(stack, "eth_sendRawTransaction", ["0x" + first.raw.hex()])
            anvil_rpc(stack, "anvil_mine", [1])
            wait_until(lambda: [t.tx_hash for t in txs_on_record(run, [TxState.MINED, TxState.CONFIRMED])]
                       == [first.tx_hash], 20, what="the first transaction on record as mined")
            assert [t.tx_hash for t in txs_on_record(run, [TxState.DROPPED])] == [second.tx_hash]
            resume()
            assert wait_delivered(run, event.request_id)["status"] == Status.SUCCESS
            _in_state(run, event.request_id, R.FULFILLED)
            audit = audit_chain(stack)
            assert audit.fulfilled[event.request_id] == 1 and audit.latest_nonce == audit.pending_nonce
    finally:
        assert run.daemon.stop() == 0


def test_a_signed_answer_stands_when_a_reorg_re_includes_its_request(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, _ = env
    run = start_ready(env, daily_budget=10**12)  # answered and signed, not sent
    try:
        event = ask(stack, ask_params(run, SPEC, prompt="signed before the reorg"))
        signed = _in_state(run, event.request_id, R.SIGNED)
        raw = anvil_rpc(stack, "eth_getRawTransactionByHash", ["0x" + _request_tx(stack, event.request_id).hex()])
        anvil_rpc(stack, "anvil_reorg", [stack.w3.eth.block_number - signed.block_number + 1, [[raw, 0]]])
        wait_until(lambda: getattr(row_of(run, event.request_id), "block_hash", signed.block_hash)
                   != signed.block_hash, 20, what="the request seen in its new block")
        assert run.daemon.stop() == 0
        run.config["chains"][0]["gas"]["daily_budget"] = 100 * 10**18  # room to send it now
        write_config(run.config, run.daemon.config_path)
        run.restart()
        assert wait_delivered(run, event.request_id)["status"] == Status.SUCCESS
        assert model.books.calls[key_of(run, event.request_id)] == 1  # the stored answer was sent, not asked again
        assert audit_chain(stack).fulfilled[event.request_id] == 1
    finally:
        assert run.daemon.stop() == 0


def _now(stack: LocalStack) -> int:
    return int(stack.w3.eth.get_block("latest")["timestamp"])


def _request_tx(stack: LocalStack, request_id: bytes) -> bytes:
    (entry,) = stack.w3.eth.get_logs({"address": stack.contract("AIOracle").address, "fromBlock": 0,
                                      "topics": ["0x" + REQUESTED_TOPIC.hex(), "0x" + request_id.hex()]})
    return bytes(entry["transactionHash"])
