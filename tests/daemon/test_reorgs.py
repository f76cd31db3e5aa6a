"""Reorganisations (anvil_reorg / anvil_rollback): a request reorganised away is not fulfilled, one
re-included in a new block is fulfilled once, and a fulfillment reorganised away is sent again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.harness import wait_until
from oracle.devnet.model_server import ModelServer
from oracle.protocol import ResultSpec, ResultType, Status
from oracle.store import State, Store, request_key
from tests.daemon.conftest import Running, start_daemon
from tests.daemon.test_result_types import _decoded, _params, _wait_delivered
from tests.daemon.test_rpc_faults import fulfillments_per_request

SPEC = ResultSpec(ResultType.UINT, min=0, max=99)


def _rpc(stack: LocalStack, method: str, params: list[Any]) -> Any:
    reply = stack.w3.provider.make_request(method, params)  # type: ignore[arg-type]
    assert "error" not in reply, reply
    return reply.get("result")


def _state(run: Running, request_id: bytes) -> str | None:
    store = Store.open(run.config["store"]["path"])
    try:
        found = store.get_request(request_key(run.stack.chain_id, run.stack.addresses["AIOracle"], request_id))
        return found.state if found else None
    finally:
        store.close()


def _daemon_with_depth(tmp_path: Path, confirmations: int) -> Iterator[Running]:
    with LocalStack() as stack:
        model = ModelServer().start()
        run = start_daemon(stack, model, tmp_path, confirmations=confirmations)
        try:
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
    event = ask(stack, _params(deep, SPEC, prompt="soon gone"))
    wait_until(lambda: _state(deep, event.request_id) == State.SEEN, 10, what="the daemon to see the request")
    _rpc(stack, "anvil_rollback", [1])
    _rpc(stack, "anvil_mine", [6])
    wait_until(lambda: _state(deep, event.request_id) == State.ROLLED_BACK, 15, what="the rollback")
    time.sleep(1.5)
    key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
    assert deep.model.books.calls[key] == 0
    assert fulfillments_per_request(stack)[event.request_id] == 0
    # the daemon goes on answering
    later = ask(stack, _params(deep, SPEC, prompt="after the reorg"))
    _rpc(stack, "anvil_mine", [3])
    assert _wait_delivered(deep, later.request_id)["status"] == Status.SUCCESS


def test_request_re_included_in_a_new_block_is_fulfilled_once(deep: Running) -> None:
    stack = deep.stack
    event = ask(stack, _params(deep, SPEC, prompt="moved to another block"))
    block = stack.w3.eth.block_number
    old_hash = stack.w3.eth.get_block(block)["hash"]
    wait_until(lambda: _state(deep, event.request_id) == State.SEEN, 10, what="the daemon to see the request")
    tx = stack.w3.eth.get_block(block)["transactions"][0]
    raw = _rpc(stack, "eth_getRawTransactionByHash", ["0x" + bytes(tx).hex()])  # type: ignore[arg-type]
    _rpc(stack, "anvil_reorg", [1, [[raw, 0]]])
    assert stack.w3.eth.get_block(block)["hash"] != old_hash
    _rpc(stack, "anvil_mine", [3])
    assert _wait_delivered(deep, event.request_id)["status"] == Status.SUCCESS
    _rpc(stack, "anvil_mine", [3])
    time.sleep(1.0)
    assert fulfillments_per_request(stack)[event.request_id] == 1
    key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
    assert deep.model.books.answered[key] == 1


@pytest.mark.parametrize("settled_first", [False, True], ids=["caught-by-txmanager", "caught-by-watcher"])
def test_fulfillment_reorganised_away_is_sent_again(shallow: Running, settled_first: bool) -> None:
    stack = shallow.stack
    event = ask(stack, _params(shallow, SPEC, prompt=f"answered, then undone ({settled_first})"))
    _wait_delivered(shallow, event.request_id)
    assert fulfillments_per_request(stack)[event.request_id] == 1
    if settled_first:
        # let the transaction be confirmed and the watcher's cursor pass its block: only the watcher's
        # reorg check can notice now
        wait_until(lambda: _state(shallow, event.request_id) == State.FULFILLED, 10, what="settlement")
        time.sleep(1.5)
    _rpc(stack, "anvil_rollback", [1])  # drops the block holding the fulfillment, and its transaction
    assert fulfillments_per_request(stack)[event.request_id] == 0
    assert not _decoded(shallow, event.request_id)["delivered"]
    _wait_delivered(shallow, event.request_id)
    time.sleep(1.5)
    assert fulfillments_per_request(stack)[event.request_id] == 1
    key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
    assert shallow.model.books.answered[key] == 1  # the stored answer was re-sent, not re-asked
