"""`TxManager`: gets signed responses on-chain, one manager per signer and chain.

- Nonces come from the store (persisted before use), never below the chain's count.
- Ready responses are batched into `fulfillBatch` (or sent alone with `fulfill`); each transaction
  is simulated first (`eth_estimateGas`), written to the store with its raw bytes, then sent, so a
  restart re-broadcasts the same bytes rather than signing anew.
- EIP-1559 fees: twice the latest base fee plus the priority fee, never above the configured cap; a
  transaction not mined within `replace_after` is re-sent with fees bumped by `fee_bump_percent`.
- Receipts are followed to the confirmation depth; a mined transaction whose block is reorganised
  away is re-broadcast.
- Guards: a daily gas budget (sending stops when it is spent) and a low-balance threshold (below it
  the pipeline stops taking new work). Both say why in `paused_reason`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes

from oracle.abi import signature
from oracle.chain.calldata import fulfill_batch_calldata, fulfill_calldata
from oracle.chain.errors import decode_revert
from oracle.chain.events import FULFILLED_TOPIC, log_topics_and_data
from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.config import ChainSettings
from oracle.protocol import Commitment, Response
from oracle.store import State, Store, StoredTx, request_key

log = logging.getLogger(__name__)

SKIPPED_TOPIC = keccak(text=signature("AIOracle", "FulfillmentSkipped"))
UNKNOWN_REQUEST = keccak(text="UnknownRequest(bytes32)")[:4]


@dataclass
class ReadyResponse:
    key: str
    response: Response
    commitment: Commitment
    signature: bytes
    deadline: int


class TxManager:
    def __init__(self, chain: ChainSettings, rpc: ChainClient, store: Store, private_key: bytes,
                 clock: Callable[[], float] = time.time) -> None:
        self.chain = chain
        self.rpc = rpc
        self.store = store
        self._key = private_key
        self.sender = to_checksum_address(Account.from_key(private_key).address)
        self.clock = clock  # the chain's now, for deadlines; transaction timing uses this machine's clock
        self._queue: deque[ReadyResponse] = deque()
        self._queued: set[str] = set()
        self._in_flight: dict[str, bytes] = {}  # request key -> hash of the transaction carrying it
        self._sending: set[str] = set()  # taken from the queue, not yet on record as in flight
        self._ready = asyncio.Event()
        self._chain_nonce: int | None = None
        self._base_fee = 0
        self._network_priority = 0
        self._base_fee_at = 0.0
        self._balance: int | None = None
        self._balance_at = 0.0
        self.paused_reason = ""
        self.sent = 0
        self.confirmed = 0

    # ------------------------------------------------------------ the pipeline's side

    @property
    def accepting_new_work(self) -> bool:
        return not self.paused_reason

    def submit(self, item: ReadyResponse) -> None:
        """Queue a signed response; a response already queued or carried by a pending tx is ignored."""
        if item.key in self._queued or item.key in self._in_flight or item.key in self._sending:
            return
        self._queue.append(item)
        self._queued.add(item.key)
        self._ready.set()

    def carries(self, key: str) -> bool:
        return key in self._queued or key in self._in_flight or key in self._sending

    def reorged(self, common_block: int) -> None:
        """The chain reorganised above `common_block`: our transactions mined there are pending again
        (the monitor re-broadcasts the same bytes), and still carry their responses."""
        for tx in self.store.reopen_txs_after(self.chain.chain_id, common_block):
            if tx.sender != self.sender:
                continue
            log.warning("chain %s: tx 0x%s (nonce %d) was reorganised away; pending again", self.chain.name,
                        tx.tx_hash.hex(), tx.nonce)
            for key in tx.request_keys:
                self._in_flight[key] = tx.tx_hash
            self.store.mark_submitted(tx.request_keys, tx.tx_hash)

    def current_max_fee(self) -> int:
        """The maxFeePerGas a transaction sent now would pay, wei (for the pipeline's economics check)."""
        cap = self.chain.gas.max_fee_per_gas
        return min(cap, 2 * self._base_fee + min(max(self.chain.gas.priority_fee, self._network_priority), cap))

    # ------------------------------------------------------------ loops

    async def run(self) -> None:
        await self._resume()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._send_loop())
            tasks.create_task(self._monitor_loop())

    async def _resume(self) -> None:
        """Re-broadcast what a previous run sent (same bytes, same hashes)."""
        for tx in self.store.txs_in_state(self.chain.chain_id, self.sender, ["pending"]):
            for key in tx.request_keys:
                self._in_flight[key] = tx.tx_hash
            await self._broadcast(tx.raw, tx.tx_hash)
        for tx in self.store.txs_in_state(self.chain.chain_id, self.sender, ["mined"]):
            for key in tx.request_keys:
                self._in_flight[key] = tx.tx_hash

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
        """Up to `batch_max` responses whose gas together stays under `batch_gas_max` (a transaction
        above the block gas limit would never be mined and would hold every later nonce)."""
        now = self.clock()  # deadlines are in chain time
        batch: list[ReadyResponse] = []
        gas = 0
        while self._queue and len(batch) < self.chain.gas.batch_max:
            item = self._queue[0]
            item_gas = self._response_gas(item)
            if batch and gas + item_gas > self.chain.gas.batch_gas_max:
                break
            self._queue.popleft()
            self._queued.discard(item.key)
            if item.key in self._in_flight:
                continue
            if now > item.deadline:
                self.store.set_state(item.key, State.EXPIRED, detail="deadline passed before it could be sent")
                continue
            batch.append(item)
            gas += item_gas
        return batch

    async def _guards_allow_sending(self) -> bool:
        now = time.time()
        if self._balance is None or now - self._balance_at > 5.0:
            self._balance = await self.rpc.balance(self.sender)
            self._balance_at = now
        if self._balance < self.chain.gas.low_balance:
            self.paused_reason = (f"signer {self.sender} balance {self._balance} wei is below low_balance "
                                  f"{self.chain.gas.low_balance}: not taking new work")
            log.error("chain %s: %s", self.chain.name, self.paused_reason)
            return False
        spent = self.store.gas_spent(self.chain.chain_id, _today())
        if spent >= self.chain.gas.daily_budget:
            self.paused_reason = f"daily gas budget {self.chain.gas.daily_budget} wei spent ({spent}): sending held"
            log.error("chain %s: %s", self.chain.name, self.paused_reason)
            return False
        self.paused_reason = ""
        return True

    # ------------------------------------------------------------ sending

    async def _fees(self) -> tuple[int, int]:
        """EIP-1559 fees from the fee history: room for the base fee to double, the priority fee the
        latest block paid at its median (at least the configured one), all under the cap."""
        now = time.time()
        if now - self._base_fee_at > 1.0:
            self._base_fee, self._network_priority = await self.rpc.fee_history()
            self._base_fee_at = now
        cap = self.chain.gas.max_fee_per_gas
        priority = min(max(self.chain.gas.priority_fee, self._network_priority), cap)
        return min(cap, 2 * self._base_fee + priority), priority

    async def _send(self, batch: list[ReadyResponse]) -> None:
        if len(batch) == 1:
            item = batch[0]
            data = fulfill_calldata(item.response, item.commitment, item.signature)
        else:
            data = fulfill_batch_calldata([(i.response, i.commitment, i.signature) for i in batch])
        try:
            # One execution against the latest state: a call that would revert is not sent.
            await self.rpc.eth_call(self.chain.oracle, data, sender=self.sender)
        except RpcError as exc:
            self._refused(batch, exc)
            return
        gas = self._gas_limit(batch, data)
        max_fee, priority = await self._fees()
        spent = self.store.gas_spent(self.chain.chain_id, _today())
        if spent + gas * max_fee > self.chain.gas.daily_budget:
            # at worst this transaction costs gas * max_fee: it must fit in what is left of the budget
            self.paused_reason = (f"daily gas budget {self.chain.gas.daily_budget} wei: {spent} spent, this "
                                  f"transaction could cost {gas * max_fee}; sending held")
            log.error("chain %s: %s", self.chain.name, self.paused_reason)
            for item in batch:
                self.submit(item)
            await asyncio.sleep(1.0)
            return
        if self._chain_nonce is None:
            self._chain_nonce = await self.rpc.nonce(self.sender, "pending")
        nonce = self.store.allocate_nonce(self.chain.chain_id, self.sender, self._chain_nonce)
        raw, tx_hash = self._sign(nonce, data, gas, max_fee, priority)
        keys = [i.key for i in batch]
        self.store.record_tx(StoredTx(tx_hash, self.chain.chain_id, self.sender, nonce, raw, max_fee, priority, keys,
                                      "pending", time.time(), None, None))
        self.store.mark_submitted(keys, tx_hash)
        for key in keys:
            self._in_flight[key] = tx_hash
        await self.store.commit()  # on record before it leaves: a restart re-sends these same bytes
        await self._broadcast(raw, tx_hash)
        self.sent += 1

    def _gas_limit(self, batch: list[ReadyResponse], data: bytes) -> int:
        """An upper bound instead of eth_estimateGas (whose search runs the call many times): intrinsic
        and calldata gas, then per response the oracle's overhead and the callback's limit with the
        EIP-150 reserve the contract checks for. Unused gas is not paid for."""
        return 21_000 + 16 * len(data) + sum(self._response_gas(item) for item in batch)

    def _response_gas(self, item: ReadyResponse) -> int:
        return self.chain.gas.fulfill_gas_overhead + item.commitment.callback_gas_limit * 64 // 63 + 5_000

    def _sign(self, nonce: int, data: bytes, gas: int, max_fee: int, priority: int) -> tuple[bytes, bytes]:
        signed = Account.sign_transaction({
            "type": 2, "chainId": self.chain.chain_id, "nonce": nonce, "to": self.chain.oracle, "value": 0,
            "data": data, "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority,
        }, self._key)
        return bytes(signed.raw_transaction), bytes(signed.hash)

    async def _broadcast(self, raw: bytes, tx_hash: bytes) -> None:
        try:
            await self.rpc.send_raw(raw)
        except RpcError as exc:
            message = exc.message.lower()
            if "already known" in message or "already imported" in message:
                return
            if "nonce too low" in message:
                # Either this very tx was mined, or another of ours took the nonce; the monitor decides.
                self._chain_nonce = None
                return
            if "insufficient funds" in message:
                self._balance = None
            log.warning("chain %s: broadcast of 0x%s refused: %s", self.chain.name, tx_hash.hex(), exc.message)
        except RpcUnavailable as exc:
            log.warning("chain %s: broadcast of 0x%s failed (%s); the monitor will retry", self.chain.name,
                        tx_hash.hex(), exc)

    def _retry_later(self, item: ReadyResponse, delay: float = 2.0) -> None:
        asyncio.get_running_loop().call_later(delay, self.submit, item)

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
            if name == "UnknownRequest":
                # settled by someone else (or cancelled): the watcher records which
                continue
            if name == "RequestExpired":
                self.store.set_state(item.key, State.EXPIRED, detail="deadline passed before it was mined")
            elif name in ("OraclePaused", "InsufficientGasForCallback") or reason is None:
                self._retry_later(item)
            else:
                self.store.set_state(item.key, State.EXPIRED, detail=f"the oracle refuses the response: {reason}")

    # ------------------------------------------------------------ following transactions

    async def _monitor_loop(self) -> None:
        while True:
            try:
                await self.monitor_once()
            except (RpcError, RpcUnavailable) as exc:
                log.warning("chain %s: monitoring transactions failed (%s)", self.chain.name, exc)
            await asyncio.sleep(0.25)

    async def monitor_once(self) -> None:
        if time.time() - self._base_fee_at > 1.0:
            await self._fees()
        await self._guards_allow_sending()  # keeps `paused_reason` current even when nothing is queued
        pending = self.store.txs_in_state(self.chain.chain_id, self.sender, ["pending", "replaced"])
        by_nonce: dict[int, list[StoredTx]] = {}
        for tx in pending:
            by_nonce.setdefault(tx.nonce, []).append(tx)
        for nonce, txs in by_nonce.items():
            await self._follow_nonce(nonce, txs)
        if pending:
            await self.store.commit()
        mined = self.store.txs_in_state(self.chain.chain_id, self.sender, ["mined"])
        if mined:
            head = await self.rpc.block_number()
            for tx in mined:
                await self._confirm(tx, head)
            await self.store.commit()

    async def _follow_nonce(self, nonce: int, txs: list[StoredTx]) -> None:
        for tx in txs:
            receipt = await self.rpc.receipt(tx.tx_hash)
            if receipt is not None and receipt.get("blockHash"):
                self._mined(tx, receipt, [t for t in txs if t.tx_hash != tx.tx_hash])
                return
        newest = max(txs, key=lambda t: t.sent_at)
        age = time.time() - newest.sent_at
        if age < 1.0:
            return  # just sent: no receipt yet is normal, and asking the node again costs a round trip
        if not await self.rpc.transaction_known(newest.tx_hash):
            # dropped from the node (a reorg took its block, or the node restarted): the same bytes again
            log.warning("chain %s: node lost tx 0x%s (nonce %d); re-broadcasting", self.chain.name,
                        newest.tx_hash.hex(), nonce)
            await self._broadcast(newest.raw, newest.tx_hash)
            return
        if age < self.chain.gas.replace_after:
            return
        chain_nonce = await self.rpc.nonce(self.sender, "latest")
        if chain_nonce > nonce:
            # the nonce is used but none of our hashes has a receipt: the tx was replaced by one we lost
            for tx in txs:
                self.store.set_tx_state(tx.tx_hash, "dropped")
            self._requeue(newest.request_keys)
            return
        await self._replace(newest)

    async def _replace(self, tx: StoredTx) -> None:
        """Re-send the same call with the same nonce and fees bumped (nodes require >= 10%)."""
        bump = 100 + self.chain.gas.fee_bump_percent
        max_fee, priority = await self._fees()
        max_fee = max(max_fee, tx.max_fee * bump // 100 + 1)
        priority = max(priority, tx.priority_fee * bump // 100 + 1)
        if max_fee > self.chain.gas.max_fee_per_gas:
            log.warning("chain %s: tx 0x%s stuck and at the fee cap; re-broadcasting", self.chain.name,
                        tx.tx_hash.hex())
            await self._broadcast(tx.raw, tx.tx_hash)
            self.store.set_tx_state(tx.tx_hash, "pending")
            return
        fields = TypedTransaction.from_bytes(HexBytes(tx.raw)).as_dict()
        raw, tx_hash = self._sign(tx.nonce, bytes(fields["data"]), int(fields["gas"]), max_fee, priority)
        self.store.set_tx_state(tx.tx_hash, "replaced")
        self.store.record_tx(StoredTx(tx_hash, tx.chain_id, tx.sender, tx.nonce, raw, max_fee, priority,
                                      tx.request_keys, "pending", time.time(), None, None))
        self.store.mark_submitted(tx.request_keys, tx_hash)
        for key in tx.request_keys:
            self._in_flight[key] = tx_hash
        await self.store.commit()
        log.info("chain %s: nonce %d re-priced to %d wei (tx 0x%s)", self.chain.name, tx.nonce, max_fee,
                 tx_hash.hex())
        await self._broadcast(raw, tx_hash)

    def _mined(self, tx: StoredTx, receipt: dict[str, Any], others: list[StoredTx]) -> None:
        block_number = int(receipt["blockNumber"], 16)
        block_hash = bytes.fromhex(receipt["blockHash"][2:])
        gas_used = int(receipt["gasUsed"], 16)
        price = int(receipt.get("effectiveGasPrice", "0x0"), 16)
        self.store.set_tx_state(tx.tx_hash, "mined", block_number=block_number, block_hash=block_hash,
                                gas_used=gas_used, gas_cost=gas_used * price)
        self.store.add_gas_spend(self.chain.chain_id, _today(), gas_used * price)
        for other in others:
            self.store.set_tx_state(other.tx_hash, "dropped")
        if int(receipt["status"], 16) != 1:
            log.warning("chain %s: tx 0x%s reverted on-chain; re-queueing its responses", self.chain.name,
                        tx.tx_hash.hex())
            self._requeue(tx.request_keys)
            return
        for entry in receipt.get("logs", []):
            if str(entry.get("address", "")).lower() != self.chain.oracle.lower():
                continue
            topics, data = log_topics_and_data(entry)
            if len(topics) < 2:
                continue
            key = request_key(self.chain.chain_id, self.chain.oracle, topics[1])
            if topics[0] == FULFILLED_TOPIC:
                self.store.mark_settled(key, State.FULFILLED, block_number)
            elif topics[0] == SKIPPED_TOPIC and data[:4] != UNKNOWN_REQUEST:
                # UnknownRequest: settled by someone else, which the watcher records. Anything else
                # (expired, refused) will not change by sending again.
                self.store.set_state(key, State.EXPIRED, detail=f"skipped on-chain: 0x{data[:4].hex()}")

    async def _confirm(self, tx: StoredTx, head: int) -> None:
        assert tx.block_number is not None
        if head - tx.block_number < self.chain.confirmations:
            return
        header = await self.rpc.header(tx.block_number)
        if header is None or header.hash != tx.block_hash:
            log.warning("chain %s: block of tx 0x%s was reorganised away; re-broadcasting", self.chain.name,
                        tx.tx_hash.hex())
            self.store.set_tx_state(tx.tx_hash, "pending")
            await self._broadcast(tx.raw, tx.tx_hash)
            return
        self.store.set_tx_state(tx.tx_hash, "confirmed", block_number=tx.block_number, block_hash=tx.block_hash)
        self.confirmed += 1
        for key in tx.request_keys:  # (a replacement's hash may be recorded instead of this one)
            self._in_flight.pop(key, None)

    def _requeue(self, keys: list[str]) -> None:
        """Responses whose transaction failed go back to `signed`; the pipeline submits them again."""
        for key in keys:
            self._in_flight.pop(key, None)
        self.store.requeue_submitted(keys)


def _today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")

