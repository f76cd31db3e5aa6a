"""Where following the oracle stands, kept between runs: the next block to read, the hashes of the
blocks read in the reorg window and what was given in them (to retract it), and the requests still
open (to decode their results and notice their expiry).

Two ways to keep it: `MemoryCursor` (the caller saves `cursor.to_json()` where it likes and passes
`ResultsCursor.from_json(...)` back), or `SqliteCursor(path)`, a file of the client's own written through
after each item the caller takes (a few rows, one commit)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from oracle.client.settled import Settled


class CursorMismatch(ValueError):
    """A saved cursor of another chain or oracle."""


@dataclass(frozen=True)
class OpenRequest:
    block_number: int
    block_hash: bytes
    requester: str
    deadline: int
    params_blob: bytes  # abi.encode(params), as the event carries it


Change = tuple[Any, ...]


class ResultsCursor:
    def __init__(self, chain_id: int, oracle: str, next_block: int) -> None:
        self.chain_id, self.oracle = chain_id, oracle.lower()
        self.next_block = next_block
        self.blocks: dict[int, bytes] = {}  # block number -> hash, of blocks read, in the window
        self.given: dict[str, Settled] = {}  # event id -> what was given, in the window
        self.open: dict[bytes, OpenRequest] = {}
        self._changes: list[Change] = []

    # ------------------------------------------------------------ changes (each noted for a store)

    def advance(self, next_block: int) -> None:
        self.next_block = next_block
        self._changes.append(("next", next_block))

    def see_block(self, number: int, block_hash: bytes) -> None:
        if self.blocks.get(number) != block_hash:
            self.blocks[number] = block_hash
            self._changes.append(("block", number, block_hash))

    def give(self, settled: Settled) -> None:
        self.given[settled.event_id] = settled
        self._changes.append(("give", settled))

    def take_back(self, event_id: str) -> None:
        self.given.pop(event_id, None)
        self._changes.append(("take_back", event_id))

    def open_request(self, request_id: bytes, request: OpenRequest) -> None:
        self.open[request_id] = request
        self._changes.append(("open", request_id, request))

    def close_request(self, request_id: bytes) -> None:
        if self.open.pop(request_id, None) is not None:
            self._changes.append(("close", request_id))

    def forget_from(self, number: int) -> None:
        """A reorg replaced the blocks from `number`: forget their hashes and the requests seen in them."""
        self.blocks = {n: h for n, h in self.blocks.items() if n < number}
        self.open = {rid: o for rid, o in self.open.items() if o.block_number < number}
        self._changes.append(("forget_from", number))

    def trim(self, low: int) -> None:
        """Blocks below `low` are out of the reorg window: their hashes and what was given in them go."""
        if any(n < low for n in self.blocks) or any(s.block_number < low for s in self.given.values()):
            self.blocks = {n: h for n, h in self.blocks.items() if n >= low}
            self.given = {k: s for k, s in self.given.items() if s.block_number >= low}
            self._changes.append(("trim", low))

    def changes(self) -> list[Change]:
        """What changed since the last call, in order."""
        out, self._changes = self._changes, []
        return out

    # ------------------------------------------------------------ as JSON

    def to_json(self) -> str:
        return json.dumps({
            "chain_id": self.chain_id, "oracle": self.oracle, "next_block": self.next_block,
            "blocks": {str(n): h.hex() for n, h in self.blocks.items()},
            "given": [s.to_json() for s in self.given.values()],
            "open": {rid.hex(): _open_json(o) for rid, o in self.open.items()}})

    @classmethod
    def from_json(cls, text: str) -> ResultsCursor:
        doc = json.loads(text)
        cursor = cls(int(doc["chain_id"]), doc["oracle"], int(doc["next_block"]))
        cursor.blocks = {int(n): bytes.fromhex(h) for n, h in doc["blocks"].items()}
        cursor.given = {s.event_id: s for s in (Settled.from_json(g) for g in doc["given"])}
        cursor.open = {bytes.fromhex(rid): _open_from(o) for rid, o in doc["open"].items()}
        return cursor


def _open_json(o: OpenRequest) -> dict[str, Any]:
    return {"block_number": o.block_number, "block_hash": o.block_hash.hex(), "requester": o.requester,
            "deadline": o.deadline, "params": o.params_blob.hex()}


def _open_from(doc: dict[str, Any]) -> OpenRequest:
    return OpenRequest(int(doc["block_number"]), bytes.fromhex(doc["block_hash"]), doc["requester"],
                       int(doc["deadline"]), bytes.fromhex(doc["params"]))


class CursorStore(Protocol):
    def load(self, chain_id: int, oracle: str) -> ResultsCursor | None: ...

    def save(self, cursor: ResultsCursor) -> None: ...


class MemoryCursor:
    """The cursor lives in the caller's hands: pass one to start from (or None), read `.cursor` to save it."""

    def __init__(self, cursor: ResultsCursor | None = None) -> None:
        self.cursor = cursor

    def load(self, chain_id: int, oracle: str) -> ResultsCursor | None:
        if self.cursor is not None:
            _check(self.cursor, chain_id, oracle)
        return self.cursor

    def save(self, cursor: ResultsCursor) -> None:
        cursor.changes()
        self.cursor = cursor


