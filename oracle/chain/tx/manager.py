"""`TxManager`: gets signed responses on-chain, one manager per signer and chain.

- Nonces come from the store (persisted before use), never below the chain's count.
- Ready responses are batched into `fulfillBatch` (or sent alone with `fulfill`); each transaction
  is simulated first (`eth_call`), written to the store with its raw bytes, then sent.
- Its gas limit is `fulfilment_gas` of its exact calldata (never below the EIP-7623 floor); its fees
  are EIP-1559, twice the next base fee plus the priority fee, never above the configured cap.
- The chain is the truth. Each pass reads the signer's nonce: a transaction on record as mined at or
  above it is not on the chain (a reorg took it) and is pending again. A transaction is final at the
  confirmation depth; until then its receipt's block hash is re-checked.
- A transaction is never re-broadcast unchanged more than once. One that the node does not hold, or
  that is not mined within `replace_after`, or that the node refused, is rebuilt under the same nonce:
  its responses re-checked against the chain (those whose requests are gone are dropped), its gas
  limit and fees recomputed from the latest block. A nonce with nothing left to carry is filled with a
  zero-value transfer to the signer itself, so no later nonce waits behind it.
- Never at a loss: a response goes into a transaction only when its request's fee covers its share of
  that transaction's gas at the price it is signed with; otherwise it is stored `unprofitable`.
- Guards: a daily gas budget (sending stops when it is spent) and a low-balance threshold (below it
  the pipeline stops taking new work). Both say why in `paused_reason`.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes

from oracle.abi import signature
from oracle.chain.calldata import decode_fulfilment, fulfill_batch_calldata
from oracle.chain.errors import decode_revert
from oracle.chain.events import FULFILLED_TOPIC, log_topics_and_data
from oracle.chain.gas import SELF_TRANSFER_GAS, fulfilment_gas, marginal_gas
from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.config import ChainSettings
from oracle.protocol import Commitment, Response
from oracle.store import Requests, RequestState, StoredTx, Transactions, TxState, request_key

log = logging.getLogger(__name__)
R = RequestState

# A response the transaction manager holds is signed (queued) or submitted (carried by a transaction).
QUEUED = (R.SIGNED, R.SUBMITTED)

SKIPPED_TOPIC = keccak(text=signature("AIOracle", "FulfillmentSkipped"))
UNKNOWN_REQUEST = keccak(text="UnknownRequest(bytes32)")[:4]
COMMITMENT_MISMATCH = keccak(text="CommitmentMismatch(bytes32)")[:4]
COMMITMENTS_SELECTOR = keccak(text="commitments(bytes32)")[:4]
# A response whose request is not open on-chain is held back this long before it may be sent again: the
# watcher meanwhile learns whether it was settled by someone else or reorganised away.
GONE_HOLD_SECONDS = 5.0
NODE_GRACE_SECONDS = 1.0  # a transaction just sent may not be visible to the node yet
# What the chain says is acted on once it has said it for this long: a node behind a load balancer may
# briefly answer from a replica that lags (a lower nonce, a missing receipt).
SETTLE_SECONDS = 1.0
# Nodes refuse larger transactions (geth: 128 KiB); a batch stays under this much calldata.
MAX_TX_DATA_BYTES = 120_000


@dataclass
class ReadyResponse:
    key: str
    response: Response
    commitment: Commitment
    signature: bytes
    deadline: int


class Refusal(enum.StrEnum):
    """What a node's refusal of a raw transaction means for it."""

    NONE = "none"  # accepted (or already held)
    NONCE_USED = "nonce_used"  # its nonce is taken: by this transaction or another; the receipts decide
    PRICE = "price"  # priced under the base fee: re-price at once
    REPLACEMENT = "replacement"  # the node holds another at this nonce and wants a higher price to replace it
    FUNDS = "funds"  # the signer cannot pay for it: the balance guard holds sending
    PERMANENT = "permanent"  # sending it again cannot help: rebuild it, or fill its nonce
    UNREACHABLE = "unreachable"  # no answer: the next pass looks again


# JSON-RPC's "internal error": the node failed, not the transaction.
_INTERNAL_ERROR = -32603


