"""Webhook relay: pushes the oracle's settled results (and their retractions after a reorg) to HTTP
endpoints, signed as Standard Webhooks (https://www.standardwebhooks.com), each endpoint with its own
filter, secret and retry window.

    python -m bots.relay --config relay.toml                       # run (the default command)
    python -m bots.relay dead-letters --config relay.toml          # list messages given up on
    python -m bots.relay dead-letters --config relay.toml --resend 7 9    # or --all: one attempt each now

exit codes:
  0  run: stopped by SIGINT or SIGTERM; dead-letters: listed, or every message sent again was delivered
  1  run: the node does not answer or the relay failed; dead-letters: a message sent again is still dead
  2  a bad config, secret, store or argument: one line saying what to change
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bots.command_line import exit_code, parser_with_run, run_until_signalled, with_default_run
from bots.relay.config import RelayConfig, load_config
from bots.relay.dead_letters import describe, resend
from bots.relay.outbox import Message, Outbox
from bots.relay.service import RelayService
from bots.relay.signing import load_keys
from oracle.config import ConfigError
from oracle.log_format import configure_logging

COMMANDS = ("run", "dead-letters")
log = logging.getLogger("bots.relay")


def _run(config: RelayConfig) -> int:
    keys = {e.name: load_keys(e.name, e.secret_env) for e in config.endpoints}  # all of them, before anything
    run_until_signalled(RelayService(config, keys).run)
    log.info("relay stopped")
    return 0


def _dead_letters(config: RelayConfig, args: argparse.Namespace) -> int:
    outbox = Outbox.open(config.store.path)
    try:
        dead = outbox.dead()
        if args.resend is None and not args.all:
            for message in dead:
                print(describe(message))
            if not dead:
                print("no dead messages")
            return 0
        chosen: list[Message] = dead
        if args.resend is not None:
            by_id = {m.id: m for m in dead}
            unknown = [str(i) for i in args.resend if i not in by_id]
            if unknown:
                raise ConfigError(f"no dead message with id {', '.join(unknown)}: the ids are the first column of "
                                  f"`python -m bots.relay dead-letters --config {args.config}`")
            chosen = [by_id[i] for i in dict.fromkeys(args.resend)]
        if not chosen:
            print("no dead messages")
            return 0
        still_dead = asyncio.run(resend(config, outbox, chosen, print))
        return 1 if still_dead else 0
    finally:
        outbox.close()


def main(argv: Sequence[str] | None = None) -> int:
    args_in = with_default_run(argv, COMMANDS)
    parser, commands = parser_with_run("python -m bots.relay", __doc__,
                                       "follow the oracle and push results (the default)")
    dead = commands.add_parser(
        "dead-letters", help="list dead messages, or send them again",
        description="List dead messages (id, endpoint, webhook id, attempts, last status, the event, the error), "
                    "or send some again now: one attempt each, a failure staying dead with its new error. "
                    "Exit 0 when listed or all delivered, 1 when one is still dead, 2 on a bad config or id.")
    dead.add_argument("--config", required=True, type=Path, help="the relay's TOML config")
    which = dead.add_mutually_exclusive_group()
    which.add_argument("--resend", type=int, nargs="+", metavar="ID", help="send these dead messages again")
    which.add_argument("--all", action="store_true", help="send every dead message again")
    args = parser.parse_args(args_in)

    def command() -> int:
        config = load_config(args.config)
        if args.command == "run":
            configure_logging(args.log_level, args.log_format)
            return _run(config)
        configure_logging("warning")
        return _dead_letters(config, args)
    return exit_code(command, "relay")

if __name__ == "__main__":
    sys.exit(main())
