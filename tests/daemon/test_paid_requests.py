"""Paid model calls through the running daemon: a provider behind an x402 paywall on the local stack.

End to end, the on-chain balances move by exactly the price, the ledger row is settled with the
transaction and the receipt names the payment. With SIGKILLs at random moments across paid requests
(between signing and sending, between sending and the answer, anywhere), every request is fulfilled
once, each attempt is paid at most once (counted on-chain), and after reconciliation the ledger is
true: nothing left signed, sent or unknown, and no budget held by a payment that moved nothing. The
paywall keeps x402's payment-identifier extension, so an answer lost with the daemon is fetched again
with the same payment after the restart: nothing is paid without delivery."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oracle.devnet import LocalStack
from oracle.devnet.answer import ask
from oracle.devnet.facilitator import Facilitator
from oracle.devnet.harness import (
    PAYMENT_ENV,
    SIGNER_ENV,
    DaemonProcess,
    dev_config,
    paid_model,
    wait_until,
    write_config,
    x402_section,
)
from oracle.devnet.model_server import Knobs, ModelServer
from oracle.devnet.paywall import Paywall
from oracle.protocol import ResultSpec, ResultType, Status
from oracle.store import Store, request_key
from tests.daemon.helpers import fulfillments_per_request

PRICE = 3_000


class Paid:
    def __init__(self, stack: LocalStack, tmp: Path, latency: float = 0.0) -> None:
        self.stack = stack
        self.network = f"eip155:{stack.chain_id}"
        self.facilitator = Facilitator(stack.rpc_url, stack.keys.facilitator.private_key, [self.network]).start()
        self.paywall = Paywall(self.facilitator.url, self.network, stack.addresses["TestUSD"],
                               stack.keys.owner.address, PRICE)
        self.model = ModelServer(Knobs(latency=latency), paywall=self.paywall).start()
        self.store_path = tmp / "oracle.sqlite"
        config = dev_config(stack, self.model.base_url, self.store_path)
        config["models"] = [paid_model(stack, self.model.base_url, PRICE, model="dev-model-2026-01-01")]
        config["x402"] = x402_section(stack, reconcile_interval=1.0, stale_after=3.0)
        self.daemon = DaemonProcess(write_config(config, tmp / "config.toml"), {
            SIGNER_ENV: stack.keys.signer.private_key.hex(), PAYMENT_ENV: stack.keys.payment_wallet.private_key.hex()})

    def stop(self) -> int:
        code = self.daemon.stop()
        self.model.stop()
        self.facilitator.stop()
        return code

    def balance(self, address: str) -> int:
        return int(self.stack.contract("TestUSD").functions.balanceOf(address).call())

    def transfers_from_wallet(self) -> Counter[str]:
        """Settlements on-chain, by EIP-3009 nonce."""
        usd = self.stack.contract("TestUSD")
        used = usd.events.AuthorizationUsed().get_logs(from_block=0, argument_filters={
            "authorizer": self.stack.keys.payment_wallet.address})
        return Counter("0x" + log["args"]["nonce"].hex() for log in used)

    def ledger(self) -> list[Any]:
        store = Store.open(self.store_path)
        try:
            return store.payments.payments()
        finally:
            store.close()


def _params(p: Paid, prompt: str) -> Any:
    from oracle.protocol import RequestParams

    now = p.stack.w3.eth.get_block("latest")["timestamp"]
    return RequestParams(p.stack.addresses["TypedResultsConsumer"], 500_000, now + 300, 64, 0, 1,
                         "dev-model-2026-01-01", prompt.encode(), ResultSpec(ResultType.UINT, min=0, max=100))


def _delivered(p: Paid, request_id: bytes) -> bool:
    return bool(p.stack.contract("TypedResultsConsumer").functions.decoded(request_id).call()[0])


@pytest.fixture(scope="module")
def paid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paid]:
    with LocalStack() as stack:
        p = Paid(stack, tmp_path_factory.mktemp("paid"))
        p.daemon.start()
        try:
            yield p
        finally:
            assert p.stop() == 0, p.daemon.log()[-3000:]


def test_a_paid_request_end_to_end(paid: Paid) -> None:
    payer, payee = paid.stack.keys.payment_wallet.address, paid.stack.keys.owner.address
    before = (paid.balance(payer), paid.balance(payee))
    event = ask(paid.stack, _params(paid, "Is this vault at risk?"))
    wait_until(lambda: _delivered(paid, event.request_id), 60, what="fulfillment")
    status = paid.stack.contract("TypedResultsConsumer").functions.decoded(event.request_id).call()[1]
    assert status == Status.SUCCESS, paid.daemon.log()[-3000:]
    assert (paid.balance(payer), paid.balance(payee)) == (before[0] - PRICE, before[1] + PRICE)
    key = request_key(paid.stack.chain_id, paid.stack.addresses["AIOracle"], event.request_id)
    (row,) = [r for r in paid.ledger() if r.request_key == key]
    assert row.state == "settled" and row.delivered and row.amount == PRICE and row.tx_hash
    store = Store.open(paid.store_path)
    try:
        stored = store.requests.receipt(key)
    finally:
        store.close()
    assert stored is not None
    (attempt,) = json.loads(stored[0])["router"]["attempts"]
    assert attempt["payment_id"] == row.id and attempt["cost"] == PRICE
    assert paid.transfers_from_wallet()[row.nonce] == 1
    assert paid.stack.keys.payment_wallet.private_key.hex() not in paid.daemon.log()


def test_sigkill_during_paid_requests(tmp_path: Path) -> None:
    rng = random.Random(402)
    with LocalStack() as stack:
        p = Paid(stack, tmp_path, latency=0.2)  # the answer comes a while after the payment was sent
        p.daemon.start()
        ids: list[bytes] = []
        seen_at_kill: Counter[str] = Counter()
        try:
            def send() -> None:
                for i in range(24):
                    ids.append(ask(stack, _params(p, f"paid crash test {i}")).request_id)
                    time.sleep(rng.uniform(0.05, 0.25))

            sender = threading.Thread(target=send)
            sender.start()
            kills = 0
            while kills < 8 or sender.is_alive():
                p.daemon.wait_ready()
                time.sleep(rng.uniform(0.1, 0.9))
                p.daemon.kill()
                kills += 1
                seen_at_kill.update(r.state for r in p.ledger() if r.state in ("reserved", "signed", "sent"))
                p.daemon.start()
            sender.join()
            wait_until(lambda: all(_delivered(p, i) for i in ids), 120, interval=0.5, what="every request")
            counts = fulfillments_per_request(stack)
            assert [i.hex() for i in ids if counts[i] != 1] == []
            wait_until(lambda: not [r for r in p.ledger() if r.state in ("reserved", "signed", "sent", "unknown")],
                       30, interval=0.5, what="the reconciler to resolve every payment")
            ledger = p.ledger()
            onchain = p.transfers_from_wallet()
            assert all(n == 1 for n in onchain.values())  # no authorization used twice
            settled = {r.nonce for r in ledger if r.state == "settled"}
            assert settled == set(onchain)  # the ledger says paid exactly where the token says so
            assert all(r.state in ("settled", "expired", "rejected") for r in ledger)
            per_attempt = Counter((r.request_key, r.attempt_id) for r in ledger if r.state == "settled")
            assert max(per_attempt.values()) == 1
            statuses = Counter(stack.contract("TypedResultsConsumer").functions.decoded(i).call()[1] for i in ids)
            assert statuses == {Status.SUCCESS: len(ids)}, statuses
            # An answer lost with the daemon is fetched again under its payment identifier (the same header
            # re-sent): one payment per request, each delivered.
            assert [r.id for r in ledger if r.state == "settled" and not r.delivered] == []
            assert len(settled) == len(ids) and all(r.identifier for r in ledger if r.header)
            print(f"kills: {kills}; payments in flight at a kill: {dict(seen_at_kill)}; ledger: "
                  f"{dict(Counter(r.state for r in ledger))}; paid without delivery: "
                  f"{sum(1 for r in ledger if r.state == 'settled' and not r.delivered)}")
        finally:
            code = p.stop()  # (an assertion here would hide the one that brought us here)
        assert code == 0, p.daemon.log()[-3000:]
