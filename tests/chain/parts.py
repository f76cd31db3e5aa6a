"""The transaction manager's parts, built on their own against a real anvil with the real contracts and
a real store: requests are asked through the example consumer, taken in by the real watcher, answered
and signed as the pipeline would, and handed to the part under test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from oracle.chain.calldata import fulfill_calldata
from oracle.chain.clock import ChainClock
from oracle.chain.rpc import ChainClient
from oracle.chain.tx.batch import ReadyResponse
from oracle.chain.tx.broadcaster import Broadcaster, OnSent
from oracle.chain.tx.confirmer import Confirmer
from oracle.chain.tx.fees import FeeEstimator
from oracle.chain.tx.guards import Guards
from oracle.chain.tx.in_flight import InFlight
from oracle.chain.tx.outbox import Outbox, address_of
from oracle.chain.tx.refusals import Refusal
from oracle.chain.watcher import TOPICS, RequestWatcher
from oracle.config import ChainSettings, GasSettings
from oracle.devnet import LocalStack
from oracle.devnet.answer import ask, send_raw_call, signer_for, success_response
from oracle.events import FULFILLED_TOPIC
from oracle.protocol import RequestParams, ResultSpec, ResultType
from oracle.store import RequestState, Store, StoredTx, request_key

R = RequestState
GAS = {"max_fee_per_gas": 100 * 10**9, "priority_fee": 10**9, "daily_budget": 100 * 10**18,
       "low_balance": 10**16, "replace_after": 10.0}


@dataclass
class Parts:
    stack: LocalStack
    chain: ChainSettings
    rpc: ChainClient
    store: Store
    in_flight: InFlight
    fees: FeeEstimator
    guards: Guards
    outbox: Outbox
    sent: list[tuple[StoredTx, Refusal]]  # what the broadcaster handed on, with the node's answer

    def broadcaster(self, on_sent: OnSent | None = None, clock: Callable[[], float] = time.time) -> Broadcaster:
        """A broadcaster that hands what it sent to `on_sent`, by default only noting it in `sent`."""
        async def noted(tx: StoredTx, refusal: Refusal) -> None:
            self.sent.append((tx, refusal))
            if on_sent is not None:
                await on_sent(tx, refusal)

        return Broadcaster(self.chain, self.in_flight, self.outbox, self.fees, self.guards, noted, clock)

    def confirmer(self) -> Confirmer:
        return Confirmer(self.chain, self.rpc, self.store.txs, self.in_flight, self.outbox, self.fees, self.guards)

    def state(self, item: ReadyResponse) -> str:
        row = self.store.requests.get(item.key)
        assert row is not None
        return row.state

    def detail(self, item: ReadyResponse) -> str:
        row = self.store.requests.get(item.key)
        assert row is not None
        return row.reason_detail

    def anvil(self, method: str, *params: Any) -> Any:
        return self.stack.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


@asynccontextmanager
async def parts(stack: LocalStack, tmp_path: Path, *, confirmations: int = 0, **gas: Any) -> AsyncIterator[Parts]:
    chain = ChainSettings(name="local", chain_id=stack.chain_id, rpc_url=stack.rpc_url,
                          oracle=stack.addresses["AIOracle"], confirmations=confirmations,
                          native_price_micro_usd=3_000 * 10**6, gas=GasSettings(**{**GAS, **gas}))
    store = Store.open(tmp_path / "oracle.sqlite")
    key = stack.keys.signer.private_key
    try:
        async with aiohttp.ClientSession() as session:
            rpc = ChainClient(session, stack.rpc_url)
            in_flight = InFlight(store.requests)
            guards = Guards(chain, rpc, store.txs, address_of(key))
            yield Parts(stack, chain, rpc, store, in_flight, FeeEstimator(chain.gas, rpc), guards,
                        Outbox(chain, rpc, store.txs, in_flight, guards, key, time.time), [])
    finally:
        store.close()


def params(stack: LocalStack, n: int, *, deadline_in: int = 300, **kw: Any) -> RequestParams:
    now = stack.w3.eth.get_block("latest")["timestamp"]
    fields: dict[str, Any] = dict(
        callback=stack.addresses["TypedResultsConsumer"], callback_gas_limit=200_000, deadline=now + deadline_in,
        max_tokens=64, temperature=0, seed=1, model_spec="dev-model-2026-01-01",
        prompt=f"Rate proposal {n}.".encode(), result=ResultSpec(ResultType.UINT, min=0, max=9))
    fields.update(kw)
    return RequestParams(**fields)


async def signed(p: Parts, requests: Sequence[RequestParams], extra_fee: int = 0) -> list[ReadyResponse]:
    """Ask each request on-chain, take its log in with the watcher, store an answer and its signature
    (the states the pipeline leaves a request in), and return what the pipeline hands on."""
    events = [ask(p.stack, r, extra_fee=extra_fee) for r in requests]
    head = p.stack.w3.eth.block_number
    logs = await p.rpc.get_logs(p.chain.oracle, TOPICS, head - len(events) + 1, head)
    RequestWatcher(p.chain, p.rpc, p.store.requests, p.store.blocks, ChainClock()).ingest(logs)
    p.store.requests.confirm_up_to(p.chain.chain_id, head)  # (as the watcher does once they are deep enough)
    signer = signer_for(p.stack)
    ready = []
    for n, event in enumerate(events):
        key = request_key(p.chain.chain_id, p.chain.oracle, event.request_id)
        response = success_response(event, n % 10)
        assert p.store.requests.transition(key, [R.CONFIRMED], R.ACCEPTED)
        assert p.store.requests.store_answer(key, status=response.status, reason=response.reason_code,
                                             result=response.result, model_used=response.model_used,
                                             receipt_hash=response.receipt_hash, receipt_body="{}")
        signature = signer.sign_response(response)
        assert p.store.requests.store_signature(key, signature)
        ready.append(ReadyResponse(key, response, event.commitment, signature, event.commitment.deadline))
    await p.store.requests.commit()
    return ready


def relay(stack: LocalStack, item: ReadyResponse) -> None:
    """Another account sends our signed response (anyone may): the request is settled without us."""
    data = fulfill_calldata(item.response, item.commitment, item.signature)
    assert send_raw_call(stack, stack.addresses["AIOracle"], data, stack.keys.bots)["status"] == 1


def fulfilled_ids(stack: LocalStack, tx_hash: bytes) -> list[bytes]:
    """The request ids a mined transaction fulfilled, from its receipt's Fulfilled events."""
    receipt = stack.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    return [bytes(entry["topics"][1]) for entry in receipt["logs"] if bytes(entry["topics"][0]) == FULFILLED_TOPIC]


@asynccontextmanager
async def running(*loops: Any) -> AsyncIterator[None]:
    """Run the parts' loops (`run()` coroutines) while the block runs."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
