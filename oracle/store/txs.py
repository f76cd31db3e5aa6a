"""Our transactions, the nonces handed out, and the gas spent per day."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from oracle.store.db import Area, Db
from oracle.store.requests import Requests
from oracle.store.states import TX, TxState

T = TxState
ON_CHAIN = (T.MINED, T.CONFIRMED)


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
    state: str
    sent_at: float
    block_number: int | None
    block_hash: bytes | None


class Transactions(Area):
    def __init__(self, db: Db, requests: Requests) -> None:
        super().__init__(db)
        self._requests = requests

    def transition(self, tx_hash: bytes, from_states: Iterable[TxState], to: TxState, **fields: Any) -> bool:
        return self._db.transition(TX, "txs", "tx_hash", tx_hash, from_states, to, fields)

    def allocate_nonce(self, chain_id: int, sender: str, chain_nonce: int) -> int:
        """The next nonce: never below the chain's count, never one this store already handed out."""
        row = self._db.one("SELECT next_nonce FROM nonces WHERE chain_id=? AND sender=?", (chain_id, sender))
        nonce = max(chain_nonce, row["next_nonce"] if row is not None else 0)
        self._db.write("INSERT INTO nonces (chain_id, sender, next_nonce) VALUES (?,?,?) ON CONFLICT(chain_id, sender) "
                       "DO UPDATE SET next_nonce=excluded.next_nonce", (chain_id, sender, nonce + 1))
        return nonce

    def record(self, t: StoredTx) -> None:
        TX.check_initial(T(t.state))
        self._db.write("INSERT INTO txs (tx_hash, chain_id, sender, nonce, raw, max_fee, priority_fee, request_keys, "
                       "state, sent_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                       (t.tx_hash, t.chain_id, t.sender, t.nonce, t.raw, str(t.max_fee), str(t.priority_fee),
                        json.dumps(t.request_keys), t.state, t.sent_at))

    def record_mined(self, t: StoredTx, block_number: int, block_hash: bytes, gas_used: int, gas_cost: int,
                     day: str) -> None:
        """The chain's receipt for `t`: where it was mined and what it cost, counted in `day`'s gas. (One we
        had given up as dropped may be mined after all: the chain's receipt decides.)"""
        if self.transition(t.tx_hash, [T.PENDING, T.REPLACED, T.DROPPED], T.MINED, block_number=block_number,
                           block_hash=block_hash, gas_used=gas_used, gas_cost=str(gas_cost), mined_day=day):
            self.add_gas_spend(t.chain_id, day, gas_cost)

    def in_state(self, chain_id: int, sender: str, states: Iterable[str]) -> list[StoredTx]:
        states = list(states)
        marks = ",".join("?" * len(states))
        rows = self._db.all(f"SELECT * FROM txs WHERE chain_id=? AND sender=? AND state IN ({marks}) "
                            "ORDER BY nonce, sent_at", (chain_id, sender, *states))
        return [_tx_from_row(r) for r in rows]

    def mined_after(self, chain_id: int, sender: str, block_number: int) -> list[StoredTx]:
        rows = self._db.all("SELECT * FROM txs WHERE chain_id=? AND sender=? AND state IN (?,?) AND block_number>?",
                            (chain_id, sender, *ON_CHAIN, block_number))
        return [_tx_from_row(r) for r in rows]

    def included_from(self, chain_id: int, sender: str, nonce: int) -> list[StoredTx]:
        """Transactions on record as mined at `nonce` or above (the chain's count says they are not)."""
        rows = self._db.all("SELECT * FROM txs WHERE chain_id=? AND sender=? AND state IN (?,?) AND nonce>=?",
                            (chain_id, sender, *ON_CHAIN, nonce))
        return [_tx_from_row(r) for r in rows]

    def at_nonce(self, chain_id: int, sender: str, nonce: int) -> list[StoredTx]:
        """Every transaction ever signed for this nonce, whatever its state."""
        rows = self._db.all("SELECT * FROM txs WHERE chain_id=? AND sender=? AND nonce=? ORDER BY sent_at",
                            (chain_id, sender, nonce))
        return [_tx_from_row(r) for r in rows]

    def live_nonces(self, chain_id: int, sender: str, low: int) -> tuple[set[int], int]:
        """(nonces from `low` with a transaction that may still use them, the next nonce to hand out)."""
        rows = self._db.all("SELECT DISTINCT nonce FROM txs WHERE chain_id=? AND sender=? AND nonce>=? AND "
                            "state IN (?,?,?,?)", (chain_id, sender, low, T.PENDING, T.REPLACED, *ON_CHAIN))
        row = self._db.one("SELECT next_nonce FROM nonces WHERE chain_id=? AND sender=?", (chain_id, sender))
        return {r["nonce"] for r in rows}, (row["next_nonce"] if row is not None else 0)

    def reopen(self, t: StoredTx) -> list[str]:
        """A transaction on record as mined is not on the chain (its block was reorganised away): pending
        again, its gas no longer counted, and the requests it settled carried by it again. Returns those."""
        row = self._db.one("SELECT gas_cost, mined_day FROM txs WHERE tx_hash=?", (t.tx_hash,))
        if not self.transition(t.tx_hash, ON_CHAIN, T.PENDING, block_number=None, block_hash=None, gas_used=None,
                               gas_cost=None, mined_day=None):
            return []
        if row is not None and row["gas_cost"] is not None and row["mined_day"] is not None:
            self.add_gas_spend(t.chain_id, row["mined_day"], -int(row["gas_cost"]))
        if not t.request_keys or t.block_number is None:
            return []
        return self._requests.reopen_settled_by(t.request_keys, t.block_number, t.tx_hash)

    def add_gas_spend(self, chain_id: int, day: str, wei: int) -> None:
        row = self._db.one("SELECT wei FROM gas_spend WHERE chain_id=? AND day=?", (chain_id, day))
        total = wei + (int(row["wei"]) if row is not None else 0)
        self._db.write("INSERT INTO gas_spend (chain_id, day, wei) VALUES (?,?,?) ON CONFLICT(chain_id, day) "
                       "DO UPDATE SET wei=excluded.wei", (chain_id, day, str(total)))

    def gas_spent(self, chain_id: int, day: str) -> int:
        row = self._db.one("SELECT wei FROM gas_spend WHERE chain_id=? AND day=?", (chain_id, day))
        return int(row["wei"]) if row is not None else 0


def _tx_from_row(r: Any) -> StoredTx:
    return StoredTx(bytes(r["tx_hash"]), r["chain_id"], r["sender"], r["nonce"], bytes(r["raw"]), int(r["max_fee"]),
                    int(r["priority_fee"]), json.loads(r["request_keys"]), r["state"], r["sent_at"],
                    r["block_number"], bytes(r["block_hash"]) if r["block_hash"] is not None else None)
