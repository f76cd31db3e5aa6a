"""`TxManager`: gets signed responses on-chain, one manager per signer and chain, in three parts that
share one record of what is in flight:

- `FeeEstimator` (fees.py): EIP-1559 fees, twice the next base fee plus the priority fee, never above
  the configured cap; the bump that replaces a transaction a node holds.
- `Broadcaster` (broadcaster.py): batches ready responses into `fulfillBatch`, drops what would run at
  a loss, simulates, takes a nonce, signs, records, commits, sends.
- `Confirmer` (confirmer.py): follows receipts to the confirmation depth, re-prices and rebuilds what is
  stuck or refused, takes back what reorgs removed, fills nonce gaps.

Between them: `Outbox` (what every transaction passes through, new or rebuilt), `InFlight` (which
responses are held and every request-state move made here), `Guards` (gas budget, balance, halt).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from oracle.chain.rpc import ChainClient
from oracle.chain.tx.batch import ReadyResponse
from oracle.chain.tx.broadcaster import Broadcaster
from oracle.chain.tx.confirmer import Confirmer
from oracle.chain.tx.fees import FeeEstimator
from oracle.chain.tx.guards import Guards
from oracle.chain.tx.in_flight import InFlight
from oracle.chain.tx.outbox import Outbox, address_of
from oracle.config import ChainSettings
from oracle.store import Requests, Transactions


class TxManager:
    def __init__(self, chain: ChainSettings, rpc: ChainClient, requests: Requests, txs: Transactions,
                 private_key: bytes, clock: Callable[[], float] = time.time) -> None:
        """`clock`: the chain's now, for deadlines (transaction timing uses this machine's clock)."""
        self.chain = chain
        self.in_flight = InFlight(requests)
        self.fees = FeeEstimator(chain.gas, rpc)
        self.sender = address_of(private_key)
        self.guards = Guards(chain, rpc, txs, self.sender)
        self.outbox = Outbox(chain, rpc, txs, self.in_flight, self.guards, private_key, clock)
        self.confirmer = Confirmer(chain, rpc, txs, self.in_flight, self.outbox, self.fees, self.guards)
        self.broadcaster = Broadcaster(chain, self.in_flight, self.outbox, self.fees, self.guards,
                                       self.confirmer.sent, clock)

    # ------------------------------------------------------------ the pipeline's side

    @property
    def accepting_new_work(self) -> bool:
        return self.guards.accepting_new_work

    def submit(self, item: ReadyResponse) -> None:
        """Queue a signed response; a response already queued or carried by a pending tx is ignored."""
        self.broadcaster.submit(item)

    def carries(self, key: str) -> bool:
        return self.broadcaster.holds(key)

    @property
    def holding(self) -> int:
        """How many signed responses it holds that are not yet on record in a transaction, at most."""
        return self.broadcaster.holding

    def current_max_fee(self) -> int:
        """The maxFeePerGas a transaction sent now would pay, wei (for the pipeline's economics check)."""
        return self.fees.current()[0]

    # ------------------------------------------------------------ the daemon's side

    async def price_now(self) -> int:
        """The maxFeePerGas a transaction signed now would carry, read from the chain."""
        return (await self.fees.read(fresh=True))[0]

    def reorged(self, common_block: int) -> None:
        self.confirmer.reorged(common_block)

    def halt(self, why: str) -> None:
        """Take no new work until a restart (the chain's intake stopped: see the watcher)."""
        self.guards.halt(why)

    @property
    def paused_reason(self) -> str:
        return self.guards.paused_reason

    @property
    def halted(self) -> str:
        return self.guards.halted

    @property
    def sent(self) -> int:
        return self.broadcaster.sent

    @property
    def rebuilt(self) -> int:
        return self.confirmer.rebuilt

    @property
    def confirmed(self) -> int:
        return self.confirmer.confirmed

    async def run(self) -> None:
        self.confirmer.restore()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.broadcaster.run())
            tasks.create_task(self.confirmer.run())

    async def monitor_once(self) -> None:
        await self.confirmer.monitor_once()
