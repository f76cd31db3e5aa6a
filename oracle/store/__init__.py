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
from oracle.store.migrations import migrate
from oracle.store.payments import Payment, Payments
from oracle.store.requests import Requests, StoredRequest, request_key
from oracle.store.routing import Attempt, Routing
from oracle.store.states import ForbiddenTransition, PaymentState, RequestState, TxState
from oracle.store.txs import StoredTx, Transactions

__all__ = ["Attempt", "Blocks", "ForbiddenTransition", "Payment", "PaymentState", "Payments", "RequestState",
           "Requests", "Routing", "Store", "StoreInUse", "StoreLock", "StoredRequest", "StoredTx", "Transactions",
           "TxState", "request_key"]


class Store:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.db = Db(conn)
        self.routing = Routing(self.db)
        self.requests = Requests(self.db, self.routing)
        self.payments = Payments(self.db)
        self.blocks = Blocks(self.db)
        self.txs = Transactions(self.db, self.requests)

    @classmethod
    def open(cls, path: Path | str) -> Store:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn)
        return cls(conn)

    async def commit(self) -> None:
        """Return once every write made so far is committed (one commit per loop pass, shared)."""
        await self.db.commit()

    def commit_now(self) -> None:
        self.db.commit_now()

    def close(self) -> None:
        self.db.commit_now()
        self.db.conn.close()
