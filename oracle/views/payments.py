"""The x402 ledger, newest first, by state."""

from __future__ import annotations

from oracle.store import Store
from oracle.views.paging import Page, decode_cursor, encode_cursor
from oracle.views.records import PaymentRecord
from oracle.views.requests import payment


def list_payments(store: Store, states: tuple[str, ...], limit: int, cursor: str | None = None) -> Page[PaymentRecord]:
    before = int(decode_cursor("payments", cursor, (int,))[0]) if cursor else None
    rows = store.queries.payments_page(states=states, limit=limit + 1, before_id=before)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([payment(p) for p in rows], encode_cursor("payments", [rows[-1].id]) if more else None)
