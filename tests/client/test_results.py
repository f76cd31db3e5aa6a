"""`OracleClient.results()` on anvil: every result type the daemon answers, decoded as the consumer
contract decodes it; fulfilments relayed through another contract (one and a batch) read from the call
trace; a restart from the cursor file that misses and repeats nothing; a reorg that retracts a given
result and gives it again when it is included again; an expired and a cancelled request; filters; and a
receipt fetched from the operator's public listener, checked against its hash on-chain, a forged one
refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hexbytes import HexBytes

from oracle.chain.calldata import fulfill_batch_calldata, fulfill_calldata
from oracle.client import (
    OracleClient,
    ReceiptMismatch,
    ResultFilter,
    Retracted,
    Settled,
    SqliteCursor,
)
from oracle.devnet import LocalStack
from oracle.devnet.answer import ask, send_raw_call, signer_for, success_response
from oracle.devnet.harness import SIGNER_ENV, DaemonProcess, dev_config, write_config
from oracle.devnet.model_server import ModelServer
from oracle.events import RequestedEvent
from oracle.protocol import ResultSpec, ResultType
from oracle.store import request_key
from tests.daemon.helpers import anvil_rpc, ask_params, wait_delivered

TYPES = [
    ResultSpec(ResultType.TEXT, max_bytes=40), ResultSpec(ResultType.BOOL), ResultSpec(ResultType.UINT, min=10, max=20),
    ResultSpec(ResultType.INT, min=-50, max=-10), ResultSpec(ResultType.CHOICE, labels=("for", "against", "abstain")),
    ResultSpec(ResultType.JSON, max_bytes=200),
    ResultSpec(ResultType.ABI, max_bytes=512, abi_type="(string,uint256,bool)"),
]


class _On:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack


async def _take(client: OracleClient, count: int, timeout: float = 60, **kw: Any) -> list[Settled | Retracted]:
    """The first `count` items `results()` gives."""
    out: list[Settled | Retracted] = []
    items = client.results(**kw)

    async def run() -> None:
        async for item in items:
            out.append(item)
            if len(out) == count:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await items.aclose()  # the last one is taken
    return out


async def _connect(stack: LocalStack) -> OracleClient:
    return await OracleClient.connect(stack.rpc_url, ws_url=stack.ws_url, oracle=stack.addresses["AIOracle"])


def _collect(stack: LocalStack, count: int, **kw: Any) -> list[Settled | Retracted]:
    """The first `count` items a fresh client's `results()` gives."""
    async def go() -> list[Settled | Retracted]:
        client = await _connect(stack)
        try:
            return await _take(client, count, **kw)
        finally:
            await client.close()

    return asyncio.run(go())


# ---------------------------------------------------------------- what the daemon answers


@pytest.fixture(scope="module")
def answered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, ModelServer, DaemonProcess,
                                                                           list[RequestedEvent], int]]:
    tmp = tmp_path_factory.mktemp("client")
    with LocalStack() as stack:
        model = ModelServer().start()
        config = dev_config(stack, model.base_url, tmp / "oracle.sqlite")
        config["api"] = {"operator": {"port": 0}, "public": {"enabled": True, "port": 0}}
        daemon = DaemonProcess(write_config(config, tmp / "config.toml"),
                               {SIGNER_ENV: stack.keys.signer.private_key.hex()})
        try:
            daemon.start().wait_ready()
            start = stack.w3.eth.block_number + 1
            on = _On(stack)
            events = [ask(stack, ask_params(on, spec, prompt=f"about {spec.kind.name}")) for spec in TYPES]
            for e in events:
                wait_delivered(on, e.request_id)
            yield stack, model, daemon, events, start
        finally:
            daemon.stop()
            model.stop()


def test_every_result_type_the_daemon_answers_is_given_as_the_model_answered_it(answered: Any) -> None:
    stack, model, _, events, start = answered

    items = _collect(stack, len(events), from_block=start)
    by_id = {i.request_id: i for i in items if isinstance(i, Settled)}
    assert set(by_id) == {e.request_id for e in events}
    for event in events:
        s = by_id[event.request_id]
        key = request_key(stack.chain_id, stack.addresses["AIOracle"], event.request_id)
        answer = model.books.answers[key]
        kind = event.params.result.kind
        expected = (list(event.params.result.labels).index(answer) if kind == ResultType.CHOICE
                    else tuple(answer) if kind == ResultType.ABI else answer)
        assert (s.event, s.status, s.result_type) == ("fulfilled", "success", kind.name.lower())
        assert s.value == expected, (kind, s.value, answer)
        assert s.consumer == stack.addresses["TypedResultsConsumer"] and s.requester == event.requester
        assert s.model_used is not None and s.receipt_hash is not None and s.note == ""
        assert s.block_number >= start and s.transaction is not None


