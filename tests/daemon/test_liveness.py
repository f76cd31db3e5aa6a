"""The daemon never stalls on a transaction: the largest answers are mineable, a transaction the node
takes and never mines is rebuilt under its nonce, and a base-fee jump costs at most one re-pricing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from eth_utils import keccak

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.fault_proxy import FaultKnobs, FaultProxy
from oracle.devnet.harness import wait_until
from oracle.devnet.model_server import ModelServer
from oracle.events import FULFILLED_TOPIC, decode_fulfilled
from oracle.protocol import ResultSpec, ResultType, Status
from oracle.results import encode_result
from oracle.store import Store, request_key
from tests.daemon.helpers import (
    Running,
    anvil_rpc,
    ask_params,
    audit_chain,
    gas_on_record,
    gas_paid_on_chain,
    start_daemon,
    wait_delivered,
)

REPLACE_AFTER = 10.0
GAS = {"max_fee_per_gas": 100 * 10**9, "priority_fee": 10**9, "daily_budget": 100 * 10**18,
       "low_balance": 10**16, "replace_after": REPLACE_AFTER}


@pytest.mark.parametrize("callback_gas", [0, 2_000_000], ids=["no-callback-gas", "max-callback-gas"])
def test_largest_text_answer_the_limits_allow_is_fulfilled(env: tuple[LocalStack, ModelServer, Path],
                                                           callback_gas: int) -> None:
    stack, model, tmp = env
    max_bytes = stack.contract("AIOracle").functions.limits().call()[2]  # maxResultBytes
    run = start_daemon(stack, model, tmp, gas=GAS)
    try:
        params = ask_params(run, ResultSpec(ResultType.TEXT, max_bytes=max_bytes), prompt="[[long]] tell it all",
                         callback_gas_limit=callback_gas, max_tokens=1_024)
        event = ask(stack, params, extra_fee=10**16)  # the quote does not price an answer this long
        wait_until(lambda: audit_chain(stack).fulfilled[event.request_id] == 1, 30, what="the fulfilment")
        # (storing 8 KB takes more gas than any callback may have: the Fulfilled event is the witness)
        (fulfilled,) = [decode_fulfilled(e) for e in stack.w3.eth.get_logs(
            {"address": stack.contract("AIOracle").address, "fromBlock": 0, "topics": ["0x" + FULFILLED_TOPIC.hex()]})]
        answer = model.books.answers[request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)]
        assert len(answer.encode()) == max_bytes
        assert fulfilled.status == Status.SUCCESS
        assert fulfilled.result_hash == keccak(encode_result(params.result, answer))
        assert not audit_chain(stack).reverted
    finally:
        assert run.daemon.stop() == 0


def _sent_at(run: Running, key: str) -> list[tuple[int, bytes]]:
    store = Store.open(run.config["store"]["path"])
    try:
        return [(t.nonce, t.tx_hash) for t in store.txs.in_state(run.stack.chain_id, run.stack.keys.signer.address,
                                                                 ["pending", "replaced", "dropped", "mined",
                                                                  "confirmed"]) if key in t.request_keys]
    finally:
        store.close()


@contextmanager
def _behind_proxy(env: tuple[LocalStack, ModelServer, Path], knobs: FaultKnobs) -> Iterator[tuple[Running, FaultProxy]]:
    """The daemon talking to the node through the fault proxy, stopped (exit code 0) after."""
    stack, model, tmp = env
    proxy = FaultProxy(stack.rpc_url, stack.ws_url, knobs).start()
    run = start_daemon(stack, model, tmp, rpc_url=proxy.rpc_url, ws_url=proxy.ws_url, gas=GAS)
    try:
        run.daemon.wait_ready()
        yield run, proxy
    finally:
        assert run.daemon.stop() == 0
        proxy.stop()


def test_transaction_the_node_never_mines_holds_later_nonces_less_than_a_repricing_round(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack = env[0]
    # The node answers with the hash and drops the bytes, every time they are sent: as anvil does with a
    # transaction under the calldata floor.
    with _behind_proxy(env, FaultKnobs(swallow_raw_txs=1)) as (run, proxy):
        spec = ResultSpec(ResultType.UINT, min=0, max=9)
        first = ask(stack, ask_params(run, spec, prompt="its transaction goes nowhere"))
        first_key = request_key(stack.chain_id, stack.addresses["AIOracle"], first.request_id)
        wait_until(lambda: bool(proxy.counts.swallowed), 20, what="the first transaction to be swallowed")
        swallowed_at = time.monotonic()
        later = [ask(stack, ask_params(run, spec, prompt=f"behind it {i}")).request_id for i in range(3)]
        for request_id in [first.request_id, *later]:
            assert wait_delivered(run, request_id)["status"] == Status.SUCCESS
        held = time.monotonic() - swallowed_at
        assert held < REPLACE_AFTER, f"later nonces waited {held:.1f} s"
        # the swallowed bytes went out at most twice; the nonce was rebuilt as a new transaction
        (copies,) = proxy.counts.swallowed.values()
        assert copies <= 2
        signed = _sent_at(run, first_key)
        assert len({n for n, _ in signed}) == 1 and len(signed) >= 2, signed
        audit = audit_chain(stack)
        assert all(audit.fulfilled[i] == 1 for i in [first.request_id, *later]) and not audit.reverted
        wait_until(lambda: audit_chain(stack).pending_nonce == audit_chain(stack).latest_nonce, 10,
                   what="no transaction left behind a gap")


def test_base_fee_jump_under_the_cap_costs_at_most_one_repricing(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, _, _ = env
    run = start_daemon(stack, env[1], env[2], gas=GAS)
    try:
        run.daemon.wait_ready()
        spec = ResultSpec(ResultType.UINT, min=0, max=9)
        warm = ask(stack, ask_params(run, spec, prompt="before the jump"))
        wait_delivered(run, warm.request_id)
        # 60 gwei from the next block on, under the daemon's cap of 100 gwei; the request is mined in it
        anvil_rpc(stack, "anvil_setNextBlockBaseFeePerGas", [hex(60 * 10**9)])
        asked_at = time.monotonic()
        # a fee that pays for answering at the cap (else it is left unanswered: never at a loss)
        event = ask(stack, ask_params(run, spec, prompt="right after the jump", callback_gas_limit=100_000),
                    extra_fee=10**17)
        assert stack.w3.eth.get_block("latest")["baseFeePerGas"] == 60 * 10**9
        assert wait_delivered(run, event.request_id)["status"] == Status.SUCCESS
        waited = time.monotonic() - asked_at
        assert waited < REPLACE_AFTER, f"fulfilment waited {waited:.1f} s"
        # at most one re-pricing: the transaction priced before the jump, and the one priced after it
        key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
        assert len(_sent_at(run, key)) <= 2, _sent_at(run, key)
        assert not audit_chain(stack).reverted
        # the day's gas on record is what the chain's receipts say was paid
        wait_until(lambda: gas_on_record(run) == gas_paid_on_chain(stack), 10, what="the gas ledger to agree")
    finally:
        assert run.daemon.stop() == 0


def test_transaction_refused_for_good_frees_its_nonce_and_its_responses_go_again(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack = env[0]
    # the node refuses the first transaction and its rebuilt replacement for a reason no price fixes
    with _behind_proxy(env, FaultKnobs(refuse_raw_txs=2)) as (run, proxy):
        spec = ResultSpec(ResultType.UINT, min=0, max=9)
        event = ask(stack, ask_params(run, spec, prompt="its first transaction is refused"))
        # two refusals, a gap filled and a resend: on a machine busy with other work this takes a while
        assert wait_delivered(run, event.request_id, timeout=90)["status"] == Status.SUCCESS
        assert proxy.counts.refused_txs == 2
        signer = stack.keys.signer.address
        fills = [tx for n in range(stack.w3.eth.block_number + 1)
                 for tx in stack.w3.eth.get_block(n, full_transactions=True)["transactions"]
                 if not isinstance(tx, bytes) and tx["from"] == signer and tx["to"] == signer]
        assert len(fills) == 1 and fills[0]["value"] == 0  # the nonce was filled, not waited on
        audit = audit_chain(stack)
        assert audit.fulfilled[event.request_id] == 1 and not audit.reverted
        assert audit.latest_nonce == audit.pending_nonce
        wait_until(lambda: gas_on_record(run) == gas_paid_on_chain(stack), 10, what="the gas ledger to agree")
