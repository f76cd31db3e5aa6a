"""The facilitator's transactions, sent and confirmed on the event loop, many at once.

Split as a transaction manager is: `NonceAllocator` hands out the key's nonces in order, `Broadcaster`
signs locally and sends raw transactions, `Confirmer` watches every transaction awaited with one
poller (new blocks' transaction lists, then a slower sweep of receipts and of what the node still
holds), and `SettlementSender` joins them for one call: send, await the receipt, send again when the
node forgets the transaction (a reorg dropped it) while any copy sent may still be mined.

Nonces are never waited on: one the node says is taken moves the allocator past the node's count; one
the node lacks below those handed out (a send that never arrived, a transaction a reorg dropped) is
handed out again, so the settlement sent again after a reorg takes it, and if nothing takes it within a
few sweeps it is filled with an empty transfer to the key itself, so what is queued behind it is mined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account

from oracle.chain.rpc import ChainClient, RpcError, RpcUnavailable
from oracle.chain.tx.refusals import Refusal, classify_refusal

log = logging.getLogger(__name__)

FILL_GAS = 21_000
POLL_SECONDS = 0.05  # how often the head is looked at while a transaction is awaited
SWEEP_SECONDS = 0.5  # how often receipts, held transactions and nonce gaps are checked one by one
SWEEP_AFTER_SECONDS = 1.0  # a transaction's receipt is looked for one by one only once it is this old
MAX_BLOCKS_PER_LOOK = 256  # beyond, the sweep finds the receipts
FEE_TTL_SECONDS = 1.0
MAX_FILLS_PER_SWEEP = 64
GAP_SWEEPS_BEFORE_FILLING = 5  # past the sweeps in which a settlement the node forgot is sent again
SEND_ATTEMPTS = 8  # a nonce taken or a price under the base fee is repaired at once, this many times at most


class SendRefused(Exception):
    """The node refused the transaction for good (not its nonce): sending it again cannot help."""

    def __init__(self, error: RpcError) -> None:
        super().__init__(error.message)
        self.error = error


class NonceAllocator:
    """The key's next nonces, handed out in order under one lock.

    Seeded from the node's pending count, and re-read from it whenever nothing of ours is on its way
    (the node is then the whole truth: anything it lacks was dropped and nobody waits for it). A nonce
    handed out again may meet one the node queues: the node calls it taken and the sender moves on.
    """

    def __init__(self, client: ChainClient, address: str) -> None:
        self._client = client
        self._address = address
        self._lock = asyncio.Lock()
        self._next: int | None = None
        self._high = 0  # one past the highest nonce handed out
        self.unsent: set[int] = set()  # handed out, not yet acknowledged by the node
        self.acks = 0  # sends answered (or given up on) so far
        self.awaited = 0  # transactions sent and not yet mined, kept by the confirmer

    async def pending_count(self) -> int:
        return int(await self._client.call("eth_getTransactionCount", [self._address, "pending"]), 16)

    async def take(self) -> int:
        async with self._lock:
            if self._next is None or (not self.unsent and not self.awaited):
                self._next = self._high = await self.pending_count()
            nonce = self._next
            self._next += 1
            self._high = max(self._high, self._next)
            self.unsent.add(nonce)
            return nonce

    def acknowledged(self, nonce: int) -> None:
        self.unsent.discard(nonce)
        self.acks += 1

    async def skip_taken(self) -> None:
        """The node says a nonce handed out is taken (by a transaction sent from this key elsewhere)."""
        async with self._lock:
            self._next = max(self._next or 0, await self.pending_count())
            self._high = max(self._high, self._next)

    def hand_out_again(self, nonce: int) -> None:
        """`nonce` is missing on the node: the next one handed out."""
        if self._next is not None:
            self._next = min(self._next, nonce)

    def filled(self, nonce: int) -> None:
        if self._next is not None:
            self._next = max(self._next, nonce + 1)

    async def missing(self) -> int | None:
        """The lowest nonce handed out that the node lacks and that no send is on its way to, if any.

        The node's pending count stops at the first nonce it lacks; it is trusted only when no send was
        answered while it was read (a nonce just acknowledged would look missing).
        """
        acks = self.acks
        pending = await self.pending_count()
        if acks == self.acks and self._next is not None and pending < self._high and pending not in self.unsent:
            return pending
        return None


class Broadcaster:
    """Signs with the key and sends; a nonce the node calls taken is replaced by a fresh one at once."""

    def __init__(self, client: ChainClient, key: bytes, chain_id: int, nonces: NonceAllocator) -> None:
        self._client = client
        self._account = Account.from_key(key)
        self._chain_id = chain_id
        self.nonces = nonces
        self._price = 0
        self._priced_at = -FEE_TTL_SECONDS

    @property
    def address(self) -> str:
        return str(self._account.address)

    async def gas_price(self) -> int:
        if time.monotonic() - self._priced_at >= FEE_TTL_SECONDS:
            self._price = 2 * int(await self._client.call("eth_gasPrice", []), 16)  # room for the base fee to rise
            self._priced_at = time.monotonic()
        return self._price

    def sign(self, to: str, data: bytes, nonce: int, gas: int, price: int) -> tuple[str, str]:
        """(transaction hash, raw transaction), both 0x-hex."""
        signed = self._account.sign_transaction({"to": to, "data": data, "value": 0, "gas": gas, "gasPrice": price,
                                                 "nonce": nonce, "chainId": self._chain_id})
        return "0x" + signed.hash.hex(), "0x" + signed.raw_transaction.hex()

    async def send(self, to: str, data: bytes, gas: int) -> str:
        """Send a new transaction; its hash. A refusal that is not about the nonce raises `SendRefused`.

        A send the node never answered is not an error: its hash is watched like any other, and if the
        node does not hold it the confirmer reports it forgotten and it is sent again.
        """
        for _ in range(SEND_ATTEMPTS):
            price = await self.gas_price()
            nonce = await self.nonces.take()
            tx_hash, raw = self.sign(to, data, nonce, gas, price)
            try:
                await self._client.call("eth_sendRawTransaction", [raw])
            except RpcError as exc:
                self.nonces.acknowledged(nonce)
                refusal = classify_refusal(exc.message, exc.code)
                if refusal is Refusal.NONE:
                    return tx_hash
                refused = exc
                if refusal in (Refusal.NONCE_USED, Refusal.REPLACEMENT):
                    log.info("facilitator nonce %d taken, sending under a fresh one", nonce)
                    await self.nonces.skip_taken()
                    continue
                if refusal is Refusal.PRICE:
                    self._priced_at = -FEE_TTL_SECONDS
                    continue
                raise SendRefused(exc) from exc
            except RpcUnavailable:
                self.nonces.acknowledged(nonce)
                return tx_hash
            self.nonces.acknowledged(nonce)
            return tx_hash
        raise SendRefused(refused)

    async def fill(self, nonce: int) -> bool:
        """An empty transfer to the key itself under `nonce`, so the transactions after it are mined."""
        tx_hash, raw = self.sign(self.address, b"", nonce, FILL_GAS, await self.gas_price())
        try:
            await self._client.call("eth_sendRawTransaction", [raw])
        except (RpcError, RpcUnavailable) as exc:
            log.info("facilitator nonce %d not filled: %s", nonce, exc)
            return False
        log.info("facilitator nonce %d was missing on the node: filled by %s", nonce, tx_hash)
        return True


@dataclass(eq=False)  # kept in a set, by identity
class _Watch:
    """One settlement's copies (every hash sent for it) and what the confirmer learnt of them."""

    hashes: list[str]
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent_at: float = field(default_factory=time.monotonic)
    unheld_sweeps: int = 0  # consecutive sweeps in which the node held none of the copies unmined
    forgotten: bool = False

    def outcome(self) -> dict[str, Any] | None:
        """A copy mined with status 1 wins; a failed one only once no other copy can still be mined."""
        for receipt in self.receipts.values():
            if int(receipt["status"], 16) == 1:
                return receipt
        if self.receipts and (len(self.receipts) == len(self.hashes) or self.forgotten):
            return next(iter(self.receipts.values()))
        return None


