"""The hourly series the status page charts: fulfilment latency by the hour a request was first
fulfilled, and spend (gas of sent transactions, model calls) by the hour it happened, on one chain."""

from __future__ import annotations

import json
from dataclasses import replace

from oracle.store import RequestState, Store, request_key
from tests.store.conftest import a_request

HOUR = 3_600
T0 = 1_800_000_000 // HOUR * HOUR  # an hour's start


def _seen(store: Store, n: int, seen_at: float, *, chain_id: int = 31337) -> str:
    r = a_request(n)
    if chain_id != r.chain_id:
        r = replace(r, chain_id=chain_id, key=request_key(chain_id, r.oracle, r.request_id))
    store.requests.insert(r)
    store.db.write("UPDATE requests SET seen_at=?, updated_at=? WHERE key=?", (seen_at, seen_at, r.key))
    return r.key


def _moved(store: Store, key: str, state: RequestState, at: float) -> None:
    store.db.write("UPDATE requests SET state=?, updated_at=? WHERE key=?", (state, at, key))


def test_latency_counts_each_request_once_in_the_hour_it_was_first_fulfilled(store: Store) -> None:
    a = _seen(store, 1, T0 + 10)
    _moved(store, a, RequestState.FULFILLED, T0 + 14)
    _moved(store, a, RequestState.SUBMITTED, T0 + 20)  # a reorg took the fulfilment back; it is sent again
    _moved(store, a, RequestState.FULFILLED, T0 + HOUR + 5)
    b = _seen(store, 2, T0 + HOUR - 2)
    _moved(store, b, RequestState.FULFILLED, T0 + HOUR + 6)  # seen in one hour, fulfilled in the next
    c = _seen(store, 3, T0 + HOUR + 1)
    _moved(store, c, RequestState.FULFILLED, T0 + HOUR + 3)
    _seen(store, 4, T0 + 30)  # not fulfilled
    other = _seen(store, 5, T0 + 30, chain_id=1)
    _moved(store, other, RequestState.FULFILLED, T0 + 31)
    store.commit_now()
    rows = store.queries.latency_by_hour(31337, T0)
    assert [(r.hour, r.fulfilled, r.mean_s, r.max_s) for r in rows] == [(T0, 1, 4.0, 4.0),
                                                                         (T0 + HOUR, 2, 5.0, 8.0)]
    # a window starting later leaves out what was seen before it
    assert [(r.hour, r.fulfilled) for r in store.queries.latency_by_hour(31337, T0 + HOUR)] == [(T0 + HOUR, 1)]


def test_spend_sums_gas_by_the_hour_sent_and_model_calls_by_the_hour_started(store: Store) -> None:
    a = _seen(store, 1, T0 + 10)
    b = _seen(store, 2, T0 + HOUR + 10)
    for n, (chain_id, sent_at, cost) in enumerate([(31337, T0 + 20, "1000"), (31337, T0 + HOUR + 20, "300"),
                                                   (31337, T0 + HOUR + 40, "200"), (31337, T0 + 50, None),
                                                   (1, T0 + 20, "7")]):
        store.db.write("INSERT INTO txs (tx_hash, chain_id, sender, nonce, raw, max_fee, priority_fee, request_keys, "
                       "state, sent_at, gas_cost) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (bytes([n]) * 32, chain_id, "0x" + "11" * 20, n, b"", "1", "1", json.dumps([a]), "confirmed",
                        sent_at, cost))
    calls = [(a, 1, T0 + 11, 150), (a, 2, T0 + HOUR + 12, 50), (b, 1, T0 + HOUR + 11, 25)]
    for key, attempt, started_at, price in calls:
        store.db.write("INSERT INTO attempts (request_key, attempt_id, deployment, state, outcome, started_at, cost) "
                       "VALUES (?,?,?,?,?,?,?)", (key, attempt, "local", "done", "ok", started_at, price))
    store.commit_now()
    rows = store.queries.spend_by_hour(31337, T0)
    assert [(r.hour, r.gas_wei, r.models_micro_usd) for r in rows] == [(T0, 1000, 150), (T0 + HOUR, 500, 75)]
    assert store.queries.spend_by_hour(31337, T0 + 2 * HOUR) == []
