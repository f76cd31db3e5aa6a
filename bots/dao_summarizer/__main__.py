"""DAO governance summaries: every proposal on the configured Governors summarised by the oracle with a
risk score, served as a JSON feed and a page.

    python -m bots.dao_summarizer --config summarizer.toml                  # run (the default command)
    python -m bots.dao_summarizer deploy --config summarizer.toml --governor NAME
    python -m bots.dao_summarizer proposals --config summarizer.toml        # what the book holds

The key that pays for summaries is read from the environment variable the config's `bot.key_env` names.

exit codes:
  0  run: stopped by SIGINT or SIGTERM; deploy: deployed or already in place; proposals: listed
  1  the node does not answer, a transaction failed, or the bot failed
  2  a bad config, key, store or argument: one line saying what to change
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bots.command_line import exit_code, parser_with_run, run_until_signalled, terminal_safe, with_default_run
from bots.dao_summarizer.book import Book
from bots.dao_summarizer.config import SummarizerConfig, load_config
from bots.dao_summarizer.deploy import deploy
from bots.dao_summarizer.service import SummarizerService
from bots.keys import load_key
from oracle.log_format import configure_logging

COMMANDS = ("run", "deploy", "proposals")
log = logging.getLogger("bots.dao_summarizer")


def _say(line: str) -> None:
    print(terminal_safe(line), flush=True)


def _key(config: SummarizerConfig) -> bytes:
    return load_key(config.bot.key_env, "bot.key_env", "the account that pays for the summaries")


def _run(config: SummarizerConfig) -> int:
    run_until_signalled(SummarizerService(config, _key(config), _say).run)
    log.info("summarizer stopped")
    return 0


def _proposals(config: SummarizerConfig) -> int:
    if not config.bot.store.exists():
        print(f"no store at {config.bot.store} yet: the bot has not run with this config")
        return 0
    book = Book.open_read_only(config.bot.store)
    try:
        for p in reversed(book.all()):
            risk = "-" if p.risk is None else str(p.risk)
            detail = p.summary if p.state == "summarized" else (p.reason or "")
            print(terminal_safe(f"{p.proposal_id}\t{p.state}\trisk {risk}\t{p.title}\t{detail}"))
        return 0
    finally:
        book.close()


def main(argv: Sequence[str] | None = None) -> int:
    args_in = with_default_run(argv, COMMANDS)
    parser, commands = parser_with_run("python -m bots.dao_summarizer", __doc__,
                                       "watch the Governors, ask for summaries, serve the feed (the default)")
    dep = commands.add_parser("deploy", help="deploy a GovernanceSummarizer for one Governor; its address is "
                                             "written into the config")
    dep.add_argument("--config", required=True, type=Path)
    dep.add_argument("--governor", required=True, help="the name of its [[governors]] table")
    listing = commands.add_parser("proposals", help="list the proposals the bot's store holds (read-only)")
    listing.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(args_in)

    def command() -> int:
        config = load_config(args.config)
        if args.command == "run":
            configure_logging(args.log_level, args.log_format)
            return _run(config)
        configure_logging("warning")
        if args.command == "deploy":
            asyncio.run(deploy(config, args.config, args.governor, _key(config), _say))
            return 0
        return _proposals(config)
    return exit_code(command, "dao_summarizer")

if __name__ == "__main__":
    sys.exit(main())
