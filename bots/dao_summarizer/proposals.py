"""Finding proposals and asking for their summaries, with the chain as the judge of what was asked.

Each Governor's `ProposalCreated` events are read in ranges from the book's scan cursor up to the head
less the confirmations (a proposal a reorg could still remove is not asked about yet). The GovernanceSummarizer
the bot asks is bound to its Governor at construction and checks the actions and description the bot
passes against `hashProposal`, so the text the model reads is the proposal's own.

Before each ask the chain is read: a proposal that already holds a summary is recorded as summarized, and
a `SummaryRequested` the book does not know (sent before a crash that lost its record) is adopted instead
of asking again. So a SIGKILL between sending an ask and recording it never pays for a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.logs import DISCARD

from bots.dao_summarizer.book import FAILED, NEW, Book, Proposal
from bots.dao_summarizer.config import GovernorSettings
from oracle.abi import abi
from oracle.client import ClientError, send_call, wait_mined
from oracle.config import ConfigError

log = logging.getLogger("bots.dao_summarizer")

LOG_RANGE = 5_000  # blocks per eth_getLogs
ASKS_PER_PROPOSAL = 2  # the first ask, and one re-ask with a larger fee after a failure
Say = Callable[[str], None]


@dataclass
class Watched:
    """One Governor and the summarizer bound to it."""

    settings: GovernorSettings
    governor: AsyncContract
    summarizer: AsyncContract

    @property
    def name(self) -> str:
        return self.settings.name


def watched(w3: AsyncWeb3[Any], settings: GovernorSettings) -> Watched:
    if settings.summarizer is None:
        raise ConfigError(f"governors ({settings.name}): no summarizer yet: run `python -m bots.dao_summarizer "
                          f"deploy --config FILE --governor {settings.name}` to deploy one and write its address")
    return Watched(settings, w3.eth.contract(address=to_checksum_address(settings.governor), abi=abi("DevGovernor")),
                   w3.eth.contract(address=to_checksum_address(settings.summarizer), abi=abi("GovernanceSummarizer")))


async def check(w3: AsyncWeb3[Any], watched_governors: list[Watched]) -> None:
    """At start: each summarizer is a GovernanceSummarizer bound to the configured Governor."""
    for w in watched_governors:
        if not await w3.eth.get_code(w.summarizer.address):
            raise ConfigError(f"governors ({w.name}).summarizer: no contract at {w.summarizer.address}: deploy one "
                              f"with `python -m bots.dao_summarizer deploy`")
        try:
            bound = await w.summarizer.functions.GOVERNOR().call()
        except Exception:
            raise ConfigError(f"governors ({w.name}).summarizer: {w.summarizer.address} is not a "
                              f"GovernanceSummarizer") from None
        if bound.lower() != w.governor.address.lower():
            raise ConfigError(f"governors ({w.name}): the summarizer {w.summarizer.address} is bound to Governor "
                              f"{bound}, not {w.governor.address}: deploy one for this Governor")


class Asker:
    def __init__(self, w3: AsyncWeb3[Any], book: Book, governors: list[Watched], starts: dict[str, int],
                 key: bytes, confirmations: int, fee_factor: float, say: Say) -> None:
        self.w3 = w3
        self.book = book
        self.governors = {w.governor.address.lower(): w for w in governors}
        self.starts = starts  # per Governor, the first block to scan when the book has not scanned it yet
        self.key = key
        self.address = Account.from_key(key).address
        self.confirmations = confirmations
        self.fee_factor = fee_factor
        self.say = say

    async def scan(self) -> list[Proposal]:
        """Read new proposals on every Governor into the book; returns those not seen before."""
        head = await self.w3.eth.block_number - self.confirmations
        found: list[Proposal] = []
        for key, w in self.governors.items():
            start = self.book.next_block(key)
            if start is None:
                start = self.starts[key]
            while start <= head:
                end = min(head, start + LOG_RANGE - 1)
                events = await w.governor.events.ProposalCreated().get_logs(from_block=start, to_block=end)
                proposals = [_proposal(w, e) for e in events]
                found += self.book.scanned(key, proposals, end + 1)
                start = end + 1
        for p in found:
            self.say(f"{self.governors[p.governor.lower()].name}: proposal {p.proposal_id} \"{p.title}\" seen "
                     f"(block {p.block})")
        return found

    async def ask_new(self) -> None:
        for p in self.book.in_state(NEW):
            await self._ask(p, retry=False)

    async def ask_failed_again(self) -> None:
        for p in self.book.in_state(FAILED):
            await self._ask(p, retry=True)

    async def _ask(self, p: Proposal, retry: bool) -> None:
        w = self.governors[p.governor.lower()]
        await wait_mined(self.w3, self.address)  # an ask sent before a crash is among the asks read next
        if await self._already_summarized(w, p):
            return
        asks = await self._asks_on_chain(w, p)
        if p.state == NEW and asks:  # asked before a crash that lost the record: adopt it, never pay twice
            self.book.asked(p, asks[-1])
            self.say(f"{w.name}: proposal {p.proposal_id}: found its ask 0x{asks[-1].hex()} on-chain")
            return
        if retry and p.request_id is not None and asks and asks[-1] != p.request_id:
            self.book.asked(p, asks[-1])  # a re-ask sent before a crash: wait for its answer
            return
        if retry and len(asks) >= ASKS_PER_PROPOSAL:
            self.book.given_up(p, f"{len(asks)} asks failed; the last: {p.reason}")
            self.say(f"{w.name}: proposal {p.proposal_id}: given up after {len(asks)} failed asks ({p.reason})")
            return
        quote = int(await w.summarizer.functions.quote().call())
        fee = int(quote * self.fee_factor) if retry else quote
        call = w.summarizer.functions.summarize(p.targets, p.values, p.calldatas, p.description)
        try:
            receipt = await send_call(self.w3, call, self.key, value=fee,
                                      what=f"summarize proposal {p.proposal_id}")
        except ClientError as exc:
            log.warning("%s: proposal %s: %s (asked again at the next scan)", w.name, p.proposal_id, exc)
            return
        (event,) = w.summarizer.events.SummaryRequested().process_receipt(receipt, errors=DISCARD)
        request_id = bytes(event["args"]["requestId"])
        self.book.asked(p, request_id)
        self.say(f"{w.name}: proposal {p.proposal_id}: {'asked again' if retry else 'asked'}, request "
                 f"0x{request_id.hex()}, fee {fee} wei")

    async def _already_summarized(self, w: Watched, p: Proposal) -> bool:
        if not await w.summarizer.functions.hasSummary(p.proposal_id).call():
            return False
        summary, risk, rationale, model, receipt_hash = await w.summarizer.functions.summaryOf(p.proposal_id).call()
        self.book.summarized(p, summary=summary, risk=risk, rationale=rationale, model=model_hex(model),
                             receipt_hash=bytes(receipt_hash), event_id=None, request_id=None)
        self.say(f"{w.name}: proposal {p.proposal_id}: already summarized on-chain (risk {risk})")
        return True

    async def _asks_on_chain(self, w: Watched, p: Proposal) -> list[bytes]:
        """Every SummaryRequested for this proposal, oldest first."""
        head = await self.w3.eth.block_number
        asks: list[bytes] = []
        start = p.block
        while start <= head:
            end = min(head, start + LOG_RANGE - 1)
            events = await w.summarizer.events.SummaryRequested().get_logs(
                from_block=start, to_block=end, argument_filters={"proposalId": p.proposal_id})
            asks += [bytes(e["args"]["requestId"]) for e in events]
            start = end + 1
        return asks

    def watched_by_summarizer(self, address: str) -> Watched | None:
        return next((w for w in self.governors.values() if w.summarizer.address.lower() == address.lower()), None)


def _proposal(w: Watched, event: Any) -> Proposal:
    a = event["args"]
    return Proposal(w.governor.address, int(a["proposalId"]), w.summarizer.address, int(event["blockNumber"]),
                    str(a["proposer"]), str(a["description"]), [str(t) for t in a["targets"]],
                    [int(v) for v in a["values"]], [bytes(c) for c in a["calldatas"]])


def model_hex(model: bytes) -> str:
    """`modelUsed` is keccak of the model id: the receipt names the model, this only identifies it."""
    return "0x" + bytes(model).hex()
