"""Following what settles on an oracle: the loop behind `OracleClient.results()`.

Blocks are read in order with `eth_getLogs` up to `head - confirmations`. A WebSocket `newHeads`
subscription (given a ws URL) only wakes the loop at once; polling every `poll_interval` carries on
without it, so a dropped subscription costs latency, never a result. Before each read, the last block
read is checked against the node: another hash there is a reorg, followed down to the highest block read
that still stands; what was given above it is retracted (newest first) and those blocks are read again,
so a result that is included again is given again.

An item counts as taken when the caller asks for the next one, and, unless `take_on_close` is off, when
it closes the iterator (`aclose()`): the cursor is saved then (a request's settlement is closed in the
cursor only as it is given, and the range read is marked done only once all its items were taken). With
`take_on_close` off, a caller stopped or failing while it handles an item gets that item again next
time. After a crash the item the caller was handling is given again (it was never marked taken) and
nothing else is: items carry a stable `event_id` for the caller to drop a repeat it already acted on.

An expiry is given in the first block read (at depth) whose time is past the request's deadline while
nothing settled it; a fulfilment that comes later (the contract takes one until the request is
cancelled) is given too. Settlements of requests made before `from_block` are decoded when their
`Requested` event is found within `LOOKBACK` blocks before; otherwise they are given without a value,
saying why."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import Web3Exception, Web3RPCError

from oracle.client.cursor import CursorStore, OpenRequest, ResultsCursor
from oracle.client.responses import Responses
from oracle.client.settled import ResultFilter, Retracted, Settled, reason_of
from oracle.client.transact import NODE_ERRORS
from oracle.events import (
    CANCELLED_TOPIC,
    FULFILLED_TOPIC,
    REQUESTED_TOPIC,
    EventDecodeError,
    decode_cancelled,
    decode_fulfilled,
    peek_requested,
    peek_result,
)
from oracle.protocol import ReasonCode, ResultSpec, Status
from oracle.results import ResultError, decode_result

log = logging.getLogger(__name__)

LOG_RANGE = 2_000  # blocks per eth_getLogs (halved while the node refuses)
REORG_WINDOW = 128  # blocks below the last one read that a reorg is looked for in
LOOKBACK = 50_000  # blocks before a settlement its Requested event is looked for in, when not followed
_IDS_PER_QUERY = 200  # request ids in one eth_getLogs topic filter
_TOPICS = ["0x" + t.hex() for t in (REQUESTED_TOPIC, FULFILLED_TOPIC, CANCELLED_TOPIC)]


@dataclass(frozen=True)
class _Log:
    """A log as eth_getLogs gives it, with the fields following needs read once."""

    raw: dict[str, Any]
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    topic: bytes
    topic1: bytes

    @classmethod
    def of(cls, raw: dict[str, Any]) -> _Log:
        topics = raw["topics"]
        return cls(raw, int(raw["blockNumber"], 16), int(raw["logIndex"], 16), bytes.fromhex(raw["blockHash"][2:]),
                   bytes.fromhex(raw["transactionHash"][2:]), bytes.fromhex(topics[0][2:]) if topics else b"",
                   bytes.fromhex(topics[1][2:]) if len(topics) > 1 else b"")


class Follower:
    def __init__(self, w3: AsyncWeb3[Any], oracle: AsyncContract, chain_id: int, where: ResultFilter,
                 confirmations: int, store: CursorStore, from_block: int, ws_url: str | None = None,
                 poll_interval: float = 1.0, take_on_close: bool = True) -> None:
        self.w3, self.chain_id = w3, chain_id
        self.take_on_close = take_on_close
        self.address = oracle.address
        self.where = where
        self.confirmations = confirmations
        self.store = store
        self.cursor = store.load(chain_id, self.address) or ResultsCursor(chain_id, self.address, from_block)
        self.ws_url = ws_url
        self.poll_interval = poll_interval
        self.responses = Responses(w3, oracle)
        self._wake = asyncio.Event()
        self._range = LOG_RANGE
        self._behind = False  # more blocks are ready to read: read on without waiting
        self._known: dict[bytes, OpenRequest] = {}  # requests made before the blocks followed, found in bulk

    async def items(self) -> AsyncGenerator[Settled | Retracted]:
        heads = asyncio.create_task(self._follow_heads()) if self.ws_url else None
        try:
            while True:
                try:
                    async for item in self._step():
                        try:
                            yield item
                        except GeneratorExit:  # closed with this item in hand: taken only if the caller says so
                            if self.take_on_close:
                                self.store.save(self.cursor)
                            raise
                        self.store.save(self.cursor)  # the caller asked for the next: it took this one
                except NODE_ERRORS as exc:
                    log.info("results: the node did not answer (%s); trying again", exc)
                    self._behind = False
                self.store.save(self.cursor)
                if not self._behind:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            if heads is not None:
                heads.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heads

    # ------------------------------------------------------------ one pass

    async def _step(self) -> AsyncIterator[Settled | Retracted]:
        async for retraction in self._reorged():
            yield retraction
        head = await self.w3.eth.block_number
        start, safe = self.cursor.next_block, head - self.confirmations
        if start > safe:
            self._behind = False
            return
        end = min(safe, start + self._range - 1)
        try:
            logs = await self._logs(start, end, [_TOPICS])
        except NODE_ERRORS as exc:
            if self._range == 1:
                raise
            self._range = max(1, self._range // 2)
            log.info("results: eth_getLogs of blocks %d-%d failed (%s); asking for %d at a time", start, end, exc,
                     self._range)
            self._behind = True
            return
        last = await self.w3.eth.get_block(end)
        entries = sorted(logs, key=lambda e: (e.block_number, e.log_index))
        hashes = {e.block_number: e.block_hash for e in entries}
        if hashes.get(end, bytes(last["hash"])) != bytes(last["hash"]) or not await self._still(hashes, end, head):
            self._behind = True  # a reorg while reading: read again
            return
        self._behind = end < safe
        await self._find_requests(entries, start - 1)
        for entry in entries:
            if entry.topic == REQUESTED_TOPIC:
                await self._take(entry)
        first_settled: dict[bytes, int] = {}
        for entry in entries:
            if entry.topic in (FULFILLED_TOPIC, CANCELLED_TOPIC):
                first_settled.setdefault(entry.topic1, entry.block_number)
        expiries = await self._expiries(start, end, last, first_settled)
        # in block order, each decoded as it comes (the first are given before the last are read); an
        # expiry first in its block (the deadline had passed when the block began)
        ordered: list[tuple[int, int, int, Settled | _Log]] = sorted(
            [(s.block_number, 0, i, s) for i, s in enumerate(expiries)]
            + [(e.block_number, 1, e.log_index, e) for e in entries if e.topic != REQUESTED_TOPIC],
            key=lambda x: x[:3])
        for _, _, _, what in ordered:
            s = what if isinstance(what, Settled) else await self._take(what)
            if s is None:
                continue
            self.cursor.close_request(s.request_id)
            if s.event_id in self.cursor.given or not self.where.admits(s):
                continue  # given before a restart in the middle of this range, or filtered out
            self.cursor.give(s)
            yield s
        for number, block_hash in hashes.items():
            self.cursor.see_block(number, block_hash)
        self.cursor.see_block(end, bytes(last["hash"]))
        self.cursor.advance(end + 1)
        self.cursor.trim(end - REORG_WINDOW)

    async def _still(self, hashes: dict[int, bytes], end: int, head: int) -> bool:
        """Whether the blocks the logs came from are still the chain's (the logs and the last block were
        read in two calls); blocks deeper than the reorg window are taken as they are."""
        for number, block_hash in hashes.items():
            if number != end and number > head - REORG_WINDOW:
                header = await self._header(number)
                if header is None or bytes(header["hash"]) != block_hash:
                    return False
        return True

    async def _reorged(self) -> AsyncIterator[Retracted]:
        blocks = self.cursor.blocks
        if not blocks:
            return
        numbers = sorted(blocks, reverse=True)
        header = await self._header(numbers[0])
        if header is not None and bytes(header["hash"]) == blocks[numbers[0]]:
            return
        restart = min(numbers)  # deeper than the window: from its bottom
        for number in numbers[1:]:
            header = await self._header(number)
            if header is not None and bytes(header["hash"]) == blocks[number]:
                restart = number + 1
                break
        log.warning("results: a reorg replaced blocks from %d; retracting what was given there and reading again",
                    restart)
        gone = sorted((s for s in self.cursor.given.values() if s.block_number >= restart),
                      key=lambda s: (s.block_number, s.event_id), reverse=True)
        for s in gone:
            self.cursor.take_back(s.event_id)
            yield Retracted(s)
        self.cursor.forget_from(restart)
        for s in gone:  # their requests are open again where their own blocks stand
            if s.request_id not in self.cursor.open:
                found = await self._requested(s.request_id, restart - 1)
                if found is not None:
                    self.cursor.open_request(s.request_id, found)
        self.cursor.advance(restart)

    async def _header(self, number: int) -> Any:
        try:
            return await self.w3.eth.get_block(number)
        except Web3Exception:  # not there any more: a shorter chain
            return None

    # ------------------------------------------------------------ one log

    async def _take(self, entry: _Log) -> Settled | None:
        topic, number, block_hash, tx_hash = entry.topic, entry.block_number, entry.block_hash, entry.tx_hash
        try:
            if topic == REQUESTED_TOPIC:
                h = peek_requested(entry.raw)
                self.cursor.open_request(h.request_id, OpenRequest(number, block_hash, h.requester, h.deadline,
                                                                   h.params_blob))
                return None
            if topic == CANCELLED_TOPIC:
                cancelled = decode_cancelled(entry.raw)
                asked = await self._asked(cancelled.request_id, number)
                return self._settled(cancelled.request_id, asked, "cancelled", "cancelled", ReasonCode.NONE, None,
                                     None, number, block_hash, tx_hash, "its fee was refunded to its requester")
            event = decode_fulfilled(entry.raw)
        except EventDecodeError as exc:
            log.warning("results: a log of the oracle in block %d does not decode: %s", number, exc)
            return None
        asked = await self._asked(event.request_id, number)
        response, note = await self.responses.find(tx_hash, event.request_id, event.result_hash)
        status = Status(event.status).name.lower() if event.status in Status._value2member_map_ else str(event.status)
        return self._settled(event.request_id, asked, "fulfilled", status, reason_of(event.reason_code),
                             response.result if response else None, event.receipt_hash, number, block_hash, tx_hash,
                             note, response.model_used if response else None)

    def _settled(self, request_id: bytes, asked: OpenRequest | None, event: str, status: str,
                 reason: ReasonCode | int, result: bytes | None, receipt_hash: bytes | None, number: int,
                 block_hash: bytes, tx_hash: bytes | None, note: str, model_used: bytes | None = None) -> Settled:
        spec: ResultSpec | None = None
        consumer = ""
        if asked is not None:
            with contextlib.suppress(EventDecodeError):
                consumer, spec = peek_result(asked.params_blob)
        value: Any = None
        if spec is None:
            note = note or (f"its Requested event was not found within {LOOKBACK} blocks before: the value is not "
                            f"decoded; follow from an earlier block to decode it")
        elif status == "success" and result is not None:
            try:
                value = decode_result(spec, result)
            except (ResultError, ValueError) as exc:
                note = f"the result does not decode as {spec.kind.name.lower()}: {exc}"
        return Settled(self.chain_id, self.address, request_id, event, status, reason,
                       spec.kind.name.lower() if spec is not None else "", value, result, model_used, receipt_hash,
                       consumer, asked.requester if asked else "", number, block_hash, tx_hash, note)

    async def _expiries(self, start: int, end: int, last: Any, first_settled: dict[bytes, int]) -> list[Settled]:
        """Requests whose deadline passed by block `end` unsettled: each expires in the first block whose
        time is past its deadline, unless something settled it in an earlier block."""
        headers: dict[int, Any] = {end: last}
        out = []
        for rid, o in list(self.cursor.open.items()):
            if o.deadline >= int(last["timestamp"]):
                continue
            at = await self._first_past(o.deadline, max(start, o.block_number), end, headers)
            if rid in first_settled and first_settled[rid] < at:
                continue
            out.append(self._settled(rid, o, "expired", "expired", ReasonCode.NONE, None, None, at,
                                     bytes(headers[at]["hash"]), None,
                                     "its deadline passed unanswered: its requester can cancel it and take the fee "
                                     "back"))
        return out

    async def _first_past(self, deadline: int, low: int, high: int, headers: dict[int, Any]) -> int:
        """The first block in [low, high] whose time is past `deadline` (block `high`'s is)."""
        async def time_of(number: int) -> int:
            if number not in headers:
                headers[number] = await self.w3.eth.get_block(number)
            return int(headers[number]["timestamp"])

        while low < high:
            middle = (low + high) // 2
            if await time_of(middle) > deadline:
                high = middle
            else:
                low = middle + 1
        await time_of(high)
        return high

    async def _asked(self, request_id: bytes, before: int) -> OpenRequest | None:
        found = self.cursor.open.get(request_id) or self._known.pop(request_id, None)
        return found if found is not None else await self._requested(request_id, before)

    async def _requested(self, request_id: bytes, high: int) -> OpenRequest | None:
        """The request's `Requested` event at or below `high` (within LOOKBACK), read by its topic."""
        found = await self._requested_many([request_id], high)
        return found.get(request_id)

    async def _requested_many(self, request_ids: list[bytes], high: int) -> dict[bytes, OpenRequest]:
        """The `Requested` events of these requests at or below `high` (within LOOKBACK), newest first, a
        few hundred ids a query."""
        found: dict[bytes, OpenRequest] = {}
        low_end = max(0, high - LOOKBACK)
        while high >= low_end and len(found) < len(request_ids):
            low = max(low_end, high - LOG_RANGE + 1)
            wanted = [rid for rid in request_ids if rid not in found]
            for i in range(0, len(wanted), _IDS_PER_QUERY):
                ids = ["0x" + rid.hex() for rid in wanted[i:i + _IDS_PER_QUERY]]
                for entry in await self._logs(low, high, ["0x" + REQUESTED_TOPIC.hex(), ids]):
                    try:
                        h = peek_requested(entry.raw)
                    except EventDecodeError:
                        continue
                    found.setdefault(h.request_id, OpenRequest(entry.block_number, entry.block_hash, h.requester,
                                                               h.deadline, h.params_blob))
            high = low - 1
        return found

    async def _find_requests(self, entries: list[_Log], before: int) -> None:
        """Requests settled in these logs that were made before the blocks followed: read at once, in a
        few queries, rather than one query each (a subscriber that starts at the head meets many)."""
        made_here = {e.topic1 for e in entries if e.topic == REQUESTED_TOPIC}
        unknown = list(dict.fromkeys(e.topic1 for e in entries if e.topic in (FULFILLED_TOPIC, CANCELLED_TOPIC)
                                     and e.topic1 not in self.cursor.open and e.topic1 not in made_here))
        if unknown and before >= 0:
            self._known.update(await self._requested_many(unknown, before))

    async def _logs(self, start: int, end: int, topics: list[Any]) -> list[_Log]:
        """eth_getLogs as the node answers it (web3's formatting of each log costs more than the rest)."""
        reply = await self.w3.provider.make_request("eth_getLogs", [{
            "address": self.address, "fromBlock": hex(start), "toBlock": hex(end), "topics": topics}])
        if "error" in reply:
            raise Web3RPCError(f"eth_getLogs: {reply['error']}")
        return [_Log.of(entry) for entry in reply["result"]]

    # ------------------------------------------------------------ waking at each new head

    async def _follow_heads(self) -> None:
        """Set the wake event at each `newHeads` notification; reconnect with backoff."""
        assert self.ws_url is not None
        backoff = 0.1
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.ws_connect(self.ws_url, heartbeat=30) as ws:
                        await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                            "params": ["newHeads"]})
                        async for message in ws:
                            if message.type != aiohttp.WSMsgType.TEXT:
                                break
                            backoff = 0.1
                            self._wake.set()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    log.debug("results: newHeads subscription lost (%s); polling meanwhile", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
