"""`RequestWatcher`: turns the oracle's logs into stored requests, without losing or doubling any.

Two sources feed it. A sweep reads `eth_getLogs` in bounded ranges from the persisted cursor (so a
restart backfills what happened while the daemon was down), halving the range when the node refuses
it. A WebSocket `logs` subscription, when the chain has a ws URL, brings requests in at once; the
sweep catches whatever a dropped subscription missed. Both go through one idempotent `ingest`.

Before each sweep the cursor block's hash is compared with the chain's: on a mismatch (a reorg) the
watcher walks back through the block hashes it remembered to the last common block, rolls back the
requests and settlements above it, and rescans from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from oracle.chain.clock import ChainClock
from oracle.chain.log_range import LogRange
from oracle.chain.rpc import BlockHeader, ChainClient, LogSubscription, RpcError, RpcUnavailable
from oracle.config import ChainSettings
from oracle.events import (
    CANCELLED_TOPIC,
    FULFILLED_TOPIC,
    REQUESTED_TOPIC,
    EventDecodeError,
    decode_cancelled,
    decode_fulfilled,
    log_topics_and_data,
    peek_requested,
)
from oracle.store import Blocks, Requests, RequestState, StoredRequest, request_key

log = logging.getLogger(__name__)

TOPICS: list[Any] = [["0x" + t.hex() for t in (REQUESTED_TOPIC, FULFILLED_TOPIC, CANCELLED_TOPIC)]]


class RequestWatcher:
    def __init__(self, chain: ChainSettings, rpc: ChainClient, requests: Requests, blocks: Blocks, clock: ChainClock,
                 subscription: LogSubscription | None = None,
                 on_new_work: Callable[[], None] = lambda: None,
                 on_reorg: Callable[[int], None] = lambda common: None,
                 on_halt: Callable[[str], None] = lambda why: None) -> None:
        self.chain = chain
        self.clock = clock
        self.rpc = rpc
        self.requests = requests
        self.blocks = blocks
        self.subscription = subscription
        self.on_new_work = on_new_work
        self.on_reorg = on_reorg
        self.on_halt = on_halt
        self.ranges = LogRange(chain.max_log_range)
        self.head = 0
        self.undecodable = 0
        self.halted = ""  # why this chain's intake stopped (a reorg deeper than max_reorg_depth), or ""
        self._last_head = requests.highest_block(chain.chain_id, chain.oracle)  # the highest head a sweep read
        self._wake = asyncio.Event()

    # ------------------------------------------------------------ loops

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._sweep_loop())
            if self.subscription is not None:
                tasks.create_task(self._subscription_loop())

    def wake(self) -> None:
        self._wake.set()

    async def _sweep_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self.sweep_once()
                backoff = 0.1
                timeout = self.chain.sweep_interval
            except ReorgTooDeep:
                return  # said at ERROR; the chain reports not ready until an operator restarts it
            except (RpcError, RpcUnavailable) as exc:
                log.log(logging.DEBUG if self.rpc.failing else logging.WARNING,
                        "chain %s: sweep failed (%s); retrying", self.chain.name, exc)
                timeout = backoff
                backoff = min(backoff * 2, self.chain.sweep_interval)
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _subscription_loop(self) -> None:
        assert self.subscription is not None
        async for raw in self.subscription.logs():
            if self.halted:
                return
            if raw.get("removed"):
                self._removed(raw)
                self.wake()  # a reorg: let the sweep find the common block and roll back the rest
                continue
            # No commit here: the pipeline reads through the same connection, and its first side
            # effect (a model call) commits first, this insert included.
            if self.ingest([raw], swept=False) and self.chain.confirmations == 0:
                self.on_new_work()

    # ------------------------------------------------------------ the sweep

    async def sweep_once(self) -> None:
        head = await self.rpc.block_number()
        self.head = head
        cursor = await self._checked_cursor()
        if cursor >= head:
            latest = await self.rpc.header(head)
            if latest is not None:
                self.clock.observe(latest.timestamp)
        start = cursor + 1
        while start <= head:
            end = self.ranges.end(start, head)
            before = await self.rpc.header(end)
            try:
                logs = await self.rpc.get_logs(self.chain.oracle, TOPICS, start, end)
            except (RpcError, RpcUnavailable) as exc:
                # refused or timed out: nodes bound what one query may cost, so ask for less
                if not self.ranges.failed(start, end):
                    raise
                log.info("chain %s: getLogs %d-%d failed (%s); range now %d", self.chain.name, start, end,
                         exc, self.ranges.size)
                continue
            header = await self.rpc.header(end)
            if header is None or before is None or header.hash != before.hash:
                return  # the chain moved under this range (a reorg in progress): read it again next sweep
            # Every block within max_reorg_depth of the head is remembered, so a reorg's common block is
            # found exactly; their parent links are checked to be the branch the logs were read from.
            recent = await self._linked_headers(max(start, head - self.chain.max_reorg_depth + 1), header)
            if recent is None:
                return  # the chain moved under this range: read it again next sweep
            self.clock.observe(header.timestamp)
            self.ingest(logs)
            await self._forget_missing(start, end, logs, {h.number: h.hash for h in recent})
            self.blocks.set_cursor(self.chain.chain_id, self.chain.oracle, end, header.hash)
            self.blocks.remember(self.chain.chain_id, [(h.number, h.hash, h.parent_hash) for h in recent])
            start = end + 1
            self.ranges.succeeded()
        if head < self._last_head:
            # the chain is shorter than it was: whatever we placed in the blocks it lost is gone
            await self._forget_missing(head + 1, self._last_head, [], {})
        self._last_head = head
        confirmed = self.requests.confirm_up_to(self.chain.chain_id, head - self.chain.confirmations)
        await self.requests.commit()
        if confirmed:
            self.on_new_work()

    async def _linked_headers(self, low: int, top: BlockHeader) -> list[BlockHeader] | None:
        """Headers low..top (top included), or None when their parent links do not join up."""
        headers = [top]
        for number in range(top.number - 1, low - 1, -1):
            found = await self.rpc.header(number)
            if found is None or found.hash != headers[-1].parent_hash:
                return None
            headers.append(found)
        return headers

    async def _checked_cursor(self) -> int:
        """The cursor block, after rolling back to the last common block if the chain reorganised."""
        chain_id, oracle = self.chain.chain_id, self.chain.oracle
        stored = self.blocks.cursor(chain_id, oracle)
        if stored is None:
            return self.chain.start_block - 1
        number, block_hash = stored
        header = await self.rpc.header(number)
        if header is None and number <= self.head:
            raise RpcUnavailable(f"the node has no block {number} below its head {self.head}")
        if header is not None and header.hash == block_hash:
            return number
        common = await self._common_ancestor(number)
        if common is None:
            self.halted = (f"reorg deeper than max_reorg_depth {self.chain.max_reorg_depth}: no block within "
                           f"{self.chain.max_reorg_depth} of {number} is still on the chain; intake stopped, "
                           f"nothing rolled back. Check the node (is it on the right chain?), then restart")
            log.error("chain %s: %s", self.chain.name, self.halted)
            self.on_halt(self.halted)
            raise ReorgTooDeep(self.halted)
        # Reopen first: a settled request whose own block also went away must end up rolled back.
        reopened = self.requests.reopen_settled_after(chain_id, oracle, common)
        rolled = self.requests.rollback_after(chain_id, oracle, common)
        self.blocks.forget_after(chain_id, common)
        self.on_reorg(common)
        common_header = await self.rpc.header(common) if common >= 0 else None
        self.blocks.set_cursor(chain_id, oracle, common, common_header.hash if common_header else b"\0" * 32)
        await self.requests.commit()
        log.warning("chain %s: reorg below block %d; back to %d, %d requests rolled back, %d settlements reopened",
                    self.chain.name, number, common, len(rolled), len(reopened))
        return common

    async def _common_ancestor(self, number: int) -> int | None:
        """The newest block we read that the chain still has (a known block, or a known block's parent),
        looking back at most `max_reorg_depth` blocks; None when there is none within that bound."""
        bound = number - self.chain.max_reorg_depth
        for known_number, known_hash, parent_hash in self.blocks.known(self.chain.chain_id, number, limit=4_096):
            if known_number < bound:
                break
            header = await self.rpc.header(known_number)
            if header is not None and header.hash == known_hash:
                return known_number
            if parent_hash is not None and known_number > 0 and known_number - 1 >= bound:
                parent = await self.rpc.header(known_number - 1)
                if parent is not None and parent.hash == parent_hash:
                    return known_number - 1
        if bound < self.chain.start_block:
            return self.chain.start_block - 1  # the whole history we read is within the bound
        return None

    # ------------------------------------------------------------ ingesting logs

    def ingest(self, logs: list[dict[str, Any]], swept: bool = True) -> int:
        """Store what the logs say; returns how many requests were new. Idempotent. Only blocks the sweep
        read (`swept`) are remembered for finding a reorg's common block: a log pushed by the subscription
        may already be of the new branch, and would hide the fork."""
        new = 0
        blocks: list[tuple[int, bytes, bytes | None]] = []
        for raw in logs:
            if raw.get("removed") or str(raw.get("address", "")).lower() != self.chain.oracle.lower():
                continue  # a decoy emitting our event signature from another address is not our oracle
            try:
                topics, _ = log_topics_and_data(raw)
                block_number = int(raw["blockNumber"], 16)
                block_hash = bytes.fromhex(raw["blockHash"][2:])
                log_index = int(raw["logIndex"], 16)
            except (KeyError, TypeError, ValueError):
                self.undecodable += 1
                log.error("chain %s: malformed log skipped: %r", self.chain.name, raw)
                continue
            blocks.append((block_number, block_hash, None))
            try:
                if topics and topics[0] == REQUESTED_TOPIC:
                    new += self._ingest_request(raw, block_number, block_hash, log_index)
                elif topics and topics[0] == FULFILLED_TOPIC:
                    self._settle(raw, decode_fulfilled(raw).request_id, RequestState.FULFILLED, block_number)
                elif topics and topics[0] == CANCELLED_TOPIC:
                    self._settle(raw, decode_cancelled(raw).request_id, RequestState.CANCELLED, block_number)
            except (EventDecodeError, ValueError, TypeError, KeyError, IndexError) as exc:
                # from our own oracle's address this cannot happen; if it does, the log is skipped
                # loudly rather than stopping every later request behind it
                self.undecodable += 1
                log.error("chain %s: undecodable event in block %d: %s", self.chain.name, block_number, exc)
        if swept:
            self.blocks.remember(self.chain.chain_id, blocks)
        return new

    async def _forget_missing(self, start: int, end: int, logs: list[dict[str, Any]],
                              hashes: dict[int, bytes]) -> None:
        """`logs` are the oracle's events in blocks start..end as the chain has them now. A request we
        took in (from the subscription) for one of those blocks that is not among them is rolled back
        when its block is no longer the one it was seen in; a block that is the same but whose log is
        missing is the node's index lagging, and is said, not acted on."""
        found = set()
        for raw in logs:
            try:
                topics, _ = log_topics_and_data(raw)
            except (KeyError, TypeError, ValueError):
                continue
            if len(topics) > 1 and topics[0] == REQUESTED_TOPIC and not raw.get("removed"):
                found.add(request_key(self.chain.chain_id, self.chain.oracle, topics[1]))
        async def hash_of(number: int) -> bytes:
            if number not in hashes:
                header = await self.rpc.header(number)
                hashes[number] = header.hash if header is not None else b""
            return hashes[number]

        chain_id, oracle = self.chain.chain_id, self.chain.oracle
        rolled = []
        for key, number, block_hash in self.requests.open_in_blocks(chain_id, oracle, start, end):
            if key in found:
                continue
            if await hash_of(number) == block_hash:
                log.warning("chain %s: the node returned no log for request %s in block %d, which is unchanged; "
                            "is its log index behind?", self.chain.name, key, number)
            elif self.requests.rollback_in_block(key, block_hash):
                rolled.append(key)
        # a settlement (ours, or anyone's relay of it) whose block was replaced: the request is open again
        settled_here = self.requests.settlements_in_blocks(chain_id, oracle, start, end)
        gone = [(key, number) for key, number, block_hash in settled_here if await hash_of(number) != block_hash]
        if gone:
            # Our transactions there are the transaction manager's first: it takes them (and the requests
            # they carry) back, so nothing sends those responses again beside it; the rest reopen here.
            self.on_reorg(min(number for _, number in gone) - 1)
            self.requests.reopen_settlements([key for key, _ in gone])
        if rolled or gone:
            log.warning("chain %s: blocks %d-%d no longer hold %d requests and %d settlements we had seen; rolled "
                        "back and reopened", self.chain.name, start, end, len(rolled), len(gone))

    def _ingest_request(self, raw: dict[str, Any], block_number: int, block_hash: bytes, log_index: int) -> int:
        event = peek_requested(raw)  # its params are decoded (and checked) once, by the pipeline
        chain_id, oracle = self.chain.chain_id, self.chain.oracle
        key = request_key(chain_id, oracle, event.request_id)
        # With a confirmation depth, the sweep promotes it once its block is deep enough.
        state = RequestState.CONFIRMED if self.chain.confirmations == 0 else RequestState.SEEN
        row = StoredRequest(
            key=key, chain_id=chain_id, oracle=oracle, request_id=event.request_id, block_number=block_number,
            block_hash=block_hash, log_index=log_index, requester=event.requester, nonce=event.nonce, fee=event.fee,
            params=event.params_blob, deadline=event.deadline, state=state, reason=0, reason_detail="",
            status=0, result=None, model_used=None, receipt_hash=None, signature=None, fulfill_tx=None,
        )
        inserted = self.requests.insert(row)
        if not inserted:
            self.requests.reinclude(row)
        return 1 if inserted else 0

    def _removed(self, raw: dict[str, Any]) -> None:
        """A request's log was removed by a reorg: roll it back now, even above the sweep's cursor."""
        try:
            topics, _ = log_topics_and_data(raw)
            if topics and topics[0] == REQUESTED_TOPIC and len(topics) > 1:
                key = request_key(self.chain.chain_id, self.chain.oracle, topics[1])
                self.requests.rollback_in_block(key, bytes.fromhex(raw["blockHash"][2:]))
        except (KeyError, TypeError, ValueError):
            log.error("chain %s: malformed removed log: %r", self.chain.name, raw)

    def _settle(self, raw: dict[str, Any], request_id: bytes, state: RequestState, block_number: int) -> None:
        self.requests.mark_settled(request_key(self.chain.chain_id, self.chain.oracle, request_id), state, block_number,
                                   _tx_hash(raw) if state == RequestState.FULFILLED else None,
                                   bytes.fromhex(raw["blockHash"][2:]))


def _tx_hash(raw: dict[str, Any]) -> bytes | None:
    value = raw.get("transactionHash")
    try:
        return bytes.fromhex(value[2:]) if isinstance(value, str) and len(value) == 66 else None
    except ValueError:
        return None


class ReorgTooDeep(Exception):
    """The chain no longer has any block we read within `max_reorg_depth`: following it back further
    would roll back what may be final; the chain's intake stops instead."""