def _check(cursor: ResultsCursor, chain_id: int, oracle: str) -> None:
    if (cursor.chain_id, cursor.oracle) != (chain_id, oracle.lower()):
        raise CursorMismatch(f"the cursor follows oracle {cursor.oracle} on chain {cursor.chain_id}, not {oracle} on "
                             f"chain {chain_id}: give each oracle a cursor of its own")


class SqliteCursor:
    """A SQLite file of the client's own (WAL), written through at each save."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(
            "CREATE TABLE IF NOT EXISTS meta (chain_id INTEGER NOT NULL, oracle TEXT NOT NULL, next_block INTEGER "
            "NOT NULL);"
            "CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash BLOB NOT NULL);"
            "CREATE TABLE IF NOT EXISTS given (event_id TEXT PRIMARY KEY, block_number INTEGER NOT NULL, doc TEXT "
            "NOT NULL);"
            "CREATE INDEX IF NOT EXISTS given_by_block ON given (block_number);"
            "CREATE TABLE IF NOT EXISTS open (request_id BLOB PRIMARY KEY, block_number INTEGER NOT NULL, "
            "doc TEXT NOT NULL);")

    def load(self, chain_id: int, oracle: str) -> ResultsCursor | None:
        row = self.conn.execute("SELECT chain_id, oracle, next_block FROM meta").fetchone()
        if row is None:
            return None
        cursor = ResultsCursor(int(row[0]), str(row[1]), int(row[2]))
        _check(cursor, chain_id, oracle)
        cursor.blocks = {int(n): bytes(h) for n, h in self.conn.execute("SELECT number, hash FROM blocks")}
        cursor.given = {s.event_id: s for s in (Settled.from_json(json.loads(d))
                                                for (d,) in self.conn.execute("SELECT doc FROM given"))}
        cursor.open = {bytes(rid): _open_from(json.loads(d))
                       for rid, d in self.conn.execute("SELECT request_id, doc FROM open")}
        return cursor

    def save(self, cursor: ResultsCursor) -> None:
        changes = cursor.changes()
        if not changes:
            return
        c = self.conn
        c.execute("BEGIN")
        try:
            if c.execute("SELECT 1 FROM meta").fetchone() is None:
                c.execute("INSERT INTO meta VALUES (?,?,?)", (cursor.chain_id, cursor.oracle, cursor.next_block))
            for change in changes:
                kind, args = change[0], change[1:]
                if kind == "next":
                    c.execute("UPDATE meta SET next_block=?", args)
                elif kind == "block":
                    c.execute("INSERT OR REPLACE INTO blocks VALUES (?,?)", args)
                elif kind == "give":
                    s = args[0]
                    c.execute("INSERT OR REPLACE INTO given VALUES (?,?,?)",
                              (s.event_id, s.block_number, json.dumps(s.to_json())))
                elif kind == "take_back":
                    c.execute("DELETE FROM given WHERE event_id=?", args)
                elif kind == "open":
                    c.execute("INSERT OR REPLACE INTO open VALUES (?,?,?)",
                              (args[0], args[1].block_number, json.dumps(_open_json(args[1]))))
                elif kind == "close":
                    c.execute("DELETE FROM open WHERE request_id=?", args)
                elif kind == "forget_from":
                    c.execute("DELETE FROM blocks WHERE number>=?", args)
                    c.execute("DELETE FROM open WHERE block_number>=?", args)
                elif kind == "trim":
                    c.execute("DELETE FROM blocks WHERE number<?", args)
                    c.execute("DELETE FROM given WHERE block_number<?", args)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()
