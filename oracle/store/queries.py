"""What operators read: pages of requests and payments newest first, a request's history, what was spent
since a time, and each deployment's latest calls. Read-only; the daemon's own areas never call it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oracle.protocol import Status
from oracle.store.db import Area
from oracle.store.payments import Payment, _payment
from oracle.store.requests import StoredRequest, _request_from_row
from oracle.store.states import PAYMENT_SPENDING, RequestState

R = RequestState


@dataclass(frozen=True)
class SeenRequest:
    """A request with when it was first seen and last moved (0: before these times were kept)."""

    request: StoredRequest
    seen_at: float
    updated_at: float


@dataclass(frozen=True)
class StateChange:
    at: float
    state: str
    reason: int
    detail: str


@dataclass(frozen=True)
class TxRecord:
    tx_hash: bytes
    chain_id: int
    sender: str
    nonce: int
    state: str
    sent_at: float
    max_fee: int
    priority_fee: int
    request_keys: list[str]
    block_number: int | None
    gas_used: int | None
    gas_cost: int | None


@dataclass(frozen=True)
class DeploymentCalls:
    """A deployment's latest finished calls (at most the health window): how many, how many failed
    (provider errors), the median latency, and the last one."""

    deployment: str
    calls: int
    failures: int
    p50_ms: float
    last_at: float
    last_outcome: str
    last_error: str


@dataclass(frozen=True)
class HourLatency:
    """Requests fulfilled in one UTC hour and their time from first seen to fulfilled, seconds."""

    hour: int  # unix seconds at the hour's start
    fulfilled: int
    mean_s: float
    max_s: float


@dataclass(frozen=True)
class HourSpend:
    """What one UTC hour cost on a chain: gas of our mined transactions sent in it, and model calls
    started in it (a call paid over x402 costs its price, so model spend includes x402 payments)."""

    hour: int
    gas_wei: int
    models_micro_usd: int


@dataclass(frozen=True)
class StageReached:
    """A request reaching a stage of its path (a row of its history), with the seconds since it was seen."""

    history_id: int
    chain_id: int
    state: str
    seconds: float


class Queries(Area):
    def has_history(self) -> bool:
        """Whether the store keeps request history (a store last opened by an older daemon does not)."""
        return self._db.one("SELECT name FROM sqlite_master WHERE type='table' AND name='request_history'") is not None

    def requests_page(self, *, chain_id: int | None, states: Sequence[str], since: float | None, limit: int,
                      after: tuple[float, str] | None) -> list[SeenRequest]:
        """Requests newest first (by when they were seen, then key), after the (seen_at, key) of the last
        row of the previous page."""
        where, args = self._request_filter(chain_id, states, since)
        if after is not None:
            where.append("(seen_at < ? OR (seen_at = ? AND key < ?))")
            args += [after[0], after[0], after[1]]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.all(f"SELECT * FROM requests {clause} ORDER BY seen_at DESC, key DESC LIMIT ?", (*args, limit))
        return [SeenRequest(_request_from_row(r), r["seen_at"] or 0.0, r["updated_at"] or 0.0) for r in rows]

    def _request_filter(self, chain_id: int | None, states: Sequence[str],
                        since: float | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if chain_id is not None:
            where.append("chain_id = ?")
            args.append(chain_id)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        if since is not None:
            where.append("seen_at >= ?")
            args.append(since)
        return where, args

    def seen_request(self, key: str) -> SeenRequest | None:
        row = self._db.one("SELECT * FROM requests WHERE key=?", (key,))
        return SeenRequest(_request_from_row(row), row["seen_at"] or 0.0, row["updated_at"] or 0.0) if row else None

    def keys_with_request_id(self, request_id: bytes) -> list[str]:
        """Every request key with this id (one per chain and oracle it was seen on)."""
        return [r["key"] for r in self._db.all("SELECT key FROM requests WHERE request_id=? ORDER BY key",
                                               (request_id,))]

    def history(self, key: str) -> list[StateChange]:
        if not self.has_history():
            return []
        rows = self._db.all("SELECT at, state, reason, detail FROM request_history WHERE request_key=? ORDER BY id",
                            (key,))
        return [StateChange(r["at"], r["state"], r["reason"], r["detail"]) for r in rows]

    def txs_carrying(self, chain_id: int, key: str) -> list[TxRecord]:
        """Every transaction of ours that carried this request's response, oldest first."""
        rows = self._db.all("SELECT * FROM txs WHERE chain_id=? AND request_keys LIKE ? ORDER BY sent_at",
                            (chain_id, f'%"{key}"%'))
        return [_tx(r) for r in rows if key in json.loads(r["request_keys"])]

    def tx(self, tx_hash: bytes) -> TxRecord | None:
        row = self._db.one("SELECT * FROM txs WHERE tx_hash=?", (tx_hash,))
        return _tx(row) if row is not None else None

    def payments_page(self, *, states: Sequence[str], limit: int, before_id: int | None,
                      request_key: str | None = None) -> list[Payment]:
        """Payments newest first (by id), below `before_id` (the last id of the previous page)."""
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        if request_key is not None:
            where.append("request_key = ?")
            args.append(request_key)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return [_payment(r) for r in self._db.all(f"SELECT * FROM payments {clause} ORDER BY id DESC LIMIT ?",
                                                  (*args, limit))]

    def failures_since(self, chain_id: int, since: float) -> int:
        """Requests that ended without a successful answer since `since`: answered on-chain with a failure
        status, expired, or left unprofitable."""
        row = self._db.one("SELECT COUNT(*) AS n FROM requests WHERE chain_id=? AND updated_at>=? AND "
                           "((state=? AND status=?) OR state IN (?,?))",
                           (chain_id, since, R.FULFILLED, Status.FAILURE, R.EXPIRED, R.UNPROFITABLE))
        return int(row["n"]) if row is not None else 0

    def model_spend_since(self, chain_id: int, since: float) -> int:
        """Micro-USD the model calls for this chain's requests cost since `since`."""
        row = self._db.one("SELECT COALESCE(SUM(cost), 0) AS s FROM attempts WHERE request_key LIKE ? AND "
                           "started_at>=?", (f"{chain_id}:%", since))
        return int(row["s"]) if row is not None else 0

    def x402_spend_since(self, chain_id: int, since: float) -> dict[str, int]:
        """Per asset, base units paid (or possibly paid) over x402 for this chain's requests since `since`."""
        rows = self._db.all(f"SELECT asset, SUM(CAST(amount AS INTEGER)) AS s FROM payments WHERE request_key LIKE ? "
                            f"AND created_at>=? AND state IN ({','.join('?' * len(PAYMENT_SPENDING))}) "
                            "GROUP BY asset ORDER BY asset", (f"{chain_id}:%", since, *PAYMENT_SPENDING))
        return {r["asset"]: int(r["s"]) for r in rows}

    def latency_by_hour(self, chain_id: int, since: float) -> list[HourLatency]:
        """Per UTC hour from `since`, requests first fulfilled in it. Only requests seen since `since` are
        read (through the seen_at index, so a page that refreshes does not scan all history): one seen
        before the window and fulfilled in it is left out."""
        if not self.has_history():
            return []
        rows = self._db.all(
            "SELECT CAST(done / 3600 AS INTEGER) * 3600 AS hour, COUNT(*) AS n, AVG(done - seen_at) AS mean, "
            "MAX(done - seen_at) AS most FROM ("
            " SELECT r.seen_at AS seen_at, MIN(h.at) AS done FROM requests r "
            " JOIN request_history h ON h.request_key = r.key AND h.state = ? "
            " WHERE r.seen_at >= ? AND r.chain_id = ? GROUP BY r.key) "
            "WHERE done >= ? GROUP BY hour ORDER BY hour", (R.FULFILLED, since, chain_id, since))
        return [HourLatency(int(r["hour"]), int(r["n"]), float(r["mean"]), float(r["most"])) for r in rows]

    def spend_by_hour(self, chain_id: int, since: float) -> list[HourSpend]:
        """Per UTC hour from `since` with any spend: gas (transactions sent since, with their receipt's cost)
        and model calls (of requests seen since)."""
        gas = {int(r["hour"]): int(r["wei"]) for r in self._db.all(
            "SELECT CAST(sent_at / 3600 AS INTEGER) * 3600 AS hour, SUM(CAST(gas_cost AS INTEGER)) AS wei FROM txs "
            "WHERE chain_id = ? AND sent_at >= ? AND gas_cost IS NOT NULL GROUP BY hour", (chain_id, since))}
        models = {int(r["hour"]): int(r["cost"]) for r in self._db.all(
            "SELECT CAST(a.started_at / 3600 AS INTEGER) * 3600 AS hour, SUM(a.cost) AS cost FROM requests r "
            "JOIN attempts a ON a.request_key = r.key WHERE r.seen_at >= ? AND r.chain_id = ? AND a.started_at >= ? "
            "AND a.cost IS NOT NULL GROUP BY hour", (since, chain_id, since))}
        return [HourSpend(h, gas.get(h, 0), models.get(h, 0)) for h in sorted(gas.keys() | models.keys())]

    def senders(self, chain_id: int) -> list[str]:
        """The addresses our transactions on this chain were sent from."""
        return [r["sender"] for r in self._db.all("SELECT DISTINCT sender FROM txs WHERE chain_id=? ORDER BY sender",
                                                  (chain_id,))]

    def payers(self) -> list[str]:
        """The payment wallets x402 payments were made from."""
        return [r["payer"] for r in self._db.all("SELECT DISTINCT payer FROM payments WHERE payer != '' "
                                                 "ORDER BY payer")]

    def deployment_calls(self, window: int) -> list[DeploymentCalls]:
        """Each deployment's latest `window` finished calls, as the store knows them."""
        rows = self._db.all(
            "SELECT deployment, outcome, latency_ms, started_at, error, n FROM ("
            " SELECT deployment, outcome, latency_ms, started_at, error, "
            " ROW_NUMBER() OVER (PARTITION BY deployment ORDER BY started_at DESC, attempt_id DESC) AS n "
            " FROM attempts WHERE state='done') WHERE n <= ? ORDER BY deployment, n", (window,))
        by: dict[str, list[Any]] = {}
        for r in rows:
            by.setdefault(r["deployment"], []).append(r)
        out = []
        for deployment, calls in by.items():
            latencies = sorted(float(c["latency_ms"] or 0.0) for c in calls)
            last = calls[0]
            out.append(DeploymentCalls(deployment, len(calls), sum(c["outcome"] == "error" for c in calls),
                                       latencies[len(latencies) // 2], last["started_at"] or 0.0,
                                       last["outcome"], last["error"] or ""))
        return out


    def receipt_by_hash(self, receipt_hash: bytes) -> str | None:
        """The canonical receipt whose keccak is `receipt_hash`, as stored (its bytes hash to it)."""
        row = self._db.one("SELECT body FROM receipts WHERE hash=? LIMIT 1", (receipt_hash,))
        return str(row["body"]) if row is not None else None

    def last_history_id(self) -> int:
        row = self._db.one("SELECT COALESCE(MAX(id), 0) AS n FROM request_history")
        return int(row["n"]) if row is not None else 0

    def stages_after(self, history_id: int, states: Sequence[str], limit: int) -> list[StageReached]:
        """History rows after `history_id` that reach one of `states`, oldest first, each with the seconds
        from its request's first sighting (requests seen before these times were kept are left out)."""
        rows = self._db.all(
            f"SELECT h.id AS id, r.chain_id AS chain_id, h.state AS state, h.at - r.seen_at AS seconds "
            f"FROM request_history h JOIN requests r ON r.key = h.request_key WHERE h.id > ? "
            f"AND h.state IN ({','.join('?' * len(states))}) AND r.seen_at > 0 ORDER BY h.id LIMIT ?",
            (history_id, *states, limit))
        return [StageReached(int(r["id"]), int(r["chain_id"]), str(r["state"]), max(0.0, float(r["seconds"])))
                for r in rows]

    def payments_by_state(self) -> dict[tuple[str, str], int]:
        """(provider, state) -> payments on record."""
        return {(r["provider"], r["state"]): int(r["n"]) for r in self._db.all(
            "SELECT provider, state, COUNT(*) AS n FROM payments GROUP BY provider, state")}

    def sales_by_state(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(gateway route, state) -> (sales on record, their amount in base units)."""
        return {(r["route"], r["state"]): (int(r["n"]), int(r["s"])) for r in self._db.all(
            "SELECT route, state, COUNT(*) AS n, SUM(amount) AS s FROM sales GROUP BY route, state")}

    def budget_spent(self, since: float, scopes: Sequence[str]) -> dict[str, int]:
        """Base units counted against each budget scope ("total", "provider:NAME") since `since`, as the
        ledger counts them when it reserves a payment (whole minutes)."""
        minute = int(since) // 60
        return {r["scope"]: int(r["s"]) for r in self._db.all(
            f"SELECT scope, SUM(amount) AS s FROM payment_spend WHERE minute >= ? AND scope IN "
            f"({','.join('?' * len(scopes))}) GROUP BY scope", (minute, *scopes))}


def _tx(r: Any) -> TxRecord:
    return TxRecord(bytes(r["tx_hash"]), r["chain_id"], r["sender"], r["nonce"], r["state"], r["sent_at"],
                    int(r["max_fee"]), int(r["priority_fee"]), json.loads(r["request_keys"]), r["block_number"],
                    r["gas_used"], int(r["gas_cost"]) if r["gas_cost"] is not None else None)
