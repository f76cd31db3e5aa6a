"""Fulfillment gas on anvil: `fulfill_single_gas` and `fulfill_batch20_per_response_gas`."""

from __future__ import annotations

import sys

from bench.report import finish
from oracle.devnet import LocalStack
from oracle.devnet.gas import BATCH20_PER_RESPONSE_TARGET, SINGLE_TARGET, measure_fulfill_gas


def main() -> int:
    with LocalStack() as stack:
        figures = measure_fulfill_gas(stack)
    # the daemon sends a lone response with fulfillBatch: it is held to the single target too
    limits = {"fulfill_single_gas": SINGLE_TARGET, "fulfill_batch1_gas": SINGLE_TARGET,
              "fulfill_batch20_per_response_gas": BATCH20_PER_RESPONSE_TARGET}
    missed = [k for k, limit in limits.items() if figures[k] > limit]
    return finish("gas", figures, {k: f"<= {v}" for k, v in limits.items()}, missed)


if __name__ == "__main__":
    sys.exit(main())
