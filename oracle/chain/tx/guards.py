"""`Guards`: when the transaction manager may spend. A daily gas budget (sending stops when it is spent),
a low-balance threshold (below it no new work is taken) and a halt (a reorg deeper than
max_reorg_depth: nothing new until a restart). `paused_reason` says which."""

from __future__ import annotations

import datetime
import logging
import time

from oracle.chain.rpc import ChainClient
from oracle.config import ChainSettings
from oracle.store import Transactions

log = logging.getLogger(__name__)

BALANCE_SECONDS = 5.0  # the signer's balance is read again after this long


def today() -> str:
    """The UTC day gas is counted against."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")


class Guards:
    def __init__(self, chain: ChainSettings, rpc: ChainClient, txs: Transactions, sender: str) -> None:
        self.chain = chain
        self.rpc = rpc
        self.txs = txs
        self.sender = sender
        self._balance: int | None = None
        self._balance_at = 0.0
        self.paused_reason = ""
        self.halted = ""  # why no new work is taken until a restart
        self._halts: set[str] = set()

    @property
    def accepting_new_work(self) -> bool:
        return not self.paused_reason and not self.halted

    def halt(self, why: str) -> None:
        """Take no new work until a restart. Each distinct reason is logged once; the first one stands."""
        if why not in self._halts:
            self._halts.add(why)
            log.error("chain %s: %s", self.chain.name, why)
        self.halted = self.halted or why
        self.paused_reason = self.halted

    def pause(self, reason: str) -> None:
        if reason != self.paused_reason:
            log.error("chain %s: %s", self.chain.name, reason)
        self.paused_reason = reason

    def forget_balance(self) -> None:
        """The node said the signer cannot pay: read the balance again before the next send."""
        self._balance = None

    async def allow(self) -> bool:
        """Whether sending may go on; else `paused_reason` says why."""
        if self.halted:
            self.pause(self.halted)
            return False
        now = time.time()
        if self._balance is None or now - self._balance_at > BALANCE_SECONDS:
            self._balance = await self.rpc.balance(self.sender)
            self._balance_at = now
        gas = self.chain.gas
        if self._balance < gas.low_balance:
            self.pause(f"signer {self.sender} balance {self._balance} wei is below low_balance "
                       f"{gas.low_balance}: not taking new work")
            return False
        spent = self.txs.gas_spent(self.chain.chain_id, today())
        if spent >= gas.daily_budget:
            self.pause(f"daily gas budget {gas.daily_budget} wei spent ({spent}): sending held")
            return False
        self.paused_reason = ""
        return True

    def fits_budget(self, gas: int, max_fee: int) -> bool:
        """Whether a transaction that costs at worst gas * max_fee fits in what is left of today's budget."""
        spent = self.txs.gas_spent(self.chain.chain_id, today())
        if spent + gas * max_fee <= self.chain.gas.daily_budget:
            return True
        self.pause(f"daily gas budget {self.chain.gas.daily_budget} wei: {spent} spent, this "
                   f"transaction could cost {gas * max_fee}; sending held")
        return False
