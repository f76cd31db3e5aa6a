"""Health: percentiles and error rates over the window, the breaker's states, and the columns decisions read
kept equal to those built from the points (what a receipt holds)."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.config import RouterSettings
from oracle.router.catalog import Catalog
from oracle.router.decision import HealthSnapshot
from oracle.router.health import Health
from tests.router.conftest import dep


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_and_error_rate_cover_the_window() -> None:
    catalog = Catalog([dep("a")])
    health = Health(catalog, RouterSettings(health_window=10, breaker_min_calls=100))
    for ms in range(1, 21):  # only the last 10 (11..20) count
        health.record("a", ms, failed=False)
    for _ in range(5):
        health.record("a", 0, failed=True)
    point = health.snapshot()["a"]
    assert (point.p50_ms, point.p90_ms, point.samples) == (16, 20, 10)  # nearest rank over 11..20
    assert point.error_ppm == 500_000  # 5 of the last 10 calls failed
    report = health.report()["a"]
    assert report["calls"] == 25 and report["failures"] == 5 and report["p99_ms"] == 20


def test_breaker_opens_on_the_failed_share_then_probes_once() -> None:
    clock = Clock()
    catalog = Catalog([dep("a")])
    health = Health(catalog, RouterSettings(breaker_window=10, breaker_min_calls=5, breaker_failure_percent=80,
                                            breaker_cooldown=10, breaker_cooldown_max=25), clock)
    for failed in [False, True, True, True, True]:  # 4 of 5 = 80% failed: opens on the fifth
        assert health.allow("a")
        health.record("a", 5, failed)
    assert not health.allow("a") and health.snapshot()["a"].breaker == "open"
    clock.now += 10
    assert health.snapshot()["a"].breaker == "half_open"
    assert health.allow("a") and not health.allow("a")  # one probe at a time
    health.record("a", 5, failed=True)
    clock.now += 10
    assert not health.allow("a")  # the cooldown doubled to 20 s
    clock.now += 10
    assert health.allow("a")
    health.record("a", 5, failed=False)
    assert health.snapshot()["a"].breaker == "closed" and health.allow("a")


def test_a_streak_of_a_few_failures_does_not_open_a_mostly_healthy_breaker() -> None:
    catalog = Catalog([dep("a")])
    health = Health(catalog, RouterSettings(breaker_window=20, breaker_min_calls=5, breaker_failure_percent=80))
    for _ in range(15):
        health.record("a", 5, failed=False)
    for _ in range(6):
        health.record("a", 5, failed=True)
    assert health.allow("a")  # 6 of 20 failed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5_000), st.booleans(), st.integers(0, 40)),
                max_size=200), st.integers(0, 2**32))
def test_kept_columns_equal_columns_built_from_the_points(events: list[tuple[int, int, bool, int]],
                                                          seed: int) -> None:
    rnd = random.Random(seed)
    catalog = Catalog([dep(f"d{i}", expected_latency_ms=rnd.choice([None, 100, 900_000])) for i in range(6)])
    clock = Clock()
    health = Health(catalog, RouterSettings(health_window=10, breaker_window=5, breaker_min_calls=3,
                                            breaker_cooldown=5), clock)
    for i, latency, failed, wait in events:
        clock.now += wait
        if health.allow(f"d{i}"):
            health.record(f"d{i}", latency, failed)
    snapshot = health.snapshot()
    rebuilt = HealthSnapshot(dict(snapshot)).columns(catalog)
    for kept, built in zip(snapshot.columns(catalog), rebuilt, strict=True):
        assert np.array_equal(kept, built)
