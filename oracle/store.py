"""The daemon's memory: one SQLite file (WAL), domain methods only; no SQL outside this module.

Writes join one transaction per event-loop pass: a write method opens it, and it commits at the end
of the pass (`loop.call_soon`). Code that is about to cause a side effect (an HTTP call, a signature,
a transaction) first does `await store.commit()`, which returns once everything written so far is
durable; writers in the same pass share that one commit.

    store = Store.open(Path("oracle.sqlite"))
    store.upsert_request(...)
    await store.commit()          # now it is safe to act on it
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

# ---------------------------------------------------------------- request states


class State:
    """A request's place in its lifecycle (DESIGN.md). Terminal states end with the request."""

    SEEN = "seen"  # in a block not yet deep enough
    CONFIRMED = "confirmed"  # deep enough to act on
    ACCEPTED = "accepted"  # passed the checks; to be answered
    REFUSED = "refused"  # failed a check; answered on-chain with a failure status
    ANSWERED = "answered"  # the router's answer (or failure) is stored
    SIGNED = "signed"  # the response and its signature are stored
    SUBMITTED = "submitted"  # a fulfillment transaction carries it
    FULFILLED = "fulfilled"  # confirmed on-chain (by us or anyone)
    EXPIRED = "expired"  # the deadline passed before it could be fulfilled
    UNPROFITABLE = "unprofitable"  # its fee does not cover the gas of answering: left for its requester to reclaim
    ROLLED_BACK = "rolled_back"  # the block that held it was reorganised away
    CANCELLED = "cancelled"  # the requester took the refund

    TERMINAL = frozenset({FULFILLED, EXPIRED, ROLLED_BACK, CANCELLED, UNPROFITABLE})


@dataclass
class StoredRequest:
    key: str
    chain_id: int
    oracle: str
    request_id: bytes
    block_number: int
    block_hash: bytes
    log_index: int
    requester: str
    nonce: int
    fee: int
    params: bytes  # ABI-encoded RequestParams, exactly as emitted
    deadline: int
    state: str
    reason: int
    reason_detail: str
    status: int
    result: bytes | None
    model_used: bytes | None
    receipt_hash: bytes | None
    signature: bytes | None
    fulfill_tx: bytes | None


@dataclass
class Attempt:
    request_key: str
    attempt_id: int
    deployment: str
    state: str  # started | done
    outcome: str  # ok | truncated | refused | filtered | malformed | error | ""
    latency_ms: float
    usage: dict[str, int]
    cost: int
    raw_sha256: str
    answer: str  # the JSON text the model gave, or ""
    error: str
    kind: str = ""  # for outcome "error": transient | context_length | content_policy | unavailable | fatal
    http_status: int = 0


@dataclass
class Payment:
    """A row of the x402 ledger. `amount` is in the asset's base units."""

    id: int
    request_key: str
    attempt_id: int
    provider: str
    requester: str
    network: str
    asset: str
    pay_to: str
    amount: int
    payer: str
    version: int
    nonce: str
    valid_before: int
    header: str  # the encoded PAYMENT-SIGNATURE / X-PAYMENT sent, re-sent as is after a transport error
    state: str  # reserved | signed | sent | settled | rejected | unknown | expired
    tx_hash: str
    error: str
    delivered: bool
    updated_at: float = 0.0
    identifier: str = ""  # the x402 payment-identifier sent with it, when the provider declared the extension
    from_block: int = 0  # no settlement of it can be in an earlier block (a head seen before it was signed)
    settled_block: int = 0  # the block its settlement is in, once seen on-chain
    final: bool = False  # settled at least `confirmations` blocks deep: no longer re-checked


# Payments that count against budgets: all but those known not to have moved money.
PAYMENT_SPENDING = ("reserved", "signed", "sent", "settled", "unknown")
PAYMENT_UNRESOLVED = ("reserved", "signed", "sent", "unknown")
PAYMENT_FINAL = ("rejected", "expired")  # moved no money, never will: they stay so


@dataclass
class StoredTx:
    tx_hash: bytes
    chain_id: int
    sender: str
    nonce: int
    raw: bytes
    max_fee: int
    priority_fee: int
    request_keys: list[str]
    state: str  # pending | replaced | dropped | mined | confirmed
    sent_at: float
    block_number: int | None
    block_hash: bytes | None


def _scopes(p: Payment) -> list[tuple[str, str]]:
    """The budget scopes a payment counts in: all payments, its provider's, its requester's."""
    return [("total", "total"), ("per_provider", f"provider:{p.provider}"),
            ("per_requester", f"requester:{p.requester}")]


def _payment(r: sqlite3.Row) -> Payment:
    return Payment(r["id"], r["request_key"], r["attempt_id"], r["provider"], r["requester"], r["network"], r["asset"],
                   r["pay_to"], int(r["amount"]), r["payer"], r["version"], r["nonce"] or "", r["valid_before"],
                   r["header"], r["state"], r["tx_hash"], r["error"], bool(r["delivered"]), r["updated_at"],
                   r["identifier"], r["from_block"], r["settled_block"], bool(r["final"]))


def request_key(chain_id: int, oracle: str, request_id: bytes) -> str:
    return f"{chain_id}:{oracle.lower()}:0x{request_id.hex()}"


# ---------------------------------------------------------------- migrations


