"""The summarizer's SQLite book: the proposals seen on each Governor, where each one's summary stands,
the block each Governor's scan has reached, and the daily digests. The client's results cursor lives in
the same file (`oracle.client.SqliteCursor`).

A proposal's state moves only along `TRANSITIONS`:

    new --ask--> asked --success--> summarized
                   |                    |
                   +--failure--> failed +--(a reorg retracts the answer)--> asked
                                   |
                                   +--re-ask (once, larger fee)--> asked
                                   +--(asked twice already)--> given_up --(a reorg retracts)--> asked

`summarized` can also be reached from `new` or `failed` when the chain already holds a summary (asked
by someone else, or by this bot before a crash it did not record).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bots.store import immediate, open_store, open_store_read_only

NEW, ASKED, SUMMARIZED, FAILED, GIVEN_UP = "new", "asked", "summarized", "failed", "given_up"
TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset({ASKED, SUMMARIZED, FAILED}),
    ASKED: frozenset({SUMMARIZED, FAILED, ASKED}),
    FAILED: frozenset({ASKED, SUMMARIZED, GIVEN_UP}),
    SUMMARIZED: frozenset({ASKED}),
    GIVEN_UP: frozenset({SUMMARIZED, ASKED}),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (governor TEXT PRIMARY KEY, next_block INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS proposals (
    governor TEXT NOT NULL,
    proposal_id TEXT NOT NULL,             -- decimal: a uint256
    summarizer TEXT NOT NULL,
    block INTEGER NOT NULL,
    proposer TEXT NOT NULL,
    description TEXT NOT NULL,
    actions TEXT NOT NULL,                 -- JSON: targets, values, calldatas (hex)
    state TEXT NOT NULL,
    request_id TEXT,                       -- the latest ask's
    summary TEXT, risk INTEGER, rationale TEXT, model TEXT, receipt_hash TEXT,
    answer_event TEXT,                     -- the settlement's event id, to match a retraction
    reason TEXT,                           -- why the latest ask failed
    seen_at REAL NOT NULL,
    summarized_at REAL,
    PRIMARY KEY (governor, proposal_id)
);
CREATE INDEX IF NOT EXISTS proposals_by_request ON proposals (request_id);
CREATE TABLE IF NOT EXISTS digests (day TEXT PRIMARY KEY, doc TEXT NOT NULL);
"""


class BadTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class Proposal:
    governor: str
    proposal_id: int
    summarizer: str
    block: int
    proposer: str
    description: str
    targets: list[str]
    values: list[int]
    calldatas: list[bytes]
    state: str = NEW
    request_id: bytes | None = None
    summary: str | None = None
    risk: int | None = None
    rationale: str | None = None
    model: str | None = None
    receipt_hash: bytes | None = None
    reason: str | None = None
    summarized_at: float | None = None

    @property
    def title(self) -> str:
        """The description's first line, without a Markdown heading's #s."""
        first = self.description.strip().splitlines()[0] if self.description.strip() else ""
        return first.lstrip("#").strip()[:200] or f"proposal {self.proposal_id}"

    def feed_entry(self) -> dict[str, Any]:
        return {"governor": self.governor, "proposal_id": str(self.proposal_id), "block": self.block,
                "proposer": self.proposer, "title": self.title, "description": self.description,
                "summary": self.summary, "risk": self.risk, "rationale": self.rationale, "model": self.model,
                "request_id": _hex(self.request_id), "receipt_hash": _hex(self.receipt_hash),
                "summarized_at": self.summarized_at}


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value.removeprefix("0x"))


