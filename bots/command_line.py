"""The bots' command lines: `python -m bots.NAME [COMMAND] --config FILE`, where `run` is the default
command and takes the log options."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from oracle.client import NODE_ERRORS, ClientError
from oracle.config import ConfigError
from oracle.log_format import FORMATS


def with_default_run(argv: Sequence[str] | None, commands: Sequence[str]) -> list[str]:
    """The arguments, with `run` put first when no command is named."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in (*commands, "-h", "--help"):
        args.insert(0, "run")
    return args


def parser_with_run(prog: str, doc: str | None, run_help: str) -> tuple[argparse.ArgumentParser, Any]:
    """A parser whose `run` subcommand takes --config, --log-level and --log-format; returns it and its
    subparsers, for the bot's other commands."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help=run_help)
    run.add_argument("--config", required=True, type=Path, help="the bot's TOML config")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="text", choices=FORMATS)
    return parser, commands


def terminal_safe(line: str) -> str:
    """`line` with control characters (escape sequences, newlines) shown as `\\xNN`: a proposal title
    or a model's answer printed by a bot cannot move the cursor, retitle the terminal or break the line."""
    return "".join(c if unicodedata.category(c)[0] != "C" or c == "\t" else repr(c)[1:-1] for c in line)


def exit_code(work: Callable[[], int], bot: str) -> int:
    """Run a command; a config, key or argument problem is one line and exit 2, a node that does not
    answer or a refused transaction one line and exit 1, never a traceback."""
    try:
        return work()
    except ConfigError as exc:  # one line saying what to change
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"{bot}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except NODE_ERRORS as exc:
        print(f"{bot}: the node stopped answering ({type(exc).__name__}: {' '.join(str(exc).split())}); start "
              f"again once it is back: it resumes where it stopped", file=sys.stderr)
        return 1


def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """`run(stop)` in a new event loop, `stop` set by SIGINT or SIGTERM."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(main())
