"""`Confirmer`: follows our transactions until they are final, and repairs what the chain did to them.

- The chain is the truth. Each pass reads the signer's nonce: a transaction on record as mined at or
  above it is not on the chain (a reorg took it) and is pending again. A transaction is final at the
  confirmation depth; until then its receipt's block hash is re-checked.
- A transaction is never re-broadcast unchanged more than once. One that the node does not hold, or
  that is not mined within `replace_after`, or that the node refused, is rebuilt under the same nonce:
  its responses re-checked against the chain (those whose requests are gone are dropped), its gas
  limit and fees recomputed from the latest block. A nonce with nothing left to carry, or none that
  we hold a transaction for, is filled with a zero-value transfer to the signer itself, so no later
  nonce waits behind it.
- What the chain says is acted on once it has said it for SETTLE_SECONDS: a node behind a load
  balancer may briefly answer from a replica that lags (a lower nonce, a missing receipt).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from oracle.chain.errors import COMMITMENT_MISMATCH, UNKNOWN_REQUEST
from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.chain.tx.batch import calldata, carried, gas_limit
from oracle.chain.tx.fees import FeeEstimator
from oracle.chain.tx.guards import Guards, today
from oracle.chain.tx.in_flight import InFlight
from oracle.chain.tx.outbox import Outbox
from oracle.chain.tx.refusals import Refusal, reverted
from oracle.config import ChainSettings
from oracle.events import FULFILLED_TOPIC, SKIPPED_TOPIC, log_topics_and_data
from oracle.store import RequestState, StoredTx, Transactions, TxState, request_key

log = logging.getLogger(__name__)
R = RequestState
WAITING = (TxState.PENDING, TxState.REPLACED)  # signed and sent, none of them mined yet

PASS_SECONDS = 0.25
NODE_GRACE_SECONDS = 1.0  # a transaction just sent may not be visible to the node yet
SETTLE_SECONDS = 1.0


class Confirmer:
    def __init__(self, chain: ChainSettings, rpc: ChainClient, txs: Transactions, in_flight: InFlight,
                 outbox: Outbox, fees: FeeEstimator, guards: Guards) -> None:
        self.chain = chain
        self.rpc = rpc
        self.txs = txs
        self.in_flight = in_flight
        self.outbox = outbox
        self.fees = fees
        self.guards = guards
        self.sender = outbox.sender
        self._head = 0
        self._held_nonces: dict[int, int] = {}  # nonce -> head block before which it is not re-priced again
        self._seen_since: dict[tuple[str, int | bytes], float] = {}  # a chain fact -> when first seen
        self._asked: set[tuple[str, int | bytes]] = set()
        self._read_this_pass: dict[bytes, dict[str, Any]] = {}  # receipts read in this pass, by tx hash
        self.rebuilt = 0
        self.confirmed = 0

    def restore(self) -> None:
        """After a restart: what our transactions on record carry is held until they are final."""
        newest: dict[int, StoredTx] = {}
        for tx in self.txs.in_state(self.chain.chain_id, self.sender, WAITING):
            if tx.nonce not in newest or tx.sent_at > newest[tx.nonce].sent_at:
                newest[tx.nonce] = tx
        for tx in [*newest.values(), *self.txs.in_state(self.chain.chain_id, self.sender, [TxState.MINED])]:
            self.in_flight.carry(tx)

    async def run(self) -> None:
        while True:
            try:
                await self.monitor_once()
            except (RpcError, RpcUnavailable) as exc:
                log.log(logging.DEBUG if self.rpc.failing else logging.WARNING,
                        "chain %s: monitoring transactions failed (%s)", self.chain.name, exc)
            await asyncio.sleep(PASS_SECONDS)

    def reorged(self, common_block: int) -> None:
        """The watcher found the chain reorganised above `common_block`: our transactions mined there
        are pending again; the next pass re-checks and rebuilds them before anything is re-sent."""
        for tx in self.txs.mined_after(self.chain.chain_id, self.sender, common_block):
            self._vanished(tx, f"its block {tx.block_number} was reorganised away")

    async def monitor_once(self) -> None:
        self._asked = set()
        self._read_this_pass = {}
        if await self._follow_all():
            # (only after a whole pass: one where a call failed has not asked everything again)
            self._seen_since = {f: t for f, t in self._seen_since.items() if f in self._asked}

    async def _follow_all(self) -> bool:
        """One pass over our transactions; False if a call for some nonce failed. Each nonce and each
        mined transaction is followed on its own: a failed call skips only its own until the next pass
        (when every call has a few percent chance to fail, a pass that stops at the first failure over
        dozens of nonces almost never reaches the later ones)."""
        if self.fees.stale:
            await self.fees.read()
        await self.guards.allow()  # keeps `paused_reason` current even when nothing is queued
        chain_id = self.chain.chain_id
        # The chain's count of our mined transactions: what is on record as mined at or above it is not.
        mined_count = await self.rpc.nonce(self.sender, "latest")
        self._head = await self.rpc.block_number()
        for tx in self.txs.included_from(chain_id, self.sender, mined_count):
            if not self._settled_fact(("vanished", tx.tx_hash)):
                continue  # (a lagging replica may answer with an old nonce: look again before acting)
            depth = self._head - (tx.block_number or self._head)
            if depth > self.chain.max_reorg_depth:
                # as the watcher does: what is deeper than the bound is not undone, an operator looks
                self.guards.halt(f"tx 0x{tx.tx_hash.hex()} (nonce {tx.nonce}) mined {depth} blocks deep is not on "
                                 f"the chain, beyond max_reorg_depth {self.chain.max_reorg_depth}: left as it is, "
                                 f"no new work taken. Check the node (is it on the right chain?), then restart")
                continue
            self._vanished(tx, f"the signer's nonce on-chain is {mined_count}")
        by_nonce: dict[int, list[StoredTx]] = {}
        for tx in self.txs.in_state(chain_id, self.sender, WAITING):
            by_nonce.setdefault(tx.nonce, []).append(tx)
        failures: list[str] = []
        for nonce in sorted(by_nonce):
            await _collect(failures, self._follow_nonce(nonce, by_nonce[nonce], mined_count))
        await self._fill_gaps(mined_count)
        for tx in self.txs.in_state(chain_id, self.sender, [TxState.MINED]):
            await _collect(failures, self._confirm(tx))
        await self.txs.commit()
        if failures:
            log.log(logging.DEBUG if self.rpc.failing else logging.WARNING,
                    "chain %s: monitoring transactions: %d calls failed, retried next pass (first: %s)",
                    self.chain.name, len(failures), failures[0])
        return not failures

    def _settled_fact(self, fact: tuple[str, int | bytes]) -> bool:
        """Whether the chain has said `fact` for at least SETTLE_SECONDS (asked again each pass). Facts
        not asked again in a pass are forgotten, so one that stops being true starts over."""
        now = time.monotonic()
        first = self._seen_since.setdefault(fact, now)
        self._asked.add(fact)
        return now - first >= SETTLE_SECONDS

    def _vanished(self, tx: StoredTx, why: str) -> None:
        reopened = self.txs.reopen(tx)
        log.warning("chain %s: tx 0x%s (nonce %d) is not on the chain (%s): pending again with %d responses, "
                    "%d of them settled by it", self.chain.name, tx.tx_hash.hex(), tx.nonce, why,
                    len(tx.request_keys), len(reopened))
        self.in_flight.carry(tx)

    # ------------------------------------------------------------ a nonce not mined yet

    async def _follow_nonce(self, nonce: int, txs: list[StoredTx], mined_count: int) -> None:
        for tx in txs:
            receipt = await self.rpc.receipt(tx.tx_hash)
            if receipt is not None and receipt.get("blockHash"):
                self._mined(tx, receipt)
                return
        if nonce < mined_count:
            # The nonce is used but none of the hashes we follow has a receipt: look at every one we
            # signed for it (the chain's receipts decide what was spent), else another took the nonce.
            followed = {t.tx_hash for t in txs}
            for tx in self.txs.at_nonce(self.chain.chain_id, self.sender, nonce):
                receipt = await self.rpc.receipt(tx.tx_hash) if tx.tx_hash not in followed else None
                if receipt is not None and receipt.get("blockHash"):
                    self._mined(tx, receipt)
                    return
            if not self._settled_fact(("nonce used", nonce)):
                return  # a receipt may be late on a lagging node: look again before deciding
            keys = sorted({k for t in txs for k in t.request_keys})
            log.warning("chain %s: nonce %d was used by a transaction we did not send; re-queueing %d responses",
                        self.chain.name, nonce, len(keys))
            for tx in txs:
                self.txs.transition(tx.tx_hash, WAITING, TxState.DROPPED)
            self.in_flight.requeue(keys)
            return
        newest = max(txs, key=lambda t: t.sent_at)
        age = time.time() - newest.sent_at
        if age < NODE_GRACE_SECONDS:
            return
        if self._held_nonces.get(nonce, 0) > self._head:
            return  # waiting for a block before trying again (its price is above what it may pay)
        if not await self.rpc.transaction_known(newest.tx_hash):
            if self._settled_fact(("unknown", newest.tx_hash)):
                await self._rebuild(nonce, txs, known=False, why="the node does not hold it")
        elif age >= self.chain.gas.replace_after and nonce == mined_count:
            # (later nonces only wait behind this one: re-pricing them would not help)
            await self._rebuild(nonce, txs, known=True, why=f"not mined after {self.chain.gas.replace_after:g} s")

    async def sent(self, tx: StoredTx, refusal: Refusal, replaces: Sequence[StoredTx] = ()) -> None:
        """Act at once on the node's answer to `tx`, just sent (replacing `replaces`)."""
        txs = [*replaces, tx]
        if refusal == Refusal.PRICE:
            await self._rebuild(tx.nonce, txs, known=bool(replaces), refused=True, why="priced under the base fee")
        elif refusal == Refusal.REPLACEMENT:
            await self._rebuild(tx.nonce, txs, known=True, refused=True, why="the node holds a dearer one")
        elif refusal == Refusal.PERMANENT:
            self.in_flight.strike(tx)
            await self._rebuild(tx.nonce, txs, known=bool(replaces), refused=True, fill=True,
                                why="the node refused it for good")

    async def _rebuild(self, nonce: int, txs: list[StoredTx], *, known: bool, why: str, refused: bool = False,
                       fill: bool = False) -> None:
        """Replace the transaction at `nonce`: its responses whose requests are still open on-chain and
        whose fees pay for them at the new price, re-simulated, with the gas limit and fees of now; a
        self-transfer when none is left (or `fill`). `known`: the node holds one of `txs`, so the new one
        must outbid them. `refused`: the node refused the newest, so it is not sent unchanged again."""
        newest = max(txs, key=lambda t: t.sent_at)
        cap = self.fees.cap
        max_fee, priority = await self.fees.read(fresh=True)
        if known:  # a node replaces a transaction it holds only for a higher price on both fees
            max_fee, priority = self.fees.outbid(txs, max_fee, priority)
            if max_fee > cap:  # it holds one at the cap already: nothing to do but wait for the base fee
                self._hold_nonce(nonce, newest, f"it cannot be re-priced above the fee cap {cap} wei")
                return
        elif self.fees.base_fee > max_fee:
            # not even the cap pays the next block's base fee: signing again now would only be refused
            self._hold_nonce(nonce, newest, f"the base fee {self.fees.base_fee} wei is above the fee cap {cap} wei")
            return
        # Responses left out stay in flight until a transaction at this nonce is mined: an older one
        # carrying them may still be; then the ones it did not carry go back to be sent (`_mined`).
        items = [] if fill else self.outbox.profitable(await self.outbox.still_open(carried(newest, self.chain.oracle)),
                                                       max_fee)
        if items:
            try:
                await self.outbox.simulate(items)
            except RpcError as exc:
                if not reverted(exc):
                    raise  # the node failed, not the call: the next pass tries again
                log.warning("chain %s: the responses of nonce %d no longer simulate (%s); filling it",
                            self.chain.name, nonce, exc.message)
                items = []

        def sign(max_fee: int, priority: int) -> StoredTx:
            if not items:
                return self.outbox.sign_transfer(nonce, max_fee, priority)
            return self.outbox.sign(nonce, self.chain.oracle, calldata(items),
                                    gas_limit(items, self.chain.gas.fulfill_gas_overhead), max_fee, priority,
                                    [i.key for i in items])

        tx = sign(max_fee, priority)
        if self.outbox.times_sent(tx) >= (1 if refused else 2):
            # the same bytes again: a transaction the node took is sent once more at most
            max_fee, priority = self.fees.outbid(txs, max_fee, priority)
            if max_fee > cap:
                self._hold_nonce(nonce, newest, f"it is at the fee cap {cap} wei")
                return
            tx = sign(max_fee, priority)
        self._held_nonces.pop(nonce, None)
        self.rebuilt += 1
        log.info("chain %s: nonce %d rebuilt (%s): %d responses, max fee %d wei (tx 0x%s)", self.chain.name,
                 nonce, why, len(items), max_fee, tx.tx_hash.hex())
        refusal = await self.outbox.issue(tx, replaces=txs)
        if items:
            await self.sent(tx, refusal, [t for t in txs if t.tx_hash != tx.tx_hash])
        elif refusal in (Refusal.PRICE, Refusal.REPLACEMENT, Refusal.PERMANENT):
            # a self-transfer refused: the next pass looks again, once a block is in
            self._hold_nonce(nonce, tx, "the node refused the transfer that fills it")

    def _hold_nonce(self, nonce: int, tx: StoredTx, why: str) -> None:
        """Leave `nonce` as it is until the next block (said once, not every pass)."""
        if nonce not in self._held_nonces:
            log.warning("chain %s: nonce %d waits: %s (tx 0x%s)", self.chain.name, nonce, why, tx.tx_hash.hex())
        self._held_nonces[nonce] = self._head + 1

    async def _fill_gaps(self, mined_count: int) -> None:
        """A nonce between the chain's count and the next one we hand out with no transaction that may
        use it holds every later one: fill it."""
        live, next_nonce = self.txs.live_nonces(self.chain.chain_id, self.sender, mined_count)
        for nonce in range(mined_count, next_nonce):
            if nonce in live:
                continue
            max_fee, priority = await self.fees.read(fresh=True)
            tx = self.outbox.sign_transfer(nonce, max_fee, priority)
            log.warning("chain %s: nonce %d had no transaction; filling it with a self-transfer (tx 0x%s)",
                        self.chain.name, nonce, tx.tx_hash.hex())
            await self.outbox.issue(tx)

    # ------------------------------------------------------------ mined, final

    def _mined(self, tx: StoredTx, receipt: dict[str, Any]) -> None:
        self._read_this_pass[tx.tx_hash] = receipt  # (its depth is checked later in the pass: read it once)
        block_number = int(receipt["blockNumber"], 16)
        gas_used = int(receipt["gasUsed"], 16)
        price = int(receipt.get("effectiveGasPrice", "0x0"), 16)
        self.txs.record_mined(tx, block_number, bytes.fromhex(receipt["blockHash"][2:]), gas_used,
                              gas_used * price, today())
        orphans: set[str] = set()
        for other in self.txs.at_nonce(self.chain.chain_id, self.sender, tx.nonce):
            if other.tx_hash != tx.tx_hash and other.state in WAITING:
                self.txs.transition(other.tx_hash, WAITING, TxState.DROPPED)
                self.outbox.forget(other)
                orphans.update(other.request_keys)
        # responses only the dropped ones carried (a rebuild can carry other ones) go back to be sent
        self.in_flight.requeue(sorted(orphans - set(tx.request_keys)))
        self._held_nonces.pop(tx.nonce, None)
        if int(receipt["status"], 16) != 1:
            log.warning("chain %s: tx 0x%s reverted on-chain; re-queueing its responses", self.chain.name,
                        tx.tx_hash.hex())
            self.in_flight.requeue(tx.request_keys)

    async def _confirm(self, tx: StoredTx) -> None:
        """Final at the confirmation depth; until then the receipt's block hash is checked again."""
        receipt = self._read_this_pass.pop(tx.tx_hash, None) or await self.rpc.receipt(tx.tx_hash)
        if receipt is None or not receipt.get("blockHash"):
            self._vanished(tx, f"its receipt in block {tx.block_number} is gone")
            return
        block_hash = bytes.fromhex(receipt["blockHash"][2:])
        if block_hash != tx.block_hash:  # mined again in another block: count its depth from there
            self.txs.reopen(tx)
            self._mined(tx, receipt)
            return
        assert tx.block_number is not None
        if self._head - tx.block_number < self.chain.confirmations:
            return
        if not self.txs.transition(tx.tx_hash, [TxState.MINED], TxState.CONFIRMED):
            return  # a reorg took it back meanwhile: the next pass follows it again
        self.outbox.forget(tx)
        self.confirmed += 1
        self.in_flight.final(tx)
        if int(receipt["status"], 16) == 1:
            self._settle(tx, receipt, tx.block_number)

    def _settle(self, tx: StoredTx, receipt: dict[str, Any], block_number: int) -> None:
        """What the final receipt says of each response it carried."""
        settled: set[str] = set()
        for entry in receipt.get("logs", []):
            if str(entry.get("address", "")).lower() != self.chain.oracle.lower():
                continue
            topics, data = log_topics_and_data(entry)
            if len(topics) < 2:
                continue
            key = request_key(self.chain.chain_id, self.chain.oracle, topics[1])
            settled.add(key)
            if topics[0] == FULFILLED_TOPIC:
                self.in_flight.fulfilled(key, tx, block_number)
            elif topics[0] == SKIPPED_TOPIC and data[:4] not in (UNKNOWN_REQUEST, COMMITMENT_MISMATCH):
                # The request under this commitment is there and refused the response (expired, too
                # large, ...): sending it again changes nothing.
                self.in_flight.give_up(key, R.EXPIRED, f"skipped on-chain: 0x{data[:4].hex()}")
            else:
                settled.discard(key)
        # UnknownRequest: settled by someone else or reorganised away; CommitmentMismatch: a reorg gave the
        # id to another request, which the row may describe by now. The watcher says which.
        self.in_flight.release(sorted(set(tx.request_keys) - settled))


async def _collect(failures: list[str], step: Awaitable[None]) -> None:
    """Run one step of a monitor pass; a node's failure is noted, not raised, so the next step runs."""
    try:
        await step
    except (RpcError, RpcUnavailable) as exc:
        failures.append(str(exc))