def test_filters_pick_by_type_consumer_requester_and_id(answered: Any) -> None:
    stack, _, _, events, start = answered

    async def go() -> None:
        client = await _connect(stack)
        try:
            (only,) = await _take(client, 1, from_block=start,
                                  where=ResultFilter(result_types=frozenset({ResultType.BOOL})))
            assert isinstance(only, Settled) and only.result_type == "bool"
            wanted = frozenset({events[3].request_id, events[5].request_id})
            two = await _take(client, 2, from_block=start, where=ResultFilter(
                request_ids=wanted, consumers=frozenset({stack.addresses["TypedResultsConsumer"].lower()}),
                requesters=frozenset({events[3].requester.upper().replace("0X", "0x")})))
            assert {i.request_id for i in two if isinstance(i, Settled)} == wanted
        finally:
            await client.close()

    asyncio.run(go())


def test_a_receipt_is_fetched_and_checked_against_its_hash_on_chain_and_a_forged_one_refused(answered: Any) -> None:
    stack, _, daemon, events, _ = answered
    event = events[1]
    public = daemon.api_url("public")

    async def go() -> None:
        client = await _connect(stack)
        try:
            receipt = await client.receipt(event.request_id, public)  # the operator's public listener
            assert receipt["request"]["key"] == request_key(stack.chain_id, stack.addresses["AIOracle"],
                                                            event.request_id)
            assert receipt["final"]["status"] == "success"

            async def forged(request: web.Request) -> web.Response:  # an operator rewriting what was decided
                return web.json_response({**receipt, "router": {"decision": "rewritten"}})

            hostile = web.Application()
            hostile.router.add_get("/v1/receipts/{hash}", forged)
            async with TestServer(hostile, host="127.0.0.1") as bad:
                with pytest.raises(ReceiptMismatch, match="not the receipt the answer was signed with"):
                    await client.receipt(event.request_id, str(bad.make_url("")).rstrip("/"))
        finally:
            await client.close()

    asyncio.run(go())


# ---------------------------------------------------------------- relays, restarts, reorgs, expiries


def _forwarder(stack: LocalStack) -> str:
    """A contract that calls the oracle with its own calldata (reverting if the call does): a relay."""
    address = stack.w3.to_checksum_address("0x" + "f0" * 20)
    oracle = bytes.fromhex(stack.addresses["AIOracle"][2:])
    # CALLDATACOPY it all; CALL(gas, oracle, 0, 0, size, 0, 0); on failure jump to 0x25 and REVERT
    code = bytes.fromhex("365f5f375f5f365f5f73") + oracle + bytes.fromhex("5af11560255700" "5b5f5ffd")
    anvil_rpc(stack, "anvil_setCode", [address, "0x" + code.hex()])
    return address


def test_relayed_fulfilments_of_every_type_are_read_from_the_call_trace(stack: LocalStack) -> None:
    on = _On(stack)
    relay = _forwarder(stack)
    start = stack.w3.eth.block_number + 1
    values: dict[ResultType, Any] = {
        ResultType.TEXT: "relayed ✓", ResultType.BOOL: True, ResultType.UINT: 17, ResultType.INT: -33,
        ResultType.CHOICE: 2, ResultType.JSON: {"risk": "low", "n": [1, 2]}, ResultType.ABI: ("x", 2**200, True)}
    specs = {spec.kind: spec for spec in TYPES}
    events = {kind: ask(stack, ask_params(on, spec)) for kind, spec in specs.items()}
    signer = signer_for(stack)
    single = success_response(events[ResultType.UINT], values[ResultType.UINT])
    receipt = send_raw_call(stack, relay, fulfill_calldata(single, events[ResultType.UINT].commitment,
                                                           signer.sign_response(single)), stack.keys.agents)
    assert receipt["status"] == 1
    batch = [(events[k], success_response(events[k], values[k])) for k in values if k != ResultType.UINT]
    data = fulfill_batch_calldata([(r, e.commitment, signer.sign_response(r)) for e, r in batch])
    assert send_raw_call(stack, relay, data, stack.keys.agents, gas=5_000_000)["status"] == 1

    got = {i.request_id: i for i in _collect(stack, len(events), from_block=start) if isinstance(i, Settled)}
    for kind, event in events.items():
        s = got[event.request_id]
        assert s.note == "" and s.transaction is not None
        assert stack.w3.eth.get_transaction(HexBytes(s.transaction))["to"] == relay
        assert s.value == values[kind]