def _m1_core(db: sqlite_utils.Database) -> None:
    db.table("requests").create({
        "key": str, "chain_id": int, "oracle": str, "request_id": bytes, "block_number": int,
        "block_hash": bytes, "log_index": int, "requester": str, "nonce": int, "fee": str, "params": bytes,
        "deadline": int, "state": str, "reason": int, "reason_detail": str, "status": int, "result": bytes,
        "model_used": bytes, "receipt_hash": bytes, "signature": bytes, "fulfill_tx": bytes, "settled_block": int,
        "updated_at": float,
    }, pk="key", not_null={"chain_id", "oracle", "request_id", "state"}, defaults={"reason": 0, "status": 0,
                                                                                 "reason_detail": ""})
    db.table("requests").create_index(["chain_id", "state"])
    db.table("requests").create_index(["chain_id", "block_number"])
    db.table("attempts").create({
        "request_key": str, "attempt_id": int, "deployment": str, "state": str, "outcome": str,
        "started_at": float, "latency_ms": float, "usage": str, "cost": int, "raw_sha256": str, "answer": str,
        "error": str,
    }, pk=("request_key", "attempt_id"))
    db.table("raw_responses").create({"sha256": str, "body": bytes}, pk="sha256")
    db.table("receipts").create({"request_key": str, "body": str, "hash": bytes}, pk="request_key")
    db.table("txs").create({
        "tx_hash": bytes, "chain_id": int, "sender": str, "nonce": int, "raw": bytes, "max_fee": str,
        "priority_fee": str, "request_keys": str, "state": str, "sent_at": float, "block_number": int,
        "block_hash": bytes, "gas_used": int, "gas_cost": str,
    }, pk="tx_hash")
    db.table("txs").create_index(["chain_id", "sender", "nonce"])
    db.table("txs").create_index(["chain_id", "state"])
    db.table("nonces").create({"chain_id": int, "sender": str, "next_nonce": int}, pk=("chain_id", "sender"))
    db.table("cursors").create({"chain_id": int, "oracle": str, "block_number": int, "block_hash": bytes},
                         pk=("chain_id", "oracle"))
    db.table("blocks").create({"chain_id": int, "number": int, "hash": bytes, "parent_hash": bytes},
                              pk=("chain_id", "number"))
    db.table("gas_spend").create({"chain_id": int, "day": str, "wei": str}, pk=("chain_id", "day"))


def _m2_router(db: sqlite_utils.Database) -> None:
    """The model router: each attempt's error class and HTTP status (a resumed request decides on them
    as the first run did), the decision each request was routed by, and every catalog a decision named."""
    db.table("attempts").add_column("kind", str, not_null_default="")
    db.table("attempts").add_column("http_status", int, not_null_default=0)
    db.table("route_decisions").create({"request_key": str, "catalog_version": str, "body": str}, pk="request_key")
    db.table("catalogs").create({"version": str, "body": str, "first_seen": float}, pk="version")


def _m3_payments(db: sqlite_utils.Database) -> None:
    """The x402 ledger: one row per payment, reserved before anything is signed."""
    db.execute("""
        CREATE TABLE payments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_key TEXT NOT NULL, attempt_id INTEGER NOT NULL, provider TEXT NOT NULL,
            requester TEXT NOT NULL, network TEXT NOT NULL, asset TEXT NOT NULL, pay_to TEXT NOT NULL,
            amount TEXT NOT NULL, payer TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 2,
            nonce TEXT UNIQUE, valid_before INTEGER NOT NULL DEFAULT 0, header TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL, tx_hash TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '',
            delivered INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL,
            UNIQUE (request_key, attempt_id))""")
    db.execute("CREATE INDEX payments_by_state ON payments (state, created_at)")
    # Spending per budget scope and minute: a reservation sums at most a window's minutes per scope, not
    # every payment in the window.
    db.execute("CREATE TABLE payment_spend (scope TEXT NOT NULL, minute INTEGER NOT NULL, amount INTEGER NOT NULL, "
               "PRIMARY KEY (scope, minute))")


def _m4_tx_day(db: sqlite_utils.Database) -> None:
    """The UTC day a transaction's gas was counted in, so a reorg that undoes it takes it back from that day."""
    db.table("txs").add_column("mined_day", str)


def _m5_payment_finality(db: sqlite_utils.Database) -> None:
    """x402 payments: the payment-identifier sent with each, the block its settlement cannot precede (log
    queries start there), the block it settled in, and whether that settlement is final."""
    db.execute("ALTER TABLE payments ADD COLUMN identifier TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE payments ADD COLUMN from_block INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE payments ADD COLUMN settled_block INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE payments ADD COLUMN final INTEGER NOT NULL DEFAULT 0")


def _m6_settled_hash(db: sqlite_utils.Database) -> None:
    """The hash of the block a settlement was seen in: the sweep reopens it if that block is replaced."""
    db.execute("ALTER TABLE requests ADD COLUMN settled_hash BLOB")


MIGRATIONS: Sequence[Callable[[sqlite_utils.Database], None]] = (_m1_core, _m2_router, _m3_payments, _m4_tx_day,
                                                                 _m5_payment_finality, _m6_settled_hash)


# ---------------------------------------------------------------- the store


