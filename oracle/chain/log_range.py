"""How many blocks one `eth_getLogs` asks for.

Nodes bound what one query may cost: they refuse a range above their limit or let it time out. The
range starts at the configured `max_log_range`, is halved when a query fails, and grows back by
doubling after each success, but not to a size that failed in the last minute: growing straight back
into the failing size would pay a refusal or a timeout on every other query, and a watcher that pays a
timeout per block falls behind the chain for good. A minute later the larger size is tried again, as a
node's limits can change.

    ranges = LogRange(max_log_range)
    end = ranges.end(start, head)
    ... query start..end; on failure: if not ranges.failed(start, end): raise; continue
    ... on success: ranges.succeeded()
"""

from __future__ import annotations

import time
from collections.abc import Callable

REMEMBER_FAILURE = 60.0  # seconds a failed size is not asked for again


class LogRange:
    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.size = limit
        self._clock = clock
        self._too_big: int | None = None  # the smallest size that failed lately
        self._failed_at = 0.0

    def end(self, start: int, last: int) -> int:
        """The last block of the next query from `start`, at most `last`."""
        return min(last, start + self.size - 1)

    def failed(self, start: int, end: int) -> bool:
        """The query start..end was refused or timed out: whether a smaller one is worth asking (False when
        it was a single block already: the failure is the node's, not the range's)."""
        span = end - start + 1
        if span <= 1:
            return False
        self.size = max(1, span // 2)
        self._too_big = span if self._too_big is None else min(self._too_big, span)
        self._failed_at = self._clock()
        return True

    def succeeded(self) -> None:
        ceiling = self.limit
        if self._too_big is not None:
            if self._clock() - self._failed_at < REMEMBER_FAILURE:
                ceiling = min(ceiling, self._too_big - 1)
            else:
                self._too_big = None
        self.size = max(1, min(ceiling, self.size * 2))
