"""Run every benchmark; exit non-zero if any target is missed."""

from __future__ import annotations

import sys

from bench import client, daemon, gas, gateway, router, x402


def _daemon() -> int:
    return daemon.main([])


def _router() -> int:
    return router.main([])


def _x402() -> int:
    return x402.main([])


def _client() -> int:
    return client.main([])


def _gateway() -> int:
    return gateway.main([])


BENCHMARKS = {"gas": gas.main, "router": _router, "x402": _x402, "daemon": _daemon, "client": _client,
              "gateway": _gateway}


def main() -> int:
    failed = [name for name, run in BENCHMARKS.items() if run() != 0]
    if failed:
        print(f"targets missed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
