"""The agent's book: the state of each asset's position and one row per decision, in a SQLite file it
shares with the client's cursor (`SqliteCursor`, whose tables are `meta`, `blocks`, `given` and
`open`; the book's are `positions`, `decisions`, `retractions` and `agent_start`).

A decision is keyed by the request id it answers (UNIQUE), and it is written together with the position
change it makes, in one commit, before anything is sent: a decision that acts on a vault is `pending`
until `finish` records what was done. After a crash, the result the client gives again finds its row
and is not decided twice; a pending one is finished from the target it recorded.

    book = Book.open(Path("trading_agent.sqlite"))
    state = book.position("ETH")                     # open, reduced or closed
    if book.record(decision, PositionState.REDUCED): # False: decided before
        ...act, then book.finish(request_id, "withdrew ... wei", tx_hash)
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bots.store import immediate, open_store, open_store_read_only
from bots.trading_agent.rule import PositionState

PENDING = "pending"  # the outcome of a decision whose acting is not finished

_SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    asset TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id BLOB NOT NULL UNIQUE,
    asset TEXT NOT NULL,
    score INTEGER,
    model TEXT NOT NULL DEFAULT '',
    receipt_hash TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    target_wei TEXT,
    tx_hash TEXT NOT NULL DEFAULT '',
    block_number INTEGER NOT NULL,
    decided_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS retractions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id BLOB NOT NULL,
    asset TEXT NOT NULL,
    event TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash BLOB NOT NULL,
    retracted_at REAL NOT NULL,
    UNIQUE (request_id, event, block_hash)
);
CREATE TABLE IF NOT EXISTS agent_start (block INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS checks (asset TEXT PRIMARY KEY, asked_at REAL NOT NULL);
"""
_COLUMNS = ("request_id, asset, score, model, receipt_hash, action, outcome, target_wei, tx_hash, block_number, "
            "decided_at")


@dataclass(frozen=True)
class Decision:
    request_id: bytes
    asset: str
    score: int | None  # None: the check gave no score
    model: str  # the answer's model_used, as text when it is text, else 0x-hex
    receipt_hash: str  # 0x-hex, "" when there was none
    action: str  # close | reduce | reopen | hold | no score | ignored
    outcome: str  # what was done, or why nothing was; "pending" while acting
    target_wei: int | None  # the deposit acted towards (None: the decision does not act)
    tx_hash: str  # the deposit's or withdrawal's, "" when none was sent
    block_number: int  # of the settlement decided on
    decided_at: float

    def line(self) -> str:
        """One line: `ETH score 87 model ... receipt 0x.. -> close: withdrew 10 wei (tx 0x..)`."""
        head = f"{self.asset} " + (f"score {self.score} model {self.model or '-'} receipt {self.receipt_hash or '-'}"
                                   if self.score is not None else f"request 0x{self.request_id.hex()}")
        tail = f" (tx {self.tx_hash})" if self.tx_hash else ""
        return f"{head} -> {self.action}: {self.outcome}{tail}"


@dataclass(frozen=True)
class Retraction:
    request_id: bytes
    asset: str
    event: str
    block_number: int
    retracted_at: float

    def line(self) -> str:
        return (f"{self.asset} request 0x{self.request_id.hex()}: its {self.event} result in block {self.block_number} "
                f"was removed by a reorg; its decision stands and is not made again when the result returns")


