"""The relay's outbox: one row per message and endpoint, in a SQLite file it shares with the client's
cursor (`SqliteCursor`, whose tables are `meta`, `blocks`, `given` and `open`; the relay's are `outbox`
and `relay_start`).

A message is written (committed) before the client is asked for the next item, so nothing taken from the
chain is lost; (endpoint, webhook id) is UNIQUE, so the item the client gives again after a crash adds
nothing. A message's state is `pending` until a receiver takes it (`delivered`) or the relay gives up on
it (`dead`); a dead one sent again by an operator may still become `delivered`. Delivered rows are
forgotten after a week (`forget_delivered`); dead ones stay until an operator sends them.

    outbox = Outbox.open(Path("relay.sqlite"))
    outbox.add(payload, ["alerts"], time.time())   # the endpoints it is new for
    message = outbox.next_due("alerts", time.time())
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bots.relay.payload import Payload
from bots.store import immediate, open_store
from oracle.store.states import ForbiddenTransition, Machine


class MessageState(enum.StrEnum):
    PENDING = "pending"  # to be sent, now or at its next attempt time
    DELIVERED = "delivered"  # a receiver answered 2xx
    DEAD = "dead"  # refused, redirected, or failing for longer than the endpoint's max_retry_hours


M = MessageState
MESSAGE = Machine("webhook message", MessageState, frozenset({M.PENDING}),
                  frozenset({(M.PENDING, M.DELIVERED), (M.PENDING, M.DEAD), (M.DEAD, M.DELIVERED)}),
                  terminal=frozenset({M.DELIVERED}))


@dataclass(frozen=True)
class Message:
    id: int  # the outbox order
    endpoint: str
    webhook_id: str
    event_id: str
    kind: str  # settled | retracted
    body: bytes
    state: MessageState
    attempts: int
    created_at: float
    first_attempt_at: float | None
    next_attempt_at: float
    last_status: int | None
    last_error: str


@dataclass(frozen=True)
class Attempt:
    """One try at sending a message: the receiver's status, or why there was none."""

    started: float
    status: int | None  # None: no answer (connection refused, timeout, ...)
    error: str  # "" when delivered
    retry_after: float | None = None  # seconds, from a Retry-After header


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    first_attempt_at REAL,
    last_attempt_at REAL,
    next_attempt_at REAL NOT NULL,
    last_status INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    UNIQUE (endpoint, webhook_id)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (endpoint, state, id);
CREATE INDEX IF NOT EXISTS outbox_by_event ON outbox (endpoint, event_id, state);
CREATE TABLE IF NOT EXISTS relay_start (block INTEGER NOT NULL);
"""
_COLUMNS = ("id, endpoint, webhook_id, event_id, kind, body, state, attempts, created_at, first_attempt_at, "
            "next_attempt_at, last_status, last_error")
# A pending message waits while an earlier one about the same settlement is pending on its endpoint (a
# retraction never overtakes what it retracts); messages about other settlements never wait for it.
_READY = ("state = 'pending' AND NOT EXISTS (SELECT 1 FROM outbox AS earlier WHERE earlier.endpoint = "
          "outbox.endpoint AND earlier.event_id = outbox.event_id AND earlier.state = 'pending' AND "
          "earlier.id < outbox.id)")


class Outbox:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> Outbox:
        return cls(open_store(path, _SCHEMA, "store.path", "relay"))

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------ where following starts

    def start_block(self) -> int | None:
        row = self.conn.execute("SELECT block FROM relay_start").fetchone()
        return None if row is None else int(row[0])

    def set_start_block(self, block: int) -> None:
        """Kept so a relay stopped before its first pass finished starts from the same block again."""
        self.conn.execute("INSERT INTO relay_start (block) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM relay_start)",
                          (block,))

    # ------------------------------------------------------------ writing

    def add(self, payload: Payload, endpoints: list[str], now: float) -> list[str]:
        """One row per endpoint, in one commit; the endpoints it was new for (a repeat adds nothing)."""
        added = []
        with immediate(self.conn):
            for endpoint in endpoints:
                cursor = self.conn.execute(
                    "INSERT OR IGNORE INTO outbox (endpoint, webhook_id, event_id, kind, body, state, created_at, "
                    "next_attempt_at) VALUES (?,?,?,?,?,?,?,?)",
                    (endpoint, payload.webhook_id, payload.event_id, payload.kind, payload.body, M.PENDING, now, now))
                if cursor.rowcount:
                    added.append(endpoint)
        return added

    def record(self, message: Message, attempt: Attempt, to: MessageState, next_attempt_at: float) -> Message:
        """The outcome of one attempt: the one place a message's state is written."""
        with immediate(self.conn):
            row = self.conn.execute("SELECT state FROM outbox WHERE id=?", (message.id,)).fetchone()
            if row is None:
                raise ForbiddenTransition(f"webhook message: no message {message.id} in the outbox")
            MESSAGE.check([MessageState(row[0])], to)
            self.conn.execute(
                "UPDATE outbox SET state=?, attempts=attempts+1, first_attempt_at=COALESCE(first_attempt_at, ?), "
                "last_attempt_at=?, next_attempt_at=?, last_status=?, last_error=? WHERE id=?",
                (to, attempt.started, attempt.started, next_attempt_at, attempt.status, attempt.error, message.id))
        updated = self.get(message.id)
        assert updated is not None
        return updated

    def forget_delivered(self, before: float) -> int:
        """Delivered messages last sent before `before` go; how many. (A repeat from the client is only
        ever of the item in hand, so old rows are not needed to drop one.)"""
        return self.conn.execute("DELETE FROM outbox WHERE state='delivered' AND last_attempt_at<?",
                                 (before,)).rowcount

    # ------------------------------------------------------------ reading

    def next_due(self, endpoint: str, now: float) -> Message | None:
        """The first message in outbox order that is due and waits for no earlier one."""
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE endpoint=? AND {_READY} AND next_attempt_at<=? "
                                f"ORDER BY id LIMIT 1", (endpoint, now)).fetchone()
        return None if row is None else _message(row)

    def next_attempt_at(self, endpoint: str) -> float | None:
        """When the endpoint's next message falls due (None: nothing pending)."""
        row = self.conn.execute(f"SELECT MIN(next_attempt_at) FROM outbox WHERE endpoint=? AND {_READY}",
                                (endpoint,)).fetchone()
        return None if row[0] is None else float(row[0])

    def get(self, message_id: int) -> Message | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id=?", (message_id,)).fetchone()
        return None if row is None else _message(row)

    def dead(self) -> list[Message]:
        return [_message(r) for r in self.conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE state='dead' ORDER BY id")]


def _message(row: Any) -> Message:
    (id_, endpoint, webhook_id, event_id, kind, body, state, attempts, created, first, next_at, status, error) = row
    return Message(int(id_), endpoint, webhook_id, event_id, kind, bytes(body), MessageState(state), int(attempts),
                   float(created), None if first is None else float(first), float(next_at),
                   None if status is None else int(status), error)