@pytest.mark.parametrize("take_on_close", [True, False])
def test_a_restart_from_the_cursor_file_misses_and_repeats_nothing(stack: LocalStack, tmp_path: Path,
                                                                   take_on_close: bool) -> None:
    """Closing the iterator takes the item in hand, or (take_on_close off) leaves it to be given again."""
    on = _On(stack)
    start = stack.w3.eth.block_number + 1
    spec = ResultSpec(ResultType.UINT, min=0, max=1_000)
    events = [ask(stack, ask_params(on, spec, prompt=f"n{i}")) for i in range(6)]
    signer = signer_for(stack)
    answers = [(e, success_response(e, i)) for i, e in enumerate(events)]
    send_raw_call(stack, stack.addresses["AIOracle"],
                  fulfill_batch_calldata([(r, e.commitment, signer.sign_response(r)) for e, r in answers[:4]]),
                  stack.keys.signer, gas=10_000_000)
    path = tmp_path / "results.sqlite"
    mine = ResultFilter(request_ids=frozenset(e.request_id for e in events))

    async def session(count: int) -> list[Settled | Retracted]:
        client = await _connect(stack)
        cursor = SqliteCursor(path)
        try:
            return await _take(client, count, from_block=start, cursor=cursor, where=mine,
                               take_on_close=take_on_close)
        finally:
            cursor.close()
            await client.close()

    first = asyncio.run(session(2))  # stops with two of the four in one block taken
    for e, r in answers[4:]:
        send_raw_call(stack, stack.addresses["AIOracle"], fulfill_calldata(r, e.commitment, signer.sign_response(r)),
                      stack.keys.signer)
    rest = asyncio.run(session(4 if take_on_close else 5))
    ids = [i.event_id for i in first + rest]
    if not take_on_close:  # the second, in hand when the first session closed, comes first again
        assert rest[0].event_id == first[1].event_id
        rest = rest[1:]
        ids = [i.event_id for i in first + rest]
    assert len(ids) == len(set(ids)) == 6
    assert sorted(i.value for i in first + rest if isinstance(i, Settled)) == list(range(6))


def test_a_reorg_retracts_a_given_result_and_gives_it_again_when_it_is_included_again(stack: LocalStack) -> None:
    on = _On(stack)
    start = stack.w3.eth.block_number + 1
    event = ask(stack, ask_params(on, ResultSpec(ResultType.BOOL), prompt="reorged"))
    response = success_response(event, True)
    data = fulfill_calldata(response, event.commitment, signer_for(stack).sign_response(response))
    snapshot = anvil_rpc(stack, "evm_snapshot", [])
    first = send_raw_call(stack, stack.addresses["AIOracle"], data, stack.keys.signer)

    async def go() -> list[Settled | Retracted]:
        client = await _connect(stack)
        try:
            out: list[Settled | Retracted] = []
            async for item in client.results(from_block=start, where=ResultFilter(
                    request_ids=frozenset({event.request_id})), poll_interval=0.2):
                out.append(item)
                if len(out) == 1:  # given: now the block that holds it is replaced
                    await asyncio.to_thread(_reorg, stack, snapshot, data)
                if len(out) == 3:
                    return out
            return out
        finally:
            await client.close()

    given, retracted, again = asyncio.run(asyncio.wait_for(go(), 60))
    assert isinstance(given, Settled) and given.block_hash == bytes(first["blockHash"])
    assert isinstance(retracted, Retracted) and retracted.settled == given
    assert isinstance(again, Settled) and again.event_id == given.event_id and again.value is True
    assert again.block_hash != given.block_hash


def _reorg(stack: LocalStack, snapshot: str, data: bytes) -> None:
    anvil_rpc(stack, "evm_revert", [snapshot])
    anvil_rpc(stack, "anvil_mine", [3])  # a longer chain without it
    send_raw_call(stack, stack.addresses["AIOracle"], data, stack.keys.signer)  # included again, elsewhere


def test_an_expired_and_then_cancelled_request_is_given_as_each(stack: LocalStack) -> None:
    on = _On(stack)
    start = stack.w3.eth.block_number + 1
    now = stack.w3.eth.get_block("latest")["timestamp"]
    event = ask(stack, ask_params(on, ResultSpec(ResultType.BOOL), prompt="nobody answers", deadline=now + 30))
    anvil_rpc(stack, "evm_increaseTime", [60])
    anvil_rpc(stack, "anvil_mine", [1])
    consumer = stack.contract("TypedResultsConsumer")  # the requester: it cancels, crediting the payer
    stack.transact(consumer.functions.reclaimFee(event.request_id, event.commitment.to_abi()), stack.keys.agents)

    expired, cancelled = _collect(stack, 2, from_block=start,
                                  where=ResultFilter(request_ids=frozenset({event.request_id})))
    assert isinstance(expired, Settled) and (expired.event, expired.status) == ("expired", "expired")
    assert "deadline passed" in expired.note
    assert isinstance(cancelled, Settled) and (cancelled.event, cancelled.status) == ("cancelled", "cancelled")
    assert cancelled.block_number > expired.block_number
