"""Per-deployment health: latency percentiles, error rate, and a circuit breaker.

Every call's outcome is recorded here; `snapshot()` gives the decision an immutable view (which
the receipt keeps), `allow()` is asked right before each call. A breaker opens when at least
`breaker_failure_percent` of the deployment's latest calls failed (judged over `breaker_window` calls,
once there are `breaker_min_calls`): a dead provider is cut off after `breaker_min_calls` calls, while
one failing now and then keeps its traffic. Open, it waits a cooldown, then lets exactly one probe
through: success closes it, failure re-opens it with a doubled cooldown. It applies to a deployment
even when it is the only one that can serve a request, so a dead provider is not hammered.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from oracle.config import RouterSettings
from oracle.repeated_failure import RepeatedFailure
from oracle.router.catalog import Catalog
from oracle.router.decision import HealthPoint, HealthSnapshot, blank_health, health_row

log = logging.getLogger(__name__)


@dataclass
class _Track:
    latencies: deque[int]  # ms of the latest successful calls, in arrival order ...
    ranked: list[int]  # ... and the same, sorted, for percentiles
    outcomes: deque[bool]  # True for a failed call, over the health window
    recent: deque[bool]  # the same, over the breaker's window
    errors: int = 0  # failed calls in `outcomes`
    recent_failures: int = 0  # ... and in `recent`
    state: str = "closed"  # closed | open | half_open
    open_until: float = 0.0
    cooldown: float = 0.0
    probing: bool = False
    opened: int = 0  # times the breaker opened, for metrics
    calls: int = 0
    failures: int = 0


class Health:
    def __init__(self, catalog: Catalog, settings: RouterSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog = catalog
        self.settings = settings
        self.clock = clock
        window = settings.health_window
        self._tracks = {e.id: _Track(deque(maxlen=window), [], deque(maxlen=window), deque())
                        for e in catalog.entries}
        self._columns = blank_health(catalog)  # kept current, so a snapshot only copies them
        self._points: dict[str, HealthPoint] = {}  # only deployments with something to say
        self._not_closed: set[str] = set()
        self._snapshot: HealthSnapshot | None = None
        # A provider failing call after call is one incident in the log, not a line per call.
        self._down = {e.id: RepeatedFailure(log, f"deployment {e.id} ({e.deployment.provider})",
                                            {"deployment": e.id}, clock=clock) for e in catalog.entries}

    def rebuilt(self, catalog: Catalog, settings: RouterSettings) -> Health:
        """Health for a reloaded catalog: deployments kept keep their figures and breakers (unless the
        windows they are judged over changed), new ones start blank."""
        fresh = Health(catalog, settings, self.clock)
        same_windows = (settings.health_window, settings.breaker_window) == (self.settings.health_window,
                                                                             self.settings.breaker_window)
        for d, t in self._tracks.items():
            if d not in fresh._tracks:
                continue
            fresh._down[d] = self._down[d]
            if same_windows:
                fresh._tracks[d] = t
                if t.state != "closed":
                    fresh._not_closed.add(d)
                fresh._refresh(d, t)
        return fresh

    # ------------------------------------------------------------ what decisions see

    def snapshot(self) -> HealthSnapshot:
        """Health now, immutable; the same object until something changes, so its columns are built once."""
        now = self.clock()
        for d in sorted(self._not_closed):
            t = self._tracks[d]
            if t.state == "open" and now >= t.open_until:
                self._set_state(d, t, "half_open")
        if self._snapshot is None:
            p50, p90, degraded, is_open = self._columns
            self._snapshot = HealthSnapshot(self._points, (p50.copy(), p90.copy(), degraded.copy(), is_open.copy()),
                                            self.catalog.version)
        return self._snapshot

    def allow(self, deployment: str) -> bool:
        """May a call go to `deployment` now? A half-open breaker admits one probe at a time."""
        t = self._tracks.get(deployment)
        if t is None:  # a deployment a reload removed, still serving a request that chose it before
            return True
        if t.state == "closed":
            return True
        if t.state == "open":
            if self.clock() < t.open_until:
                return False
            self._set_state(deployment, t, "half_open")
        if t.probing:
            return False
        t.probing = True
        return True

    # ------------------------------------------------------------ what calls report

    def record(self, deployment: str, latency_ms: int, failed: bool, detail: str = "") -> None:
        t = self._tracks.get(deployment)
        if t is None:  # removed by a reload: nothing left to judge it for
            return
        if failed:
            self._down[deployment].failed(detail or "failed")
        else:
            self._down[deployment].succeeded()
        t.calls += 1
        if len(t.outcomes) == t.outcomes.maxlen:
            t.errors -= t.outcomes[0]
        t.outcomes.append(failed)
        t.errors += failed
        t.probing = False
        self._judge(t, failed)
        if failed:
            t.failures += 1
            if t.state == "half_open" or (t.state == "closed" and self._tripped(t)):
                t.cooldown = (min(t.cooldown * 2, self.settings.breaker_cooldown_max) if t.state == "half_open"
                              else self.settings.breaker_cooldown)
                t.open_until = self.clock() + t.cooldown
                t.opened += 1
                t.state = "open"
                t.recent.clear()
                t.recent_failures = 0
                self._not_closed.add(deployment)
        else:
            if len(t.latencies) == t.latencies.maxlen:
                del t.ranked[bisect.bisect_left(t.ranked, t.latencies[0])]
            t.latencies.append(latency_ms)
            bisect.insort(t.ranked, latency_ms)
            if t.state != "closed":
                t.state = "closed"
                t.cooldown = 0.0
                self._not_closed.discard(deployment)
        self._refresh(deployment, t)

    def _judge(self, t: _Track, failed: bool) -> None:
        t.recent.append(failed)
        t.recent_failures += failed
        if len(t.recent) > self.settings.breaker_window:
            t.recent_failures -= t.recent.popleft()

    def _tripped(self, t: _Track) -> bool:
        n = len(t.recent)
        settings = self.settings
        return n >= settings.breaker_min_calls and t.recent_failures * 100 >= settings.breaker_failure_percent * n

    def release(self, deployment: str) -> None:
        """A call admitted by `allow()` ended without a verdict on the provider (e.g. cancelled)."""
        t = self._tracks.get(deployment)
        if t is not None:
            t.probing = False

    def _set_state(self, deployment: str, t: _Track, state: str) -> None:
        t.state = state
        self._refresh(deployment, t)

    def _refresh(self, deployment: str, t: _Track) -> None:
        self._snapshot = None
        lat = t.ranked
        point = self._points[deployment] = HealthPoint(
            p50_ms=_percentile(lat, 50), p90_ms=_percentile(lat, 90),
            error_ppm=t.errors * 1_000_000 // len(t.outcomes) if t.outcomes else 0,
            samples=len(t.outcomes), breaker=t.state)
        i = self.catalog.index[deployment]
        c = self._columns
        c[0][i], c[1][i], c[2][i], c[3][i] = health_row(self.catalog, i, point)

    # ------------------------------------------------------------ for metrics and the status page

    def report(self) -> dict[str, dict[str, int | str]]:
        out: dict[str, dict[str, int | str]] = {}
        for d, t in sorted(self._tracks.items()):
            out[d] = {"calls": t.calls, "failures": t.failures, "breaker": t.state, "breaker_opened": t.opened,
                      "p50_ms": _percentile(t.ranked, 50), "p90_ms": _percentile(t.ranked, 90),
                      "p99_ms": _percentile(t.ranked, 99),
                      "error_ppm": t.errors * 1_000_000 // len(t.outcomes) if t.outcomes else 0}
        return out


def _percentile(ranked: list[int], percent: int) -> int:
    """The nearest-rank percentile of sorted values (0 when there are none)."""
    return ranked[min(len(ranked) - 1, len(ranked) * percent // 100)] if ranked else 0
