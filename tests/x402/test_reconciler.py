"""The reconciler on a payment chain that reorganises and a node that fails: a settlement is final only at the
network's confirmation depth, one reorganised away is unresolved again, and node errors or refused log
ranges on one payment never stop the others. On a stack of its own (these tests rewrite its chain)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from oracle.devnet.fault_proxy import FaultKnobs, FaultProxy
from oracle.store import Payment, Store
from oracle.x402 import PaymentContext
from oracle.x402.reconciler import NOT_ON_CHAIN, Reconciler, ReconcileReport
from tests.x402.conftest import X402Stack, paying_client, running_x402

BODY = json.dumps({"model": "m-2026-01-01", "messages": [{"role": "user", "content": "hello"}]}).encode()
_n = iter(range(10**6))


@pytest.fixture(scope="module")
def chain() -> Iterator[X402Stack]:
    yield from running_x402()  # a stack of its own: these tests rewrite its chain


@pytest.fixture(autouse=True)
def _reset(chain: X402Stack) -> Iterator[None]:
    yield
    chain.paywall.knobs.drop_after_settle = False
    chain.paywall.payment_identifier = True


def _rpc(s: X402Stack, method: str, params: list[Any]) -> Any:
    return s.stack.w3.provider.make_request(method, params)  # type: ignore[arg-type]


async def _pay(s: X402Stack, store: Store, **settings: Any) -> Payment:
    ctx = PaymentContext(f"31337:0xoracle:0x{next(_n) + 90_000:064x}", "0x" + "22" * 20, 1, 10**6)
    async with paying_client(s, store, **settings) as client:
        reply = await client.post(f"{s.model.base_url}/chat/completions", BODY,
                                  {"Content-Type": "application/json"}, 30, ctx, s.pin, "local")
    assert reply.payment is not None
    return reply.payment


async def _lost_answer(s: X402Stack, store: Store) -> Payment:
    """A payment that settled while its answer was lost, at a provider that keeps no answers: unknown,
    with no transaction named, so only the token's logs can tell."""
    s.paywall.knobs.drop_after_settle = True
    s.paywall.payment_identifier = False
    try:
        row = await _pay(s, store)
    finally:
        s.paywall.knobs.drop_after_settle = False
        s.paywall.payment_identifier = True
    assert row.state == "unknown" and not row.tx_hash
    return row


async def _reconcile(s: X402Stack, store: Store, rpc_url: str | None = None, clock: float | None = None,
                     confirmations: int = 2, max_log_range: int = 2_000) -> ReconcileReport:
    network = {"network": s.network, "rpc_url": rpc_url or s.stack.rpc_url, "confirmations": confirmations,
               "max_log_range": max_log_range, "rpc_timeout": 2.0}
    async with aiohttp.ClientSession() as session:
        reconciler = Reconciler(store.payments, s.settings(networks=[network]), session, stale_after=0,
                                clock=(lambda: clock) if clock is not None else time.time)
        return await reconciler.run_once()


def _row(store: Store, p: Payment) -> Payment:
    row = store.payments.payment(p.id)
    assert row is not None
    return row


async def test_a_settlement_is_final_only_at_the_confirmation_depth(chain: X402Stack, store: Store) -> None:
    paid = await _pay(chain, store)
    assert paid.state == "settled" and not paid.final
    assert (await _reconcile(chain, store, confirmations=3)).final == 0
    block = _row(store, paid).settled_block
    receipt = chain.stack.w3.eth.get_transaction_receipt(paid.tx_hash)  # type: ignore[arg-type]
    assert block == receipt["blockNumber"] and not _row(store, paid).final
    _rpc(chain, "anvil_mine", [3])
    assert (await _reconcile(chain, store, confirmations=3)).final == 1
    row = _row(store, paid)
    assert row.final and row.state == "settled" and row.settled_block == block
    assert paid.id not in [p.id for p in store.payments.settlements_to_confirm()]  # no longer re-checked


