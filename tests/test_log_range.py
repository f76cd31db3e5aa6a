"""The eth_getLogs range: halved on a failure, grown back on success, but not into a size that failed
within the last minute (a watcher growing straight back into a timeout pays one per block and falls
behind for good); a single block that fails is the node's failure, not the range's."""

from __future__ import annotations

from oracle.chain.log_range import REMEMBER_FAILURE, LogRange


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_halved_on_failure_and_grown_back_on_success() -> None:
    ranges = LogRange(100, Clock())
    assert ranges.end(10, 1_000) == 109 and ranges.end(10, 50) == 50
    assert ranges.failed(10, 109) and ranges.size == 50
    ranges.succeeded()
    assert ranges.size == 99  # doubled, but short of the size that just failed


def test_a_size_that_failed_is_not_asked_for_again_within_a_minute() -> None:
    clock = Clock()
    ranges = LogRange(8, clock)
    assert ranges.failed(0, 7) and ranges.failed(0, 3) and ranges.failed(0, 1)
    for _ in range(10):
        ranges.succeeded()
        assert ranges.size == 1
    clock.now += REMEMBER_FAILURE + 1
    ranges.succeeded()
    assert ranges.size == 2  # tried again: a node's limits can change
    ranges.succeeded()
    assert ranges.size == 4


def test_a_single_block_that_fails_is_not_the_ranges_fault() -> None:
    ranges = LogRange(8, Clock())
    assert not ranges.failed(5, 5)
    assert ranges.size == 8
