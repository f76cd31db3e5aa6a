"""A repeated failure is logged when it starts, once a minute while it lasts with a count, and when it ends."""

from __future__ import annotations

import logging

import pytest

from oracle.repeated_failure import RepeatedFailure


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_of_three_minutes_retried_every_second_is_five_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = RepeatedFailure(logging.getLogger("test.outage"), "chain a: node http://127.0.0.1:1", {"chain": "a"},
                             clock=clock)
    caplog.set_level(logging.DEBUG, "test.outage")
    outage.succeeded()  # nothing failing: nothing to say
    for _ in range(180):
        outage.failed("eth_blockNumber: ClientConnectorError")
        clock.now += 1.0
    outage.succeeded()
    outage.succeeded()
    lines = [(r.levelno, r.getMessage(), r.fields) for r in caplog.records]  # type: ignore[attr-defined]
    assert [phase["incident"] for _, _, phase in lines] == ["started", "ongoing", "ongoing", "ended"]
    assert all(level == logging.WARNING for level, _, _ in lines)
    assert lines[0][1] == ("chain a: node http://127.0.0.1:1: failing (eth_blockNumber: ClientConnectorError); "
                           "reported again once a minute while it lasts")
    assert lines[1][1].startswith("chain a: node http://127.0.0.1:1: still failing after 60 s, 60 failures since")
    assert lines[3][1] == "chain a: node http://127.0.0.1:1: recovered after 180 s and 180 failures"
    assert lines[3][2] == {"chain": "a", "incident": "ended", "failures": 180}
    assert not outage.active


def test_a_new_failure_after_recovery_is_a_new_incident(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = RepeatedFailure(logging.getLogger("test.again"), "deployment x (p)", clock=clock)
    caplog.set_level(logging.DEBUG, "test.again")
    outage.failed("503")
    outage.succeeded()
    outage.failed("503")
    assert [r.fields["incident"] for r in caplog.records] == ["started", "ended", "started"]  # type: ignore[attr-defined]
