"""The transaction manager's guards and re-pricing, on a live daemon: a low signer balance stops new
work (and says so), a spent daily gas budget holds sending, and a transaction that is not mined in
time is re-sent with higher fees under the same nonce."""

from __future__ import annotations

from pathlib import Path

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import wait_until
from oracle.devnet.model_server import ModelServer
from oracle.protocol import PolicyClass, ResultSpec, ResultType, Status
from oracle.store import RequestState, request_key
from tests.daemon.helpers import (
    QUICK_GAS,
    anvil_rpc,
    ask_params,
    decoded,
    fulfillments_per_request,
    mining_held,
    start_daemon,
    start_ready,
    state_of,
    txs_on_record,
    wait_delivered,
)

SPEC = ResultSpec(ResultType.UINT, min=0, max=9)


def test_low_signer_balance_stops_new_work_and_says_so(env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, _ = env
    anvil_rpc(stack, "anvil_setBalance", [stack.keys.signer.address, hex(10**15)])
    run = start_ready(env)
    try:
        event = ask(stack, ask_params(run, SPEC, prompt="while the signer is nearly empty"))
        wait_until(lambda: "below low_balance" in run.daemon.log(), 15, what="the daemon to say why it stopped")
        key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
        assert model.books.calls[key] == 0 and not decoded(run, event.request_id)["delivered"]
        anvil_rpc(stack, "anvil_setBalance", [stack.keys.signer.address, hex(100 * 10**18)])
        assert wait_delivered(run, event.request_id)["status"] == Status.SUCCESS
    finally:
        assert run.daemon.stop() == 0


def test_spent_daily_gas_budget_holds_sending(env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, _, _ = env
    run = start_ready(env, daily_budget=10**12)  # less than any fulfillment could cost at these fees
    try:
        event = ask(stack, ask_params(run, SPEC, prompt="over budget"))
        wait_until(lambda: "daily gas budget" in run.daemon.log(), 15, what="the daemon to say sending is held")
        assert state_of(run, event.request_id) == RequestState.SIGNED  # answered and signed, not sent
        assert not decoded(run, event.request_id)["delivered"]
    finally:
        assert run.daemon.stop() == 0


def test_stuck_transaction_is_repriced_under_the_same_nonce(env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, _, _ = env
    run = start_ready(env)
    try:
        event = ask(stack, ask_params(run, SPEC, prompt="stuck for a while"))
        with mining_held(stack) as resume:  # nothing is mined until we say so
            wait_until(lambda: "rebuilt (not mined after" in run.daemon.log(), 20, what="a re-priced transaction")
            resume()
            anvil_rpc(stack, "anvil_mine", [1])
            assert wait_delivered(run, event.request_id)["status"] == Status.SUCCESS
            assert fulfillments_per_request(stack)[event.request_id] == 1
            wait_until(lambda: bool(txs_on_record(run, ["confirmed"])), 10, what="the transaction to be confirmed")
            replaced, mined = txs_on_record(run, ["replaced", "dropped"]), txs_on_record(run, ["confirmed"])
            assert replaced and {t.nonce for t in replaced} == {t.nonce for t in mined}
            assert max(t.max_fee for t in mined) > max(t.max_fee for t in replaced)
    finally:
        assert run.daemon.stop() == 0


def test_daemon_refuses_an_oracle_whose_fees_cannot_pay_for_its_smallest_answer(
        env: tuple[LocalStack, ModelServer, Path]) -> None:
    stack, model, tmp = env
    oracle = stack.contract("AIOracle")
    for cls in (PolicyClass.CHEAPEST, PolicyClass.ENSEMBLE):  # as a fresh deployment has them: zero
        stack.transact(oracle.functions.setFeeSchedule(int(cls), (0, 0, 0)), stack.keys.owner)
    run = start_daemon(stack, model, tmp, gas=QUICK_GAS)
    wait_until(lambda: not run.daemon.alive(), 30, what="the daemon to refuse to start")
    assert run.daemon.stop() == 2
    log = run.daemon.log()
    assert "cannot pay for its smallest response" in log and "setFeeSchedule" in log
    assert "cheapest: at least 0 wei charged" in log and "ensemble: at least 0 wei charged" in log
    assert "fastest:" not in log  # the classes that do pay are not named