class Store:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._in_tx = False
        self._commit_waiters: asyncio.Future[None] | None = None

    @classmethod
    def open(cls, path: Path | str) -> Store:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        store = cls(conn)
        store._migrate()
        return store

    def close(self) -> None:
        self.commit_now()
        self._conn.close()

    def _migrate(self) -> None:
        db = sqlite_utils.Database(self._conn)
        if "migrations" not in db.table_names():
            db.table("migrations").create({"version": int, "applied_at": float}, pk="version")
        done = {row["version"] for row in db.table("migrations").rows}
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                migration(db)
                db.table("migrations").insert({"version": version, "applied_at": time.time()})
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------ transactions

    def _write(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        if not self._in_tx:
            self._conn.execute("BEGIN")
            self._in_tx = True
            self._schedule_commit()
        return self._conn.execute(sql, args)

    def _write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if not self._in_tx:
            self._conn.execute("BEGIN")
            self._in_tx = True
            self._schedule_commit()
        self._conn.executemany(sql, rows)

    def _schedule_commit(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the caller commits with commit_now()
        loop.call_soon(self.commit_now)

    def commit_now(self) -> None:
        waiters, self._commit_waiters = self._commit_waiters, None
        try:
            if self._in_tx:
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # Nothing of this pass is durable: undo it and fail everyone waiting, so no side effect
            # follows writes that did not land (the daemon stops; the store is as before the pass).
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if waiters is not None and not waiters.done():
                waiters.set_exception(exc)
            raise
        finally:
            self._in_tx = False
        if waiters is not None and not waiters.done():
            waiters.set_result(None)

    async def commit(self) -> None:
        """Return once every write made so far is committed (one commit per loop pass, shared)."""
        if not self._in_tx:
            return
        if self._commit_waiters is None:
            self._commit_waiters = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._commit_waiters)

    def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        cur = self._conn.execute(sql, args)
        cur.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cur.fetchone()
        return row

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cur = self._conn.execute(sql, args)
        cur.row_factory = sqlite3.Row
        return list(cur.fetchall())

    # ------------------------------------------------------------ requests

    def insert_request(self, r: StoredRequest) -> bool:
        """Record a request seen in a log. Returns False if it was already known (same key)."""
        cur = self._write(
            "INSERT INTO requests (key, chain_id, oracle, request_id, block_number, block_hash, log_index, "
            "requester, nonce, fee, params, deadline, state, reason, reason_detail, status, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO NOTHING",
            (r.key, r.chain_id, r.oracle, r.request_id, r.block_number, r.block_hash, r.log_index, r.requester,
             r.nonce, str(r.fee), r.params, r.deadline, r.state, r.reason, r.reason_detail, r.status, time.time()),
        )
        return cur.rowcount == 1

    def reinclude_request(self, r: StoredRequest) -> None:
        """A known request appeared in another block (re-included after a reorg, noticed or not). The
        same request id can carry other content (the old request was reorganised away and the
        requester's nonce was free again): then nothing of the old one is kept, not even its model
        attempts or a settlement we had seen, and it is answered and signed anew. The same request
        already settled is left alone."""
        row = self._one("SELECT state, params, fee, requester, block_hash FROM requests WHERE key=?", (r.key,))
        if row is None:
            return
        same = (bytes(row["params"]), row["fee"], row["requester"]) == (r.params, str(r.fee), r.requester)
        if same and row["state"] in State.TERMINAL - {State.ROLLED_BACK}:
            return
        if row["state"] != State.ROLLED_BACK and bytes(row["block_hash"]) == r.block_hash:
            return  # the same log seen again
        if same:
            # The same request in another block: its commitment is the same, so its answer, signature and
            # any transaction carrying it stay valid. Only where it is changes; a request that had been
            # rolled back waits for its new block's depth again (the pipeline re-uses what it stored).
            state = r.state if row["state"] == State.ROLLED_BACK else row["state"]
            self._write("UPDATE requests SET block_number=?, block_hash=?, log_index=?, nonce=?, deadline=?, "
                        "state=?, updated_at=? WHERE key=?",
                        (r.block_number, r.block_hash, r.log_index, r.nonce, r.deadline, state, time.time(), r.key))
            return
        self._write("DELETE FROM attempts WHERE request_key=?", (r.key,))
        self._write("DELETE FROM route_decisions WHERE request_key=?", (r.key,))
        self._write(
            "UPDATE requests SET block_number=?, block_hash=?, log_index=?, requester=?, nonce=?, fee=?, params=?, "
            "deadline=?, state=?, reason=0, reason_detail='', status=0, result=NULL, model_used=NULL, "
            "receipt_hash=NULL, signature=NULL, fulfill_tx=NULL, settled_block=NULL, updated_at=? WHERE key=?",
            (r.block_number, r.block_hash, r.log_index, r.requester, r.nonce, str(r.fee), r.params, r.deadline,
             r.state, time.time(), r.key),
        )

    def mark_settled(self, key: str, state: str, block_number: int, tx_hash: bytes | None = None,
                     block_hash: bytes | None = None) -> None:
        """The chain says the request was fulfilled or cancelled (by anyone) in `block_number` (of hash
        `block_hash`), by the transaction `tx_hash` when it is known: the row names the settlement that
        is on-chain."""
        self._write("UPDATE requests SET state=?, settled_block=?, settled_hash=?, fulfill_tx=COALESCE(?, fulfill_tx), "
                    "updated_at=? WHERE key=?", (state, block_number, block_hash, tx_hash, time.time(), key))

    def reopen_settled_after(self, chain_id: int, oracle: str, block_number: int) -> list[str]:
        """Settlements above `block_number` were reorganised away: signed answers go back to be sent
        again, the rest back to be answered."""
        rows = self._all("SELECT key, signature FROM requests WHERE chain_id=? AND oracle=? AND settled_block>? "
                         "AND state IN (?,?)", (chain_id, oracle, block_number, State.FULFILLED, State.CANCELLED))
        self._reopen_settled(rows)
        return [r["key"] for r in rows]

    def _reopen_settled(self, rows: Sequence[sqlite3.Row]) -> None:
        """Settlements no longer on the chain: signed answers go back to be sent, the rest to be answered."""
        now = time.time()
        self._write_many("UPDATE requests SET state=?, settled_block=NULL, settled_hash=NULL, updated_at=? WHERE key=?",
                         [(State.SIGNED if r["signature"] is not None else State.CONFIRMED, now, r["key"])
                          for r in rows])

    def settlements_in_blocks(self, chain_id: int, oracle: str, start: int, end: int) -> list[tuple[str, int, bytes]]:
        """(key, block number, block hash) of the settlements on record in blocks start..end."""
        rows = self._all("SELECT key, settled_block, settled_hash FROM requests WHERE chain_id=? AND oracle=? AND "
                         "settled_block BETWEEN ? AND ? AND state IN (?,?) AND settled_hash IS NOT NULL",
                         (chain_id, oracle, start, end, State.FULFILLED, State.CANCELLED))
        return [(r["key"], r["settled_block"], bytes(r["settled_hash"])) for r in rows]

    def reopen_settlements(self, keys: Sequence[str]) -> None:
        """These settlements are no longer on the chain (their block was replaced)."""
        marks = ",".join("?" * len(keys))
        if keys:
            self._reopen_settled(self._all(f"SELECT key, signature FROM requests WHERE key IN ({marks}) AND state IN "
                                           "(?,?)", (*keys, State.FULFILLED, State.CANCELLED)))

    def open_requests_in_blocks(self, chain_id: int, oracle: str, start: int,
                                end: int) -> list[tuple[str, int, bytes]]:
        """(key, block number, block hash) of the requests not yet settled that lie in blocks start..end."""
        marks = ",".join("?" * len(State.TERMINAL))
        rows = self._all(f"SELECT key, block_number, block_hash FROM requests WHERE chain_id=? AND oracle=? AND "
                         f"block_number BETWEEN ? AND ? AND state NOT IN ({marks})",
                         (chain_id, oracle, start, end, *State.TERMINAL))
        return [(r["key"], r["block_number"], bytes(r["block_hash"])) for r in rows]

    def highest_block(self, chain_id: int, oracle: str) -> int:
        """The highest block an open request or a settlement on record lies in."""
        row = self._one("SELECT MAX(MAX(block_number), COALESCE(MAX(settled_block), 0)) AS n FROM requests "
                        "WHERE chain_id=? AND oracle=? AND state NOT IN (?,?)",
                        (chain_id, oracle, State.ROLLED_BACK, State.EXPIRED))
        return int(row["n"]) if row is not None and row["n"] is not None else 0

    def get_request(self, key: str) -> StoredRequest | None:
        row = self._one("SELECT * FROM requests WHERE key=?", (key,))
        return _request_from_row(row) if row is not None else None

    def requests_in_state(self, chain_id: int, states: Iterable[str], limit: int = 100_000) -> list[StoredRequest]:
        states = list(states)
        marks = ",".join("?" * len(states))
        rows = self._all(f"SELECT * FROM requests WHERE chain_id=? AND state IN ({marks}) "
                         "ORDER BY block_number, log_index LIMIT ?", (chain_id, *states, limit))
        return [_request_from_row(r) for r in rows]

    def count_by_state(self, chain_id: int | None = None) -> dict[str, int]:
        if chain_id is None:
            rows = self._all("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")
        else:
            rows = self._all("SELECT state, COUNT(*) AS n FROM requests WHERE chain_id=? GROUP BY state",
                             (chain_id,))
        return {r["state"]: r["n"] for r in rows}

    def set_state(self, key: str, state: str, *, reason: int | None = None, detail: str | None = None,
                  expect: Iterable[str] | None = None) -> bool:
        """Move a request to `state`; with `expect`, only from one of those states. Returns whether it
        moved: something else (a reorg, a settlement seen on-chain) may have moved it meanwhile."""
        sets, args = ["state=?", "updated_at=?"], [state, time.time()]
        if reason is not None:
            sets.append("reason=?")
            args.append(reason)
        if detail is not None:
            sets.append("reason_detail=?")
            args.append(detail)
        where, tail = "key=?", [key]
        if expect is not None:
            states = list(expect)
            where += f" AND state IN ({','.join('?' * len(states))})"
            tail += states
        return self._write(f"UPDATE requests SET {', '.join(sets)} WHERE {where}", (*args, *tail)).rowcount == 1

    def set_states(self, keys: Sequence[str], state: str) -> None:
        now = time.time()
        self._write_many("UPDATE requests SET state=?, updated_at=? WHERE key=?", [(state, now, k) for k in keys])

    def requeue_submitted(self, keys: Sequence[str]) -> None:
        """Responses whose transaction failed go back to be sent again (only if still submitted)."""
        now = time.time()
        self._write_many("UPDATE requests SET state=?, updated_at=? WHERE key=? AND state=?",
                         [(State.SIGNED, now, k, State.SUBMITTED) for k in keys])

    def confirm_up_to(self, chain_id: int, block_number: int) -> int:
        cur = self._write("UPDATE requests SET state=?, updated_at=? WHERE chain_id=? AND state=? AND "
                          "block_number<=?", (State.CONFIRMED, time.time(), chain_id, State.SEEN, block_number))
        return cur.rowcount

    def store_answer(self, key: str, *, status: int, reason: int, result: bytes, model_used: bytes,
                     receipt_hash: bytes, receipt_body: str, detail: str = "") -> bool:
        """Store the answer of an accepted or refused request; False if the request moved meanwhile."""
        row = self._one("SELECT state FROM requests WHERE key=?", (key,))
        if row is None or row["state"] not in (State.ACCEPTED, State.REFUSED):
            return False
        self._write("INSERT INTO receipts (request_key, body, hash) VALUES (?,?,?) ON CONFLICT(request_key) "
                    "DO UPDATE SET body=excluded.body, hash=excluded.hash", (key, receipt_body, receipt_hash))
        self._write("UPDATE requests SET state=?, status=?, reason=?, reason_detail=?, result=?, model_used=?, "
                    "receipt_hash=?, signature=NULL, updated_at=? WHERE key=?",
                    (State.ANSWERED, status, reason, detail, result, model_used, receipt_hash, time.time(), key))
        return True

    def store_signature(self, key: str, signature: bytes) -> bool:
        """answered -> signed; False if the request moved meanwhile."""
        return self._write("UPDATE requests SET state=?, signature=?, updated_at=? WHERE key=? AND state=?",
                           (State.SIGNED, signature, time.time(), key, State.ANSWERED)).rowcount == 1

    def rollback_request_in_block(self, key: str, block_hash: bytes) -> bool:
        """A log holding this request was removed by a reorg: roll it back if that was its block."""
        return self._write("UPDATE requests SET state=?, updated_at=? WHERE key=? AND block_hash=? AND state NOT IN "
                           "(?,?,?)", (State.ROLLED_BACK, time.time(), key, block_hash, State.FULFILLED,
                                       State.EXPIRED, State.CANCELLED)).rowcount == 1

    def mark_submitted(self, keys: Sequence[str], tx_hash: bytes) -> None:
        now = time.time()
        self._write_many("UPDATE requests SET state=?, fulfill_tx=?, updated_at=? WHERE key=? AND state IN (?,?)",
                         [(State.SUBMITTED, tx_hash, now, k, State.SIGNED, State.SUBMITTED) for k in keys])

    def rollback_requests_after(self, chain_id: int, oracle: str, block_number: int) -> list[str]:
        """Requests in blocks above `block_number` go back to rolled_back (unless settled)."""
        rows = self._all("SELECT key FROM requests WHERE chain_id=? AND oracle=? AND block_number>? AND "
                         "state NOT IN (?,?,?)", (chain_id, oracle, block_number, State.FULFILLED, State.EXPIRED,
                                                  State.CANCELLED))
        keys = [r["key"] for r in rows]
        self.set_states(keys, State.ROLLED_BACK)
        return keys

    def receipt(self, key: str) -> tuple[str, bytes] | None:
        row = self._one("SELECT body, hash FROM receipts WHERE request_key=?", (key,))
        return (row["body"], row["hash"]) if row is not None else None

    # ------------------------------------------------------------ attempts and raw responses

    def start_attempt(self, request_key: str, attempt_id: int, deployment: str) -> None:
        self._write("INSERT INTO attempts (request_key, attempt_id, deployment, state, outcome, started_at, "
                    "latency_ms, usage, cost, raw_sha256, answer, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(request_key, attempt_id) DO UPDATE SET deployment=excluded.deployment, "
                    "state=excluded.state, outcome='', started_at=excluded.started_at "
                    "WHERE attempts.deployment != excluded.deployment",
                    (request_key, attempt_id, deployment, "started", "", time.time(), 0.0, "{}", 0, "", "", ""))

    def finish_attempt(self, a: Attempt, raw_body: bytes | None) -> None:
        if raw_body is not None and a.raw_sha256:
            self._write("INSERT INTO raw_responses (sha256, body) VALUES (?,?) ON CONFLICT DO NOTHING",
                        (a.raw_sha256, raw_body))
        self._write("UPDATE attempts SET state=?, outcome=?, latency_ms=?, usage=?, cost=?, raw_sha256=?, answer=?, "
                    "error=?, kind=?, http_status=? WHERE request_key=? AND attempt_id=?",
                    ("done", a.outcome, a.latency_ms, json.dumps(a.usage, sort_keys=True), a.cost, a.raw_sha256,
                     a.answer, a.error, a.kind, a.http_status, a.request_key, a.attempt_id))

    def attempts(self, request_key: str) -> list[Attempt]:
        rows = self._all("SELECT * FROM attempts WHERE request_key=? ORDER BY attempt_id", (request_key,))
        return [Attempt(r["request_key"], r["attempt_id"], r["deployment"], r["state"], r["outcome"],
                        r["latency_ms"], json.loads(r["usage"]), r["cost"], r["raw_sha256"], r["answer"],
                        r["error"], r["kind"], r["http_status"]) for r in rows]

    def save_route_decision(self, request_key: str, catalog_version: str, body: str) -> None:
        self._write("INSERT INTO route_decisions (request_key, catalog_version, body) VALUES (?,?,?) "
                    "ON CONFLICT(request_key) DO UPDATE SET catalog_version=excluded.catalog_version, "
                    "body=excluded.body", (request_key, catalog_version, body))

    def route_decision(self, request_key: str) -> tuple[str, str] | None:
        """(catalog version, decision record JSON) a request was routed by, if it was."""
        row = self._one("SELECT catalog_version, body FROM route_decisions WHERE request_key=?", (request_key,))
        return (row["catalog_version"], row["body"]) if row is not None else None

    def save_catalog(self, version: str, body: str) -> None:
        self._write("INSERT INTO catalogs (version, body, first_seen) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                    (version, body, time.time()))

    def catalog(self, version: str) -> str | None:
        row = self._one("SELECT body FROM catalogs WHERE version=?", (version,))
        return str(row["body"]) if row is not None else None

    # ------------------------------------------------------------ the x402 ledger

    def reserve_payment(self, p: Payment, now: float, window: float, limits: dict[str, int],
                        max_unresolved: int, request_cap: int | None = None) -> Payment | str:
        """The attempt's payment: the one already on record, or a new row reserved against the request's
        allowance and the rolling budgets in one BEGIN IMMEDIATE transaction. A string says which limit
        refused it.

        `request_cap` bounds the sum of the request's payments that may have moved money, this one
        included, each at its full amount (a call that timed out may have been settled); `limits` holds
        "total", "per_provider" and "per_requester". A reserved payment counts as spent until it is known
        not to have moved money."""
        existing = self.payment_for(p.request_key, p.attempt_id)
        if existing is not None:
            return existing
        self.commit_now()  # the reservation is a transaction of its own
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            refusal = ""
            if request_cap is not None:
                spent = int(self._conn.execute(
                    f"SELECT COALESCE(SUM(CAST(amount AS INTEGER)), 0) FROM payments WHERE request_key=? AND state "
                    f"IN ({','.join('?' * len(PAYMENT_SPENDING))})", (p.request_key, *PAYMENT_SPENDING)).fetchone()[0])
                if spent + p.amount > request_cap:
                    refusal = (f"request allowance: {spent} may already have been paid of {request_cap}, "
                               f"{p.amount} more asked")
            # Whole minutes: a payment counts from the start of its minute, so the window is at most a
            # minute longer than configured (never shorter: budgets are never overspent).
            since = int(now - window) // 60
            for name, scope in _scopes(p) if not refusal else ():
                used = int(self._conn.execute("SELECT COALESCE(SUM(amount), 0) FROM payment_spend WHERE scope=? "
                                              "AND minute >= ?", (scope, since)).fetchone()[0])
                if used + p.amount > limits[name]:
                    refusal = f"{name} budget: {used} spent of {limits[name]}, {p.amount} more asked"
                    break
            if not refusal:
                unresolved = self._conn.execute(
                    f"SELECT COUNT(*) FROM payments WHERE state IN ({','.join('?' * len(PAYMENT_UNRESOLVED))})",
                    PAYMENT_UNRESOLVED).fetchone()[0]
                if unresolved >= max_unresolved:
                    refusal = f"{unresolved} payments unresolved, at most {max_unresolved}"
            if refusal:
                self._conn.execute("ROLLBACK")
                return refusal
            cur = self._conn.execute(
                "INSERT INTO payments (request_key, attempt_id, provider, requester, network, asset, pay_to, amount, "
                "payer, version, state, from_block, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (p.request_key, p.attempt_id, p.provider, p.requester, p.network, p.asset, p.pay_to, str(p.amount),
                 p.payer, p.version, "reserved", p.from_block, now, now))
            for _, scope in _scopes(p):
                self._conn.execute(self._SPEND, (scope, int(now) // 60, p.amount))
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        found = self.payment(int(cur.lastrowid or 0))
        assert found is not None
        return found

    def record_refused_payment(self, request_key: str, attempt_id: int, provider: str, requester: str, network: str,
                               asset: str, pay_to: str, payer: str, reason: str) -> Payment:
        """A 402 that was not paid, and why: nothing was signed; it counts against no budget."""
        now = time.time()
        self._write("INSERT INTO payments (request_key, attempt_id, provider, requester, network, asset, pay_to, "
                    "amount, payer, state, error, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(request_key, attempt_id) DO NOTHING",
                    (request_key, attempt_id, provider, requester, network, asset, pay_to, "0", payer, "rejected",
                     reason[:300], now, now))
        found = self.payment_for(request_key, attempt_id)
        assert found is not None
        return found

    _SPEND = ("INSERT INTO payment_spend (scope, minute, amount) VALUES (?,?,?) "
              "ON CONFLICT(scope, minute) DO UPDATE SET amount = amount + excluded.amount")

    def update_payment(self, payment_id: int, **fields: Any) -> None:
        """Set ledger fields (state, nonce, valid_before, header, tx_hash, error, delivered). A payment
        that turns out not to have moved money (rejected, expired) gives its budget back."""
        allowed = {"state", "nonce", "valid_before", "header", "tx_hash", "error", "delivered", "identifier",
                   "from_block", "settled_block", "final"}
        assert set(fields) <= allowed, fields
        if "state" in fields:
            row = self._one("SELECT * FROM payments WHERE id=?", (payment_id,))
            if row is not None and row["state"] in PAYMENT_FINAL and fields["state"] != row["state"]:
                fields = {k: v for k, v in fields.items() if k != "state"}  # final: its budget is settled
                if not fields:
                    return
            elif row is not None and row["state"] in PAYMENT_SPENDING and fields["state"] not in PAYMENT_SPENDING:
                for _, scope in _scopes(_payment(row)):
                    self._write(self._SPEND, (scope, int(row["created_at"]) // 60, -int(row["amount"])))
        names = sorted(fields)
        self._write(f"UPDATE payments SET {', '.join(f'{n}=?' for n in names)}, updated_at=? WHERE id=?",
                    (*(fields[n] for n in names), time.time(), payment_id))

    def request_payments(self, request_key: str) -> tuple[int, int]:
        """(amount that may have moved, highest attempt id with a payment) for one request."""
        row = self._one(f"SELECT COALESCE(SUM(CASE WHEN state IN ({','.join('?' * len(PAYMENT_SPENDING))}) "
                        "THEN CAST(amount AS INTEGER) ELSE 0 END), 0) AS spent, COALESCE(MAX(attempt_id), 0) AS last "
                        "FROM payments WHERE request_key=?", (*PAYMENT_SPENDING, request_key))
        return (int(row["spent"]), int(row["last"])) if row is not None else (0, 0)

    def payment(self, payment_id: int) -> Payment | None:
        row = self._one("SELECT * FROM payments WHERE id=?", (payment_id,))
        return _payment(row) if row is not None else None

    def payment_for(self, request_key: str, attempt_id: int) -> Payment | None:
        row = self._one("SELECT * FROM payments WHERE request_key=? AND attempt_id=?", (request_key, attempt_id))
        return _payment(row) if row is not None else None

    def settlements_to_confirm(self) -> list[Payment]:
        """Settled payments not yet final: their settlement may still be reorganised away."""
        return [_payment(r) for r in self._all("SELECT * FROM payments WHERE state='settled' AND final=0 ORDER BY id")]

    def payments(self, states: Sequence[str] = ()) -> list[Payment]:
        if not states:
            return [_payment(r) for r in self._all("SELECT * FROM payments ORDER BY id")]
        return [_payment(r) for r in self._all(
            f"SELECT * FROM payments WHERE state IN ({','.join('?' * len(states))}) ORDER BY id", tuple(states))]

    def raw_response(self, sha256: str) -> bytes | None:
        row = self._one("SELECT body FROM raw_responses WHERE sha256=?", (sha256,))
        return bytes(row["body"]) if row is not None else None

    # ------------------------------------------------------------ cursors and block hashes

    def cursor(self, chain_id: int, oracle: str) -> tuple[int, bytes] | None:
        row = self._one("SELECT block_number, block_hash FROM cursors WHERE chain_id=? AND oracle=?",
                        (chain_id, oracle))
        return (row["block_number"], bytes(row["block_hash"])) if row is not None else None

    def set_cursor(self, chain_id: int, oracle: str, block_number: int, block_hash: bytes) -> None:
        self._write("INSERT INTO cursors (chain_id, oracle, block_number, block_hash) VALUES (?,?,?,?) "
                    "ON CONFLICT(chain_id, oracle) DO UPDATE SET block_number=excluded.block_number, "
                    "block_hash=excluded.block_hash", (chain_id, oracle, block_number, block_hash))

    def remember_blocks(self, chain_id: int, blocks: Iterable[tuple[int, bytes, bytes | None]],
                        keep: int = 2_048) -> None:
        """Remember (number, hash, parent hash or None) of blocks read, for finding a reorg's common block."""
        rows = [(chain_id, n, h, p) for n, h, p in blocks]
        if not rows:
            return
        self._write_many(
            "INSERT INTO blocks (chain_id, number, hash, parent_hash) VALUES (?,?,?,?) "
            "ON CONFLICT(chain_id, number) DO UPDATE SET parent_hash = CASE WHEN excluded.hash = blocks.hash "
            "THEN COALESCE(excluded.parent_hash, blocks.parent_hash) ELSE excluded.parent_hash END, "
            "hash = excluded.hash", rows)
        newest = max(n for _, n, _, _ in rows)
        self._write("DELETE FROM blocks WHERE chain_id=? AND number<?", (chain_id, newest - keep))

    def known_blocks(self, chain_id: int, below_or_at: int, limit: int = 64) -> list[tuple[int, bytes, bytes | None]]:
        rows = self._all("SELECT number, hash, parent_hash FROM blocks WHERE chain_id=? AND number<=? "
                         "ORDER BY number DESC LIMIT ?", (chain_id, below_or_at, limit))
        return [(r["number"], bytes(r["hash"]), bytes(r["parent_hash"]) if r["parent_hash"] else None)
                for r in rows]

    def forget_blocks_after(self, chain_id: int, number: int) -> None:
        self._write("DELETE FROM blocks WHERE chain_id=? AND number>?", (chain_id, number))

    # ------------------------------------------------------------ transactions and nonces

    def allocate_nonce(self, chain_id: int, sender: str, chain_nonce: int) -> int:
        """The next nonce: never below the chain's count, never one this store already handed out."""
        row = self._one("SELECT next_nonce FROM nonces WHERE chain_id=? AND sender=?", (chain_id, sender))
        nonce = max(chain_nonce, row["next_nonce"] if row is not None else 0)
        self._write("INSERT INTO nonces (chain_id, sender, next_nonce) VALUES (?,?,?) ON CONFLICT(chain_id, sender) "
                    "DO UPDATE SET next_nonce=excluded.next_nonce", (chain_id, sender, nonce + 1))
        return nonce

    def record_tx(self, t: StoredTx) -> None:
        self._write("INSERT INTO txs (tx_hash, chain_id, sender, nonce, raw, max_fee, priority_fee, request_keys, "
                    "state, sent_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (t.tx_hash, t.chain_id, t.sender, t.nonce, t.raw, str(t.max_fee), str(t.priority_fee),
                     json.dumps(t.request_keys), t.state, t.sent_at))

    def set_tx_state(self, tx_hash: bytes, state: str) -> None:
        self._write("UPDATE txs SET state=? WHERE tx_hash=?", (state, tx_hash))

    def record_mined(self, t: StoredTx, block_number: int, block_hash: bytes, gas_used: int, gas_cost: int,
                     day: str) -> None:
        """The chain's receipt for `t`: where it was mined and what it cost, counted in `day`'s gas."""
        self._write("UPDATE txs SET state='mined', block_number=?, block_hash=?, gas_used=?, gas_cost=?, mined_day=? "
                    "WHERE tx_hash=?", (block_number, block_hash, gas_used, str(gas_cost), day, t.tx_hash))
        self.add_gas_spend(t.chain_id, day, gas_cost)

    def txs_in_state(self, chain_id: int, sender: str, states: Iterable[str]) -> list[StoredTx]:
        states = list(states)
        marks = ",".join("?" * len(states))
        rows = self._all(f"SELECT * FROM txs WHERE chain_id=? AND sender=? AND state IN ({marks}) "
                         "ORDER BY nonce, sent_at", (chain_id, sender, *states))
        return [_tx_from_row(r) for r in rows]

    def txs_mined_after(self, chain_id: int, sender: str, block_number: int) -> list[StoredTx]:
        rows = self._all("SELECT * FROM txs WHERE chain_id=? AND sender=? AND state IN ('mined','confirmed') "
                         "AND block_number>?", (chain_id, sender, block_number))
        return [_tx_from_row(r) for r in rows]

    def txs_included_from(self, chain_id: int, sender: str, nonce: int) -> list[StoredTx]:
        """Transactions on record as mined at `nonce` or above (the chain's count says they are not)."""
        rows = self._all("SELECT * FROM txs WHERE chain_id=? AND sender=? AND state IN ('mined','confirmed') "
                         "AND nonce>=?", (chain_id, sender, nonce))
        return [_tx_from_row(r) for r in rows]

    def txs_at_nonce(self, chain_id: int, sender: str, nonce: int) -> list[StoredTx]:
        """Every transaction ever signed for this nonce, whatever its state."""
        rows = self._all("SELECT * FROM txs WHERE chain_id=? AND sender=? AND nonce=? ORDER BY sent_at",
                         (chain_id, sender, nonce))
        return [_tx_from_row(r) for r in rows]

    def live_nonces(self, chain_id: int, sender: str, low: int) -> tuple[set[int], int]:
        """(nonces from `low` with a transaction that may still use them, the next nonce to hand out)."""
        rows = self._all("SELECT DISTINCT nonce FROM txs WHERE chain_id=? AND sender=? AND nonce>=? AND "
                         "state IN ('pending','replaced','mined','confirmed')", (chain_id, sender, low))
        row = self._one("SELECT next_nonce FROM nonces WHERE chain_id=? AND sender=?", (chain_id, sender))
        return {r["nonce"] for r in rows}, (row["next_nonce"] if row is not None else 0)

    def reopen_tx(self, t: StoredTx) -> list[str]:
        """A transaction on record as mined is not on the chain (its block was reorganised away): pending
        again, its gas no longer counted, and the requests it settled carried by it again. Returns those."""
        row = self._one("SELECT gas_cost, mined_day FROM txs WHERE tx_hash=?", (t.tx_hash,))
        if row is not None and row["gas_cost"] is not None and row["mined_day"] is not None:
            self.add_gas_spend(t.chain_id, row["mined_day"], -int(row["gas_cost"]))
        self._write("UPDATE txs SET state='pending', block_number=NULL, block_hash=NULL, gas_used=NULL, "
                    "gas_cost=NULL, mined_day=NULL WHERE tx_hash=?", (t.tx_hash,))
        if not t.request_keys or t.block_number is None:
            return []
        marks = ",".join("?" * len(t.request_keys))
        rows = self._all(f"SELECT key FROM requests WHERE key IN ({marks}) AND state=? AND settled_block=?",
                         (*t.request_keys, State.FULFILLED, t.block_number))
        keys = [r["key"] for r in rows]
        self._write_many("UPDATE requests SET state=?, settled_block=NULL, settled_hash=NULL, fulfill_tx=?, "
                         "updated_at=? WHERE key=?",
                         [(State.SUBMITTED, t.tx_hash, time.time(), k) for k in keys])
        return keys

    def add_gas_spend(self, chain_id: int, day: str, wei: int) -> None:
        row = self._one("SELECT wei FROM gas_spend WHERE chain_id=? AND day=?", (chain_id, day))
        total = wei + (int(row["wei"]) if row is not None else 0)
        self._write("INSERT INTO gas_spend (chain_id, day, wei) VALUES (?,?,?) ON CONFLICT(chain_id, day) "
                    "DO UPDATE SET wei=excluded.wei", (chain_id, day, str(total)))

    def gas_spent(self, chain_id: int, day: str) -> int:
        row = self._one("SELECT wei FROM gas_spend WHERE chain_id=? AND day=?", (chain_id, day))
        return int(row["wei"]) if row is not None else 0


def _tx_from_row(r: sqlite3.Row) -> StoredTx:
    return StoredTx(bytes(r["tx_hash"]), r["chain_id"], r["sender"], r["nonce"], bytes(r["raw"]), int(r["max_fee"]),
                    int(r["priority_fee"]), json.loads(r["request_keys"]), r["state"], r["sent_at"],
                    r["block_number"], bytes(r["block_hash"]) if r["block_hash"] is not None else None)


def _request_from_row(r: sqlite3.Row) -> StoredRequest:
    def b(v: Any) -> bytes | None:
        return bytes(v) if v is not None else None

    return StoredRequest(
        key=r["key"], chain_id=r["chain_id"], oracle=r["oracle"], request_id=bytes(r["request_id"]),
        block_number=r["block_number"], block_hash=bytes(r["block_hash"]), log_index=r["log_index"],
        requester=r["requester"], nonce=r["nonce"], fee=int(r["fee"]), params=bytes(r["params"]),
        deadline=r["deadline"], state=r["state"], reason=r["reason"], reason_detail=r["reason_detail"],
        status=r["status"], result=b(r["result"]), model_used=b(r["model_used"]), receipt_hash=b(r["receipt_hash"]),
        signature=b(r["signature"]), fulfill_tx=b(r["fulfill_tx"]),
    )
