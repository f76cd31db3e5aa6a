"""The soak's audit counts from outside, and it can fail: on a stack where nobody answers in time, where
the signer sends a transaction that reverts or answers twice, and where the payment wallet pays someone
it should not or for nothing delivered, each counter says so."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

from eth_account import Account
from x402.http.constants import PAYMENT_SIGNATURE_HEADER

from oracle.devnet.answer import fulfill, fulfill_batch, requested_events, send_raw_call, success_response
from oracle.protocol import ResultSpec, ResultType
from soak.audit import audit
from soak.hostile402 import FOREIGN
from soak.world import PRICE, World, WorldOptions

UINT = ResultSpec(ResultType.UINT, min=0, max=9)


def _authorization(world: World, nonce: bytes) -> None:
    """An EIP-3009 transfer from the payment wallet to the pinned payee, settled by someone, for no call."""
    stack = world.stack
    usd = stack.contract("TestUSD")
    wallet, payee = stack.keys.payment_wallet, stack.keys.owner.address
    message = {"from": wallet.address, "to": payee, "value": PRICE, "validAfter": 0, "validBefore": 2**40,
               "nonce": nonce}
    signed = Account.sign_typed_data(wallet.private_key, {
        "name": "Test USD", "version": "2", "chainId": stack.chain_id, "verifyingContract": usd.address}, {
        "TransferWithAuthorization": [{"name": n, "type": t} for n, t in [
            ("from", "address"), ("to", "address"), ("value", "uint256"), ("validAfter", "uint256"),
            ("validBefore", "uint256"), ("nonce", "bytes32")]]}, message)
    call = usd.get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)")
    stack.transact(call(wallet.address, payee, PRICE, 0, 2**40, nonce, signed.signature), stack.keys.agents)


def test_the_audit_counts_each_failure_it_is_shown(tmp_path: Path) -> None:
    with World("audit", WorldOptions(paid=True, hostile_402=("payto",)), tmp_path, 1) as world:
        stack = world.stack
        # answered at once, by hand: nothing wrong
        on_time = world.mined(world.send(world.params("on-time", UINT)))
        (event,) = requested_events(on_time, stack.addresses["AIOracle"])
        fulfill(stack, event, success_response(event, 3))
        # ... and answered again: the oracle skips it (the daemon tried to answer twice)
        assert fulfill_batch(stack, [(event, success_response(event, 3))])["status"] == 1
        # never answered, its deadline an hour away: lost
        world.mined(world.send(world.params("never-answered", UINT)))
        # answered 40 s of chain time after it was asked: stalled about 40 - (6 + 3) s
        late = world.mined(world.send(world.params("answered-late", UINT)))
        (late_event,) = requested_events(late, stack.addresses["AIOracle"])
        world.rpc("evm_increaseTime", [40])
        fulfill(stack, late_event, success_response(late_event, 4))
        # the signer sends a transaction that reverts
        reverted = send_raw_call(stack, stack.addresses["AIOracle"], b"\xde\xad\xbe\xef", stack.keys.signer)
        assert reverted["status"] == 0
        # the payment wallet pays a stranger, a hostile server is sent a payment, and a payment settles for
        # a call no paid deployment answered
        stack.transact(stack.contract("TestUSD").functions.transfer(FOREIGN, 1), stack.keys.payment_wallet)
        server = world.hostile["payto"]
        body = json.dumps({"messages": [{"role": "user", "content": "[[tag:paid-by-mistake]] hi"}]}).encode()
        request = urllib.request.Request(server.base_url + "/chat/completions", body,
                                         {PAYMENT_SIGNATURE_HEADER: "a header", "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 402
        _authorization(world, os.urandom(32))

        counts = audit(world)
        assert (counts.requests, counts.fulfilled, counts.lost) == (3, 2, 1)
        assert counts.examples["lost"] == ["never-answered"]
        # both waited the 40 s the clock jumped, less the re-pricing delay and 3 blocks
        assert 25 <= counts.stalled_seconds <= 45, counts.stalled_seconds
        assert counts.failed_fulfil_txs == 1
        assert counts.unintended_payments == 2  # the transfer to a stranger, the header the hostile server got
        assert counts.paid_without_delivery == 1 and counts.settlements == 1
        assert counts.skipped_responses == 1
        # (the contracts make these two impossible on-chain; they are counted all the same)
        assert counts.fulfilled_twice == 0 and counts.authorizations_reused == 0
        assert sorted(counts.failures()) == sorted(["lost", "stalled_seconds", "failed_fulfil_txs",
                                                    "unintended_payments", "paid_without_delivery"])
