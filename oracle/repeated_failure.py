"""A failure of one kind that repeats while it lasts (a node unreachable, a provider down), logged as one
incident instead of once per retry: when it starts, once a `every` seconds while it lasts with how many
failures there were, and when it ends.

    outage = RepeatedFailure(log, "chain base: node https://rpc.example", {"chain": "base"})
    try:
        reply = await call()
    except Unreachable as exc:
        outage.failed(str(exc))
        raise
    outage.succeeded()

Callers that log their own line per failed call check `active` and log it at DEBUG while the incident
is being reported, so an outage of a minute is three or four lines, whatever the retry rate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

REPORT_EVERY = 60.0  # seconds between "still failing" lines


class RepeatedFailure:
    def __init__(self, log: logging.Logger, what: str, fields: Mapping[str, Any] | None = None, *,
                 level: int = logging.WARNING, every: float = REPORT_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self.what = what
        self._fields = dict(fields or {})
        self._level = level
        self._every = every
        self._clock = clock
        self.started: float | None = None
        self.failures = 0  # in this incident
        self._reported_at = 0.0
        self._since_report = 0
        self.muted = False  # while set, nothing is counted or said (e.g. start-up checks, which say it their way)

    @property
    def active(self) -> bool:
        return self.started is not None

    def failed(self, detail: str) -> None:
        if self.muted:
            return
        detail = detail[:300]  # a provider's error body can be long
        now = self._clock()
        self.failures += 1
        self._since_report += 1
        if self.started is None:
            self.started = self._reported_at = now
            self._since_report = 0
            self._emit("started", "%s: failing (%s); reported again once a minute while it lasts", detail)
        elif now - self._reported_at >= self._every:
            self._emit("ongoing", f"%s: still failing after {now - self.started:.0f} s, {self._since_report} failures "
                                  "since the last report (latest: %s)", detail)
            self._reported_at = now
            self._since_report = 0

    def succeeded(self) -> None:
        if self.started is None or self.muted:
            return
        lasted = self._clock() - self.started
        self._emit("ended", f"%s: recovered after {lasted:.0f} s and {self.failures} failures")
        self.started = None
        self.failures = self._since_report = 0

    def _emit(self, phase: str, message: str, *args: object) -> None:
        self._log.log(self._level, message, self.what, *args,
                      extra={"fields": {**self._fields, "incident": phase, "failures": self.failures}})
