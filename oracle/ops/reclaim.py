"""Reclaiming the fee of a request nobody answered: `oracle reclaim ID --config FILE --key-env VAR`.

The request is found by its `Requested` event on the configured chain and its commitment rebuilt from
the event (which carries `paramsHash`). A requester that is an `AIConsumer` (its `payerOf(id)` is set)
gives the fee back through its `reclaimFee`: sent to a recipient when the key is the payer's, credited
to the payer's refund balance when it is anyone else's. Any other requester cancels at the oracle
itself, then withdraws. Each transaction is simulated and described before it is sent.

    code = reclaim_command(Path("config.toml"), "0x4ef4...", "MY_KEY", to=None)
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from oracle.chain.log_range import LogRange
from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.config import ChainSettings, ConfigError, key_from_env, load_config
from oracle.events import (
    CANCELLED_TOPIC,
    FULFILLED_TOPIC,
    REQUESTED_TOPIC,
    EventDecodeError,
    RequestedEvent,
    decode_cancelled,
    decode_fulfilled,
    decode_requested,
)
from oracle.ops import OpsError
from oracle.ops.chain import connect
from oracle.ops.sender import TransactionSender, confirmation
from oracle.ops.state import has_code
from oracle.protocol import Status, abi_type_of

_COMMITMENT = abi_type_of("Commitment")
# Selectors of the calls made here (tests check each against the shipped ABIs).
PAYER_OF = keccak(text="payerOf(bytes32)")[:4]
REFUND_OF = keccak(text="refundOf(address)")[:4]
RECLAIM_FEE = keccak(text=f"reclaimFee(bytes32,{_COMMITMENT})")[:4]
RECLAIM_FEE_TO = keccak(text=f"reclaimFee(bytes32,{_COMMITMENT},address)")[:4]
COMMITMENTS = keccak(text="commitments(bytes32)")[:4]
BALANCE_OF = keccak(text="balanceOf(address)")[:4]
CANCEL = keccak(text=f"cancel(bytes32,{_COMMITMENT})")[:4]
WITHDRAW = keccak(text="withdraw(address)")[:4]


class ReclaimRefused(OpsError):
    """The request cannot be reclaimed (by this key, now); the message says why and what to do."""


@dataclass(frozen=True)
class Step:
    """One transaction: its target, calldata, and what it does in words."""

    to: str
    data: bytes
    what: str

    def __str__(self) -> str:
        return self.what


@dataclass(frozen=True)
class ReclaimPlan:
    request: RequestedEvent
    block_number: int
    payer: str | None  # set when the requester is an AIConsumer
    first: Step  # simulated before anything is sent
    then: Step | None  # the oracle's withdraw, after a cancel (it can only be simulated once the cancel is mined)
    outcome: str
    settled: str | None = None  # what already settled the request, when only a withdraw is left to do


def _word(data: bytes) -> int:
    return int.from_bytes(data[:32], "big") if len(data) >= 32 else 0


def _when(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _logs(client: ChainClient, chain: ChainSettings, topics: list[Any], start: int,
                end: int) -> list[dict[str, Any]]:
    """Logs of the oracle in [start, end], in ranges the node accepts (see LogRange)."""
    found: list[dict[str, Any]] = []
    ranges, at = LogRange(chain.max_log_range), start
    while at <= end:
        top = ranges.end(at, end)
        try:
            found.extend(await client.get_logs(chain.oracle, topics, at, top))
        except (RpcError, RpcUnavailable):
            if not ranges.failed(at, top):
                raise
            continue
        ranges.succeeded()
        at = top + 1
    return found


async def find_request(client: ChainClient, chain: ChainSettings, request_id: bytes,
                       from_block: int) -> tuple[RequestedEvent, int]:
    """The request's `Requested` event (the latest, should a reorg have moved it) and its block."""
    latest = await client.block_number()
    logs = await _logs(client, chain, ["0x" + REQUESTED_TOPIC.hex(), "0x" + request_id.hex()], from_block, latest)
    if not logs:
        raise ReclaimRefused(
            f"no request 0x{request_id.hex()} on chain {chain.name} (oracle {chain.oracle}, blocks {from_block}-"
            f"{latest}): check the id and the chain, or give --from-block if it was made before block {from_block}")
    log = logs[-1]
    try:
        return decode_requested(log), int(log["blockNumber"], 16)
    except EventDecodeError as exc:
        raise ReclaimRefused(f"the Requested event of 0x{request_id.hex()} does not decode: {exc}") from None


