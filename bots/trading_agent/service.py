"""The agent at work: risk checks sent on a schedule (apscheduler, the first at start), and the oracle
followed with the client for the results of the agent's sentinels, each turned into one decision.

A decision is written (with the position it changes, pending when it acts) before anything is sent and
before the client is asked for the next item, which is when the client marks the item taken in its
cursor: a crash before the write gives the item again and it is decided then; a crash after finds the
row (UNIQUE request id) and decides nothing twice, and a pending one is finished at the next start by
bringing the deposit to the target it recorded, which sends nothing when it is there already.

Vaults are acted on only on the local chain (LOCAL_CHAIN_IDS); elsewhere the agent trades on paper: the
book changes and each decision is printed, but no deposit or withdrawal is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from dataclasses import replace

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bots.following import open_following
from bots.trading_agent.book import PENDING, Book, Decision, Retraction
from bots.trading_agent.config import AssetSettings, TradingConfig
from bots.trading_agent.rule import Bounds, PositionState, decide, target_wei
from bots.trading_agent.sentinel import Sentinel
from bots.trading_agent.vault import Vault
from bots.trading_agent.wallet import AgentWallet
from oracle.client import NODE_ERRORS, ClientError, ResultFilter, Retracted, Settled, SqliteCursor
from oracle.config import ConfigError
from oracle.protocol import ReasonCode

log = logging.getLogger("bots.trading_agent")

LOCAL_CHAIN_IDS = frozenset({31337})  # anvil's, and the local stack's
RETRY_SECONDS = 2.0  # between attempts at an item while the node does not answer


def say(line: str) -> None:
    """A decision or an action, on stdout for whoever runs the agent."""
    print(line, flush=True)


def model_text(model_used: bytes | None) -> str:
    """A bytes32 model name as its text when it is printable text, else as 0x-hex (a keccak of model ids)."""
    if not model_used:
        return ""
    text = model_used.rstrip(b"\0")
    if text and all(32 <= b < 127 for b in text):
        return text.decode()
    return "0x" + model_used.hex()


def no_score_reason(s: Settled) -> str:
    reason = s.reason.name.lower() if isinstance(s.reason, ReasonCode) else f"reason code {s.reason}"
    out = s.status if s.reason == ReasonCode.NONE else f"{s.status} ({reason})"
    return f"{out}: {s.note}" if s.note and s.event != "fulfilled" else out


class TradingAgent:
    def __init__(self, config: TradingConfig, key: bytes) -> None:
        self.config = config
        self.key = key
        agent = config.agent
        self.bounds = Bounds(agent.reopen_below, agent.reduce_above, agent.close_above)
        self.failure: BaseException | None = None

    async def run(self, stop: asyncio.Event) -> None:
        chain, agent = self.config.chain, self.config.agent
        async with contextlib.AsyncExitStack() as held:
            book = Book.open(agent.store)
            held.callback(book.close)
            client, cursor = await open_following(held, chain, agent.store)
            self.book, self.client = book, client
            self.wallet = AgentWallet(client.w3, self.key, client.chain_id)
            self.sentinels = {a.name: Sentinel(client.w3, a, client.oracle, i)
                              for i, a in enumerate(self.config.assets)}
            self.vaults = {a.name: Vault(client.w3, a.vault, a.name) for a in self.config.assets}
            for sentinel in self.sentinels.values():
                await sentinel.check(self.config, self.wallet.address)
            for sentinel in self.sentinels.values():  # a context file that cannot be read: now, not at a check
                try:
                    sentinel.asset.read_context()
                except ConfigError as exc:
                    raise ConfigError(f"{sentinel.where}.{exc}") from None
            self.live = client.chain_id in LOCAL_CHAIN_IDS
            if not self.live:
                say(f"paper mode: chain {client.chain_id} is not the local chain; decisions are recorded and printed, "
                    f"no deposit or withdrawal is sent")
            start = chain.from_block if chain.from_block is not None else book.start_block()
            if start is None:
                start = await client.w3.eth.block_number
            book.set_start_block(start)
            await self._finish_pending()
            await self._open_positions()
            log.info("trading agent running: %s as %s on chain %d, oracle %s from block %d (or where the store's "
                     "cursor stands), %d confirmation(s), a check every %g s", ", ".join(self.sentinels),
                     self.wallet.address, client.chain_id, chain.oracle, start, chain.confirmations, agent.interval)
            scheduler = AsyncIOScheduler()
            # a check late behind a slow one runs once, late, rather than being skipped or piling up; a
            # restart keeps the rhythm (each check costs a fee, and the sentinel keeps only the latest)
            last = book.last_check()
            first = time.time() if last is None else max(time.time(), last + agent.interval)
            scheduler.add_job(self._check_all, "interval", seconds=agent.interval, max_instances=1, coalesce=True,
                              misfire_grace_time=None,
                              next_run_time=datetime.datetime.fromtimestamp(first, datetime.UTC))
            scheduler.start()
            held.callback(scheduler.shutdown, wait=False)
            if first > time.time() + 1:
                say(f"next risk check at {datetime.datetime.fromtimestamp(first, datetime.UTC):%Y-%m-%dT%H:%M:%SZ}"
                    f" ({agent.interval:g} s after the last one sent)")
            following = asyncio.create_task(self._follow(start, cursor, stop))
            try:
                await stop.wait()
            finally:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
        if self.failure is not None:
            raise self.failure

    # ------------------------------------------------------------ asking

    async def _check_all(self) -> None:
        try:
            await self._check_each()
        except asyncio.CancelledError:  # stopped while a check was on its way: its result is followed next run
            log.info("stopped while a risk check was being sent")

    async def _check_each(self) -> None:
        for asset in self.config.assets:
            try:
                asked = await self.sentinels[asset.name].ask(self.wallet, asset.read_context())
            except (ConfigError, ClientError, *NODE_ERRORS) as exc:
                log.error("%s: risk check not sent: %s", asset.name, exc)
                continue
            self.book.checked(asset.name, time.time())
            say(f"{asset.name} risk check asked: request 0x{asked.request_id.hex()} (fee {asked.fee} wei, "
                f"tx 0x{asked.tx_hash.hex()})")

    # ------------------------------------------------------------ following

    async def _follow(self, start: int, cursor: SqliteCursor, stop: asyncio.Event) -> None:
        where = ResultFilter(consumers=frozenset(a.sentinel for a in self.config.assets))
        items = self.client.results(where, from_block=start, confirmations=self.config.chain.confirmations,
                                    cursor=cursor, take_on_close=False)  # stopped mid-item: given again
        try:
            async for item in items:
                while True:  # the same item until it is decided: it is taken only when the next is asked for
                    try:
                        await self._take(item)
                        break
                    except NODE_ERRORS as exc:
                        log.warning("the node did not answer while deciding (%s); trying again", exc)
                        await asyncio.sleep(RETRY_SECONDS)
        except Exception as exc:  # a fault of the agent's own: stop, and say why on exit
            self.failure = exc
            stop.set()
        finally:
            await items.aclose()

    async def _take(self, item: Settled | Retracted) -> None:
        settled = item.settled if isinstance(item, Retracted) else item
        asset = self.config.asset_of(settled.consumer)
        if asset is None:
            return
        if isinstance(item, Retracted):
            retraction = Retraction(settled.request_id, asset.name, settled.event, settled.block_number, time.time())
            if self.book.retract(retraction, settled.block_hash):
                say(retraction.line())
            return
        known = self.book.decision(settled.request_id)
        if known is not None:
            if known.outcome == PENDING:
                say((await self._act(known)).line())
            else:  # given again after a crash, or included again after a reorg
                say(f"{asset.name} request 0x{settled.request_id.hex()}: its result in block {settled.block_number} "
                    f"was decided on before ({known.action}); not decided again")
            return
        decision, state = await self._decide(asset, settled)
        self.book.record(decision, state)
        if decision.outcome == PENDING:
            decision = await self._act(decision)
        say(decision.line())

    async def _decide(self, asset: AssetSettings, s: Settled) -> tuple[Decision, PositionState | None]:
        """The decision on one settled result, and the position state it leaves (None: unchanged)."""
        base = Decision(s.request_id, asset.name, None, model_text(s.model_used),
                        "" if s.receipt_hash is None else "0x" + s.receipt_hash.hex(), "", "", None, "",
                        s.block_number, time.time())
        if s.status != "success":
            return replace(base, action="no score", outcome=no_score_reason(s)), None
        reading = await self.sentinels[asset.name].reading(s.request_id, s.transaction)
        if reading is None:
            return replace(base, action="ignored", outcome="superseded (the sentinel takes only the answer to its "
                                                           "latest request)"), None
        if reading.score is None:  # the oracle answered, but the sentinel counted it a failed check
            return replace(base, action="no score",
                           outcome=f"the sentinel reported the check failed (reason {reading.reason_code})"), None
        base = replace(base, score=reading.score, receipt_hash="0x" + (reading.receipt_hash or b"").hex())
        age = await self._age(s.block_number)
        if age > self.config.agent.max_score_age:
            return replace(base, action="ignored", outcome=f"stale (the score is {age} s old; max_score_age "
                                                           f"{self.config.agent.max_score_age:g})"), None
        action, state = decide(self.book.position(asset.name), reading.score, self.bounds)
        target = target_wei(state, self.config.agent.position_wei)
        if not self.live:
            return replace(base, action=action, outcome=f"paper: target {target} wei, nothing sent"), state
        return replace(base, action=action, outcome=PENDING, target_wei=target), state

    async def _age(self, block_number: int) -> int:
        """Seconds since the block, by the later of this machine's clock and the head's time (a node
        whose clock runs ahead, as a test chain's may, is not taken to be in the past)."""
        block = await self.client.w3.eth.get_block(block_number)
        head = await self.client.w3.eth.get_block("latest")
        return max(int(time.time()), int(head["timestamp"])) - int(block["timestamp"])

    # ------------------------------------------------------------ acting

    async def _act(self, decision: Decision) -> Decision:
        assert decision.target_wei is not None
        acted = await self.vaults[decision.asset].bring_to(self.wallet, decision.target_wei)
        return self.book.finish(decision.request_id, acted.outcome, acted.tx_hash)

    async def _finish_pending(self) -> None:
        """Decisions recorded but not acted on when the agent last stopped."""
        for decision in self.book.pending():
            say((await self._act(decision)).line())

    async def _open_positions(self) -> None:
        """Each asset's deposit brought to what its book says (an asset new to the book starts open)."""
        for asset in self.config.assets:
            state = self.book.position(asset.name)
            if not self.live:
                continue
            target = target_wei(state, self.config.agent.position_wei)
            acted = await self.vaults[asset.name].bring_to(self.wallet, target)
            if acted.tx_hash or not acted.outcome.startswith("at target"):
                say(f"{asset.name} position {state}: {acted.outcome}" + (f" (tx {acted.tx_hash})" if acted.tx_hash
                                                                           else ""))
