"""Requests as the chain showed them, where each is in its lifecycle, and each answer's receipt."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from oracle.protocol import Status
from oracle.store.db import Area, Db
from oracle.store.routing import Routing
from oracle.store.states import REQUEST, RequestState

R = RequestState
SETTLED = (R.FULFILLED, R.CANCELLED)
# a request the chain may still settle (any state but a settlement of it on record)
UNSETTLED = (R.SEEN, R.CONFIRMED, R.ACCEPTED, R.REFUSED, R.ANSWERED, R.SIGNED, R.SUBMITTED, R.EXPIRED,
             R.UNPROFITABLE, R.ROLLED_BACK)
# what a reorg of its block takes back: all but what the chain settled or we gave up for good
ROLLABLE = (R.SEEN, R.CONFIRMED, R.ACCEPTED, R.REFUSED, R.ANSWERED, R.SIGNED, R.SUBMITTED, R.UNPROFITABLE,
            R.ROLLED_BACK)


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


def request_key(chain_id: int, oracle: str, request_id: bytes) -> str:
    return f"{chain_id}:{oracle.lower()}:0x{request_id.hex()}"


class Requests(Area):
    def __init__(self, db: Db, routing: Routing) -> None:
        super().__init__(db)
        self._routing = routing

    def transition(self, key: str, from_states: Iterable[RequestState], to: RequestState, *,
                   reason: int | None = None, detail: str | None = None, **fields: Any) -> bool:
        """Move a request to `to` if it is in one of `from_states` (see Db.transition); `reason` and
        `detail` are stored with it. False when something else (a reorg, a settlement seen on-chain)
        moved it meanwhile."""
        if reason is not None:
            fields["reason"] = reason
        if detail is not None:
            fields["reason_detail"] = detail
        fields["updated_at"] = time.time()
        return self._db.transition(REQUEST, "requests", "key", key, from_states, to, fields)

    def insert(self, r: StoredRequest) -> bool:
        """Record a request seen in a log. Returns False if it was already known (same key)."""
        REQUEST.check_initial(R(r.state))
        now = time.time()
        cur = self._db.write(
            "INSERT INTO requests (key, chain_id, oracle, request_id, block_number, block_hash, log_index, "
            "requester, nonce, fee, params, deadline, state, reason, reason_detail, status, updated_at, seen_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO NOTHING",
            (r.key, r.chain_id, r.oracle, r.request_id, r.block_number, r.block_hash, r.log_index, r.requester,
             r.nonce, str(r.fee), r.params, r.deadline, r.state, r.reason, r.reason_detail, r.status, now, now),
        )
        return cur.rowcount == 1

    def reinclude(self, r: StoredRequest) -> None:
        """A known request appeared in another block (re-included after a reorg, noticed or not). The
        same request id can carry other content (the old request was reorganised away and the
        requester's nonce was free again): then nothing of the old one is kept, not even its model
        attempts or a settlement we had seen, and it is answered and signed anew. The same request
        already settled is left alone."""
        row = self._db.one("SELECT state, params, fee, requester, block_hash FROM requests WHERE key=?", (r.key,))
        if row is None:
            return
        same = (bytes(row["params"]), row["fee"], row["requester"]) == (r.params, str(r.fee), r.requester)
        if same and row["state"] in (R.FULFILLED, R.EXPIRED, R.CANCELLED, R.UNPROFITABLE):
            return
        if row["state"] != R.ROLLED_BACK and bytes(row["block_hash"]) == r.block_hash:
            return  # the same log seen again
        where: dict[str, Any] = {"block_number": r.block_number, "block_hash": r.block_hash, "log_index": r.log_index,
                 "nonce": r.nonce, "deadline": r.deadline}
        if same:
            # The same request in another block: its commitment is the same, so its answer, signature and
            # any transaction carrying it stay valid. Only where it is changes; a request that had been
            # rolled back waits for its new block's depth again (the pipeline re-uses what it stored).
            state = R(r.state) if row["state"] == R.ROLLED_BACK else R(row["state"])
            self.transition(r.key, [R(row["state"])], state, **where)
            return
        # Another request under the same id: the old one is gone (rolled back), the new one starts over.
        self._routing.forget(r.key)
        self.transition(r.key, [R(row["state"])], R.ROLLED_BACK)
        self.transition(r.key, [R.ROLLED_BACK], R(r.state), **where, requester=r.requester, fee=str(r.fee),
                        params=r.params, reason=0, detail="", status=0, result=None, model_used=None,
                        receipt_hash=None, signature=None, fulfill_tx=None, settled_block=None, settled_hash=None)

    def mark_settled(self, key: str, state: RequestState, block_number: int, tx_hash: bytes | None = None,
                     block_hash: bytes | None = None) -> None:
        """The chain says the request was fulfilled or cancelled (by anyone) in `block_number` (of hash
        `block_hash`), by the transaction `tx_hash` when it is known: the row names the settlement that
        is on-chain."""
        fields: dict[str, Any] = {"settled_block": block_number, "settled_hash": block_hash}
        if tx_hash is not None:
            fields["fulfill_tx"] = tx_hash
        self.transition(key, [*UNSETTLED, *SETTLED], state, **fields)

    def reopen_settled_after(self, chain_id: int, oracle: str, block_number: int) -> list[str]:
        """Settlements above `block_number` were reorganised away: signed answers go back to be sent
        again, the rest back to be answered."""
        rows = self._db.all("SELECT key, signature FROM requests WHERE chain_id=? AND oracle=? AND settled_block>? "
                            "AND state IN (?,?)", (chain_id, oracle, block_number, *SETTLED))
        self._reopen_settled(rows)
        return [r["key"] for r in rows]

    def _reopen_settled(self, rows: Sequence[Any]) -> None:
        """Settlements no longer on the chain: signed answers go back to be sent, the rest to be answered."""
        for r in rows:
            self.transition(r["key"], SETTLED, R.SIGNED if r["signature"] is not None else R.CONFIRMED,
                            settled_block=None, settled_hash=None)

    def settlements_in_blocks(self, chain_id: int, oracle: str, start: int, end: int) -> list[tuple[str, int, bytes]]:
        """(key, block number, block hash) of the settlements on record in blocks start..end."""
        rows = self._db.all("SELECT key, settled_block, settled_hash FROM requests WHERE chain_id=? AND oracle=? AND "
                            "settled_block BETWEEN ? AND ? AND state IN (?,?) AND settled_hash IS NOT NULL",
                            (chain_id, oracle, start, end, *SETTLED))
        return [(r["key"], r["settled_block"], bytes(r["settled_hash"])) for r in rows]

    def reopen_settlements(self, keys: Sequence[str]) -> None:
        """These settlements are no longer on the chain (their block was replaced)."""
        marks = ",".join("?" * len(keys))
        if keys:
            self._reopen_settled(self._db.all(f"SELECT key, signature FROM requests WHERE key IN ({marks}) AND state "
                                              "IN (?,?)", (*keys, *SETTLED)))

    def open_in_blocks(self, chain_id: int, oracle: str, start: int, end: int) -> list[tuple[str, int, bytes]]:
        """(key, block number, block hash) of the requests not yet settled that lie in blocks start..end."""
        terminal = sorted(REQUEST.terminal)
        marks = ",".join("?" * len(terminal))
        rows = self._db.all(f"SELECT key, block_number, block_hash FROM requests WHERE chain_id=? AND oracle=? AND "
                            f"block_number BETWEEN ? AND ? AND state NOT IN ({marks})",
                            (chain_id, oracle, start, end, *terminal))
        return [(r["key"], r["block_number"], bytes(r["block_hash"])) for r in rows]

    def highest_block(self, chain_id: int, oracle: str) -> int:
        """The highest block an open request or a settlement on record lies in."""
        row = self._db.one("SELECT MAX(MAX(block_number), COALESCE(MAX(settled_block), 0)) AS n FROM requests "
                           "WHERE chain_id=? AND oracle=? AND state NOT IN (?,?)",
                           (chain_id, oracle, R.ROLLED_BACK, R.EXPIRED))
        return int(row["n"]) if row is not None and row["n"] is not None else 0

    def get(self, key: str) -> StoredRequest | None:
        row = self._db.one("SELECT * FROM requests WHERE key=?", (key,))
        return _request_from_row(row) if row is not None else None

    def in_state(self, chain_id: int, states: Iterable[str], limit: int = 100_000) -> list[StoredRequest]:
        states = list(states)
        marks = ",".join("?" * len(states))
        rows = self._db.all(f"SELECT * FROM requests WHERE chain_id=? AND state IN ({marks}) "
                            "ORDER BY block_number, log_index LIMIT ?", (chain_id, *states, limit))
        return [_request_from_row(r) for r in rows]

    def keys_in_state(self, chain_id: int, states: Iterable[str], limit: int) -> list[str]:
        """The keys of `in_state`, in its order: for looking over a page without reading its rows. Each
        state is read in order from its index and the pages merged (one query over all the states
        sorted the whole backlog on every call)."""
        pages = [self._db.all("SELECT block_number, log_index, key FROM requests WHERE chain_id=? AND state=? "
                              "ORDER BY block_number, log_index LIMIT ?", (chain_id, state, limit))
                 for state in states]
        merged = heapq.merge(*([(r["block_number"], r["log_index"], r["key"]) for r in page] for page in pages))
        return [key for _, _, key in itertools.islice(merged, limit)]

    def get_many(self, keys: Sequence[str]) -> list[StoredRequest]:
        """The rows of `keys` still there, in the order given."""
        if not keys:
            return []
        rows = self._db.all(f"SELECT * FROM requests WHERE key IN ({','.join('?' * len(keys))})", list(keys))
        found = {r["key"]: _request_from_row(r) for r in rows}
        return [found[k] for k in keys if k in found]

    def count_by_state(self, chain_id: int | None = None) -> dict[str, int]:
        if chain_id is None:
            rows = self._db.all("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")
        else:
            rows = self._db.all("SELECT state, COUNT(*) AS n FROM requests WHERE chain_id=? GROUP BY state",
                                (chain_id,))
        return {r["state"]: r["n"] for r in rows}

    def outcomes(self, chain_id: int) -> tuple[int, int, int]:
        """(seen, answered, failed) on a chain, for a live count: answered is fulfilled with a success;
        failed is fulfilled with a failure status, or left to expire (expired, unprofitable)."""
        row = self._db.all(
            "SELECT COUNT(*) AS seen, "
            "COALESCE(SUM(state=? AND status=?), 0) AS answered, "
            "COALESCE(SUM((state=? AND status=?) OR state IN (?, ?)), 0) AS failed "
            "FROM requests WHERE chain_id=? AND state!=?",
            (R.FULFILLED, Status.SUCCESS, R.FULFILLED, Status.FAILURE, R.EXPIRED, R.UNPROFITABLE, chain_id,
             R.ROLLED_BACK))[0]
        return int(row["seen"]), int(row["answered"]), int(row["failed"])

    def retry(self, key: str) -> bool:
        """An unprofitable request's stored signed response goes back to be sent (an operator's retry, when
        gas is cheaper); its fee is checked against the gas again before it is. False if it moved."""
        return self.transition(key, [R.UNPROFITABLE], R.SIGNED, detail="")

    def requeue_submitted(self, keys: Sequence[str]) -> None:
        """Responses whose transaction failed go back to be sent again (only if still submitted)."""
        for key in keys:
            self.transition(key, [R.SUBMITTED], R.SIGNED)

    def confirm_up_to(self, chain_id: int, block_number: int) -> int:
        rows = self._db.all("SELECT key FROM requests WHERE chain_id=? AND state=? AND block_number<=?",
                            (chain_id, R.SEEN, block_number))
        return sum(self.transition(r["key"], [R.SEEN], R.CONFIRMED) for r in rows)

    def store_answer(self, key: str, *, status: int, reason: int, result: bytes, model_used: bytes,
                     receipt_hash: bytes, receipt_body: str, detail: str = "") -> bool:
        """Store the answer of an accepted or refused request; False if the request moved meanwhile."""
        if not self.transition(key, [R.ACCEPTED, R.REFUSED], R.ANSWERED, reason=reason, detail=detail, status=status,
                               result=result, model_used=model_used, receipt_hash=receipt_hash, signature=None):
            return False
        self._db.write("INSERT INTO receipts (request_key, body, hash) VALUES (?,?,?) ON CONFLICT(request_key) "
                       "DO UPDATE SET body=excluded.body, hash=excluded.hash", (key, receipt_body, receipt_hash))
        return True

    def store_signature(self, key: str, signature: bytes) -> bool:
        """answered -> signed; False if the request moved meanwhile."""
        return self.transition(key, [R.ANSWERED], R.SIGNED, signature=signature)

    def rollback_in_block(self, key: str, block_hash: bytes) -> bool:
        """A log holding this request was removed by a reorg: roll it back if that was its block."""
        row = self._db.one("SELECT block_hash FROM requests WHERE key=?", (key,))
        if row is None or bytes(row["block_hash"]) != block_hash:
            return False
        return self.transition(key, [s for s in ROLLABLE if s != R.ROLLED_BACK], R.ROLLED_BACK)

    def mark_submitted(self, keys: Sequence[str], tx_hash: bytes) -> None:
        for key in keys:
            self.transition(key, [R.SIGNED, R.SUBMITTED], R.SUBMITTED, fulfill_tx=tx_hash)

    def rollback_after(self, chain_id: int, oracle: str, block_number: int) -> list[str]:
        """Requests in blocks above `block_number` go back to rolled_back (unless settled or given up)."""
        rows = self._db.all(f"SELECT key FROM requests WHERE chain_id=? AND oracle=? AND block_number>? AND "
                            f"state IN ({','.join('?' * len(ROLLABLE))})", (chain_id, oracle, block_number, *ROLLABLE))
        keys = [r["key"] for r in rows]
        for key in keys:
            self.transition(key, ROLLABLE, R.ROLLED_BACK)
        return keys

    def reopen_settled_by(self, keys: Sequence[str], block_number: int, tx_hash: bytes) -> list[str]:
        """Our transaction `tx_hash`, on record as mined in `block_number`, is not on the chain: the
        requests it settled there are carried by it again. Returns those."""
        marks = ",".join("?" * len(keys))
        rows = self._db.all(f"SELECT key FROM requests WHERE key IN ({marks}) AND state=? AND settled_block=?",
                            (*keys, R.FULFILLED, block_number))
        moved = [r["key"] for r in rows]
        for key in moved:
            self.transition(key, [R.FULFILLED], R.SUBMITTED, settled_block=None, settled_hash=None, fulfill_tx=tx_hash)
        return moved

    def receipt(self, key: str) -> tuple[str, bytes] | None:
        row = self._db.one("SELECT body, hash FROM receipts WHERE request_key=?", (key,))
        return (row["body"], row["hash"]) if row is not None else None


def _request_from_row(r: Any) -> StoredRequest:
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
