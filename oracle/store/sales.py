"""What the gateway sold: one row per payment an agent made (its EIP-3009 nonce buys one call).

A row is written, and committed, before the model is asked: a second call with the same payment finds
it and is refused (or, with the same payment identifier and body, gets the stored answer). Answers are
kept for their payment identifier until the authorization's validBefore plus ten minutes, then dropped;
the row stays for the payer's account (calls, spend, last seen). A call that failed stays as released,
with what its model calls cost the operator."""

from __future__ import annotations

import json
from dataclasses import dataclass

from oracle.store.db import Area
from oracle.store.states import SALE, SalePayment

G = SalePayment
KEEP_ANSWER = 600  # seconds after validBefore a stored answer is still given back
# What a payer has spent: calls answered (settling or settled); those failing to settle are not money.
_SPENT = (G.ANSWERED.value, G.SETTLED.value)
# What counts against a payer's daily cap besides: calls being answered (and failed calls' cost, below).
_IN_FLIGHT = (*_SPENT, G.VERIFIED.value)


@dataclass(frozen=True)
class Sale:
    nonce: str
    payer: str
    amount: int
    route: str
    state: SalePayment
    identifier: str | None
    fingerprint: str | None
    valid_before: int
    header: str  # the payment as sent (PAYMENT-SIGNATURE): settled from it, after a restart too
    status: int | None
    body: bytes | None
    headers: dict[str, str]
    settle_tx: str | None
    error: str
    cost: int  # what the failed calls of this payment cost the operator, micro-USD
    tries: int  # times its payment was sent again for the same call after a failure

    @property
    def route_key(self) -> str:
        """The key the router records this try's model calls under: each try routed afresh."""
        return f"gateway:{self.nonce}" + (f":{self.tries}" if self.tries else "")


@dataclass(frozen=True)
class Account:
    address: str
    calls: int  # paid calls answered
    spent: int  # base units, settling or settled
    settled: int  # base units settled on-chain
    last_seen: float | None  # unix time of the newest paid call, None: never


