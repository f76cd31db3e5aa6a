"""The chain's idea of now: deadlines are compared with block timestamps, not with this machine's clock.

`now()` is the newest block timestamp seen plus the time since it was seen, and never behind the wall
clock: a chain whose time runs ahead (or a local chain moved forward) expires requests when the
contract would, and a stalled chain does not freeze time.
"""

from __future__ import annotations

import time


class ChainClock:
    def __init__(self) -> None:
        self._timestamp = 0.0
        self._seen_at = 0.0

    def observe(self, block_timestamp: int) -> None:
        if block_timestamp >= self._timestamp:
            self._timestamp = float(block_timestamp)
            self._seen_at = time.monotonic()

    def now(self) -> float:
        chain = self._timestamp + (time.monotonic() - self._seen_at) if self._timestamp else 0.0
        return max(time.time(), chain)