async def _settled(client: ChainClient, chain: ChainSettings, event: RequestedEvent, from_block: int) -> str:
    """What settled a request whose commitment is gone: its Fulfilled or Cancelled event, in words."""
    latest = await client.block_number()
    rid = "0x" + event.request_id.hex()
    for entry in await _logs(client, chain, ["0x" + FULFILLED_TOPIC.hex(), rid], from_block, latest):
        fulfilled = decode_fulfilled(entry)
        return (f"request {rid} was already fulfilled in block {int(entry['blockNumber'], 16)} (status "
                f"{Status(fulfilled.status).name.lower()}, reason code {fulfilled.reason_code}): its fee paid "
                f"for the answer, and there is nothing to reclaim")
    for entry in await _logs(client, chain, ["0x" + CANCELLED_TOPIC.hex(), rid], from_block, latest):
        cancelled = decode_cancelled(entry)
        return (f"request {rid} was already cancelled in block {int(entry['blockNumber'], 16)}: {cancelled.refund} "
                f"wei went back to its requester {cancelled.requester}")
    return f"request {rid} is no longer open at the oracle (fulfilled or cancelled before block {from_block})"


async def _payer(client: ChainClient, requester: str, request_id: bytes) -> str | None:
    """The payer an AIConsumer holds for the request, or None for any other requester."""
    try:
        raw = await client.eth_call(requester, PAYER_OF + request_id)
    except RpcError:
        return None  # no such function: not an AIConsumer
    payer = _word(raw)
    return to_checksum_address(payer.to_bytes(20, "big")) if len(raw) == 32 and payer and payer < 2**160 else None


async def plan_reclaim(client: ChainClient, chain: ChainSettings, request_id: bytes, sender: str,
                       recipient: str | None, from_block: int) -> ReclaimPlan:
    """Read the request from the chain and decide what `sender` sends to give its fee back."""
    event, block = await find_request(client, chain, request_id, from_block)
    rid = "0x" + request_id.hex()
    commitment = event.commitment
    stored = await client.eth_call(chain.oracle, COMMITMENTS + request_id)
    if not any(stored):
        settled = await _settled(client, chain, event, from_block)
        left = _word(await client.eth_call(chain.oracle, BALANCE_OF + bytes(12) + bytes.fromhex(sender[2:])))
        if left and sender == event.requester:  # cancelled, and the withdraw that should follow never went out
            to = recipient or sender
            withdraw = Step(chain.oracle, WITHDRAW + encode(["address"], [to]),
                            f"withdraw({to}) on the oracle: sends {sender}'s oracle balance of {left} wei to {to}")
            return ReclaimPlan(event, block, None, withdraw, None, f"{left} wei sent to {to}", settled)
        raise ReclaimRefused(settled + await _credited_note(client, event, sender))
    if stored[:32] != commitment.hash():
        raise ReclaimRefused(f"the oracle's commitment for {rid} is not the one its Requested event describes "
                             f"(block {block}): is chains.oracle ({chain.oracle}) the contract that emitted it?")
    head = await client.header("latest")
    now = head.timestamp if head is not None else 0
    deadline = commitment.deadline
    if now <= deadline:
        raise ReclaimRefused(
            f"request {rid} is not expired: its deadline is {deadline} ({_when(deadline)}) and the chain's time is "
            f"{now} ({_when(now)}); it can be reclaimed from the first block after the deadline, in about "
            f"{deadline - now + 1} s")
    payer = await _payer(client, event.requester, request_id)
    encoded = commitment.to_abi()
    if payer is not None:
        consumer = f"the AIConsumer {event.requester}"
        if sender == payer:
            to = recipient or sender
            step = Step(event.requester, RECLAIM_FEE_TO + encode(["bytes32", _COMMITMENT, "address"],
                                                                  [request_id, encoded, to]),
                        f"reclaimFee({rid}, commitment, {to}) on {consumer}")
            return ReclaimPlan(event, block, payer, step, None, f"{commitment.fee} wei sent to {to}")
        if recipient is not None:
            raise ReclaimRefused(f"only the payer of {rid} ({payer}) names where its fee goes; this key is {sender}. "
                                 f"Leave out --to: the fee is then credited to the payer, who withdraws it")
        step = Step(event.requester, RECLAIM_FEE + encode(["bytes32", _COMMITMENT], [request_id, encoded]),
                    f"reclaimFee({rid}, commitment) on {consumer}")
        return ReclaimPlan(event, block, payer, step, None,
                           f"{commitment.fee} wei credited to the payer {payer}, who takes it with "
                           f"withdrawRefund(to) on {event.requester}")
    if sender != event.requester:
        if await has_code(client, event.requester):
            raise ReclaimRefused(
                f"the requester of {rid}, {event.requester}, is a contract that holds no payer for it (not an "
                f"AIConsumer, or one asked with no payer): only that contract can cancel it, through its own code")
        raise ReclaimRefused(f"only the requester of {rid} may cancel it: the requester is {event.requester}, this "
                             f"key is {sender}; run this with the requester's key")
    to = recipient or sender
    cancel = Step(chain.oracle, CANCEL + encode(["bytes32", _COMMITMENT], [request_id, encoded]),
                  f"cancel({rid}, commitment) on the oracle {chain.oracle}: {commitment.fee} wei credited to "
                  f"{sender}")
    withdraw = Step(chain.oracle, WITHDRAW + encode(["address"], [to]),
                    f"withdraw({to}) on the oracle: sends {sender}'s whole oracle balance to {to}")
    return ReclaimPlan(event, block, None, cancel, withdraw, f"{commitment.fee} wei (at least) sent to {to}")


