"""The schema, as numbered migrations applied in order, each once, each in its own transaction. A new
one is appended (never edit one that has shipped) and tested from the schema before it with data in it
(tests/store/test_migrations.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence

import sqlite_utils


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


def _m7_work_order(db: sqlite_utils.Database) -> None:
    """The pipeline's page of work, per state in block order, read from the index without a sort."""
    db.execute("CREATE INDEX requests_work_order ON requests (chain_id, state, block_number, log_index)")


def _m8_request_history(db: sqlite_utils.Database) -> None:
    """When each request was first seen, and every state it passed through with the time (written by
    triggers, so no state write of any caller can miss it). Operators page requests newest first and
    look them up by request id alone. Rows from before have seen_at 0 (not known) and no history."""
    db.execute("ALTER TABLE requests ADD COLUMN seen_at REAL NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX requests_by_seen ON requests (seen_at, key)")
    db.execute("CREATE INDEX requests_by_id ON requests (request_id)")
    db.execute("CREATE TABLE request_history (id INTEGER PRIMARY KEY AUTOINCREMENT, request_key TEXT NOT NULL, "
               "at REAL NOT NULL, state TEXT NOT NULL, reason INTEGER NOT NULL DEFAULT 0, "
               "detail TEXT NOT NULL DEFAULT '')")
    db.execute("CREATE INDEX request_history_by_key ON request_history (request_key, id)")
    db.execute("CREATE TRIGGER request_seen AFTER INSERT ON requests BEGIN "
               "INSERT INTO request_history (request_key, at, state, reason, detail) VALUES "
               "(NEW.key, COALESCE(NEW.updated_at, 0), NEW.state, COALESCE(NEW.reason, 0), "
               "COALESCE(NEW.reason_detail, '')); END")
    db.execute("CREATE TRIGGER request_moved AFTER UPDATE OF state ON requests WHEN NEW.state != OLD.state BEGIN "
               "INSERT INTO request_history (request_key, at, state, reason, detail) VALUES "
               "(NEW.key, COALESCE(NEW.updated_at, 0), NEW.state, COALESCE(NEW.reason, 0), "
               "COALESCE(NEW.reason_detail, '')); END")


def _m9_receipts_by_hash(db: sqlite_utils.Database) -> None:
    """The public listener serves a receipt by the hash the chain holds."""
    db.execute("CREATE INDEX receipts_by_hash ON receipts (hash)")


def _m10_sales(db: sqlite_utils.Database) -> None:
    """Payments agents make to the gateway, one per EIP-3009 nonce (a nonce buys one call): the answer
    kept for a payment identifier, the settlement, per payer the calls and spend of each day, and what
    failed calls cost the operator (`cost`, counted against the payer's daily cap)."""
    db.execute("CREATE TABLE sales (nonce TEXT PRIMARY KEY, payer TEXT NOT NULL, amount INTEGER NOT NULL, "
               "route TEXT NOT NULL, state TEXT NOT NULL, identifier TEXT UNIQUE, fingerprint TEXT, "
               "valid_before INTEGER NOT NULL, created_at REAL NOT NULL, header TEXT NOT NULL, status INTEGER, "
               "body BLOB, headers TEXT, settle_tx TEXT, error TEXT NOT NULL DEFAULT '', "
               "cost INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL DEFAULT 0, tries INTEGER NOT NULL DEFAULT 0)")
    db.execute("CREATE INDEX sales_by_payer ON sales (payer, created_at)")
    db.execute("CREATE INDEX sales_by_state ON sales (state, valid_before)")


MIGRATIONS: Sequence[Callable[[sqlite_utils.Database], None]] = (_m1_core, _m2_router, _m3_payments, _m4_tx_day,
                                                                 _m5_payment_finality, _m6_settled_hash,
                                                                 _m7_work_order, _m8_request_history,
                                                                 _m9_receipts_by_hash, _m10_sales)


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> None:
    """Apply the migrations not yet applied (up to number `upto`, for tests of the next one)."""
    db = sqlite_utils.Database(conn)
    if "migrations" not in db.table_names():
        db.table("migrations").create({"version": int, "applied_at": float}, pk="version")
    done = {row["version"] for row in db.table("migrations").rows}
    for version, migration in enumerate(MIGRATIONS[:upto], start=1):
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            migration(db)
            db.table("migrations").insert({"version": version, "applied_at": time.time()})
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
