"""The summarizer at work: apscheduler runs the periodic jobs (look for new proposals and ask about them,
re-ask for failed summaries once with a larger fee, the daily digest) while the oracle's settlements for
the summarizers are followed with the client, and the feed is served over HTTP.

One lock orders asking and applying settlements, so an answer is never applied before the ask it answers
is in the book. A settlement is in the book (committed) before the client is asked for the next item,
which is when the client's cursor marks it taken: a crash between the two gives the item again, and
applying it again changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bots.dao_summarizer import web as feed_web
from bots.dao_summarizer.book import ASKED, FAILED, NEW, SUMMARIZED, Book, Proposal
from bots.dao_summarizer.config import SummarizerConfig
from bots.dao_summarizer.feed import digest, write_feed
from bots.dao_summarizer.proposals import Asker, Watched, check, model_hex, watched
from bots.following import open_following
from oracle.client import NODE_ERRORS, ClientError, OracleClient, ResultFilter, Retracted, Settled, SqliteCursor

log = logging.getLogger("bots.dao_summarizer")
Say = Callable[[str], None]


class SummarizerService:
    def __init__(self, config: SummarizerConfig, key: bytes, say: Say = print) -> None:
        self.config = config
        self.key = key
        self.say = say
        self.lock = asyncio.Lock()
        self.failure: BaseException | None = None
        self.feed_url: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        config, chain = self.config, self.config.chain
        async with contextlib.AsyncExitStack() as held:
            book = Book.open(config.bot.store)
            held.callback(book.close)
            client, cursor = await open_following(held, chain, config.bot.store)
            governors = [watched(client.w3, g) for g in config.governors]
            await check(client.w3, governors)
            head = await client.w3.eth.block_number
            starts = {w.governor.address.lower(): w.settings.from_block if w.settings.from_block is not None
                      else (chain.from_block if chain.from_block is not None else head) for w in governors}
            asker = Asker(client.w3, book, governors, starts, self.key, chain.confirmations,
                          config.bot.retry_fee_factor, self.say)
            self.book, self.asker = book, asker
            if config.http.enabled:
                await self._serve(held, book, governors)
            scheduler = AsyncIOScheduler(timezone=datetime.UTC)
            self._schedule(scheduler, stop)
            scheduler.start()
            held.callback(scheduler.shutdown, wait=False)
            await self._digest_if_missed()
            self.say(f"watching {', '.join(f'{w.name} (Governor {w.governor.address})' for w in governors)} "
                     f"on chain {client.chain_id}; oracle {chain.oracle}")
            async with self.lock:  # proposals created while the bot was down, before any answer is applied
                await asker.scan()
            following = asyncio.create_task(self._follow(client, cursor, governors, min(starts.values()), stop))
            await stop.wait()
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        if self.failure is not None:
            raise self.failure

    def _schedule(self, scheduler: AsyncIOScheduler, stop: asyncio.Event) -> None:
        bot = self.config.bot
        now = datetime.datetime.now(datetime.UTC)
        scheduler.add_job(self._job(self._scan_and_ask, stop), "interval", seconds=bot.scan_interval, id="scan",
                          next_run_time=now, max_instances=2, coalesce=True)
        scheduler.add_job(self._job(self._ask_failed_again, stop), "interval", seconds=bot.retry_interval,
                          id="retry", next_run_time=now, max_instances=2, coalesce=True)
        scheduler.add_job(self._job(self._digest, stop), CronTrigger(hour=bot.digest_time.hour,
                                                                     minute=bot.digest_time.minute,
                                                                     timezone=datetime.UTC),
                          id="digest", max_instances=2, coalesce=True)

    def _job(self, work: Callable[[], Any], stop: asyncio.Event) -> Callable[[], Any]:
        running = False

        async def run() -> None:
            nonlocal running
            if stop.is_set() or running:  # a run still going (an ask waiting to be mined): this one is not needed
                return
            running = True
            try:
                await work()
            except asyncio.CancelledError:  # stopped mid-run: what it did is in the book, the rest is redone
                log.info("stopped during %s", getattr(work, "__name__", "a job"))
            except (ClientError, *NODE_ERRORS) as exc:  # the node is away or refused: the next run tries again
                log.warning("%s: %s (tried again at the next run)", getattr(work, "__name__", "job"), exc)
            except Exception as exc:
                self.failure = exc
                stop.set()
            finally:
                running = False
        return run

    async def _scan_and_ask(self) -> None:
        async with self.lock:
            await self.asker.scan()
            await self.asker.ask_new()  # may find summaries already on-chain: the feed follows
        self._write_feed()

    async def _ask_failed_again(self) -> None:
        async with self.lock:
            await self.asker.ask_failed_again()
        self._write_feed()

    def _write_feed(self) -> None:
        if self.config.bot.feed_file is not None:
            write_feed(self.book, self.config.bot.feed_file)

    async def _digest_if_missed(self) -> None:
        """A bot down at the digest's time makes it when it starts."""
        now = datetime.datetime.now(datetime.UTC)
        due = datetime.datetime.combine(now.date(), self.config.bot.digest_time, datetime.UTC)
        latest = self.book.latest_digest()
        if now >= due and (latest is None or latest.get("day") != now.date().isoformat()):
            await self._digest()

    async def _digest(self) -> None:
        doc = digest(self.book, datetime.datetime.now(datetime.UTC))
        self.book.save_digest(doc["day"], doc)
        riskiest = doc["riskiest"]
        self.say(f"digest {doc['day']}: {doc['summarized']} proposal(s) summarised in 24 h, mean risk "
                 f"{doc['mean_risk']}, riskiest "
                 f"{'none' if riskiest is None else str(riskiest['proposal_id']) + ' (' + str(riskiest['risk']) + ')'}"
                 f", {doc['waiting']} waiting, {doc['given_up']} given up")

    async def _serve(self, held: contextlib.AsyncExitStack, book: Book, governors: Sequence[Watched]) -> None:
        runner = web.AppRunner(feed_web.app(book, {w.governor.address.lower(): w.name for w in governors}),
                               access_log=None)
        await runner.setup()
        held.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, self.config.http.host, self.config.http.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.feed_url = f"http://{host}:{port}/"
        self.say(f"feed at {self.feed_url} (feed.json, digest.json)")

    async def _follow(self, client: OracleClient, cursor: SqliteCursor, governors: Sequence[Watched], start: int,
                      stop: asyncio.Event) -> None:
        where = ResultFilter(consumers=frozenset(w.summarizer.address for w in governors))
        items = client.results(where, from_block=start, confirmations=self.config.chain.confirmations, cursor=cursor,
                               take_on_close=False)  # stopped mid-item: given again, and applying it twice is harmless
        try:
            async for item in items:
                async with self.lock:
                    await self._apply(item)
                self._write_feed()
        except Exception as exc:  # a fault of the bot's own: stop the jobs too, and say why on exit
            self.failure = exc
            stop.set()
        finally:
            await items.aclose()

    async def _apply(self, item: Settled | Retracted) -> None:
        book = self.book
        if isinstance(item, Retracted):
            p = book.answered_by(item.event_id)
            if p is not None:
                book.retracted(p)
                self.say(f"proposal {p.proposal_id}: a reorg removed its answer; waiting for it again")
            return
        p = await self._proposal(item)
        if p is None:
            log.info("request 0x%s settled for a proposal this bot does not watch", item.request_id.hex())
            return
        if p.state == SUMMARIZED:
            return  # the first summary stands (the contract keeps it too)
        if p.state == FAILED and p.request_id == item.request_id:
            return  # this failure is in the book already (given again after a stop)
        if item.status == "success" and item.value is not None:
            summary, risk, rationale = item.value
            w = self.asker.watched_by_summarizer(item.consumer)
            if w is not None and not await w.summarizer.functions.hasSummary(p.proposal_id).call():
                book.failed(p, "answered, but the summarizer did not store it (its callback failed)", item.event_id,
                            item.request_id)
                return
            book.summarized(p, summary=str(summary), risk=int(risk), rationale=str(rationale),
                            model=model_hex(item.model_used or b""), receipt_hash=item.receipt_hash,
                            event_id=item.event_id, request_id=item.request_id)
            self.say(f"proposal {p.proposal_id} \"{p.title}\": risk {risk}: {summary} (receipt "
                     f"0x{(item.receipt_hash or b'').hex()})")
            return
        if p.state in (NEW, ASKED, FAILED) and (p.request_id is None or p.request_id == item.request_id):
            reason = f"{item.event} ({getattr(item.reason, 'name', item.reason)})"
            book.failed(p, reason, item.event_id, item.request_id)
            self.say(f"proposal {p.proposal_id}: no summary: {reason} (a first failure is asked about again once, "
                     f"with a larger fee)")

    async def _proposal(self, item: Settled) -> Proposal | None:
        p = self.book.by_request(item.request_id)
        if p is not None:
            return p
        w = self.asker.watched_by_summarizer(item.consumer)
        if w is None:
            return None
        proposal_id = int(await w.summarizer.functions.proposalOf(item.request_id).call())
        p = self.book.get(w.governor.address, proposal_id)
        if p is None:  # asked about before this bot's scan reached it
            await self.asker.scan()
            p = self.book.get(w.governor.address, proposal_id)
        return p