async def _credited_note(client: ChainClient, event: RequestedEvent, sender: str) -> str:
    """For a request already reclaimed through an AIConsumer: the sender's refund waiting there, if any."""
    try:
        owed = _word(await client.eth_call(event.requester, REFUND_OF + bytes(12) + bytes.fromhex(sender[2:])))
    except RpcError:
        return ""
    if not owed:
        return ""
    return (f". {sender} has {owed} wei of refunds credited on {event.requester}: withdraw them with "
            f"withdrawRefund(to) there")


async def reclaim(chain: ChainSettings, request_id: bytes, key: bytes, recipient: str | None, from_block: int,
                  dry_run: bool, say: Callable[[str], None]) -> None:
    sender = Account.from_key(key).address
    async with aiohttp.ClientSession() as session:
        client = await connect(session, chain)
        plan = await plan_reclaim(client, chain, request_id, sender, recipient, from_block)
        event, c = plan.request, plan.request.commitment
        paid = f"an AIConsumer, paid by {plan.payer}" if plan.payer else "the requester itself"
        say(f"request 0x{request_id.hex()} on chain {chain.name} ({chain.chain_id}), oracle {chain.oracle}")
        say(f"  made in block {plan.block_number} by {event.requester} ({paid}); fee {c.fee} wei; deadline "
            f"{c.deadline} ({_when(c.deadline)}), passed")
        if plan.settled is not None:
            say(f"  {plan.settled}, and is still at the oracle: withdrawing it")
        say(f"will send from {sender}:")
        for step in (plan.first, plan.then):
            if step is not None:
                say(f"  {step.what}")
        # The one who runs `oracle reclaim` has asked for exactly this: no second confirmation.
        transactions = TransactionSender(client, chain, key, confirmation(assume_yes=True), say)
        await transactions.simulate(plan.first, plan.first.to)
        say("  simulated: ok" + ("" if plan.then is None else " (the withdraw is simulated once the cancel is mined)"))
        if dry_run:
            say(f"dry run: nothing sent; it would leave {plan.outcome}")
            return
        for step in (plan.first, plan.then):
            if step is not None:
                await transactions.send(step, step.to)
        say(f"done: {plan.outcome}")


def parse_request_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.removeprefix("0x").removeprefix("0X"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"a request id is 32 bytes of hex (0x and 64 digits), got {text!r}")
    return raw


def reclaim_command(config_path: Path, request_id: str, key_env: str, *, chain: str | None = None,
                    to: str | None = None, from_block: int | None = None, dry_run: bool = False,
                    say: Callable[[str], None] = print, complain: Callable[[str], None] = print) -> int:
    """`oracle reclaim`: 0 when done, 1 when the request cannot be reclaimed, 2 for a bad input."""
    try:
        rid = parse_request_id(request_id)
        config = load_config(config_path)
        _, settings = config.chain_named(chain)
        key = key_from_env(key_env)
    except (ValueError, ConfigError) as exc:  # ConfigError is a ValueError too
        complain(str(exc))
        return 2
    try:
        asyncio.run(reclaim(settings, rid, key, to_checksum_address(to) if to else None,
                            settings.start_block if from_block is None else from_block, dry_run, say))
    except OpsError as exc:  # ReclaimRefused, and what the transaction sender refuses
        complain(str(exc))
        return 1
    except (RpcUnavailable, RpcError, TimeoutError) as exc:
        complain(f"chain {settings.name} at {settings.rpc_url}: {exc or type(exc).__name__}")
        return 1
    except ConfigError as exc:  # the node does not answer, or serves another chain
        complain(str(exc))
        return 2
    return 0
