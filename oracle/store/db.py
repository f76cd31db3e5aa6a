"""The one SQLite connection every area of the store shares, and the one-commit-per-pass rule.

Writes join one transaction per event-loop pass: a write opens it, and it commits at the end of the
pass (`loop.call_soon`). Code that is about to cause a side effect (an HTTP call, a signature, a
transaction) first does `await commit()`, which returns once everything written so far is durable;
writers in the same pass share that one commit. Every state write goes through `transition`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from oracle.store.states import Machine, taken

S = TypeVar("S", bound=str)
log = logging.getLogger("oracle.store")
# Where a request ends up: one INFO line each (the pipeline says answered, refused and failed).
_REQUEST_OUTCOMES = frozenset({"fulfilled", "expired", "unprofitable", "cancelled"})


class Db:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._in_tx = False
        self._commit_waiters: asyncio.Future[None] | None = None

    def write(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        self._begin()
        return self.conn.execute(sql, args)

    def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._begin()
        self.conn.executemany(sql, rows)

    def _begin(self) -> None:
        if self._in_tx:
            return
        self.conn.execute("BEGIN")
        self._in_tx = True
        with contextlib.suppress(RuntimeError):  # no loop: the caller commits with commit_now()
            asyncio.get_running_loop().call_soon(self.commit_now)

    def commit_now(self) -> None:
        waiters, self._commit_waiters = self._commit_waiters, None
        try:
            if self._in_tx:
                self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # Nothing of this pass is durable: undo it and fail everyone waiting, so no side effect
            # follows writes that did not land (the daemon stops; the store is as before the pass).
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
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

    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    def one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        cur = self.conn.execute(sql, args)
        cur.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cur.fetchone()
        return row

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, args)
        cur.row_factory = sqlite3.Row
        return list(cur.fetchall())

    def transition(self, machine: Machine[Any], table: str, key_column: str, key: Any, from_states: Iterable[str],
                   to: str, fields: dict[str, Any] | None = None) -> bool:
        """Move the row `key` of `table` to the state `to` if it is in one of `from_states`, setting
        `fields` with it; returns whether it moved. Compare-and-set: the row's state is read and the
        update applies only while it is still that state. A pair the machine's table does not allow
        raises ForbiddenTransition, whatever the row's state. `to` among `from_states`: a row already
        there keeps its state and takes the fields (a refresh, not a transition)."""
        allowed = [machine.states(s) for s in from_states]
        machine.check(allowed, machine.states(to))
        row = self.one(f"SELECT state FROM {table} WHERE {key_column}=?", (key,))
        if row is None or row["state"] not in allowed:
            return False
        current = row["state"]
        sets = {"state": to, **(fields or {})}
        names = list(sets)
        self.write(f"UPDATE {table} SET {', '.join(f'{n}=?' for n in names)} WHERE {key_column}=? AND state=?",
                   (*(sets[n] for n in names), key, current))
        taken(machine, current, to)
        if current != to:
            _log_transition(machine, key, current, to, sets)
        return True


def _log_transition(machine: Machine[Any], key: Any, frm: str, to: str, fields: dict[str, Any]) -> None:
    """Every move at DEBUG; a request's final outcome at INFO. Fields: the key, both states, the reason."""
    outcome = machine.name == "request" and to in _REQUEST_OUTCOMES
    level = logging.INFO if outcome else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    reason = fields.get("reason_detail") or fields.get("error") or ""
    if isinstance(key, bytes):  # a transaction's hash
        key = "0x" + key.hex()
    facts: dict[str, Any] = {"machine": machine.name, "from": frm, "state": to, "reason": reason}
    if machine.name == "request":
        facts["request"] = key
        facts["chain_id"] = int(str(key).split(":", 1)[0])
        if outcome:
            facts["outcome"] = to
    else:
        facts["key"] = key
    if outcome and fields.get("fulfill_tx"):
        facts["tx"] = "0x" + bytes(fields["fulfill_tx"]).hex()
    log.log(level, "%s %s: %s -> %s%s", machine.name, key, frm, to, f" ({reason})" if reason else "",
            extra={"fields": facts})


class Area:
    """One area of the store on the shared connection; `commit` is the shared commit of the pass."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def commit(self) -> None:
        await self._db.commit()
