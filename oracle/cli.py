"""Command line: `oracle dev` runs the embedded local stack and shows a request flowing to fulfillment."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from oracle import __version__


def _dev(args: argparse.Namespace) -> int:
    from oracle.devnet import LocalStack
    from oracle.devnet.demo import run_demo

    with LocalStack() as stack:
        result = run_demo(stack)
    return 0 if result["paused"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oracle", description=__doc__)
    parser.add_argument("--version", action="version", version=f"oracle {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="start anvil, deploy, send a request and fulfill it")
    dev.set_defaults(handler=_dev)
    args = parser.parse_args(argv)
    handler = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
