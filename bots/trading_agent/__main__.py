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

import datetime
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bots.command_line import exit_code, parser_with_run, run_until_signalled, with_default_run
from bots.keys import load_key
from bots.trading_agent.book import Book
from bots.trading_agent.config import TradingConfig, load_config
from bots.trading_agent.service import TradingAgent
from oracle.log_format import configure_logging

COMMANDS = ("run", "decisions")
log = logging.getLogger("bots.trading_agent")


def _run(config: TradingConfig) -> int:
    key = load_key(config.agent.key_env, "agent.key_env", "the account that owns the sentinels")
    run_until_signalled(TradingAgent(config, key).run)
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
    args_in = with_default_run(argv, COMMANDS)
    parser, commands = parser_with_run("python -m bots.trading_agent", __doc__,
                                       "ask for risk checks and trade by them (the default)")
    listing = commands.add_parser(
        "decisions", help="list the decisions recorded (read-only)",
        description="List every decision recorded, oldest first (time, block, request id, then the line the "
                    "agent printed), and the results a reorg removed. Reads the store only; the agent may be "
                    "running meanwhile.")
    listing.add_argument("--config", required=True, type=Path, help="the agent's TOML config")
    args = parser.parse_args(args_in)

    def command() -> int:
        config = load_config(args.config)
        if args.command == "run":
            configure_logging(args.log_level, args.log_format)
            return _run(config)
        configure_logging("warning")
        return _decisions(config)
    return exit_code(command, "trading agent")

if __name__ == "__main__":
    sys.exit(main())
