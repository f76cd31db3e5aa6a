"""Opening a bot's SQLite store: the file its config names holds the bot's own tables and the client's
cursor. Writable for the bot that runs, read-only for the commands that list what it holds; a file that
cannot be opened is a ConfigError naming the setting."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from oracle.config import ConfigError


def open_store(path: Path, schema: str, setting: str, bot: str) -> sqlite3.Connection:
    """The store at `path` (named by the config's `setting`), with `schema` created; autocommit, WAL."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=10.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(schema)
    except sqlite3.Error as exc:
        raise ConfigError(f"{setting} {path}: not a SQLite file the {bot} can open ({exc}): check that its folder "
                          f"exists and is writable") from None
    return conn


def open_store_read_only(path: Path, table: str, setting: str, bot: str) -> sqlite3.Connection:
    """The store at `path`, for listing while the bot may run: nothing is created or written."""
    if not path.exists():
        raise ConfigError(f"{setting} {path} does not exist: the {bot} has not run with this config yet")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, check_same_thread=False)
        conn.execute(f"SELECT 1 FROM {table} LIMIT 1")
    except sqlite3.Error as exc:
        raise ConfigError(f"{setting} {path}: not the {bot}'s store ({exc}): check {setting}") from None
    return conn


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (BEGIN IMMEDIATE), committed on leaving, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