class Book:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> Book:
        return cls(open_store(path, _SCHEMA, "agent.store", "agent"))

    @classmethod
    def open_read_only(cls, path: Path) -> Book:
        """For listing while the agent may be running: nothing is created or written."""
        return cls(open_store_read_only(path, "decisions", "agent.store", "agent"))

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------ where following starts

    def start_block(self) -> int | None:
        row = self.conn.execute("SELECT block FROM agent_start").fetchone()
        return None if row is None else int(row[0])

    def set_start_block(self, block: int) -> None:
        """Kept so an agent stopped before its first pass finished starts from the same block again."""
        self.conn.execute("INSERT INTO agent_start (block) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM agent_start)",
                          (block,))

    # ------------------------------------------------------------ risk checks

    def checked(self, asset: str, at: float) -> None:
        self.conn.execute("INSERT INTO checks (asset, asked_at) VALUES (?, ?) ON CONFLICT (asset) "
                          "DO UPDATE SET asked_at = excluded.asked_at", (asset, at))

    def last_check(self) -> float | None:
        """When the latest risk check of any asset was sent (they are sent together)."""
        row = self.conn.execute("SELECT MAX(asked_at) FROM checks").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # ------------------------------------------------------------ positions

    def position(self, asset: str) -> PositionState:
        """The asset's state; an asset new to the book starts open (the agent then opens it)."""
        self.conn.execute("INSERT OR IGNORE INTO positions VALUES (?,?,?)", (asset, PositionState.OPEN, time.time()))
        row = self.conn.execute("SELECT state FROM positions WHERE asset=?", (asset,)).fetchone()
        return PositionState(row[0])

    # ------------------------------------------------------------ decisions

    def record(self, decision: Decision, state: PositionState | None) -> bool:
        """The decision and the asset's new state (None: unchanged), in one commit; False when a decision
        on this request is already recorded (nothing is written then)."""
        with immediate(self.conn):
            cursor = self.conn.execute(
                f"INSERT OR IGNORE INTO decisions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (decision.request_id, decision.asset, decision.score, decision.model, decision.receipt_hash,
                 decision.action, decision.outcome, None if decision.target_wei is None else str(decision.target_wei),
                 decision.tx_hash, decision.block_number, decision.decided_at))
            if cursor.rowcount and state is not None:
                self.conn.execute("INSERT OR REPLACE INTO positions VALUES (?,?,?)",
                                  (decision.asset, state, decision.decided_at))
        return bool(cursor.rowcount)

    def finish(self, request_id: bytes, outcome: str, tx_hash: str) -> Decision:
        self.conn.execute("UPDATE decisions SET outcome=?, tx_hash=? WHERE request_id=?",
                          (outcome, tx_hash, request_id))
        decision = self.decision(request_id)
        assert decision is not None
        return decision

    def decision(self, request_id: bytes) -> Decision | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM decisions WHERE request_id=?", (request_id,)).fetchone()
        return None if row is None else _decision(row)

    def pending(self) -> list[Decision]:
        return [_decision(r) for r in self.conn.execute(
            f"SELECT {_COLUMNS} FROM decisions WHERE outcome=? ORDER BY id", (PENDING,))]

    def decisions(self) -> list[Decision]:
        return [_decision(r) for r in self.conn.execute(f"SELECT {_COLUMNS} FROM decisions ORDER BY id")]

    # ------------------------------------------------------------ retractions

    def retract(self, retraction: Retraction, block_hash: bytes) -> bool:
        """False when this retraction is recorded already (the client gave it again after a crash)."""
        return bool(self.conn.execute(
            "INSERT OR IGNORE INTO retractions (request_id, asset, event, block_number, block_hash, retracted_at) "
            "VALUES (?,?,?,?,?,?)", (retraction.request_id, retraction.asset, retraction.event,
                                     retraction.block_number, block_hash, retraction.retracted_at)).rowcount)

    def retractions(self) -> list[Retraction]:
        return [Retraction(bytes(r[0]), r[1], r[2], int(r[3]), float(r[4])) for r in self.conn.execute(
            "SELECT request_id, asset, event, block_number, retracted_at FROM retractions ORDER BY id")]


def _decision(row: Any) -> Decision:
    (request_id, asset, score, model, receipt, action, outcome, target, tx_hash, block, at) = row
    return Decision(bytes(request_id), asset, None if score is None else int(score), model, receipt, action, outcome,
                    None if target is None else int(target), tx_hash, int(block), float(at))
