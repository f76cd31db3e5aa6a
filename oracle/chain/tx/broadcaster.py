"""`Broadcaster`: new transactions. Takes signed responses from its queue in batches (by count, gas and
size), drops what does not pay for itself at the current price, simulates, takes a nonce, signs,
records, commits and sends, up to SENDS_AT_ONCE transactions at a time. What the node answers is
handed to the confirmer at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from oracle.abi.errors import decode_revert
from oracle.chain.rpc import RpcError, RpcUnavailable
from oracle.chain.tx.batch import MAX_TX_DATA_BYTES, ReadyResponse, calldata, gas_limit
from oracle.chain.tx.fees import FeeEstimator
from oracle.chain.tx.guards import Guards
from oracle.chain.tx.in_flight import InFlight
from oracle.chain.tx.outbox import Outbox
from oracle.chain.tx.refusals import Refusal, reverted
from oracle.config import ChainSettings
from oracle.store import RequestState, StoredTx

log = logging.getLogger(__name__)
R = RequestState

# What the confirmer does with the node's answer to a transaction just sent (re-price it at once, ...).
OnSent = Callable[[StoredTx, Refusal], Awaitable[None]]
RETRY_SECONDS = 2.0  # a response whose simulation failed for a passing reason is queued again after this
# Transactions being built and sent at once: one's simulation and broadcast round trips overlap another's
# signing, and a burst goes out as several transactions rather than one behind the other.
SENDS_AT_ONCE = 4


class Broadcaster:
    def __init__(self, chain: ChainSettings, in_flight: InFlight, outbox: Outbox, fees: FeeEstimator,
                 guards: Guards, on_sent: OnSent, clock: Callable[[], float]) -> None:
        self.chain = chain
        self.in_flight = in_flight
        self.outbox = outbox
        self.fees = fees
        self.guards = guards
        self.on_sent = on_sent
        self.clock = clock  # the chain's now, for deadlines
        self._queue: list[ReadyResponse] = []
        self._queued: set[str] = set()
        self._ready = asyncio.Event()
        self._slots = asyncio.Semaphore(SENDS_AT_ONCE)
        self.sent = 0

    def submit(self, item: ReadyResponse) -> None:
        """Queue a signed response; one already queued or held (see InFlight) is ignored."""
        if self.holds(item.key):
            return
        self._queue.append(item)
        self._queued.add(item.key)
        self._ready.set()

    def holds(self, key: str) -> bool:
        return key in self._queued or self.in_flight.holds(key)

    @property
    def holding(self) -> int:
        """Signed responses it holds that the pipeline would otherwise take up again: queued, being sent
        or held back (those on record in a transaction are `submitted`)."""
        return len(self._queued) + self.in_flight.holding

    async def run(self) -> None:
        async with asyncio.TaskGroup() as sends:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._queue:
                    # While every slot is busy the queue grows: the next batch is taken when one frees.
                    await self._slots.acquire()
                    try:  # (checked with the slot in hand: a halt or a low balance seen meanwhile counts)
                        allowed = await self.guards.allow()
                    except (RpcError, RpcUnavailable) as exc:
                        log.log(logging.DEBUG if self.guards.rpc.failing else logging.WARNING,
                                "chain %s: checking the signer's balance failed (%s)", self.chain.name, exc)
                        allowed = False
                    batch = self._take_batch() if allowed else []
                    if not batch:
                        self._slots.release()
                        if not allowed:
                            await asyncio.sleep(1.0)
                        continue
                    keys = [i.key for i in batch]
                    self.in_flight.start_sending(keys)  # (held from the moment they leave the queue)
                    sends.create_task(self._send_in_slot(batch, keys))

    async def _send_in_slot(self, batch: list[ReadyResponse], keys: list[str]) -> None:
        """One transaction's send, holding a slot; what could not go is queued again after a pause."""
        try:
            retry_after = 0.0
            try:
                if not await self._send(batch):
                    retry_after = 1.0  # over today's gas budget (the guards say so)
            except (RpcError, RpcUnavailable) as exc:
                log.log(logging.DEBUG if self.guards.rpc.failing else logging.WARNING,
                        "chain %s: sending %d responses failed (%s); will retry", self.chain.name, len(batch), exc)
                retry_after = 0.5
            finally:
                self.in_flight.stop_sending(keys)
            if retry_after:
                # only those still to be sent: not one stored unprofitable or expired on the way
                for item in batch:
                    if self.in_flight.still_signed(item.key):
                        self.submit(item)
                await asyncio.sleep(retry_after)
        finally:
            self._slots.release()

    def _take_batch(self) -> list[ReadyResponse]:
        """Up to `batch_max` responses whose gas together, calldata floor included, stays under
        `batch_gas_max` (a transaction above the block gas limit would never be mined)."""
        now = self.clock()
        gas_settings = self.chain.gas
        batch: list[ReadyResponse] = []
        gas = size = taken = 0
        for item in self._queue:
            if len(batch) >= gas_settings.batch_max:
                break
            item_gas = gas_limit([item], gas_settings.fulfill_gas_overhead)
            # a response once refused for good goes alone: the next refusal is then its own
            if batch and (gas + item_gas > gas_settings.batch_gas_max or size + item.size > MAX_TX_DATA_BYTES
                          or self.in_flight.struck(item.key) or any(self.in_flight.struck(i.key) for i in batch)):
                break
            taken += 1
            self._queued.discard(item.key)
            if self.in_flight.carried(item.key):
                continue
            if now > item.deadline:
                self.in_flight.give_up(item.key, R.EXPIRED, "deadline passed before it could be sent")
                continue
            batch.append(item)
            gas += item_gas
            size += item.size
        del self._queue[:taken]
        return batch

    async def _send(self, batch: list[ReadyResponse]) -> bool:
        """Send one transaction with what of `batch` may go; False if all of it is to be queued again."""
        max_fee, priority = await self.fees.read()
        batch = self.outbox.profitable(batch, max_fee)
        if not batch:
            return True
        gas = gas_limit(batch, self.chain.gas.fulfill_gas_overhead)
        if not self.guards.fits_budget(gas, max_fee):
            return False
        try:
            fulfilled = await self.outbox.simulate(batch)
        except RpcError as exc:
            if not reverted(exc):
                raise  # the node failed, not the call: sent again shortly
            self._refused(batch, exc)
            return True
        if fulfilled < len(batch):
            # some would be skipped: those whose request a reorg removed or replaced since are not sent
            batch = await self.outbox.still_open(batch)
            if not batch:
                return True
            gas = gas_limit(batch, self.chain.gas.fulfill_gas_overhead)
        # From the nonce to the record nothing is awaited: the confirmer never sees it handed out alone.
        nonce = await self.outbox.next_nonce()
        tx = self.outbox.sign(nonce, self.chain.oracle, calldata(batch), gas, max_fee, priority,
                              [i.key for i in batch])
        refusal = await self.outbox.issue(tx)
        self.sent += 1
        await self.on_sent(tx, refusal)
        return True

    def _refused(self, batch: list[ReadyResponse], exc: RpcError) -> None:
        """Simulation reverted: the whole call would fail. Say why, and settle what can be settled."""
        data = exc.revert_data
        try:
            reason = decode_revert(data) if data else None
        except Exception:  # revert data from the node is untrusted; undecodable means "unknown"
            reason = None
        name = reason.name if reason else exc.message
        log.warning("chain %s: simulation of %d responses reverted: %s", self.chain.name, len(batch), reason or name)
        for item in batch:
            if name in ("UnknownRequest", "CommitmentMismatch"):
                # settled by someone else, cancelled, reorganised away, or the id now names other content
                # (the requester's nonce came free in a reorg): the watcher says which
                self.in_flight.hold(item.key)
            elif name == "RequestExpired":
                self.in_flight.give_up(item.key, R.EXPIRED, "deadline passed before it was mined")
            elif name in ("OraclePaused", "InsufficientGasForCallback") or reason is None:
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self.submit, item)
            else:
                self.in_flight.give_up(item.key, R.EXPIRED, f"the oracle refuses the response: {reason}")
