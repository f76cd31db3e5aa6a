"""The trading rule: what a risk score does to a position, with hysteresis so a score wavering near a
bound does not trade back and forth.

    score >= close_above                        -> close  (to zero)
    score >= reduce_above while open            -> reduce (to half)
    score <= reopen_below while reduced/closed  -> reopen (to full)
    anything else                               -> hold   (between the bounds nothing changes)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PositionState(enum.StrEnum):
    OPEN = "open"  # the full position
    REDUCED = "reduced"  # half of it
    CLOSED = "closed"  # nothing


class Action(enum.StrEnum):
    CLOSE = "close"
    REDUCE = "reduce"
    REOPEN = "reopen"
    HOLD = "hold"


@dataclass(frozen=True)
class Bounds:
    reopen_below: int
    reduce_above: int
    close_above: int


def decide(state: PositionState, score: int, bounds: Bounds) -> tuple[Action, PositionState]:
    """The action a score calls for, and the state it leaves the position in."""
    if score >= bounds.close_above:
        return Action.CLOSE, PositionState.CLOSED  # again when closed: acting on it is harmless
    if score >= bounds.reduce_above and state == PositionState.OPEN:
        return Action.REDUCE, PositionState.REDUCED
    if score <= bounds.reopen_below and state != PositionState.OPEN:
        return Action.REOPEN, PositionState.OPEN
    return Action.HOLD, state


def target_wei(state: PositionState, position_wei: int) -> int:
    """What the agent's deposit in the vault should be in this state."""
    return {PositionState.OPEN: position_wei, PositionState.REDUCED: position_wei // 2,
            PositionState.CLOSED: 0}[state]