class Confirmer:
    """One poller for every awaited transaction: each new block's transaction list is read once, and
    the receipts of awaited ones in it are fetched; a slower sweep fetches the rest one by one (for
    reorgs), marks a settlement forgotten when the node holds none of its copies twice running, and
    repairs a nonce the node lacks."""

    def __init__(self, client: ChainClient, broadcaster: Broadcaster) -> None:
        self._client = client
        self._broadcaster = broadcaster
        self._watches: set[_Watch] = set()
        self._wake = asyncio.Event()
        self._head: tuple[int, str] | None = None
        self._gap: int | None = None  # the nonce the node lacked at the last sweep, handed out again
        self._gap_sweeps = 0  # sweeps in a row it was lacking

    def watch(self, watch: _Watch) -> None:
        self._watches.add(watch)
        self._broadcaster.nonces.awaited = len(self._watches)
        self._wake.set()

    def unwatch(self, watch: _Watch) -> None:
        self._watches.discard(watch)
        self._broadcaster.nonces.awaited = len(self._watches)

    async def run(self) -> None:
        swept = time.monotonic()
        while True:
            if not self._watches:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self._look_at_head()
                if time.monotonic() - swept >= SWEEP_SECONDS:
                    swept = time.monotonic()
                    await self._sweep()
            except (RpcError, RpcUnavailable) as exc:
                log.info("facilitator confirmer: %s", exc)
            await asyncio.sleep(POLL_SECONDS)

    async def _look_at_head(self) -> None:
        head = await self._client.call("eth_getBlockByNumber", ["latest", False])
        number, block_hash = int(head["number"], 16), str(head["hash"])
        last = self._head
        self._head = (number, block_hash)
        if (number, block_hash) == last:
            return
        # The blocks since the last look (kept while idle: a transaction is mined after it); after a
        # reorg, the head only: the sweep finds the rest.
        first = number if last is None or number <= last[0] else max(last[0] + 1, number - MAX_BLOCKS_PER_LOOK + 1)
        skipped = await asyncio.gather(*(self._client.call("eth_getBlockByNumber", [hex(n), False])
                                         for n in range(first, number)))
        blocks = [head, *skipped]
        await self._found([tx for block in blocks if block for tx in block["transactions"]])

    async def _found(self, mined: Sequence[str]) -> None:
        in_blocks = set(mined)
        wanted = [(w, h) for w in list(self._watches) for h in w.hashes if h in in_blocks and h not in w.receipts]
        receipts = await asyncio.gather(*(self._client.call("eth_getTransactionReceipt", [h]) for _, h in wanted))
        for (watch, tx_hash), receipt in zip(wanted, receipts, strict=True):
            if receipt is not None:
                watch.receipts[tx_hash] = receipt
                watch.changed.set()

    async def _sweep(self) -> None:
        due = [w for w in list(self._watches) if time.monotonic() - w.sent_at >= SWEEP_AFTER_SECONDS]
        asks = [(w, h) for w in due for h in w.hashes]
        answers = await asyncio.gather(*(self._client.call("eth_getTransactionReceipt", [h]) for _, h in asks),
                                       *(self._client.call("eth_getTransactionByHash", [h]) for _, h in asks))
        held_unmined: set[int] = set()  # ids of the watches with a copy the node holds unmined
        for (watch, tx_hash), receipt, tx in zip(asks, answers[:len(asks)], answers[len(asks):], strict=True):
            if receipt is not None:
                watch.receipts[tx_hash] = receipt
            elif tx is not None:
                held_unmined.add(id(watch))
        for watch in due:
            watch.unheld_sweeps = 0 if id(watch) in held_unmined else watch.unheld_sweeps + 1
            if watch.receipts or watch.unheld_sweeps >= 2:
                watch.forgotten = watch.unheld_sweeps >= 2
                watch.changed.set()
        await self._repair_gap(resending=any(w.forgotten for w in self._watches))

    async def _repair_gap(self, resending: bool) -> None:
        """A nonce the node lacks is handed out again; one nothing took within the sweeps a forgotten
        settlement needs to be sent again is filled, lowest first (the node's count then stops at the
        next gap, if any)."""
        nonces = self._broadcaster.nonces
        missing = await nonces.missing()
        if missing is None or missing != self._gap:
            self._gap, self._gap_sweeps = missing, 1
            if missing is not None:
                nonces.hand_out_again(missing)
            return
        self._gap_sweeps += 1
        if resending or self._gap_sweeps < GAP_SWEEPS_BEFORE_FILLING:
            return
        for _ in range(MAX_FILLS_PER_SWEEP):
            if missing is None or not await self._broadcaster.fill(missing):
                break
            nonces.filled(missing)
            missing = await nonces.missing()
        self._gap = None


