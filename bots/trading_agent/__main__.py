"""Trading agent: asks its RiskSentinels for a risk score every `interval` seconds and keeps a position
in each sentinel's vault by the scores: reduced to half above `reduce_above`, closed above
`close_above`, reopened to full at or below `reopen_below`, held in between. Each decision is one row in
its store and one printed line. It acts on vaults only on the local chain (31337); elsewhere it trades
on paper (decisions recorded and printed, no deposit or withdrawal sent).

    python -m bots.trading_agent --config trading_agent.toml              # run (the default command)
    python -m bots.trading_agent decisions --config trading_agent.toml    # list the decisions recorded

exit codes:
  0  run: stopped by SIGINT or SIGTERM; decisions: listed
  1  run: the node does not answer or the agent failed
  2  a bad config, key, sentinel or store: one line saying what to change
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from web3.exceptions import Web3Exception

from bots.trading_agent.book import Book
from bots.trading_agent.config import TradingConfig, load_config
from bots.trading_agent.service import TradingAgent
from bots.trading_agent.wallet import load_key
from oracle.client import ClientError
from oracle.config import ConfigError
from oracle.log_format import FORMATS, configure_logging

COMMANDS = ("run", "decisions")
log = logging.getLogger("bots.trading_agent")


def _run(config: TradingConfig) -> int:
    key = load_key(config.agent.key_env)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await TradingAgent(config, key).run(stop)

    try:
        asyncio.run(main())
    except (ClientError, TimeoutError, OSError, aiohttp.ClientError, Web3Exception) as exc:
        print(f"trading agent: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    log.info("trading agent stopped")
    return 0


def _decisions(config: TradingConfig) -> int:
    book = Book.open_read_only(config.agent.store)
    try:
        decisions = book.decisions()
        for d in decisions:
            when = datetime.datetime.fromtimestamp(d.decided_at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            print(f"{when}\tblock {d.block_number}\trequest 0x{d.request_id.hex()}\t{d.line()}")
        for r in book.retractions():
            when = datetime.datetime.fromtimestamp(r.retracted_at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            print(f"{when}\tretracted\t{r.line()}")
        if not decisions:
            print("no decisions yet")
        return 0
    finally:
        book.close()


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or args_in[0] not in (*COMMANDS, "-h", "--help"):
        args_in.insert(0, "run")
    parser = argparse.ArgumentParser(prog="python -m bots.trading_agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="ask for risk checks and trade by them (the default)")
    run.add_argument("--config", required=True, type=Path, help="the agent's TOML config")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="text", choices=FORMATS)
    listing = commands.add_parser(
        "decisions", help="list the decisions recorded (read-only)",
        description="List every decision recorded, oldest first (time, block, request id, then the line the "
                    "agent printed), and the results a reorg removed. Reads the store only; the agent may be "
                    "running meanwhile.")
    listing.add_argument("--config", required=True, type=Path, help="the agent's TOML config")
    args = parser.parse_args(args_in)
    try:
        config = load_config(args.config)
        if args.command == "run":
            configure_logging(args.log_level, args.log_format)
            logging.getLogger("web3.providers").setLevel(logging.WARNING)  # a line at each disconnect otherwise
            return _run(config)
        configure_logging("warning")
        return _decisions(config)
    except ConfigError as exc:  # one line saying what to change
        print(" ".join(str(exc).split("\n")), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
