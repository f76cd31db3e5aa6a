"""A request whose deadline passes before the daemon can answer it is not answered (no model call, no
transaction); after its deadline the payer gets the fee back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import wait_until
from oracle.devnet.model_server import ModelServer
from oracle.protocol import ResultSpec, ResultType, Status
from oracle.store import RequestState, Store, request_key
from tests.daemon.helpers import Running, ask_params, decoded, start_daemon, wait_delivered


@pytest.fixture
def stopped(tmp_path: Path) -> Iterator[Running]:
    """A daemon that has run once (so its store exists) and is now stopped."""
    with LocalStack() as stack:
        model = ModelServer().start()
        run = start_daemon(stack, model, tmp_path)
        event = ask(stack, ask_params(run, ResultSpec(ResultType.BOOL), prompt="warm-up"))
        wait_delivered(run, event.request_id)
        assert run.daemon.stop() == 0
        try:
            yield run
        finally:
            run.daemon.stop()
            model.stop()


def test_request_expired_while_the_daemon_was_down_is_not_answered(stopped: Running) -> None:
    stack = stopped.stack
    deadline = stack.w3.eth.get_block("latest")["timestamp"] + 30
    event = ask(stack, ask_params(stopped, ResultSpec(ResultType.BOOL), prompt="too late", deadline=deadline))
    stack.w3.provider.make_request("evm_increaseTime", [60])  # type: ignore[arg-type]
    stack.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    stopped.restart()
    key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)

    def expired() -> bool:
        store = Store.open(stopped.config["store"]["path"])
        try:
            found = store.requests.get(key)
            return found is not None and found.state == RequestState.EXPIRED
        finally:
            store.close()

    wait_until(expired, 30, what="the request to be marked expired")
    assert stopped.model.books.calls[key] == 0
    assert not decoded(stopped, event.request_id)["delivered"]
    # anyone reclaims the fee for the payer, who withdraws it
    consumer = stack.contract("TypedResultsConsumer")
    before = stack.w3.eth.get_balance(stack.keys.owner.address)
    stack.transact(consumer.functions.reclaimFee(event.request_id, event.commitment.to_abi()), stack.keys.agents)
    assert consumer.functions.refundOf(stack.keys.bots.address).call() == event.fee
    stack.transact(consumer.functions.withdrawRefund(stack.keys.owner.address), stack.keys.bots)
    assert stack.w3.eth.get_balance(stack.keys.owner.address) - before == event.fee
    assert stopped.daemon.stop() == 0


def test_graceful_stop_then_restart_answers_what_came_meanwhile(stopped: Running) -> None:
    event = ask(stopped.stack, ask_params(stopped, ResultSpec(ResultType.UINT, min=0, max=5), prompt="while down"))
    stopped.restart()
    assert wait_delivered(stopped, event.request_id)["status"] == Status.SUCCESS
