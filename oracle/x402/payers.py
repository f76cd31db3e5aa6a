"""What the gateway keeps per payer in memory: the amounts held against its balance, its calls of the last
minute, and the time it is refused after a settlement of its failed. Touched only for payments the
facilitator verified, so a forged header naming someone else's address cannot move that payer's figures."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

DAY = 86_400


@dataclass(frozen=True)
class Refusal:
    """Why a paid call is not served: 402 (pay again, differently), 409 (identifier reuse), 429 (limits),
    503 (settlements behind: again shortly)."""

    status: int
    message: str
    retry_after: int | None = None


class Payers:
    def __init__(self, rate_per_minute: int, daily_cap: int, cooldown: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.rate_per_minute = rate_per_minute
        self.daily_cap = daily_cap
        self.cooldown = cooldown
        self.clock = clock
        self.reserved: collections.Counter[str] = collections.Counter()  # verified, not settled (or released)
        self.admitting: collections.Counter[str] = collections.Counter()  # admitted now, not yet on record
        # What settlements moved per payer, base units: a balance read takes off what moved while it ran (one
        # integer per payer that ever settled: kept, as it must never run back).
        self.settlements: collections.Counter[str] = collections.Counter()
        self._refused_until: dict[str, float] = {}
        self._recent: dict[str, collections.deque[float]] = {}

    def check(self, payer: str, value: int, spent_today: int) -> Refusal | None:
        """The cooldown, the rate limit and the daily cap (`spent_today`: on record, in base units)."""
        now = self.clock()
        until = self._refused_until.get(payer, 0.0)
        if until > now:
            return Refusal(402, f"a settlement of an earlier payment from {payer} failed: this payer is refused "
                                f"for {until - now:.0f} s more", int(until - now) + 1)
        self._refused_until.pop(payer, None)
        recent = self._recent.get(payer)
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if recent is not None and not recent:
            del self._recent[payer]
        if recent and len(recent) >= self.rate_per_minute:
            wait = int(recent[0] + 60 - now) + 1
            return Refusal(429, f"{payer} made {len(recent)} paid calls in the last minute, the most allowed: "
                                f"try again in {wait} s", wait)
        spent = spent_today + self.admitting[payer]
        if spent + value > self.daily_cap:
            wait = int(now - now % DAY + DAY - now) + 1
            return Refusal(429, f"{payer} has spent {spent} of its daily cap of {self.daily_cap} today (UTC); "
                                f"this call costs {value}: try again after midnight UTC", wait)
        return None

    def admit(self, payer: str, value: int) -> float:
        """Count a call from now on (rate, cap); returns its stamp, to take it back with `forget`."""
        stamp = self.clock()
        self._recent.setdefault(payer, collections.deque()).append(stamp)
        self.admitting[payer] += value
        return stamp

    def on_record(self, payer: str, value: int) -> None:
        """The call's sale is in the store: the daily cap reads it from there."""
        self._drop(self.admitting, payer, value)

    def forget(self, payer: str, stamp: float) -> None:
        """A call refused after `admit`: it does not count against the rate."""
        recent = self._recent.get(payer)
        if recent is not None and stamp in recent:
            recent.remove(stamp)

    def reserve(self, payer: str, value: int) -> None:
        self.reserved[payer] += value

    def unreserve(self, payer: str, value: int) -> None:
        self._drop(self.reserved, payer, value)

    def settled(self, payer: str, value: int) -> None:
        self.settlements[payer] += value  # with the reservation going: a balance read overlapping it takes it off
        self.unreserve(payer, value)

    def refuse(self, payer: str, until: float | None = None) -> None:
        """Refuse `payer` for the cooldown (from `until`, when it is known from the store)."""
        self._refused_until[payer] = until if until is not None else self.clock() + self.cooldown

    @staticmethod
    def _drop(counter: collections.Counter[str], payer: str, value: int) -> None:
        counter[payer] -= value
        if counter[payer] <= 0:
            del counter[payer]
