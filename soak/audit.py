"""Counting a soak world's outcome from outside the daemon: the final chain's blocks, receipts and
events, the model servers' and the paywall's own books, and what the hostile 402 servers received.
The daemon's store is never read here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from web3.exceptions import ContractLogicError

from oracle.devnet.tags import tag_of
from oracle.events import (
    CANCELLED_TOPIC,
    FULFILLED_TOPIC,
    REQUESTED_TOPIC,
    decode_cancelled,
    decode_fulfilled,
    decode_requested,
)
from oracle.events import SKIPPED_TOPIC as SKIPPED
from soak.world import BLOCK_TIME, World

GATED = ("lost", "fulfilled_twice", "failed_fulfil_txs", "paid_without_delivery", "authorizations_reused",
         "unintended_payments", "stalled_seconds")


@dataclass
class Counts:
    requests: int = 0  # on the final chain
    fulfilled: int = 0
    expired: int = 0  # past their deadline unanswered, and refundable to their requester
    lost: int = 0
    fulfilled_twice: int = 0
    failed_fulfil_txs: int = 0
    extra_model_calls: int = 0
    paid_without_delivery: int = 0
    authorizations_reused: int = 0
    unintended_payments: int = 0
    stalled_seconds: float = 0.0
    settlements: int = 0
    skipped_responses: int = 0  # responses in the signer's transactions the oracle skipped (request gone)
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few tags behind each non-zero count

    def failures(self) -> list[str]:
        return [name for name in GATED if getattr(self, name)]

    def note(self, what: str, tag: str) -> None:
        found = self.examples.setdefault(what, [])
        if len(found) < 5:
            found.append(tag)


@dataclass(frozen=True)
class Reorg:
    fork: int  # the first block it replaced
    at: int  # the chain's time right after it


def audit(world: World, reorgs: Sequence[Reorg] = ()) -> Counts:
    """What the final chain and the servers' books say of everything the world's daemon was asked.

    A request's wait for its answer starts when it is confirmed, and starts afresh after a reorg that
    replaced its block or the block its answer ended in (what the reorg undid is answered anew); the
    time the daemon was down after a kill (`World.downtime`) is not counted: a stall is time a running
    daemon let pass."""
    stack = world.stack
    w3, counts = stack.w3, Counts()
    head = w3.eth.block_number
    times: dict[int, int] = {}
    signer = stack.keys.signer.address
    for number in range(head + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        times[number] = int(block["timestamp"])
        for tx in block["transactions"]:
            assert not isinstance(tx, bytes)
            if tx["from"] != signer:
                continue
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            if receipt["status"] != 1:
                counts.failed_fulfil_txs += 1
                counts.note("failed_fulfil_txs", tx["hash"].to_0x_hex())
            skipped = sum(1 for entry in receipt["logs"] if entry["topics"] and bytes(entry["topics"][0]) == SKIPPED)
            if skipped:
                counts.skipped_responses += skipped
                counts.note("skipped_responses", tx["hash"].to_0x_hex())
    oracle = stack.contract("AIOracle")
    logs = {topic: w3.eth.get_logs({"address": oracle.address, "fromBlock": 0, "toBlock": head,
                                    "topics": ["0x" + topic.hex()]})
            for topic in (REQUESTED_TOPIC, FULFILLED_TOPIC, CANCELLED_TOPIC)}
    fulfilled: Counter[bytes] = Counter()
    fulfilled_in: dict[bytes, int] = {}
    for entry in logs[FULFILLED_TOPIC]:
        event = decode_fulfilled(entry)
        fulfilled[event.request_id] += 1
        fulfilled_in.setdefault(event.request_id, int(entry["blockNumber"]))
    cancelled = {decode_cancelled(entry).request_id for entry in logs[CANCELLED_TOPIC]}
    now = times[head]
    slack = world.options.replace_after + 3 * BLOCK_TIME
    confirmations = world.options.confirmations
    for entry in logs[REQUESTED_TOPIC]:
        request = decode_requested(entry)
        counts.requests += 1
        tag = tag_of(request.params.prompt.decode(errors="replace")) or request.request_id.hex()
        asked_in = int(entry["blockNumber"])
        confirmed_at = times[min(asked_in + confirmations, head)]
        if fulfilled[request.request_id] > 1:
            counts.fulfilled_twice += fulfilled[request.request_id] - 1
            counts.note("fulfilled_twice", tag)
        if request.request_id in fulfilled_in:
            counts.fulfilled += 1
            waited_until = times[fulfilled_in[request.request_id]]
        elif request.request_id in cancelled:
            continue
        elif now > request.params.deadline and _refundable(world, request):
            counts.expired += 1
            continue
        else:
            counts.lost += 1
            counts.note("lost", tag)
            waited_until = now
        answered_in = fulfilled_in.get(request.request_id, head + 1)
        start = max([confirmed_at, *(r.at for r in reorgs
                                     if max(asked_in, answered_in) >= r.fork and r.at <= waited_until)])
        down = sum(max(0, min(up, waited_until) - max(killed, start)) for killed, up in world.downtime)
        stall = waited_until - start - down - slack
        if stall > counts.stalled_seconds:
            counts.stalled_seconds = float(stall)
            counts.examples["stalled_seconds"] = [tag]
    _model_calls(world, counts)
    _payments(world, counts, head)
    return counts


def _refundable(world: World, request: Any) -> bool:
    """Whether the requester can take its fee back now (the oracle's own check, simulated)."""
    oracle = world.stack.contract("AIOracle")
    try:
        oracle.functions.cancel(request.request_id, request.commitment.to_abi()).call(
            {"from": request.requester})
    except ContractLogicError:
        return False
    return True


def _model_calls(world: World, counts: Counts) -> None:
    calls: Counter[str] = Counter()
    for server in (world.free, world.paid):
        if server is not None:
            calls.update(server.books.tags)
    for tag, n in calls.items():
        if n > 1:
            counts.extra_model_calls += n - 1
            counts.note("extra_model_calls", tag)


def _payments(world: World, counts: Counts, head: int) -> None:
    stack = world.stack
    usd = stack.contract("TestUSD")
    wallet = stack.keys.payment_wallet.address
    used = usd.events.AuthorizationUsed().get_logs(from_block=0, to_block=head,
                                                   argument_filters={"authorizer": wallet})
    nonces = Counter("0x" + bytes(log["args"]["nonce"]).hex() for log in used)
    counts.settlements = sum(nonces.values())
    for nonce, n in nonces.items():
        if n > 1:
            counts.authorizations_reused += n - 1
            counts.note("authorizations_reused", nonce)
    transfers = usd.events.Transfer().get_logs(from_block=0, to_block=head, argument_filters={"from": wallet})
    pinned = {stack.keys.owner.address}
    for log in transfers:
        if log["args"]["to"] not in pinned:
            counts.unintended_payments += 1
            counts.note("unintended_payments", log["transactionHash"].to_0x_hex())
    for kind, server in world.hostile.items():
        unintended = server.unintended()
        if unintended:
            counts.unintended_payments += unintended
            counts.note("unintended_payments", f"hostile 402 {kind}")
    if world.paywall is not None and world.paywall.nonce_reuses:  # one authorization offered for two calls
        counts.authorizations_reused += world.paywall.nonce_reuses
        counts.note("authorizations_reused", "offered to the paywall for two calls")
    # Settlements beyond one per request the paid deployment delivered an answer to (its paywall's books).
    by_tag: Counter[str] = Counter()
    tags = world.paywall.tags_by_nonce if world.paywall is not None else {}
    answered = world.paywall.delivered if world.paywall is not None else Counter()
    for nonce, n in nonces.items():
        by_tag[tags.get(nonce, f"unknown payment {nonce}")] += n
    for tag, n in by_tag.items():
        beyond = n - (1 if answered[tag] else 0)
        if beyond > 0:
            counts.paid_without_delivery += beyond
            counts.note("paid_without_delivery", tag)
