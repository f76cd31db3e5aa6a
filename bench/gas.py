"""Fulfillment gas on anvil: `fulfill_single_gas` and `fulfill_batch20_per_response_gas`."""

from __future__ import annotations

import sys

from bench.report import write
from oracle.devnet import LocalStack
from oracle.devnet.gas import BATCH20_PER_RESPONSE_TARGET, SINGLE_TARGET, measure_fulfill_gas


def main() -> int:
    with LocalStack() as stack:
        figures = measure_fulfill_gas(stack)
    targets = {"fulfill_single_gas": SINGLE_TARGET, "fulfill_batch20_per_response_gas": BATCH20_PER_RESPONSE_TARGET}
    missed = [k for k, limit in targets.items() if figures[k] > limit]
    path = write("gas", figures, targets, missed)
    for key, value in figures.items():
        print(f"{key:<36} {value:>8,}  (target <= {targets[key]:,}){'  MISSED' if key in missed else ''}")
    print(f"wrote {path}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
