"""`FeeEstimator`: the one fee formula (EIP-1559, under the cap) and the one bump that replaces a
transaction a node holds."""

from __future__ import annotations

import time
from collections.abc import Sequence

from oracle.chain.rpc import ChainClient
from oracle.config import GasSettings
from oracle.store import StoredTx

# Fee figures younger than this are used as they are (one fee_history call per second at most).
FRESH_SECONDS = 1.0


class FeeEstimator:
    def __init__(self, gas: GasSettings, rpc: ChainClient) -> None:
        self.gas = gas
        self.rpc = rpc
        self.base_fee = 0  # the next block's, as last read
        self._network_priority = 0
        self._read_at = 0.0

    @property
    def cap(self) -> int:
        return self.gas.max_fee_per_gas

    @property
    def stale(self) -> bool:
        return time.time() - self._read_at > FRESH_SECONDS

    async def read(self, fresh: bool = False) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas) from the chain's figures of the last second, or of now
        if `fresh` (to re-price after a refusal)."""
        if fresh or self.stale:
            self.base_fee, self._network_priority = await self.rpc.fee_history()
            self._read_at = time.time()
        return self.current()

    def current(self) -> tuple[int, int]:
        """Room for the next base fee to double, the priority fee the latest block paid at its median (at
        least the configured one), all under the cap."""
        priority = min(max(self.gas.priority_fee, self._network_priority), self.cap)
        return min(self.cap, 2 * self.base_fee + priority), priority

    def outbid(self, txs: Sequence[StoredTx], max_fee: int, priority: int) -> tuple[int, int]:
        """Fees that replace any of `txs` a node may hold (nodes want both fees raised by >= 10%). The
        result may be above the cap: the caller decides to wait instead."""
        bump = 100 + self.gas.fee_bump_percent
        return (max(max_fee, *(t.max_fee * bump // 100 + 1 for t in txs)),
                max(priority, *(t.priority_fee * bump // 100 + 1 for t in txs)))
