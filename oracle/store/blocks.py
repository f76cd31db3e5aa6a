"""Where each chain's intake stands (its cursor) and the hashes of the blocks it read, kept to find a
reorg's common block."""

from __future__ import annotations

from collections.abc import Iterable

from oracle.store.db import Area


class Blocks(Area):
    def cursor(self, chain_id: int, oracle: str) -> tuple[int, bytes] | None:
        row = self._db.one("SELECT block_number, block_hash FROM cursors WHERE chain_id=? AND oracle=?",
                           (chain_id, oracle))
        return (row["block_number"], bytes(row["block_hash"])) if row is not None else None

    def set_cursor(self, chain_id: int, oracle: str, block_number: int, block_hash: bytes) -> None:
        self._db.write("INSERT INTO cursors (chain_id, oracle, block_number, block_hash) VALUES (?,?,?,?) "
                       "ON CONFLICT(chain_id, oracle) DO UPDATE SET block_number=excluded.block_number, "
                       "block_hash=excluded.block_hash", (chain_id, oracle, block_number, block_hash))

    def remember(self, chain_id: int, blocks: Iterable[tuple[int, bytes, bytes | None]], keep: int = 2_048) -> None:
        """Remember (number, hash, parent hash or None) of blocks read, for finding a reorg's common block."""
        rows = [(chain_id, n, h, p) for n, h, p in blocks]
        if not rows:
            return
        self._db.write_many(
            "INSERT INTO blocks (chain_id, number, hash, parent_hash) VALUES (?,?,?,?) "
            "ON CONFLICT(chain_id, number) DO UPDATE SET parent_hash = CASE WHEN excluded.hash = blocks.hash "
            "THEN COALESCE(excluded.parent_hash, blocks.parent_hash) ELSE excluded.parent_hash END, "
            "hash = excluded.hash", rows)
        newest = max(n for _, n, _, _ in rows)
        self._db.write("DELETE FROM blocks WHERE chain_id=? AND number<?", (chain_id, newest - keep))

    def known(self, chain_id: int, below_or_at: int, limit: int = 64) -> list[tuple[int, bytes, bytes | None]]:
        rows = self._db.all("SELECT number, hash, parent_hash FROM blocks WHERE chain_id=? AND number<=? "
                            "ORDER BY number DESC LIMIT ?", (chain_id, below_or_at, limit))
        return [(r["number"], bytes(r["hash"]), bytes(r["parent_hash"]) if r["parent_hash"] else None)
                for r in rows]

    def forget_after(self, chain_id: int, number: int) -> None:
        self._db.write("DELETE FROM blocks WHERE chain_id=? AND number>?", (chain_id, number))
