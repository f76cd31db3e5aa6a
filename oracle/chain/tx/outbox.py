"""`Outbox`: what every transaction of ours passes through, new or rebuilt.

The checks on what it carries (each response's fee covers its share of the gas; its request is still
open on-chain under the same commitment; the whole call simulates), the nonce, the signature, and
"record, mark submitted, commit, broadcast" in that order: a transaction is on record before it
leaves, so a restart finds and follows it. The same raw bytes go to the node at most twice."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from eth_abi import encode
from eth_account import Account
from eth_utils import to_checksum_address

from oracle.chain.calldata import COMMITMENTS_SELECTOR
from oracle.chain.gas import SELF_TRANSFER_GAS
from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.chain.tx.batch import ReadyResponse, calldata, shares
from oracle.chain.tx.guards import Guards
from oracle.chain.tx.in_flight import InFlight
from oracle.chain.tx.refusals import Refusal, classify_refusal
from oracle.config import ChainSettings
from oracle.store import StoredTx, Transactions, TxState

log = logging.getLogger(__name__)


def address_of(private_key: bytes) -> str:
    return to_checksum_address(Account.from_key(private_key).address)


class Outbox:
    def __init__(self, chain: ChainSettings, rpc: ChainClient, txs: Transactions, in_flight: InFlight,
                 guards: Guards, private_key: bytes, clock: Callable[[], float]) -> None:
        self.chain = chain
        self.rpc = rpc
        self.txs = txs
        self.in_flight = in_flight
        self.guards = guards
        self._key = private_key
        self.sender = address_of(private_key)
        self.clock = clock  # the chain's now, for deadlines
        self._chain_nonce: int | None = None  # the chain's pending count, read once (and after a refusal)
        self._broadcasts: Counter[bytes] = Counter()  # raw transactions handed to the node, by hash

    # ------------------------------------------------------------ what a transaction carries

    def profitable(self, batch: list[ReadyResponse], max_fee: int) -> list[ReadyResponse]:
        """The responses whose escrowed fee covers their gas in the batch at `max_fee`; the others are left
        to expire (their requesters reclaim the fees) and stored as unprofitable with the figures."""
        overhead = self.chain.gas.fulfill_gas_overhead
        while batch:
            share = shares(batch, overhead)
            losing = [i for i in batch if i.commitment.fee < share[i.key] * max_fee]
            if not losing:
                return batch
            for item in losing:
                self.in_flight.unprofitable(item.key, item.commitment.fee, share[item.key], max_fee)
            batch = [i for i in batch if i not in losing]  # fewer responses share the base: check again
        return batch

    async def still_open(self, items: Sequence[ReadyResponse]) -> list[ReadyResponse]:
        """The responses whose requests are open on-chain with the same commitment and whose deadlines have
        not passed; the others are released (held a while, then left to the watcher)."""
        now = self.clock()
        open_items: list[ReadyResponse] = []
        for item in items:
            stored = await self.rpc.eth_call(self.chain.oracle, COMMITMENTS_SELECTOR + encode(
                ["bytes32"], [item.response.request_id]))
            if stored != item.commitment.hash() or now > item.commitment.deadline:
                self.in_flight.release([item.key])
                continue
            open_items.append(item)
        return open_items

    async def simulate(self, batch: Sequence[ReadyResponse]) -> int:
        """How many of `batch` one execution against the latest state fulfils (the rest it would skip).
        Raises RpcError if the call reverts or the node fails (`refusals.reverted` tells which)."""
        result = await self.rpc.eth_call(self.chain.oracle, calldata(batch), sender=self.sender)
        return int.from_bytes(result[:32], "big")

    # ------------------------------------------------------------ nonce, signature, record, send

    async def next_nonce(self) -> int:
        """A nonce for a new transaction: the caller signs and records the transaction before it awaits
        anything, so the confirmer never sees the nonce handed out with no transaction for it."""
        if self._chain_nonce is None:
            self._chain_nonce = await self.rpc.nonce(self.sender, "pending")
        return self.txs.allocate_nonce(self.chain.chain_id, self.sender, self._chain_nonce)

    def sign(self, nonce: int, to: str, data: bytes, gas: int, max_fee: int, priority: int,
             keys: list[str]) -> StoredTx:
        signed = Account.sign_transaction({
            "type": 2, "chainId": self.chain.chain_id, "nonce": nonce, "to": to, "value": 0, "data": data,
            "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority,
        }, self._key)
        return StoredTx(bytes(signed.hash), self.chain.chain_id, self.sender, nonce, bytes(signed.raw_transaction),
                        max_fee, priority, keys, TxState.PENDING, time.time(), None, None)

    def sign_transfer(self, nonce: int, max_fee: int, priority: int) -> StoredTx:
        """A zero-value transfer to the signer itself: fills a nonce nothing else may use."""
        return self.sign(nonce, self.sender, b"", SELF_TRANSFER_GAS, max_fee, priority, [])

    async def issue(self, tx: StoredTx, replaces: Sequence[StoredTx] = ()) -> Refusal:
        """Record `tx` (and that it replaces `replaces`), commit, then hand it to the node."""
        self.txs.record(tx)
        self.in_flight.submitted(tx)
        for old in replaces:
            if old.tx_hash != tx.tx_hash:
                self.txs.transition(old.tx_hash, [TxState.PENDING, TxState.REPLACED], TxState.REPLACED)
        await self.txs.commit()
        return await self.broadcast(tx)

    def times_sent(self, tx: StoredTx) -> int:
        return self._broadcasts[tx.tx_hash]

    def forget(self, tx: StoredTx) -> None:
        """`tx` is final or dropped: it is never sent again."""
        self._broadcasts.pop(tx.tx_hash, None)

    async def broadcast(self, tx: StoredTx) -> Refusal:
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
                self.guards.forget_balance()
            if refusal not in (Refusal.NONE, Refusal.NONCE_USED):
                log.warning("chain %s: node refused tx 0x%s (nonce %d): %s", self.chain.name, tx.tx_hash.hex(),
                            tx.nonce, exc.message)
            return refusal
        except RpcUnavailable as exc:
            log.log(logging.DEBUG if self.rpc.failing else logging.WARNING,
                    "chain %s: broadcast of 0x%s failed (%s); the monitor will retry", self.chain.name,
                    tx.tx_hash.hex(), exc)
            self._broadcasts[tx.tx_hash] -= 1  # the node may never have seen it
            return Refusal.UNREACHABLE
        return Refusal.NONE
