"""The relay at work: following the oracle with the client and putting each item in the outbox for the
endpoints whose filters take it, while each endpoint's worker sends what is due.

An item is in the outbox (committed) before the client is asked for the next one, which is when the
client marks it taken in its cursor: a crash between the two gives the item again, and the outbox's
UNIQUE (endpoint, webhook id) drops the repeat. On stop, following ends at once and each worker finishes
the attempt in flight (bounded by its endpoint's timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from dataclasses import dataclass

import aiohttp

from bots.following import open_following
from bots.relay.config import EndpointSettings, RelayConfig
from bots.relay.deliver import EndpointWorker, Sender
from bots.relay.outbox import Outbox
from bots.relay.payload import Payload, payload_of
from oracle.client import OracleClient, ResultFilter, SqliteCursor

log = logging.getLogger("bots.relay")

KEEP_DELIVERED = 7 * 86_400  # seconds a delivered message stays in the outbox, for an operator to look at


@dataclass(frozen=True)
class Route:
    """Which messages go to one endpoint."""

    endpoint: str
    events: frozenset[str]
    where: ResultFilter

    @classmethod
    def of(cls, endpoint: EndpointSettings) -> Route:
        return cls(endpoint.name, frozenset(endpoint.filter.events), endpoint.filter.result_filter())

    def takes(self, payload: Payload) -> bool:
        return payload.kind in self.events and self.where.admits(payload.settled)


class RelayService:
    def __init__(self, config: RelayConfig, keys: dict[str, list[bytes]]) -> None:
        self.config = config
        self.keys = keys  # endpoint name -> its HMAC keys
        self.routes = [Route.of(e) for e in config.endpoints]
        self.failure: BaseException | None = None

    async def run(self, stop: asyncio.Event) -> None:
        chain = self.config.chain
        async with contextlib.AsyncExitStack() as held:
            outbox = Outbox.open(self.config.store.path)
            held.callback(outbox.close)
            client, cursor = await open_following(held, chain, self.config.store.path)
            start = chain.from_block if chain.from_block is not None else outbox.start_block()
            if start is None:
                start = await client.w3.eth.block_number
            outbox.set_start_block(start)
            session = await held.enter_async_context(aiohttp.ClientSession())
            workers = {e.name: EndpointWorker(outbox, Sender(session, e, self.keys[e.name]))
                       for e in self.config.endpoints}
            log.info("relay running: oracle %s on chain %d from block %d (or where the store's cursor stands), "
                     "%d confirmation(s), endpoints: %s", chain.oracle, client.chain_id, start, chain.confirmations,
                     ", ".join(workers))
            async with asyncio.TaskGroup() as tasks:
                following = tasks.create_task(self._follow(client, outbox, cursor, workers, start, stop))
                for worker in workers.values():
                    tasks.create_task(worker.run(stop))
                pruning = tasks.create_task(self._prune(outbox))
                await stop.wait()
                following.cancel()
                pruning.cancel()
                for worker in workers.values():
                    worker.wake.set()
        if self.failure is not None:
            raise self.failure

    async def _prune(self, outbox: Outbox) -> None:
        while True:
            gone = outbox.forget_delivered(time.time() - KEEP_DELIVERED)
            if gone:
                log.info("outbox: %d message(s) delivered over %d days ago forgotten", gone, KEEP_DELIVERED // 86_400)
            await asyncio.sleep(3_600)

    async def _follow(self, client: OracleClient, outbox: Outbox, cursor: SqliteCursor,
                      workers: dict[str, EndpointWorker], start: int, stop: asyncio.Event) -> None:
        items = client.results(from_block=start, confirmations=self.config.chain.confirmations, cursor=cursor,
                               take_on_close=False)  # stopped mid-item: given again; the outbox drops the repeat
        try:
            async for item in items:
                payload = payload_of(item, datetime.datetime.now(datetime.UTC))
                endpoints = [r.endpoint for r in self.routes if r.takes(payload)]
                added = outbox.add(payload, endpoints, time.time()) if endpoints else []
                log.debug("%s %s (%s): queued for %s", payload.kind, payload.webhook_id, payload.event_id,
                          ", ".join(added) or "no endpoint")
                for name in added:
                    workers[name].wake.set()
        except Exception as exc:  # a fault of the relay's own: stop the workers too, and say why on exit
            self.failure = exc
            stop.set()
        finally:
            await items.aclose()
