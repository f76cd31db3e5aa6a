"""The daemon's memory: one SQLite file (WAL), one module per area, no SQL outside this package.

    store = Store.open(Path("oracle.sqlite"))
    store.requests.insert(...)
    await store.commit()          # now it is safe to act on it

Each area — `requests`, `routing`, `payments`, `blocks`, `txs` — shares the one connection and the
one-commit-per-pass rule of `Db`; callers take the area (or the narrow protocol) they need. Every state
write goes through `Db.transition` and the tables in `states`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from oracle.store.blocks import Blocks
from oracle.store.db import Db
from oracle.store.lock import StoreInUse, StoreLock
from oracle.store.migrations import MIGRATIONS, migrate
from oracle.store.payments import Payment, Payments
from oracle.store.queries import Queries
from oracle.store.requests import Requests, StoredRequest, request_key
from oracle.store.routing import Attempt, Routing
from oracle.store.sales import Account, Sale, Sales
from oracle.store.states import ForbiddenTransition, PaymentState, RequestState, SalePayment, TxState
from oracle.store.txs import StoredTx, Transactions

__all__ = ["Account", "Attempt", "Blocks", "ForbiddenTransition", "Payment", "PaymentState", "Payments", "Queries",
           "RequestState", "Requests", "Routing", "Sale", "SalePayment", "Sales", "Store", "StoreInUse", "StoreLock",
           "StoreUnreadable", "StoredRequest", "StoredTx", "Transactions", "TxState", "request_key"]


class StoreUnreadable(RuntimeError):
    """The store cannot be read as it is (missing, not a store, older than this code); says what to do."""


class Store:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.db = Db(conn)
        self.routing = Routing(self.db)
        self.requests = Requests(self.db, self.routing)
        self.payments = Payments(self.db)
        self.blocks = Blocks(self.db)
        self.txs = Transactions(self.db, self.requests)
        self.queries = Queries(self.db)
        self.sales = Sales(self.db)

    @classmethod
    def open(cls, path: Path | str) -> Store:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn)
        return cls(conn)

    @classmethod
    def open_reader(cls, path: Path | str) -> Store:
        """Open for reading only, beside a running daemon: no migration, no lock, no write. SQLite's WAL
        lets this read a consistent snapshot while the daemon writes."""
        path = Path(path)
        if not path.is_file():
            raise StoreUnreadable(f"no store at {path}: check [store] path in the config (relative paths are read "
                                  f"from the directory the command runs in), or start `oracle run` to create it")
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
            row = conn.execute("SELECT MAX(version) FROM migrations").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreUnreadable(f"{path} is not an oracle store ({exc}): check [store] path in the config") from None
        if row is None or row[0] is None or row[0] < len(MIGRATIONS):
            conn.close()
            raise StoreUnreadable(f"the store {path} was written by an older oracle: run this version's `oracle run` "
                                  f"once to bring it up to date, then read it")
        conn.execute("PRAGMA query_only=ON")
        return cls(conn)

    async def commit(self) -> None:
        """Return once every write made so far is committed (one commit per loop pass, shared)."""
        await self.db.commit()

    def commit_now(self) -> None:
        self.db.commit_now()

    def writable(self) -> str | None:
        """None when a write can be made now; otherwise why not (for readiness probes). Writes nothing."""
        if self.db.in_transaction:
            return None  # a write is open on this connection: it takes writes
        try:
            self.db.conn.execute("BEGIN IMMEDIATE")
            self.db.conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            return f"the store cannot take a write: {exc}"
        return None

    def close(self) -> None:
        self.db.commit_now()
        self.db.conn.close()