class Book:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def open(cls, path: Path) -> Book:
        return cls(open_store(path, _SCHEMA, "bot.store", "summarizer"))

    @classmethod
    def open_read_only(cls, path: Path) -> Book:
        """For listing while the bot may be running: nothing is created or written."""
        return cls(open_store_read_only(path, "proposals", "bot.store", "summarizer"))

    def close(self) -> None:
        self.db.close()

    # ---- scanning

    def next_block(self, governor: str) -> int | None:
        row = self.db.execute("SELECT next_block FROM scans WHERE governor = ?", (governor.lower(),)).fetchone()
        return None if row is None else int(row[0])

    def scanned(self, governor: str, proposals: list[Proposal], next_block: int) -> list[Proposal]:
        """Record the proposals found up to `next_block` (one transaction, so a crash repeats the scan and
        finds them again); returns the ones not seen before."""
        added: list[Proposal] = []
        with immediate(self.db):
            for p in proposals:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO proposals (governor, proposal_id, summarizer, block, proposer, description, "
                    "actions, state, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (p.governor.lower(), str(p.proposal_id), p.summarizer, p.block, p.proposer, p.description,
                     json.dumps({"targets": p.targets, "values": [str(v) for v in p.values],
                                 "calldatas": [c.hex() for c in p.calldatas]}), NEW, time.time()))
                if cur.rowcount:
                    added.append(p)
            self.db.execute("INSERT INTO scans (governor, next_block) VALUES (?, ?) ON CONFLICT (governor) "
                            "DO UPDATE SET next_block = excluded.next_block", (governor.lower(), next_block))
        return added

    # ---- reading

    def get(self, governor: str, proposal_id: int) -> Proposal | None:
        row = self.db.execute("SELECT * FROM proposals WHERE governor = ? AND proposal_id = ?",
                              (governor.lower(), str(proposal_id))).fetchone()
        return None if row is None else self._proposal(row)

    def in_state(self, *states: str) -> list[Proposal]:
        marks = ", ".join("?" for _ in states)
        rows = self.db.execute(f"SELECT * FROM proposals WHERE state IN ({marks}) ORDER BY block, rowid", states)
        return [self._proposal(r) for r in rows]

    def all(self) -> list[Proposal]:
        return [self._proposal(r) for r in self.db.execute("SELECT * FROM proposals ORDER BY block DESC, rowid DESC")]

    def summarized_since(self, since: float) -> list[Proposal]:
        rows = self.db.execute("SELECT * FROM proposals WHERE state = ? AND summarized_at >= ? ORDER BY block",
                               (SUMMARIZED, since))
        return [self._proposal(r) for r in rows]

    def by_request(self, request_id: bytes) -> Proposal | None:
        row = self.db.execute("SELECT * FROM proposals WHERE request_id = ?", (_hex(request_id),)).fetchone()
        return None if row is None else self._proposal(row)

    def answered_by(self, event_id: str) -> Proposal | None:
        row = self.db.execute("SELECT * FROM proposals WHERE answer_event = ?", (event_id,)).fetchone()
        return None if row is None else self._proposal(row)

    # ---- moving

    def asked(self, p: Proposal, request_id: bytes) -> None:
        self._move(p, ASKED, request_id=_hex(request_id), reason=None)

    def summarized(self, p: Proposal, *, summary: str, risk: int, rationale: str, model: str,
                   receipt_hash: bytes | None, event_id: str | None, request_id: bytes | None) -> None:
        self._move(p, SUMMARIZED, summary=summary, risk=risk, rationale=rationale, model=model,
                   receipt_hash=_hex(receipt_hash), answer_event=event_id, summarized_at=time.time(),
                   request_id=_hex(request_id) if request_id is not None else _hex(p.request_id), reason=None)

    def failed(self, p: Proposal, reason: str, event_id: str, request_id: bytes) -> None:
        self._move(p, FAILED, reason=reason, answer_event=event_id, request_id=_hex(request_id))

    def given_up(self, p: Proposal, reason: str) -> None:
        self._move(p, GIVEN_UP, reason=reason)

    def retracted(self, p: Proposal) -> None:
        """A reorg removed the answer: the ask stands again, waiting for its answer to be re-included."""
        self._move(p, ASKED, summary=None, risk=None, rationale=None, model=None, receipt_hash=None,
                   answer_event=None, summarized_at=None, reason=None)

    def _move(self, p: Proposal, state: str, **fields: Any) -> None:
        with immediate(self.db):
            row = self.db.execute("SELECT state FROM proposals WHERE governor = ? AND proposal_id = ?",
                                  (p.governor.lower(), str(p.proposal_id))).fetchone()
            if row is None:
                raise BadTransition(f"proposal {p.proposal_id} of {p.governor} is not in the book")
            if state not in TRANSITIONS[row[0]]:
                raise BadTransition(f"proposal {p.proposal_id}: {row[0]} -> {state} is not a move a proposal makes")
            sets = ", ".join(f"{k} = ?" for k in ("state", *fields))
            self.db.execute(f"UPDATE proposals SET {sets} WHERE governor = ? AND proposal_id = ?",
                            (state, *fields.values(), p.governor.lower(), str(p.proposal_id)))

    # ---- digests

    def save_digest(self, day: str, doc: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO digests (day, doc) VALUES (?, ?)", (day, json.dumps(doc)))

    def latest_digest(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT doc FROM digests ORDER BY day DESC LIMIT 1").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    @staticmethod
    def _proposal(row: Any) -> Proposal:
        (governor, proposal_id, summarizer, block, proposer, description, actions, state, request_id, summary, risk,
         rationale, model, receipt_hash, _event, reason, _seen, summarized_at) = row
        acts = json.loads(actions)
        return Proposal(governor, int(proposal_id), summarizer, block, proposer, description, acts["targets"],
                        [int(v) for v in acts["values"]], [bytes.fromhex(c) for c in acts["calldatas"]], state,
                        _bytes(request_id), summary, risk, rationale, model, _bytes(receipt_hash), reason,
                        summarized_at)
