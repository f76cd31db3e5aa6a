"""Combining an ensemble's typed answers: the median for numbers, the majority for bools and choices.

Members are in plan order (best first). An even number of numbers takes the lower middle value, so
the result is one a member gave and stays an integer; a tied vote goes to the value of the best-ranked
member among the tied. The receipt shows every member's value and how far they disagreed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from oracle.protocol import ResultSpec, ResultType
from oracle.results import decode_result


@dataclass(frozen=True)
class Combined:
    result: bytes  # ABI bytes of the combined value (a member's own bytes)
    record: dict[str, Any]  # method, members' values, the value chosen, agreement


def combine(spec: ResultSpec, members: list[tuple[str, bytes]]) -> Combined:
    """`members`: (deployment id, ABI result bytes) in plan order."""
    values = [decode_result(spec, data) for _, data in members]
    if spec.kind in (ResultType.UINT, ResultType.INT):
        method = "median"
        chosen = sorted(values)[(len(values) - 1) // 2]
        spread = max(values) - min(values)
    else:
        method = "majority"
        votes = Counter(values)
        top = max(votes.values())
        chosen = next(v for v in values if votes[v] == top)  # plan order breaks ties
        spread = len(values) - top
    index = values.index(chosen)
    record = {"method": method, "value": chosen,
              "members": [{"deployment": d, "value": v} for (d, _), v in zip(members, values, strict=True)],
              "agree": sum(1 for v in values if v == chosen), "disagreement": spread}
    return Combined(members[index][1], record)
