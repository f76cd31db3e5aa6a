"""The x402 ledger: one row per payment, reserved against the budgets before anything is signed."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from oracle.store.db import Area
from oracle.store.states import PAYMENT, PAYMENT_SPENDING, PAYMENT_UNRESOLVED, PaymentState

P = PaymentState


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
    state: str  # a PaymentState
    tx_hash: str
    error: str
    delivered: bool
    updated_at: float = 0.0
    identifier: str = ""  # the x402 payment-identifier sent with it, when the provider declared the extension
    from_block: int = 0  # no settlement of it can be in an earlier block (a head seen before it was signed)
    settled_block: int = 0  # the block its settlement is in, once seen on-chain
    final: bool = False  # settled at least `confirmations` blocks deep: no longer re-checked


_FIELDS = {"nonce", "valid_before", "header", "tx_hash", "error", "delivered", "identifier", "from_block",
           "settled_block", "final"}
_SPEND = ("INSERT INTO payment_spend (scope, minute, amount) VALUES (?,?,?) "
          "ON CONFLICT(scope, minute) DO UPDATE SET amount = amount + excluded.amount")


class Payments(Area):
    def reserve(self, p: Payment, now: float, window: float, limits: dict[str, int], max_unresolved: int,
                request_cap: int | None = None) -> Payment | str:
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
        self._db.commit_now()  # the reservation is a transaction of its own
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            refusal = ""
            if request_cap is not None:
                spent = int(conn.execute(
                    f"SELECT COALESCE(SUM(CAST(amount AS INTEGER)), 0) FROM payments WHERE request_key=? AND state "
                    f"IN ({','.join('?' * len(PAYMENT_SPENDING))})", (p.request_key, *PAYMENT_SPENDING)).fetchone()[0])
                if spent + p.amount > request_cap:
                    refusal = (f"request allowance: {spent} may already have been paid of {request_cap}, "
                               f"{p.amount} more asked")
            # Whole minutes: a payment counts from the start of its minute, so the window is at most a
            # minute longer than configured (never shorter: budgets are never overspent).
            since = int(now - window) // 60
            for name, scope in _scopes(p) if not refusal else ():
                used = int(conn.execute("SELECT COALESCE(SUM(amount), 0) FROM payment_spend WHERE scope=? "
                                        "AND minute >= ?", (scope, since)).fetchone()[0])
                if used + p.amount > limits[name]:
                    refusal = f"{name} budget: {used} spent of {limits[name]}, {p.amount} more asked"
                    break
            if not refusal:
                unresolved = conn.execute(
                    f"SELECT COUNT(*) FROM payments WHERE state IN ({','.join('?' * len(PAYMENT_UNRESOLVED))})",
                    PAYMENT_UNRESOLVED).fetchone()[0]
                if unresolved >= max_unresolved:
                    refusal = f"{unresolved} payments unresolved, at most {max_unresolved}"
            if refusal:
                conn.execute("ROLLBACK")
                return refusal
            PAYMENT.check_initial(P.RESERVED)
            cur = conn.execute(
                "INSERT INTO payments (request_key, attempt_id, provider, requester, network, asset, pay_to, amount, "
                "payer, version, state, from_block, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (p.request_key, p.attempt_id, p.provider, p.requester, p.network, p.asset, p.pay_to, str(p.amount),
                 p.payer, p.version, P.RESERVED, p.from_block, now, now))
            for _, scope in _scopes(p):
                conn.execute(_SPEND, (scope, int(now) // 60, p.amount))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        found = self.payment(int(cur.lastrowid or 0))
        assert found is not None
        return found

    def record_refused(self, request_key: str, attempt_id: int, provider: str, requester: str, network: str,
                       asset: str, pay_to: str, payer: str, reason: str) -> Payment:
        """A 402 that was not paid, and why: nothing was signed; it counts against no budget."""
        PAYMENT.check_initial(P.REJECTED)
        now = time.time()
        self._db.write("INSERT INTO payments (request_key, attempt_id, provider, requester, network, asset, pay_to, "
                       "amount, payer, state, error, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                       "ON CONFLICT(request_key, attempt_id) DO NOTHING",
                       (request_key, attempt_id, provider, requester, network, asset, pay_to, "0", payer, P.REJECTED,
                        reason[:300], now, now))
        found = self.payment_for(request_key, attempt_id)
        assert found is not None
        return found

    def transition(self, payment_id: int, from_states: Iterable[PaymentState], to: PaymentState,
                   **fields: Any) -> bool:
        """Move a payment to `to` if it is in one of `from_states`, with ledger fields. One that turns out
        not to have moved money (expired) gives its budget back."""
        assert set(fields) <= _FIELDS, fields
        row = self._db.one("SELECT * FROM payments WHERE id=?", (payment_id,))
        if not self._db.transition(PAYMENT, "payments", "id", payment_id, from_states, to,
                                   {**fields, "updated_at": time.time()}):
            return False
        assert row is not None
        if row["state"] in PAYMENT_SPENDING and to not in PAYMENT_SPENDING:
            for _, scope in _scopes(_payment(row)):
                self._db.write(_SPEND, (scope, int(row["created_at"]) // 60, -int(row["amount"])))
        return True

    def update(self, payment_id: int, **fields: Any) -> None:
        """Set ledger fields that are not its state (nonce, header, tx_hash, error, delivered, ...)."""
        assert fields and set(fields) <= _FIELDS, fields
        names = sorted(fields)
        self._db.write(f"UPDATE payments SET {', '.join(f'{n}=?' for n in names)}, updated_at=? WHERE id=?",
                       (*(fields[n] for n in names), time.time(), payment_id))

    def request_payments(self, request_key: str) -> tuple[int, int]:
        """(amount that may have moved, highest attempt id with a payment) for one request."""
        row = self._db.one(f"SELECT COALESCE(SUM(CASE WHEN state IN ({','.join('?' * len(PAYMENT_SPENDING))}) "
                           "THEN CAST(amount AS INTEGER) ELSE 0 END), 0) AS spent, COALESCE(MAX(attempt_id), 0) AS "
                           "last FROM payments WHERE request_key=?", (*PAYMENT_SPENDING, request_key))
        return (int(row["spent"]), int(row["last"])) if row is not None else (0, 0)

    def payment(self, payment_id: int) -> Payment | None:
        row = self._db.one("SELECT * FROM payments WHERE id=?", (payment_id,))
        return _payment(row) if row is not None else None

    def payment_for(self, request_key: str, attempt_id: int) -> Payment | None:
        row = self._db.one("SELECT * FROM payments WHERE request_key=? AND attempt_id=?", (request_key, attempt_id))
        return _payment(row) if row is not None else None

    def settlements_to_confirm(self) -> list[Payment]:
        """Settled payments not yet final: their settlement may still be reorganised away."""
        return [_payment(r) for r in self._db.all("SELECT * FROM payments WHERE state=? AND final=0 ORDER BY id",
                                                  (P.SETTLED,))]

    def payments(self, states: Sequence[PaymentState] = ()) -> list[Payment]:
        if not states:
            return [_payment(r) for r in self._db.all("SELECT * FROM payments ORDER BY id")]
        return [_payment(r) for r in self._db.all(
            f"SELECT * FROM payments WHERE state IN ({','.join('?' * len(states))}) ORDER BY id", tuple(states))]


def _scopes(p: Payment) -> list[tuple[str, str]]:
    """The budget scopes a payment counts in: all payments, its provider's, its requester's."""
    return [("total", "total"), ("per_provider", f"provider:{p.provider}"),
            ("per_requester", f"requester:{p.requester}")]


def _payment(r: Any) -> Payment:
    return Payment(r["id"], r["request_key"], r["attempt_id"], r["provider"], r["requester"], r["network"], r["asset"],
                   r["pay_to"], int(r["amount"]), r["payer"], r["version"], r["nonce"] or "", r["valid_before"],
                   r["header"], r["state"], r["tx_hash"], r["error"], bool(r["delivered"]), r["updated_at"],
                   r["identifier"], r["from_block"], r["settled_block"], bool(r["final"]))