def classify_refusal(message: str, code: int = -32000) -> Refusal:
    m = message.lower()
    if code == _INTERNAL_ERROR or "internal error" in m or "timeout" in m or "too many requests" in m:
        return Refusal.UNREACHABLE
    if "already known" in m or "already imported" in m or "known transaction" in m:
        return Refusal.NONE
    if "nonce too low" in m:
        return Refusal.NONCE_USED
    if "replacement" in m and "underpriced" in m:
        return Refusal.REPLACEMENT
    if "underpriced" in m or "base fee" in m or "fee cap" in m or "max fee per gas" in m:
        return Refusal.PRICE
    if "insufficient funds" in m:
        return Refusal.FUNDS
    return Refusal.PERMANENT


class TxManager:
    def __init__(self, chain: ChainSettings, rpc: ChainClient, requests: Requests, txs: Transactions,
                 private_key: bytes, clock: Callable[[], float] = time.time) -> None:
        self.chain = chain
        self.rpc = rpc
        self.requests = requests
        self.txs = txs
        self._key = private_key
        self.sender = to_checksum_address(Account.from_key(private_key).address)
        self.clock = clock  # the chain's now, for deadlines; transaction timing uses this machine's clock
        self._queue: list[ReadyResponse] = []
        self._queued: set[str] = set()
        self._in_flight: set[str] = set()  # request keys carried by a transaction not yet final
        self._sending: set[str] = set()  # taken from the queue, not yet on record as in flight
        self._held: dict[str, float] = {}  # request key -> until when it is not sent (its request is gone)
        self._ready = asyncio.Event()
        self._chain_nonce: int | None = None
        self._base_fee = 0
        self._network_priority = 0
        self._base_fee_at = 0.0
        self._balance: int | None = None
        self._balance_at = 0.0
        self._broadcasts: Counter[bytes] = Counter()  # raw transactions handed to the node, by hash
        self._held_nonces: dict[int, int] = {}  # nonce -> head block before which it is not re-priced again
        self._seen_since: dict[tuple[str, int | bytes], float] = {}  # a chain fact -> when first seen
        self._asked: set[tuple[str, int | bytes]] = set()
        self._strikes: dict[str, int] = {}  # request key -> transactions carrying it the node refused for good
        self._head = 0
        self.paused_reason = ""
        self.halted = ""  # why no new work is taken until a restart (a reorg deeper than max_reorg_depth)
        self.sent = 0
        self.rebuilt = 0
        self.confirmed = 0

    # ------------------------------------------------------------ the pipeline's side

    @property
    def accepting_new_work(self) -> bool:
        return not self.paused_reason and not self.halted

    def submit(self, item: ReadyResponse) -> None:
        """Queue a signed response; a response already queued or carried by a pending tx is ignored."""
        if self.carries(item.key):
            return
        self._queue.append(item)
        self._queued.add(item.key)
        self._ready.set()

    def carries(self, key: str) -> bool:
        if key in self._held and self._held[key] <= time.monotonic():
            del self._held[key]
        return key in self._queued or key in self._in_flight or key in self._sending or key in self._held

    def reorged(self, common_block: int) -> None:
        """The watcher found the chain reorganised above `common_block`: our transactions mined there
        are pending again; the monitor re-checks and rebuilds them before anything is re-sent."""
        for tx in self.txs.mined_after(self.chain.chain_id, self.sender, common_block):
            self._vanished(tx, f"its block {tx.block_number} was reorganised away")

    async def price_now(self) -> int:
        """The maxFeePerGas a transaction signed now would carry, read from the chain."""
        return (await self._fees(fresh=True))[0]

    def current_max_fee(self) -> int:
        """The maxFeePerGas a transaction sent now would pay, wei (for the pipeline's economics check)."""
        return self._price(self._base_fee, self._network_priority)[0]

    # ------------------------------------------------------------ loops

    async def run(self) -> None:
        newest: dict[int, StoredTx] = {}
        for tx in self.txs.in_state(self.chain.chain_id, self.sender, [TxState.PENDING, TxState.REPLACED]):
            if tx.nonce not in newest or tx.sent_at > newest[tx.nonce].sent_at:
                newest[tx.nonce] = tx
        for tx in [*newest.values(), *self.txs.in_state(self.chain.chain_id, self.sender, [TxState.MINED])]:
            self._in_flight.update(tx.request_keys)  # the monitor follows (and if need be rebuilds) them
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._send_loop())
            tasks.create_task(self._monitor_loop())

    async def _send_loop(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                try:
                    allowed = await self._guards_allow_sending()
                except (RpcError, RpcUnavailable) as exc:
                    log.warning("chain %s: checking the signer's balance failed (%s)", self.chain.name, exc)
                    allowed = False
                if not allowed:
                    await asyncio.sleep(1.0)
                    continue
                batch = self._take_batch()
                if not batch:
                    continue
                self._sending.update(i.key for i in batch)
                try:
                    await self._send(batch)
                except (RpcError, RpcUnavailable) as exc:
                    log.warning("chain %s: sending %d responses failed (%s); will retry", self.chain.name,
                                len(batch), exc)
                    self._sending.difference_update(i.key for i in batch)
                    for item in batch:
                        self.submit(item)
                    await asyncio.sleep(0.5)
                finally:
                    self._sending.difference_update(i.key for i in batch)

    def _take_batch(self) -> list[ReadyResponse]:
        """Up to `batch_max` responses whose gas together, calldata floor included, stays under
        `batch_gas_max` (a transaction above the block gas limit would never be mined)."""
        now = self.clock()  # deadlines are in chain time
        batch: list[ReadyResponse] = []
        gas = 0
        taken = 0
        size = 0
        for item in self._queue:
            if len(batch) >= self.chain.gas.batch_max:
                break
            item_gas = self._gas_limit([item])
            item_size = len(item.response.result) + 1_000
            # a response once refused for good goes alone: the next refusal is then its own
            alone = self._strikes.get(item.key, 0) > 0
            if batch and (gas + item_gas > self.chain.gas.batch_gas_max or size + item_size > MAX_TX_DATA_BYTES
                          or alone or any(self._strikes.get(i.key, 0) for i in batch)):
                break
            taken += 1
            self._queued.discard(item.key)
            if item.key in self._in_flight:
                continue
            if now > item.deadline:
                self.requests.transition(item.key, QUEUED, R.EXPIRED, detail="deadline passed before it could be sent")
                continue
            batch.append(item)
            gas += item_gas
            size += item_size
        del self._queue[:taken]
        return batch

    def halt(self, why: str) -> None:
        """Take no new work until a restart (the chain's intake stopped: see the watcher)."""
        self.halted = self.halted or why
        self._pause(self.halted)

    async def _guards_allow_sending(self) -> bool:
        if self.halted:
            self._pause(self.halted)
            return False
        now = time.time()
        if self._balance is None or now - self._balance_at > 5.0:
            self._balance = await self.rpc.balance(self.sender)
            self._balance_at = now
        if self._balance < self.chain.gas.low_balance:
            self._pause(f"signer {self.sender} balance {self._balance} wei is below low_balance "
                        f"{self.chain.gas.low_balance}: not taking new work")
            return False
        spent = self.txs.gas_spent(self.chain.chain_id, _today())
        if spent >= self.chain.gas.daily_budget:
            self._pause(f"daily gas budget {self.chain.gas.daily_budget} wei spent ({spent}): sending held")
            return False
        self.paused_reason = ""
        return True

    def _pause(self, reason: str) -> None:
        if reason != self.paused_reason:
            log.error("chain %s: %s", self.chain.name, reason)
        self.paused_reason = reason

    # ------------------------------------------------------------ fees and gas

    async def _fees(self, fresh: bool = False) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas): room for the next base fee to double, the priority fee
        the latest block paid at its median (at least the configured one), all under the cap. `fresh`
        reads the chain now instead of the last second's figures (to re-price after a refusal)."""
        now = time.time()
        if fresh or now - self._base_fee_at > 1.0:
            self._base_fee, self._network_priority = await self.rpc.fee_history()
            self._base_fee_at = now
        return self._price(self._base_fee, self._network_priority)

    def _price(self, base_fee: int, network_priority: int) -> tuple[int, int]:
        cap = self.chain.gas.max_fee_per_gas
        priority = min(max(self.chain.gas.priority_fee, network_priority), cap)
        return min(cap, 2 * base_fee + priority), priority

    def _gas_limit(self, batch: Sequence[ReadyResponse]) -> int:
        return fulfilment_gas([i.commitment.callback_gas_limit for i in batch], self._calldata(batch),
                              self.chain.gas.fulfill_gas_overhead)

    @staticmethod
    def _calldata(batch: Sequence[ReadyResponse]) -> bytes:
        # fulfillBatch even for one response: a response whose request a reorg removed or replaced after
        # it was checked is skipped in the block (FulfillmentSkipped) instead of reverting the
        # transaction, for about 1,800 gas more than `fulfill`.
        return fulfill_batch_calldata([(i.response, i.commitment, i.signature) for i in batch])

    # ------------------------------------------------------------ sending new transactions

    async def _send(self, batch: list[ReadyResponse]) -> None:
        max_fee, priority = await self._fees()
        batch = self._profitable(batch, max_fee)
        if not batch:
            return
        data = self._calldata(batch)
        try:
            # One execution against the latest state: a call that would revert is not sent.
            simulated = await self.rpc.eth_call(self.chain.oracle, data, sender=self.sender)
        except RpcError as exc:
            if not _reverted(exc):
                raise  # the node failed, not the call: sent again shortly
            self._refused(batch, exc)
            return
        if int.from_bytes(simulated[:32], "big") < len(batch):
            # some would be skipped: those whose request a reorg removed or replaced since are not sent
            batch = await self._open(batch)
            if not batch:
                return
            data = self._calldata(batch)
        gas = self._gas_limit(batch)
        spent = self.txs.gas_spent(self.chain.chain_id, _today())
        if spent + gas * max_fee > self.chain.gas.daily_budget:
            # at worst this transaction costs gas * max_fee: it must fit in what is left of the budget
            self._pause(f"daily gas budget {self.chain.gas.daily_budget} wei: {spent} spent, this "
                        f"transaction could cost {gas * max_fee}; sending held")
            self._sending.difference_update(i.key for i in batch)
            for item in batch:
                self.submit(item)
            await asyncio.sleep(1.0)
            return
        if self._chain_nonce is None:
            self._chain_nonce = await self.rpc.nonce(self.sender, "pending")
        nonce = self.txs.allocate_nonce(self.chain.chain_id, self.sender, self._chain_nonce)
        tx = self._record(self._sign(nonce, self.chain.oracle, data, gas, max_fee, priority, [i.key for i in batch]))
        await self.txs.commit()
        self.sent += 1
        await self._deliver(tx)

    def _shares(self, batch: Sequence[ReadyResponse]) -> dict[str, int]:
        """Each response's gas in this batch: its own calldata (with the floor), execution and callback,
        its part of the base, and its part of the batch's framing (what no single response accounts for)."""
        own = {i.key: marginal_gas(i.commitment.callback_gas_limit, self._calldata([i]),
                                   self.chain.gas.fulfill_gas_overhead, len(batch)) for i in batch}
        framing = max(0, self._gas_limit(batch) - sum(own.values())) if len(batch) > 1 else 0
        return {k: g + -(-framing // len(batch)) for k, g in own.items()}

    def _profitable(self, batch: list[ReadyResponse], max_fee: int) -> list[ReadyResponse]:
        """The responses whose escrowed fee covers their gas in the batch at `max_fee`; the others are left
        to expire (their requesters reclaim the fees) and stored as unprofitable with the figures."""
        while batch:
            shares = self._shares(batch)
            losing = [i for i in batch if i.commitment.fee < shares[i.key] * max_fee]
            if not losing:
                return batch
            for item in losing:
                gas = shares[item.key]
                detail = (f"fee {item.commitment.fee} wei does not cover {gas} gas at {max_fee} wei/gas "
                          f"({gas * max_fee} wei): not answered; the requester can cancel after the deadline")
                if self.requests.transition(item.key, QUEUED, R.UNPROFITABLE, detail=detail):
                    log.info("chain %s: request %s unprofitable: %s", self.chain.name, item.key, detail)
                self._in_flight.discard(item.key)
            batch = [i for i in batch if i not in losing]  # fewer responses share the base: check again
        return batch

    def _sign(self, nonce: int, to: str, data: bytes, gas: int, max_fee: int, priority: int,
              keys: list[str]) -> StoredTx:
        signed = Account.sign_transaction({
            "type": 2, "chainId": self.chain.chain_id, "nonce": nonce, "to": to, "value": 0, "data": data,
            "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority,
        }, self._key)
        return StoredTx(bytes(signed.hash), self.chain.chain_id, self.sender, nonce, bytes(signed.raw_transaction),
                        max_fee, priority, keys, TxState.PENDING, time.time(), None, None)

    def _record(self, tx: StoredTx) -> StoredTx:
        """On record before it leaves (the caller commits): a restart finds it and follows it."""
        self.txs.record(tx)
        self.requests.mark_submitted(tx.request_keys, tx.tx_hash)
        self._in_flight.update(tx.request_keys)
        return tx

    async def _deliver(self, tx: StoredTx, txs: Sequence[StoredTx] = ()) -> None:
        """Hand a recorded transaction to the node and act on a refusal at once. `txs`: the ones it replaces."""
        refusal = await self._broadcast(tx)
        if refusal == Refusal.PRICE:
            await self._rebuild(tx.nonce, [*txs, tx], known=bool(txs), refused=True, why="priced under the base fee")
        elif refusal == Refusal.REPLACEMENT:
            await self._rebuild(tx.nonce, [*txs, tx], known=True, refused=True, why="the node holds a dearer one")
        elif refusal == Refusal.PERMANENT:
            self._strike(tx)
            await self._rebuild(tx.nonce, [*txs, tx], known=bool(txs), refused=True, fill=True,
                                why="the node refused it for good")

    def _strike(self, tx: StoredTx) -> None:
        """The node refused a transaction for a reason no price fixes. Its responses are sent again, each
        alone; one refused alone is given up (stored expired with the reason), so nothing loops."""
        for key in tx.request_keys:
            self._strikes[key] = self._strikes.get(key, 0) + 1
            if self._strikes[key] >= 2 and len(tx.request_keys) == 1:
                self.requests.transition(key, QUEUED, R.EXPIRED,
                                         detail="the node refuses every transaction carrying this response; "
                                                "check the node's limits (transaction size, gas) and its log")
                self._in_flight.discard(key)

    async def _broadcast(self, tx: StoredTx) -> Refusal:
        if self._broadcasts[tx.tx_hash] >= 2:
            return Refusal.NONE  # sent, and re-sent once: only a rebuilt transaction goes out now
        self._broadcasts[tx.tx_hash] += 1
        try:
            await self.rpc.send_raw(tx.raw)
        except RpcError as exc:
            refusal = classify_refusal(exc.message, exc.code)
            if refusal == Refusal.NONCE_USED:
                self._chain_nonce = None
            elif refusal in (Refusal.PRICE, Refusal.UNREACHABLE):
                self._broadcasts[tx.tx_hash] -= 1  # the node did not take it: sending it again is no repeat
            elif refusal == Refusal.FUNDS:
                self._balance = None
            if refusal not in (Refusal.NONE, Refusal.NONCE_USED):
                log.warning("chain %s: node refused tx 0x%s (nonce %d): %s", self.chain.name, tx.tx_hash.hex(),
                            tx.nonce, exc.message)
            return refusal
        except RpcUnavailable as exc:
            log.warning("chain %s: broadcast of 0x%s failed (%s); the monitor will retry", self.chain.name,
                        tx.tx_hash.hex(), exc)
            self._broadcasts[tx.tx_hash] -= 1  # the node may never have seen it
            return Refusal.UNREACHABLE
        return Refusal.NONE

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
                self._hold(item.key)
            elif name == "RequestExpired":
                self.requests.transition(item.key, QUEUED, R.EXPIRED, detail="deadline passed before it was mined")
            elif name in ("OraclePaused", "InsufficientGasForCallback") or reason is None:
                asyncio.get_running_loop().call_later(2.0, self.submit, item)
            else:
                self.requests.transition(item.key, QUEUED, R.EXPIRED,
                                         detail=f"the oracle refuses the response: {reason}")

    def _hold(self, key: str) -> None:
        self._held[key] = time.monotonic() + GONE_HOLD_SECONDS

    # ------------------------------------------------------------ following transactions

    async def _monitor_loop(self) -> None:
        while True:
            try:
                await self.monitor_once()
            except (RpcError, RpcUnavailable) as exc:
                log.warning("chain %s: monitoring transactions failed (%s)", self.chain.name, exc)
            await asyncio.sleep(0.25)

    async def monitor_once(self) -> None:
        self._asked = set()
        if await self._follow_all():
            # (only after a whole pass: one where a call failed has not asked everything again)
            self._seen_since = {f: t for f, t in self._seen_since.items() if f in self._asked}

    async def _follow_all(self) -> bool:
        """One pass over our transactions; False if a call for some nonce failed. Each nonce and each
        mined transaction is followed on its own: a failed call skips only its own until the next pass
        (when every call has a few percent chance to fail, a pass that stops at the first failure over
        dozens of nonces almost never reaches the later ones)."""
        if time.time() - self._base_fee_at > 1.0:
            await self._fees()
        await self._guards_allow_sending()  # keeps `paused_reason` current even when nothing is queued
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
                self.halted = (f"tx 0x{tx.tx_hash.hex()} (nonce {tx.nonce}) mined {depth} blocks deep is not on "
                               f"the chain, beyond max_reorg_depth {self.chain.max_reorg_depth}: left as it is, "
                               f"no new work taken. Check the node (is it on the right chain?), then restart")
                self._pause(self.halted)
                continue
            self._vanished(tx, f"the signer's nonce on-chain is {mined_count}")
        pending = self.txs.in_state(chain_id, self.sender, [TxState.PENDING, TxState.REPLACED])
        by_nonce: dict[int, list[StoredTx]] = {}
        for tx in pending:
            by_nonce.setdefault(tx.nonce, []).append(tx)
        failures: list[str] = []
        for nonce in sorted(by_nonce):
            await _collect(failures, self._follow_nonce(nonce, by_nonce[nonce], mined_count))
        await self._fill_gaps(mined_count)
        for tx in self.txs.in_state(chain_id, self.sender, [TxState.MINED]):
            await _collect(failures, self._confirm(tx))
        await self.txs.commit()
        if failures:
            log.warning("chain %s: monitoring transactions: %d calls failed, retried next pass (first: %s)",
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
        self._in_flight.update(tx.request_keys)

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
                self.txs.transition(tx.tx_hash, [TxState.PENDING, TxState.REPLACED], TxState.DROPPED)
            self._requeue(keys)
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

    async def _rebuild(self, nonce: int, txs: list[StoredTx], *, known: bool, why: str, refused: bool = False,
                       fill: bool = False) -> None:
        """Replace the transaction at `nonce`: its responses whose requests are still open on-chain and
        whose fees pay for them at the new price, re-simulated, with the gas limit and fees of now; a
        self-transfer when none is left (or `fill`). `known`: the node holds one of `txs`, so the new one
        must outbid them. `refused`: the node refused the newest, so it is not sent unchanged again."""
        newest = max(txs, key=lambda t: t.sent_at)
        cap = self.chain.gas.max_fee_per_gas
        max_fee, priority = await self._fees(fresh=True)
        if known:  # a node replaces a transaction it holds only for a higher price on both fees
            max_fee, priority = self._outbid(txs, max_fee, priority)
            if max_fee > cap:  # it holds one at the cap already: nothing to do but wait for the base fee
                self._hold_nonce(nonce, newest, f"it cannot be re-priced above the fee cap {cap} wei")
                return
        elif self._base_fee > max_fee:
            # not even the cap pays the next block's base fee: signing again now would only be refused
            self._hold_nonce(nonce, newest, f"the base fee {self._base_fee} wei is above the fee cap {cap} wei")
            return
        # Responses left out stay in flight until a transaction at this nonce is mined: an older one
        # carrying them may still be; then the ones it did not carry go back to be sent (`_mined`).
        items = [] if fill else self._profitable(await self._still_open(newest), max_fee)
        data = self._calldata(items) if items else b""
        if items:
            try:
                await self.rpc.eth_call(self.chain.oracle, data, sender=self.sender)
            except RpcError as exc:
                if not _reverted(exc):
                    raise  # the node failed, not the call: the next pass tries again
                log.warning("chain %s: the responses of nonce %d no longer simulate (%s); filling it",
                            self.chain.name, nonce, exc.message)
                items, data = [], b""
        gas = self._gas_limit(items) if items else SELF_TRANSFER_GAS
        to = self.chain.oracle if items else self.sender
        tx = self._sign(nonce, to, data, gas, max_fee, priority, [i.key for i in items])
        if self._broadcasts[tx.tx_hash] >= (1 if refused else 2):
            # the same bytes again: a transaction the node took is sent once more at most
            max_fee, priority = self._outbid(txs, max_fee, priority)
            if max_fee > cap:
                self._hold_nonce(nonce, newest, f"it is at the fee cap {cap} wei")
                return
            tx = self._sign(nonce, to, data, gas, max_fee, priority, [i.key for i in items])
        self._record(tx)
        for old in txs:
            if old.tx_hash != tx.tx_hash:
                self.txs.transition(old.tx_hash, [TxState.PENDING, TxState.REPLACED], TxState.REPLACED)
        self._held_nonces.pop(nonce, None)
        await self.txs.commit()
        self.rebuilt += 1
        log.info("chain %s: nonce %d rebuilt (%s): %d responses, gas %d, max fee %d wei (tx 0x%s)", self.chain.name,
                 nonce, why, len(items), gas, max_fee, tx.tx_hash.hex())
        if items:
            await self._deliver(tx, [t for t in txs if t.tx_hash != tx.tx_hash])
        elif await self._broadcast(tx) in (Refusal.PRICE, Refusal.REPLACEMENT, Refusal.PERMANENT):
            # a self-transfer refused: the next pass looks again, once a block is in
            self._hold_nonce(nonce, tx, "the node refused the transfer that fills it")

    def _hold_nonce(self, nonce: int, tx: StoredTx, why: str) -> None:
        """Leave `nonce` as it is until the next block (said once, not every pass)."""
        if nonce not in self._held_nonces:
            log.warning("chain %s: nonce %d waits: %s (tx 0x%s)", self.chain.name, nonce, why, tx.tx_hash.hex())
        self._held_nonces[nonce] = self._head + 1

    def _outbid(self, txs: Sequence[StoredTx], max_fee: int, priority: int) -> tuple[int, int]:
        """Fees that replace any of `txs` the node may hold (nodes want both fees raised by >= 10%)."""
        bump = 100 + self.chain.gas.fee_bump_percent
        return (max(max_fee, *(t.max_fee * bump // 100 + 1 for t in txs)),
                max(priority, *(t.priority_fee * bump // 100 + 1 for t in txs)))

    async def _still_open(self, tx: StoredTx) -> list[ReadyResponse]:
        return await self._open(_carried(tx, self.chain.oracle))

    async def _open(self, items: Sequence[ReadyResponse]) -> list[ReadyResponse]:
        """The responses whose requests are open on-chain with the same commitment and whose deadlines have
        not passed; the others are released (held a while, then left to the watcher)."""
        now = self.clock()
        open_items: list[ReadyResponse] = []
        for item in items:
            key, response, commitment = item.key, item.response, item.commitment
            stored = await self.rpc.eth_call(self.chain.oracle, COMMITMENTS_SELECTOR + encode(
                ["bytes32"], [response.request_id]))
            if stored != commitment.hash() or now > commitment.deadline:
                self._release([key])
                continue
            open_items.append(item)
        return open_items

    async def _fill_gaps(self, mined_count: int) -> None:
        """A nonce between the chain's count and the next one we hand out with no transaction that may
        use it holds every later one: fill it."""
        live, next_nonce = self.txs.live_nonces(self.chain.chain_id, self.sender, mined_count)
        for nonce in range(mined_count, next_nonce):
            if nonce in live:
                continue
            max_fee, priority = await self._fees(fresh=True)
            tx = self._record(self._sign(nonce, self.sender, b"", SELF_TRANSFER_GAS, max_fee, priority, []))
            await self.txs.commit()
            log.warning("chain %s: nonce %d had no transaction; filled with a self-transfer (tx 0x%s)",
                        self.chain.name, nonce, tx.tx_hash.hex())
            await self._broadcast(tx)

    def _mined(self, tx: StoredTx, receipt: dict[str, Any]) -> None:
        block_number = int(receipt["blockNumber"], 16)
        gas_used = int(receipt["gasUsed"], 16)
        price = int(receipt.get("effectiveGasPrice", "0x0"), 16)
        self.txs.record_mined(tx, block_number, bytes.fromhex(receipt["blockHash"][2:]), gas_used,
                                gas_used * price, _today())
        orphans: set[str] = set()
        for other in self.txs.at_nonce(self.chain.chain_id, self.sender, tx.nonce):
            if other.tx_hash != tx.tx_hash and other.state in (TxState.PENDING, TxState.REPLACED):
                self.txs.transition(other.tx_hash, [TxState.PENDING, TxState.REPLACED], TxState.DROPPED)
                self._broadcasts.pop(other.tx_hash, None)
                orphans.update(other.request_keys)
        # responses only the dropped ones carried (a rebuild can carry other ones) go back to be sent
        self._requeue(sorted(orphans - set(tx.request_keys)))
        self._held_nonces.pop(tx.nonce, None)
        if int(receipt["status"], 16) != 1:
            log.warning("chain %s: tx 0x%s reverted on-chain; re-queueing its responses", self.chain.name,
                        tx.tx_hash.hex())
            self._requeue(tx.request_keys)

    async def _confirm(self, tx: StoredTx) -> None:
        """Final at the confirmation depth; until then the receipt's block hash is checked again."""
        receipt = await self.rpc.receipt(tx.tx_hash)
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
        self._broadcasts.pop(tx.tx_hash, None)
        self.confirmed += 1
        self._in_flight.difference_update(tx.request_keys)
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
                self.requests.mark_settled(key, R.FULFILLED, block_number, tx.tx_hash, tx.block_hash)
            elif topics[0] == SKIPPED_TOPIC and data[:4] not in (UNKNOWN_REQUEST, COMMITMENT_MISMATCH):
                # The request under this commitment is there and refused the response (expired, too
                # large, ...): sending it again changes nothing.
                self.requests.transition(key, QUEUED, R.EXPIRED, detail=f"skipped on-chain: 0x{data[:4].hex()}")
            else:
                settled.discard(key)
        # UnknownRequest: settled by someone else or reorganised away; CommitmentMismatch: a reorg gave the
        # id to another request, which the row may describe by now. The watcher says which.
        self._release(sorted(set(tx.request_keys) - settled))

    def _release(self, keys: list[str]) -> None:
        """Responses whose requests are not open on-chain: back to `signed`, not sent again for a while."""
        for key in keys:
            self._hold(key)
        self._requeue(keys)

    def _requeue(self, keys: list[str]) -> None:
        """Responses whose transaction failed go back to `signed`; the pipeline submits them again."""
        self._in_flight.difference_update(keys)
        self.requests.requeue_submitted(keys)


def _carried(tx: StoredTx, oracle: str) -> list[ReadyResponse]:
    """The signed responses a stored transaction of ours carries, read back from its calldata."""
    data = bytes(TypedTransaction.from_bytes(HexBytes(tx.raw)).as_dict()["data"])
    return [ReadyResponse(request_key(tx.chain_id, oracle, response.request_id), response, commitment, sig,
                          commitment.deadline) for response, commitment, sig in decode_fulfilment(data)]


async def _collect(failures: list[str], step: Awaitable[None]) -> None:
    """Run one step of a monitor pass; a node's failure is noted, not raised, so the next step runs."""
    try:
        await step
    except (RpcError, RpcUnavailable) as exc:
        failures.append(str(exc))


def _reverted(exc: RpcError) -> bool:
    """Whether an eth_call failed because the call reverts (rather than because the node failed)."""
    return exc.revert_data is not None or exc.code == 3 or "revert" in exc.message.lower()


def _today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