class Sales(Area):
    def claim(self, nonce: str, payer: str, amount: int, route: str, identifier: str | None,
              fingerprint: str, valid_before: int, header: str, now: float) -> None:
        """Take `nonce` for a call (state verified); the caller checked it is not on record."""
        SALE.check_initial(G.VERIFIED)
        self._db.write("INSERT INTO sales (nonce, payer, amount, route, state, identifier, fingerprint, valid_before, "
                       "created_at, header, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (nonce, payer, amount, route, G.VERIFIED.value, identifier, fingerprint, valid_before, now,
                        header, now))

    def reclaim(self, nonce: str, amount: int, valid_before: int, now: float) -> bool:
        """A released sale's payment, sent again for the same call: verified again."""
        row = self._db.one("SELECT tries FROM sales WHERE nonce=?", (nonce,))
        tries = (int(row["tries"]) if row is not None else 0) + 1
        return self._db.transition(SALE, "sales", "nonce", nonce, [G.RELEASED], G.VERIFIED,
                                   {"amount": amount, "valid_before": valid_before, "created_at": now,
                                    "updated_at": now, "error": "", "tries": tries})

    def answered(self, nonce: str, status: int, body: bytes, headers: dict[str, str]) -> bool:
        return self._db.transition(SALE, "sales", "nonce", nonce, [G.VERIFIED], G.ANSWERED,
                                   {"status": status, "body": body, "headers": json.dumps(headers)})

    def released(self, nonce: str, why: str, cost: int) -> bool:
        """The call failed and is not settled; `cost` (its model calls, micro-USD) adds to the sale's."""
        row = self._db.one("SELECT cost FROM sales WHERE nonce=?", (nonce,))
        total = (int(row["cost"]) if row is not None else 0) + cost
        return self._db.transition(SALE, "sales", "nonce", nonce, [G.VERIFIED], G.RELEASED,
                                   {"error": why[:300], "cost": total})

    def settled(self, nonce: str, tx: str) -> bool:
        return self._db.transition(SALE, "sales", "nonce", nonce, [G.ANSWERED], G.SETTLED, {"settle_tx": tx})

    def failed(self, nonce: str, why: str, now: float) -> bool:
        return self._db.transition(SALE, "sales", "nonce", nonce, [G.ANSWERED], G.FAILED,
                                   {"error": why[:300], "updated_at": now})

    def failed_since(self, since: float) -> dict[str, float]:
        """Payers whose payment failed to settle since `since`, with the latest such time."""
        return {r["payer"]: float(r["t"]) for r in self._db.all(
            "SELECT payer, MAX(updated_at) AS t FROM sales WHERE state=? AND updated_at>=? GROUP BY payer",
            (G.FAILED.value, since))}

    def keep_receipt(self, key: str, body: str, receipt_hash: bytes) -> None:
        """An analysis's receipt, served by the public listener under the hash its signature holds."""
        self._db.write("INSERT INTO receipts (request_key, body, hash) VALUES (?,?,?) ON CONFLICT(request_key) "
                       "DO UPDATE SET body=excluded.body, hash=excluded.hash", (key, body, receipt_hash))

    def by_nonce(self, nonce: str) -> Sale | None:
        row = self._db.one("SELECT * FROM sales WHERE nonce=?", (nonce,))
        return _sale(row) if row is not None else None

    def by_identifier(self, identifier: str) -> Sale | None:
        row = self._db.one("SELECT * FROM sales WHERE identifier=?", (identifier,))
        return _sale(row) if row is not None else None

    def unsettled(self) -> list[Sale]:
        """Answered, not yet settled: what a restart settles."""
        return [_sale(r) for r in self._db.all("SELECT * FROM sales WHERE state=? ORDER BY created_at",
                                               (G.ANSWERED.value,))]

    def unanswered(self) -> list[Sale]:
        """Verified calls whose answer never came (the daemon stopped while the model was asked)."""
        return [_sale(r) for r in self._db.all("SELECT * FROM sales WHERE state=?", (G.VERIFIED.value,))]

    def spent_since(self, payer: str, since: float, in_flight: bool = False) -> int:
        """What `payer` spent since `since` (answered calls); with `in_flight`, what counts against its
        daily cap: calls being answered too, and what its failed calls cost the operator."""
        states = _IN_FLIGHT if in_flight else _SPENT
        cost = "+ COALESCE(SUM(cost), 0)" if in_flight else ""
        row = self._db.one(f"SELECT COALESCE(SUM(CASE WHEN state IN ({','.join('?' * len(states))}) THEN amount "
                           f"ELSE 0 END), 0) {cost} AS s FROM sales WHERE payer=? AND created_at>=?",
                           (*states, payer, since))
        return int(row["s"]) if row is not None else 0

    def account(self, payer: str) -> Account:
        row = self._db.one(
            "SELECT COALESCE(SUM(CASE WHEN state IN (?,?,?) THEN 1 ELSE 0 END), 0) AS calls, "
            "COALESCE(SUM(CASE WHEN state IN (?,?) THEN amount ELSE 0 END), 0) AS spent, "
            "COALESCE(SUM(CASE WHEN state=? THEN amount ELSE 0 END), 0) AS settled, MAX(created_at) AS last "
            "FROM sales WHERE payer=?",
            (*_SPENT, G.FAILED.value, *_SPENT, G.SETTLED.value, payer))
        assert row is not None
        return Account(payer, int(row["calls"]), int(row["spent"]), int(row["settled"]), row["last"])

    def forget_answers(self, now: float) -> int:
        """Drop the answers (and identifiers) whose payment's validBefore passed ten minutes ago."""
        cur = self._db.write("UPDATE sales SET body=NULL, headers=NULL, identifier=NULL, fingerprint=NULL "
                             "WHERE valid_before<? AND body IS NOT NULL AND state!=?", (now - KEEP_ANSWER,
                                                                                         G.ANSWERED.value))
        return cur.rowcount


def _sale(r: object) -> Sale:
    row = dict(r)  # type: ignore[call-overload]
    return Sale(row["nonce"], row["payer"], row["amount"], row["route"], G(row["state"]), row["identifier"],
                row["fingerprint"], row["valid_before"], row["header"], row["status"],
                bytes(row["body"]) if row["body"] is not None else None,
                json.loads(row["headers"]) if row["headers"] else {}, row["settle_tx"], row["error"], row["cost"],
                row["tries"])