class SettlementTimeout(Exception):
    def __init__(self, hashes: list[str], seconds: float) -> None:
        super().__init__(f"settlement {hashes[-1]} not mined within {seconds:g} s")
        self.hashes = hashes  # every copy sent, the latest last


class SettlementSender:
    """`await sender.transact(to, data, gas)` sends one transaction from the key and returns the receipt of
    the copy that was mined (status 1 preferred); any number of calls run at once.

    Raises `SendRefused` when the node refuses it for good, `SettlementTimeout` when no copy is mined in
    time; given the copies a timed-out call sent (`sent`), a call awaits them rather than send anew.
    """

    def __init__(self, client: ChainClient, key: bytes, timeout: float = 20.0) -> None:
        self._client = client
        self._key = key
        self._timeout = timeout
        self._broadcaster: Broadcaster | None = None
        self._confirmer: Confirmer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        chain_id = int(await self._client.call("eth_chainId", []), 16)
        address = Account.from_key(self._key).address
        self._broadcaster = Broadcaster(self._client, self._key, chain_id, NonceAllocator(self._client, address))
        self._confirmer = Confirmer(self._client, self._broadcaster)
        self._task = asyncio.create_task(self._confirmer.run(), name="facilitator-confirmer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def transact(self, to: str, data: bytes, gas: int, sent: Sequence[str] = ()) -> dict[str, Any]:
        assert self._broadcaster is not None and self._confirmer is not None, "start() first"
        if sent:  # perhaps mined long ago: looked for one by one at the next sweep
            watch = _Watch(list(sent), sent_at=time.monotonic() - SWEEP_AFTER_SECONDS)
        else:
            watch = _Watch([await self._broadcaster.send(to, data, gas)])
        self._confirmer.watch(watch)
        try:
            async with asyncio.timeout(self._timeout):
                while True:
                    await watch.changed.wait()
                    watch.changed.clear()
                    receipt = watch.outcome()
                    if receipt is not None:
                        return receipt
                    if watch.forgotten:  # its block reorganised away: the authorization is still unused
                        log.info("facilitator settlement %s forgotten by the node, sending it again", watch.hashes[-1])
                        watch.hashes.append(await self._broadcaster.send(to, data, gas))
                        watch.forgotten, watch.unheld_sweeps, watch.sent_at = False, 0, time.monotonic()
        except TimeoutError:
            raise SettlementTimeout(watch.hashes, self._timeout) from None
        finally:
            self._confirmer.unwatch(watch)