async def test_a_settlement_moved_to_another_block_is_followed(chain: X402Stack, store: Store) -> None:
    paid = await _pay(chain, store)
    tx = chain.stack.w3.eth.get_transaction(paid.tx_hash)  # type: ignore[arg-type]
    raw = chain.stack.w3.eth.get_raw_transaction(paid.tx_hash)  # type: ignore[arg-type]
    _rpc(chain, "anvil_reorg", [1, [[raw.to_0x_hex(), 0]]])  # the same transaction, a new block
    assert tx["blockHash"] != chain.stack.w3.eth.get_block(tx["blockNumber"])["hash"]
    await _reconcile(chain, store, confirmations=0)
    row = _row(store, paid)
    assert row.state == "settled" and row.final and row.tx_hash == paid.tx_hash
    assert row.settled_block == chain.stack.w3.eth.get_transaction_receipt(paid.tx_hash)["blockNumber"]  # type: ignore[arg-type]


async def test_node_errors_on_some_payments_do_not_stop_the_others(chain: X402Stack, store: Store) -> None:
    rows = [await _lost_answer(chain, store) for _ in range(4)]
    proxy = FaultProxy(chain.stack.rpc_url, chain.stack.ws_url, FaultKnobs(error_rate=0.4, seed=5)).start()
    try:
        passes = 0
        while any(_row(store, r).state != "settled" for r in rows):
            report = await _reconcile(chain, store, rpc_url=proxy.rpc_url, confirmations=0)  # never raises
            passes += 1
            assert passes < 40, [_row(store, r) for r in rows]
        assert proxy.counts.errors > 0
    finally:
        proxy.stop()
    assert report.errors >= 0
    for r in rows:
        row = _row(store, r)
        receipt = chain.stack.w3.eth.get_transaction_receipt(row.tx_hash)  # type: ignore[arg-type]
        assert row.state == "settled" and receipt["status"] == 1 and receipt["blockNumber"] == row.settled_block


async def test_log_queries_start_at_the_payment_and_are_halved_when_refused(chain: X402Stack,
                                                                          store: Store) -> None:
    _rpc(chain, "anvil_mine", [300])  # a long chain before the payment: a scan from block 0 would show
    row = await _lost_answer(chain, store)
    head = chain.stack.w3.eth.block_number
    assert row.from_block >= head - 5  # the head seen before signing
    proxy = FaultProxy(chain.stack.rpc_url, chain.stack.ws_url, FaultKnobs(max_log_range=2)).start()
    try:
        _rpc(chain, "anvil_mine", [5])
        report = await _reconcile(chain, store, rpc_url=proxy.rpc_url, confirmations=2, max_log_range=64)
    finally:
        proxy.stop()
    settled = _row(store, row)
    assert report.settled == 1 and settled.state == "settled" and settled.tx_hash and settled.settled_block
    assert proxy.counts.refused_ranges > 0  # asked for more than the node allows, then for less
    assert proxy.counts.calls["eth_getLogs"] < 40  # from the payment's block, not from block 0


async def test_a_settlement_reorganised_away_is_unresolved_again(chain: X402Stack, store: Store) -> None:
    """Last in this module: anvil drops the rolled-back transaction and the facilitator's nonce with it."""
    paid = await _pay(chain, store)
    assert paid.state == "settled"
    _rpc(chain, "anvil_rollback", [1])  # the settlement's block is gone, and anvil drops its transaction
    report = await _reconcile(chain, store)
    row = _row(store, paid)
    assert report.reorganised == 1 and row.state == "unknown" and row.error == NOT_ON_CHAIN and not row.final
    usd = chain.stack.contract("TestUSD")
    assert not usd.functions.authorizationState(paid.payer, bytes.fromhex(paid.nonce[2:])).call()
    # Unused and past its validBefore: expired, and its budget is free again.
    report = await _reconcile(chain, store, clock=time.time() + 600)
    assert report.expired == 1 and _row(store, paid).state == "expired"
